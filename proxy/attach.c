/*
 * attach: clients given on the command line (--client).
 */
#include "attach.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "address.h"
#include "util.h"

struct attach {
    struct event_base *base;
    struct address addr;
    char *display;
    const struct attach_hooks *hooks;
    void *opaque;
    bool started;
    int connecting_fd;
    struct event *connect_ev;
};

/* epoll cannot watch a regular file or a directory. */
static bool pollable(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)
        && !S_ISDIR(st.st_mode);
}

struct attach *attach_new(struct event_base *base, const struct address *addr,
                          const struct attach_hooks *hooks, void *opaque,
                          char **error)
{
    struct attach *a;

    if (addr->kind == ADDR_FD && fcntl(addr->fd, F_GETFD) < 0) {
        *error = xasprintf("fd:%d is not an open descriptor", addr->fd);
        return NULL;
    }
    if (addr->kind == ADDR_FD && !pollable(addr->fd)) {
        *error = xasprintf("fd:%d is a file, not a connection", addr->fd);
        return NULL;
    }
    if (addr->kind == ADDR_STDIO && (!pollable(0) || !pollable(1))) {
        *error = xstrdup("stdio: standard input and output must be a "
                         "terminal, pipes or sockets, not files");
        return NULL;
    }
    a = xcalloc(1, sizeof(*a));
    a->base = base;
    a->addr = *addr;
    a->addr.name = xstrdup(addr->name ? addr->name : "default");
    a->addr.path = addr->path ? xstrdup(addr->path) : NULL;
    a->addr.port = addr->port ? xstrdup(addr->port) : NULL;
    a->display = address_format(addr);
    a->hooks = hooks;
    a->opaque = opaque;
    a->connecting_fd = -1;
    return a;
}

static void on_connected(evutil_socket_t fd, short what, void *arg)
{
    struct attach *a = arg;
    char *why;
    (void)what;

    event_free(a->connect_ev);
    a->connect_ev = NULL;
    a->connecting_fd = -1;
    why = address_connect_finish(&a->addr, fd);
    if (why) {
        close(fd);
        a->hooks->failed(a->opaque, a, why);
        free(why);
        return;
    }
    a->hooks->attached(a->opaque, a, fd, fd);
}

void attach_start(struct attach *a)
{
    int fd, rfd, wfd;
    char *why = NULL;

    if (a->started) {
        return;
    }
    a->started = true;
    switch (a->addr.kind) {
    case ADDR_FD:
        a->hooks->attached(a->opaque, a, a->addr.fd, a->addr.fd);
        return;
    case ADDR_STDIO:
        /* the session owns the only copies, so closing them is the
         * client's end-of-file; 0 and 1 become /dev/null */
        rfd = fcntl(0, F_DUPFD_CLOEXEC, 3);
        wfd = fcntl(1, F_DUPFD_CLOEXEC, 3);
        fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (rfd < 0 || wfd < 0 || fd < 0) {
            why = xasprintf("stdio: %s", strerror(errno));
            a->hooks->failed(a->opaque, a, why);
            free(why);
            return;
        }
        dup2(fd, 0);
        dup2(fd, 1);
        close(fd);
        a->hooks->attached(a->opaque, a, rfd, wfd);
        return;
    case ADDR_UNIX:
    case ADDR_TCP:
        break;
    }
    switch (address_connect(&a->addr, &fd, &why)) {
    case ADDRESS_CONNECTED:
        a->hooks->attached(a->opaque, a, fd, fd);
        return;
    case ADDRESS_CONNECT_PENDING:
        a->connecting_fd = fd;
        a->connect_ev = event_new(a->base, fd, EV_WRITE, on_connected, a);
        event_add(a->connect_ev, NULL);
        return;
    case ADDRESS_CONNECT_FAILED:
        a->hooks->failed(a->opaque, a, why);
        free(why);
        return;
    }
}

const char *attach_name(const struct attach *a)
{
    return a->addr.name;
}

const char *attach_display(const struct attach *a)
{
    return a->display;
}

void attach_free(struct attach *a)
{
    if (!a) {
        return;
    }
    if (a->connect_ev) {
        event_free(a->connect_ev);
        close(a->connecting_fd);
    }
    if (a->addr.kind == ADDR_FD && !a->started) {
        close(a->addr.fd);
    }
    free(a->display);
    address_clear(&a->addr);
    free(a);
}
