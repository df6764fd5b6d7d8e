/*
 * service: the proxy's life, told to the service manager.
 */
#include "service.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "router.h"
#include "sdnotify.h"
#include "util.h"

/* STATUS= is for people (systemctl status): a change is told at most
 * this long after it happened, and a burst of changes (clients coming and
 * going by the thousand) costs one message, not one each. */
#define SERVICE_STATUS_DELAY_MS 100

struct service {
    struct sdnotify *notify;
    struct event *status_timer;
    struct router *router;
    char *upstream;
    bool ready_sent, stopping_sent;
    char *last_status;   /* not repeated when nothing changed */
};

static char *status_text(struct service *s)
{
    struct router_status st;

    router_status(s->router, &st);
    if (st.exiting) {
        return xstrdup("stopping: clients get their last messages");
    }
    if (!st.serving) {
        return xasprintf("waiting for QEMU at %s", s->upstream);
    }
    return xasprintf("serving QEMU at %s: %zu client%s, %zu operation%s "
                     "running", s->upstream, st.clients,
                     st.clients == 1 ? "" : "s", st.operations,
                     st.operations == 1 ? "" : "s");
}

/* STATUS= if it changed since last told. */
static void tell_status(struct service *s)
{
    char *status = status_text(s);

    if (!s->last_status || strcmp(status, s->last_status)) {
        sdnotify_send(s->notify, "STATUS=%s", status);
    }
    free(s->last_status);
    s->last_status = status;
}

static void on_status_timer(evutil_socket_t fd, short what, void *arg)
{
    tell_status(arg);
}

/* READY=1 the first time clients are let in, STOPPING=1 on the way out,
 * both at once; other changes a little later (SERVICE_STATUS_DELAY_MS). */
static void on_serving(void *opaque, bool serving)
{
    struct service *s = opaque;
    struct router_status st;

    router_status(s->router, &st);
    if (st.exiting) {
        service_stopping(s);
    } else if (serving && !s->ready_sent) {
        char *status = status_text(s);
        s->ready_sent = true;
        sdnotify_send(s->notify, "READY=1\nSTATUS=%s", status);
        log_info("told the service manager: ready (%s)", status);
        free(s->last_status);
        s->last_status = status;
    } else {
        tell_status(s);
    }
}

static void on_changed(void *opaque)
{
    struct service *s = opaque;

    if (!evtimer_pending(s->status_timer, NULL)) {
        struct timeval tv = { 0, SERVICE_STATUS_DELAY_MS * 1000 };
        evtimer_add(s->status_timer, &tv);
    }
}

static const struct router_observer service_observer = {
    .serving = on_serving,
    .changed = on_changed,
};

struct service *service_new(struct event_base *base, struct router *r,
                            const char *upstream, char **error)
{
    struct sdnotify *notify = sdnotify_new(base, error);
    struct service *s;

    if (!notify) {
        return NULL;
    }
    s = xcalloc(1, sizeof(*s));
    s->notify = notify;
    s->router = r;
    s->upstream = xstrdup(upstream);
    s->status_timer = evtimer_new(base, on_status_timer, s);
    router_set_observer(r, &service_observer, s);
    if (sdnotify_watchdog_usec(notify)) {
        log_info("the service manager's watchdog: a ping every %llu ms",
                 (unsigned long long)(sdnotify_watchdog_usec(notify) / 2000));
    }
    sdnotify_send(notify, "STATUS=waiting for QEMU at %s", upstream);
    return s;
}

void service_reloading(struct service *s)
{
    struct timespec now;

    if (!s || !s->ready_sent) {
        /* not ready yet: READY=1 comes with QEMU, not with the reload */
        return;
    }
    /* MONOTONIC_USEC: systemd 253's Type=notify-reload matches the
     * RELOADING=1 to the reload it asked for */
    clock_gettime(CLOCK_MONOTONIC, &now);
    sdnotify_send(s->notify, "RELOADING=1\nMONOTONIC_USEC=%llu\n"
                  "STATUS=reloading",
                  (unsigned long long)now.tv_sec * 1000000ULL
                  + (unsigned long long)now.tv_nsec / 1000);
}

void service_reloaded(struct service *s, const char *what)
{
    char *status;

    if (!s || !s->ready_sent) {
        return;
    }
    status = status_text(s);
    sdnotify_send(s->notify, "READY=1\nSTATUS=%s (%s)", status, what);
    free(s->last_status);
    s->last_status = status;
}

void service_stopping(struct service *s)
{
    if (!s || s->stopping_sent) {
        return;
    }
    s->stopping_sent = true;
    sdnotify_send(s->notify, "STOPPING=1\nSTATUS=stopping");
}

void service_free(struct service *s)
{
    if (!s) {
        return;
    }
    router_set_observer(s->router, NULL, NULL);
    event_free(s->status_timer);
    sdnotify_free(s->notify);
    free(s->upstream);
    free(s->last_status);
    free(s);
}
