/*
 * listener: a socket management clients connect to.  Parses the
 * addresses users type (unix:PATH, tcp:HOST:PORT, fd:N, a bare PATH, each
 * optionally prefixed NAME=), creates and binds what needs creating,
 * accepts only while enabled (clients that come early wait in the backlog),
 * and removes the Unix sockets it created.
 */
#ifndef QMPROXY_LISTENER_H
#define QMPROXY_LISTENER_H

#include <stdbool.h>

struct event_base;
struct listener;

enum address_kind { ADDR_UNIX, ADDR_TCP, ADDR_FD };

struct address {
    enum address_kind kind;
    char *name;   /* owned: the listener's name, "default" when unnamed */
    char *path;   /* owned: unix path, or tcp host */
    char *port;   /* owned: tcp port */
    int fd;       /* ADDR_FD */
};

/* Parses spec; on error returns false and sets *error (owned). */
bool address_parse(const char *spec, bool allow_name, bool allow_fd,
                   struct address *out, char **error);
void address_clear(struct address *a);
/* "unix:/path" etc., owned. */
char *address_format(const struct address *a);

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
void listener_enable(struct listener *l, bool on);
const char *listener_name(const struct listener *l);
const char *listener_display(const struct listener *l);
/* Close, and unlink a Unix socket this process created. */
void listener_free(struct listener *l);

#endif
