/*
 * address: the addresses users type, and connecting to one.
 */
#include "address.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

static bool valid_name(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            return false;
        }
    }
    return true;
}

bool address_valid_name(const char *name)
{
    return valid_name(name, strlen(name));
}

char *address_parse(const char *spec, unsigned allow, struct address *out)
{
    const char *eq = strchr(spec, '=');
    const char *colon = strchr(spec, ':');
    char *error;

    memset(out, 0, sizeof(*out));
    out->fd = -1;
    if ((allow & ADDRESS_ALLOW_NAME) && eq && (!colon || eq < colon)
        && valid_name(spec, (size_t)(eq - spec))) {
        out->name = xstrndup(spec, (size_t)(eq - spec));
        spec = eq + 1;
    } else {
        out->name = xstrdup("default");
    }
    if (!strncmp(spec, "unix:", 5)) {
        out->kind = ADDR_UNIX;
        out->path = xstrdup(spec + 5);
    } else if (!strncmp(spec, "tcp:", 4)) {
        const char *hp = spec + 4;
        const char *last = strrchr(hp, ':');
        if (!last || last == hp || !last[1]) {
            error = xasprintf("'%s': expected tcp:HOST:PORT", spec);
            goto fail;
        }
        out->kind = ADDR_TCP;
        if (hp[0] == '[' && last[-1] == ']') {
            out->path = xstrndup(hp + 1, (size_t)(last - hp - 2));
        } else {
            out->path = xstrndup(hp, (size_t)(last - hp));
        }
        out->port = xstrdup(last + 1);
    } else if (!strncmp(spec, "fd:", 3)) {
        char *end;
        long fd;
        if (!(allow & ADDRESS_ALLOW_FD)) {
            error = xasprintf("'%s': fd: is not allowed here", spec);
            goto fail;
        }
        errno = 0;
        fd = strtol(spec + 3, &end, 10);
        if (errno || *end || end == spec + 3 || fd < 0 || fd > 1 << 20) {
            error = xasprintf("'%s': expected fd:N with N a descriptor "
                               "number", spec);
            goto fail;
        }
        out->kind = ADDR_FD;
        out->fd = (int)fd;
    } else if (!strcmp(spec, "stdio") && (allow & ADDRESS_ALLOW_STDIO)) {
        out->kind = ADDR_STDIO;
    } else if (spec[0] == '/' || spec[0] == '.' || !strchr(spec, ':')) {
        out->kind = ADDR_UNIX;
        out->path = xstrdup(spec);
    } else {
        error = xasprintf("'%s': expected unix:PATH, tcp:HOST:PORT%s or a "
                           "path", spec, allow & ADDRESS_ALLOW_FD ? ", fd:N" : "");
        goto fail;
    }
    if (out->kind == ADDR_UNIX) {
        if (!out->path[0]) {
            error = xasprintf("'%s': the socket path is empty", spec);
            goto fail;
        }
        if (strlen(out->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            error = xasprintf("'%s': the socket path is longer than %zu "
                               "bytes", spec,
                               sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            goto fail;
        }
    }
    return NULL;
fail:
    address_clear(out);
    return error;
}

void address_clear(struct address *a)
{
    free(a->name);
    free(a->path);
    free(a->port);
    memset(a, 0, sizeof(*a));
    a->fd = -1;
}

char *address_format(const struct address *a)
{
    switch (a->kind) {
    case ADDR_UNIX:
        return xasprintf("unix:%s", a->path);
    case ADDR_TCP:
        return xasprintf("tcp:%s:%s", a->path, a->port);
    case ADDR_FD:
        return xasprintf("fd:%d", a->fd);
    case ADDR_STDIO:
        return xstrdup("stdio");
    }
    return xstrdup("?");
}

enum address_connect_result address_connect(const struct address *a,
                                            int *fd, char **error)
{
    int s;

    *fd = -1;
    if (a->kind == ADDR_UNIX) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strncpy(sa.sun_path, a->path, sizeof(sa.sun_path) - 1);
        s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            *fd = s;
            return ADDRESS_CONNECTED;
        }
        /* EAGAIN: the backlog is full; like any refusal, the caller may
         * try again */
        *error = xasprintf("connect unix:%s: %s", a->path, strerror(errno));
        if (s >= 0) {
            close(s);
        }
        return ADDRESS_CONNECT_FAILED;
    }
    if (a->kind == ADDR_TCP) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC,
                                  .ai_socktype = SOCK_STREAM };
        struct addrinfo *res;
        int rc = getaddrinfo(a->path, a->port, &hints, &res);
        if (rc) {
            *error = xasprintf("tcp:%s:%s: %s", a->path, a->port,
                               gai_strerror(rc));
            return ADDRESS_CONNECT_FAILED;
        }
        s = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC
                   | SOCK_NONBLOCK, res->ai_protocol);
        if (s >= 0 && (connect(s, res->ai_addr, res->ai_addrlen) == 0
                       || errno == EINPROGRESS)) {
            freeaddrinfo(res);
            *fd = s;
            return ADDRESS_CONNECT_PENDING;
        }
        *error = xasprintf("connect tcp:%s:%s: %s", a->path, a->port,
                           strerror(errno));
        if (s >= 0) {
            close(s);
        }
        freeaddrinfo(res);
        return ADDRESS_CONNECT_FAILED;
    }
    *error = xasprintf("cannot connect to %s", a->kind == ADDR_FD
                       ? "an fd: address" : "stdio");
    return ADDRESS_CONNECT_FAILED;
}

char *address_connect_finish(const struct address *a, int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
        err = errno;
    }
    if (!err) {
        return NULL;
    }
    return xasprintf("connect tcp:%s:%s: %s", a->path, a->port,
                     strerror(err));
}
