/*
 * sdnotify: the service manager's notification socket.
 */
#include "sdnotify.h"

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Messages kept while the manager's socket is full; beyond that the
 * oldest goes (a later STATUS= says the same again anyway). */
#define SDNOTIFY_BACKLOG 8
#define SDNOTIFY_RETRY_MS 100

struct sdnotify {
    int fd;
    struct sockaddr_un addr;
    socklen_t addr_len;
    char *display;
    uint64_t watchdog_usec;
    struct event *watchdog;
    struct event *retry;
    char *pending[SDNOTIFY_BACKLOG];
    size_t npending;
    bool backed_up;   /* said so in the log, until it drains */
};

static bool send_now(struct sdnotify *n, const char *msg)
{
    ssize_t w;

    do {
        w = sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL,
                   (const struct sockaddr *)&n->addr, n->addr_len);
    } while (w < 0 && errno == EINTR);
    if (w >= 0) {
        return true;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
        /* a manager that went away: nothing to keep it for */
        log_debug("NOTIFY_SOCKET %s: %s", n->display, strerror(errno));
        return true;
    }
    return false;
}

static void flush_pending(struct sdnotify *n)
{
    size_t done = 0;

    while (done < n->npending && send_now(n, n->pending[done])) {
        free(n->pending[done++]);
    }
    memmove(n->pending, n->pending + done,
            sizeof(*n->pending) * (n->npending - done));
    n->npending -= done;
    if (n->npending) {
        struct timeval tv = { 0, SDNOTIFY_RETRY_MS * 1000 };
        if (!n->backed_up) {
            n->backed_up = true;
            log_info("the service manager's socket %s is full: "
                     "notifications wait", n->display);
        }
        evtimer_add(n->retry, &tv);
    } else if (n->backed_up) {
        n->backed_up = false;
        log_info("the service manager takes notifications again");
    }
}

static bool is_status_only(const char *msg)
{
    return !strncmp(msg, "STATUS=", 7) && !strchr(msg, '\n');
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    flush_pending(arg);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    sdnotify_send(arg, "WATCHDOG=1");
}

void sdnotify_send(struct sdnotify *n, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    if (!n) {
        return;
    }
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) {
        abort();
    }
    va_end(ap);
    /* While the manager is not reading: a ping already waiting says
     * what another would, and a newer status replaces an older one, so
     * what must not be lost (READY=1, STOPPING=1) keeps its place. */
    for (size_t i = 0; i < n->npending; i++) {
        bool same_ping = !strcmp(msg, "WATCHDOG=1")
                         && !strcmp(n->pending[i], msg);
        bool newer_status = is_status_only(msg)
                            && is_status_only(n->pending[i]);
        if (same_ping || newer_status) {
            free(n->pending[i]);
            memmove(&n->pending[i], &n->pending[i + 1],
                    sizeof(*n->pending) * (n->npending - i - 1));
            n->npending--;
            break;
        }
    }
    if (n->npending == SDNOTIFY_BACKLOG) {
        log_warn("the service manager is not reading its notifications: "
                 "dropping '%s'", n->pending[0]);
        free(n->pending[0]);
        memmove(n->pending, n->pending + 1,
                sizeof(*n->pending) * (SDNOTIFY_BACKLOG - 1));
        n->npending--;
    }
    /* in order: behind what is already waiting; while something waits
     * the socket is full, and the retry timer tries again, not every new
     * message (a failing send costs as much as one that works) */
    n->pending[n->npending++] = msg;
    if (n->npending == 1) {
        flush_pending(n);
    }
}

/* Parse a decimal environment variable; false if unset or not a number. */
static bool env_u64(const char *name, uint64_t *out)
{
    const char *s = getenv(name);
    char *end;

    if (!s || !*s) {
        return false;
    }
    errno = 0;
    *out = strtoull(s, &end, 10);
    return !errno && !*end;
}

struct sdnotify *sdnotify_new(struct event_base *base, char **error)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sdnotify *n;
    size_t len;
    uint64_t usec = 0, pid = 0;

    *error = NULL;
    if (!path || !*path) {
        return NULL;
    }
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(n->addr.sun_path)) {
        *error = xasprintf("NOTIFY_SOCKET='%s' is neither a socket path nor "
                           "an abstract socket ('@NAME') that fits in %zu "
                           "bytes", path, sizeof(n->addr.sun_path) - 1);
        return NULL;
    }
    n = xcalloc(1, sizeof(*n));
    n->display = xstrdup(path);
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, path, len);
    if (path[0] == '@') {
        n->addr.sun_path[0] = '\0';   /* abstract: no terminating NUL */
    }
    n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len
                              + (path[0] == '/'));
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd < 0) {
        *error = xasprintf("NOTIFY_SOCKET: socket: %s", strerror(errno));
        sdnotify_free(n);
        return NULL;
    }
    n->retry = evtimer_new(base, on_retry, n);
    /* the watchdog is this process's only when WATCHDOG_PID says so (or
     * does not say) */
    if (env_u64("WATCHDOG_USEC", &usec) && usec > 0
        && (!env_u64("WATCHDOG_PID", &pid) || pid == (uint64_t)getpid())) {
        struct timeval tv = { (time_t)(usec / 2 / 1000000),
                              (suseconds_t)(usec / 2 % 1000000) };
        n->watchdog_usec = usec;
        n->watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, n);
        event_add(n->watchdog, &tv);
    }
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    return n;
}

uint64_t sdnotify_watchdog_usec(const struct sdnotify *n)
{
    return n ? n->watchdog_usec : 0;
}

void sdnotify_free(struct sdnotify *n)
{
    if (!n) {
        return;
    }
    /* what is still waiting (STOPPING=1): one last try */
    for (size_t i = 0; i < n->npending; i++) {
        send_now(n, n->pending[i]);
        free(n->pending[i]);
    }
    if (n->watchdog) {
        event_free(n->watchdog);
    }
    if (n->retry) {
        event_free(n->retry);
    }
    if (n->fd >= 0) {
        close(n->fd);
    }
    free(n->display);
    free(n);
}
