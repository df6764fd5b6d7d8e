/*
 * fdstore: the proxy's own duplicates of the file descriptors clients pass
 * to QEMU with getfd, by name, until closefd.  QEMU keeps its copy to
 * itself; the proxy needs one too for RHEL's drive-reopen "witness" (a
 * byte written to that descriptor when the reopen succeeded).
 */
#ifndef QMPROXY_FDSTORE_H
#define QMPROXY_FDSTORE_H

#include <json-c/json.h>

/* Keep fd (ownership taken) under name, replacing (closing) an older one,
 * as QEMU's getfd does. */
void fdstore_put(const char *name, int fd);
/* The descriptor kept under name (borrowed), or -1. */
int fdstore_get(const char *name);
void fdstore_close(const char *name);
/* Close the copies of descriptors a command going to QEMU refers to (a
 * string argument NAME or "fd:NAME"): QEMU uses up and closes its own, and
 * a copy kept here would hold the other end of a pipe open for ever (virsh
 * save waits for end-of-file on it). */
void fdstore_forget_used(json_object *args);
void fdstore_clear(void);

#endif
