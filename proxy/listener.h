/*
 * listener: a socket management clients connect to.  Creates and binds
 * what needs creating (or adopts an inherited listening socket), accepts
 * only while enabled (clients that come early wait in the backlog), and
 * removes the Unix sockets it created.
 */
#ifndef QMPROXY_LISTENER_H
#define QMPROXY_LISTENER_H

#include <stdbool.h>

#include "address.h"

struct event_base;
struct listener;

typedef void (*listener_accept_fn)(void *opaque, struct listener *l, int fd);

/* Create (or adopt, for fd:N) a listening socket. mode: -1 to leave alone. */
struct listener *listener_new(struct event_base *base,
                              const struct address *addr, int mode,
                              listener_accept_fn fn, void *opaque,
                              char **error);
/* A Unix socket listening at path, made as listener_new makes one (a
 * stale socket there replaced), close-on-exec and non-blocking, for
 * handing to another program; -1 and *error (owned) if it cannot be. */
int listener_unix_socket(const char *path, int mode, char **error);
/* A listening socket at a unix: or tcp: address, for a server other
 * than the QMP one (the metrics); -1 and *error (owned) if it cannot be.
 * The caller unlinks a Unix socket's path when done. */
int listener_socket(const struct address *addr, int mode, char **error);
void listener_enable(struct listener *l, bool on);
const char *listener_name(const struct listener *l);
const char *listener_display(const struct listener *l);
/* Close, and unlink a Unix socket this process created. */
void listener_free(struct listener *l);

#endif
