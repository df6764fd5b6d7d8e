/*
 * listener: listening sockets (unix, tcp, inherited fd).
 */
#include "listener.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct listener {
    struct address addr;
    char *display;
    int fd;
    bool created_path;   /* we bound the unix path: unlink it on exit */
    dev_t dev;
    ino_t ino;
    struct event *ev;
    bool enabled;
    listener_accept_fn fn;
    void *opaque;
};

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    struct listener *l = arg;
    (void)what;

    /* a few at a time, so one busy listener cannot starve the loop */
    for (int i = 0; i < 16 && l->enabled; i++) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
                && errno != ECONNABORTED) {
                log_warn("accept on %s: %s", l->display, strerror(errno));
            }
            return;
        }
        l->fn(l->opaque, l, c);
    }
}

static int listen_unix(const char *path, int mode, char **error,
                       bool *created, bool stage)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct stat st;

    if (fd < 0) {
        *error = xasprintf("socket: %s", strerror(errno));
        return -1;
    }
    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    /* a stale socket from a crashed run may be replaced; anything else not */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            *error = xasprintf("%s exists and is not a socket", path);
            close(fd);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa,
                                  sizeof(sa)) == 0) {
            close(probe);
            *error = xasprintf("%s is in use by another process", path);
            close(fd);
            return -1;
        }
        if (probe >= 0) {
            close(probe);
        }
        unlink(path);
    }
    /*
     * Bind under a temporary name, listen, then rename into place: a
     * client that sees the path can connect at once (between bind and
     * listen it would be refused).  Not for a socket nobody looks for
     * before it is handed on: it keeps its own name (ss, /proc/net/unix).
     */
    char *tmp = xasprintf("%s.%d.tmp", path, (int)getpid());
    bool staged = stage && strlen(tmp) < sizeof(sa.sun_path);
    if (staged) {
        memset(sa.sun_path, 0, sizeof(sa.sun_path));
        memcpy(sa.sun_path, tmp, strlen(tmp));
        unlink(tmp);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        *error = xasprintf("bind %s: %s", path, strerror(errno));
        free(tmp);
        close(fd);
        return -1;
    }
    if (mode >= 0 && chmod(staged ? tmp : path, (mode_t)mode) < 0) {
        *error = xasprintf("chmod %s: %s", path, strerror(errno));
        unlink(staged ? tmp : path);
        free(tmp);
        close(fd);
        return -1;
    }
    if (listen(fd, 64) < 0 || (staged && rename(tmp, path) < 0)) {
        *error = xasprintf("listen %s: %s", path, strerror(errno));
        unlink(staged ? tmp : path);
        free(tmp);
        close(fd);
        return -1;
    }
    free(tmp);
    *created = true;
    return fd;
}

static int listen_tcp(const char *host, const char *port, char **error)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE };
    struct addrinfo *res, *ai;
    int fd = -1, rc;

    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc) {
        *error = xasprintf("tcp:%s:%s: %s", host, port, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        int one = 1;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC
                    | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        *error = xasprintf("bind tcp:%s:%s: %s", host, port, strerror(errno));
    }
    return fd;
}

int listener_unix_socket(const char *path, int mode, char **error)
{
    bool created = false;
    return listen_unix(path, mode, error, &created, false);
}

int listener_socket(const struct address *addr, int mode, char **error)
{
    bool created = false;
    int fd;

    if (addr->kind == ADDR_UNIX) {
        return listen_unix(addr->path, mode, error, &created, true);
    }
    if (addr->kind != ADDR_TCP) {
        *error = xstrdup("wants unix:PATH or tcp:HOST:PORT");
        return -1;
    }
    fd = listen_tcp(addr->path, addr->port, error);
    if (fd >= 0 && listen(fd, 64) < 0) {
        *error = xasprintf("listen tcp:%s:%s: %s", addr->path, addr->port,
                           strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

struct listener *listener_new(struct event_base *base,
                              const struct address *addr, int mode,
                              listener_accept_fn fn, void *opaque,
                              char **error)
{
    struct listener *l = xcalloc(1, sizeof(*l));
    int fd = -1;

    l->addr = *addr;
    l->addr.name = xstrdup(addr->name);
    l->addr.path = addr->path ? xstrdup(addr->path) : NULL;
    l->addr.port = addr->port ? xstrdup(addr->port) : NULL;
    l->display = address_format(addr);
    l->fn = fn;
    l->opaque = opaque;

    switch (addr->kind) {
    case ADDR_UNIX:
        fd = listen_unix(addr->path, mode, error, &l->created_path, true);
        break;
    case ADDR_TCP:
        fd = listen_tcp(addr->path, addr->port, error);
        break;
    case ADDR_FD: {
        int type = 0, acc = 0;
        socklen_t len = sizeof(type);
        fd = addr->fd;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0
            || type != SOCK_STREAM) {
            *error = xasprintf("fd:%d is not a stream socket", fd);
            fd = -1;
            break;
        }
        len = sizeof(acc);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0
            || !acc) {
            /* libvirt passes a bound socket that may not listen yet */
            if (listen(fd, 64) < 0) {
                *error = xasprintf("fd:%d cannot listen: %s", fd,
                                   strerror(errno));
                fd = -1;
                break;
            }
        }
        fd_set_nonblock_cloexec(fd);
        break;
    }
    case ADDR_STDIO:
        *error = xstrdup("stdio is a client, not a listener (--client "
                         "stdio)");
        break;
    }
    if (fd < 0) {
        free(l->display);
        address_clear(&l->addr);
        free(l);
        return NULL;
    }
    if (addr->kind == ADDR_TCP && listen(fd, 64) < 0) {
        *error = xasprintf("listen %s: %s", l->display, strerror(errno));
        close(fd);
        if (l->created_path) {
            unlink(addr->path);
        }
        free(l->display);
        address_clear(&l->addr);
        free(l);
        return NULL;
    }
    if (l->created_path) {
        struct stat st;
        if (stat(addr->path, &st) == 0) {
            l->dev = st.st_dev;
            l->ino = st.st_ino;
        }
    }
    l->fd = fd;
    l->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_accept, l);
    return l;
}

void listener_enable(struct listener *l, bool on)
{
    if (on && !l->enabled) {
        event_add(l->ev, NULL);
    } else if (!on && l->enabled) {
        event_del(l->ev);
    }
    l->enabled = on;
}

const char *listener_name(const struct listener *l)
{
    return l->addr.name;
}

const char *listener_display(const struct listener *l)
{
    return l->display;
}

void listener_free(struct listener *l)
{
    if (!l) {
        return;
    }
    event_free(l->ev);
    close(l->fd);
    if (l->created_path) {
        struct stat st;
        /* only our own socket: another process may have replaced it */
        if (stat(l->addr.path, &st) == 0 && st.st_dev == l->dev
            && st.st_ino == l->ino) {
            unlink(l->addr.path);
        }
    }
    free(l->display);
    address_clear(&l->addr);
    free(l);
}
