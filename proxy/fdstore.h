/*
 * fdstore: the proxy's own duplicates of the file descriptors clients pass
 * to QEMU with getfd, by name, until closefd.  QEMU keeps its copy to
 * itself; the proxy needs one too for RHEL's drive-reopen "witness" (a
 * byte written to that descriptor when the reopen succeeded).
 */
#ifndef QMPROXY_FDSTORE_H
#define QMPROXY_FDSTORE_H

/* Keep fd (ownership taken) under name, replacing (closing) an older one,
 * as QEMU's getfd does. */
void fdstore_put(const char *name, int fd);
/* The descriptor kept under name (borrowed), or -1. */
int fdstore_get(const char *name);
void fdstore_close(const char *name);
void fdstore_clear(void);

#endif
