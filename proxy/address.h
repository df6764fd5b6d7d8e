/*
 * address: the addresses users type (unix:PATH, tcp:HOST:PORT, fd:N,
 * stdio, a bare PATH, each optionally prefixed NAME=), and connecting to
 * one without blocking.
 */
#ifndef QMPROXY_ADDRESS_H
#define QMPROXY_ADDRESS_H

#include <stdbool.h>

enum address_kind { ADDR_UNIX, ADDR_TCP, ADDR_FD, ADDR_STDIO };

struct address {
    enum address_kind kind;
    char *name;   /* owned: the listener's name, "default" when unnamed */
    char *path;   /* owned: unix path, or tcp host */
    char *port;   /* owned: tcp port */
    int fd;       /* ADDR_FD */
};

/* What address_parse accepts besides unix:, tcp: and a bare path. */
enum {
    ADDRESS_ALLOW_NAME = 1 << 0,   /* NAME= */
    ADDRESS_ALLOW_FD = 1 << 1,     /* fd:N */
    ADDRESS_ALLOW_STDIO = 1 << 2,  /* stdio */
};

/* Parses spec into out; NULL, or what is wrong with it (owned). */
char *address_parse(const char *spec, unsigned allow, struct address *out);
void address_clear(struct address *a);
/* Whether name can name a listener or client (NAME=): letters, digits,
 * '-' and '_'. */
bool address_valid_name(const char *name);
/* "unix:/path" etc., owned. */
char *address_format(const struct address *a);

enum address_connect_result {
    ADDRESS_CONNECTED,       /* *fd is connected */
    ADDRESS_CONNECT_PENDING, /* tcp: wait for *fd to be writable, then
                              * address_connect_finish() */
    ADDRESS_CONNECT_FAILED,  /* *error set (owned) */
};

/* A non-blocking, close-on-exec stream socket to a unix: or tcp: address.
 * getaddrinfo() may block: give numeric addresses. */
enum address_connect_result address_connect(const struct address *a,
                                            int *fd, char **error);
/* After a pending connect: NULL when connected, else why (owned). */
char *address_connect_finish(const struct address *a, int fd);

#endif
