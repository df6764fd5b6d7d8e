/*
 * attach: clients the proxy is given rather than accepts.  An already
 * connected socket (fd:N, as QEMU's own test harness hands QEMU one end of
 * a socket pair), the proxy's standard input and output (stdio, for
 * `-qmp stdio` users), or a client listening for the monitor to connect
 * (unix:PATH, tcp:HOST:PORT, as QEMU's client-mode chardev does).  Each is
 * attached once, when QEMU's monitor is first ready, and served for as
 * long as it stays.
 */
#ifndef QMPROXY_ATTACH_H
#define QMPROXY_ATTACH_H

#include <stdbool.h>

struct address;
struct attach;
struct event_base;

struct attach_hooks {
    /* The client is there: read from rfd, write to wfd (owned from now
     * on; the same descriptor for a socket). */
    void (*attached)(void *opaque, struct attach *a, int rfd, int wfd);
    /* It could not be reached. */
    void (*failed)(void *opaque, struct attach *a, const char *why);
};

/* Checks what can be checked now (fd:N is open; stdio is not a file). */
struct attach *attach_new(struct event_base *base, const struct address *addr,
                          const struct attach_hooks *hooks, void *opaque,
                          char **error);
/* Attach it now (once: later calls do nothing). */
void attach_start(struct attach *a);
const char *attach_name(const struct attach *a);
const char *attach_display(const struct attach *a);
void attach_free(struct attach *a);

#endif
