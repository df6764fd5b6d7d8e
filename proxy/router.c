/*
 * router: per command, per reply and per event, where it goes.
 */
#include "router.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "qjson.h"
#include "log.h"
#include "trafficlog.h"
#include "upstream.h"
#include "util.h"

#define SHUTDOWN_GRACE_MS 5000

struct router {
    struct event_base *base;
    struct trafficlog *tlog;
    struct router_options opts;
    struct upstream *up;
    struct listener **listeners;
    size_t nlisteners;
    struct session **sessions;
    size_t nsessions, cap_sessions;
    unsigned next_client;
    bool exiting;
    int exit_status;
    struct event *exit_check, *exit_deadline;
    void (*on_exit)(void *opaque, int status);
    void *exit_opaque;
};

struct trafficlog *router_tlog(struct router *r)
{
    return r->tlog;
}

struct upstream *router_upstream(struct router *r)
{
    return r->up;
}

struct event_base *router_base(struct router *r)
{
    return r->base;
}

size_t router_max_message(struct router *r)
{
    return r->opts.max_message;
}

unsigned router_session_count(const struct router *r)
{
    return (unsigned)r->nsessions;
}

static void enable_listeners(struct router *r, bool on)
{
    for (size_t i = 0; i < r->nlisteners; i++) {
        listener_enable(r->listeners[i], on);
    }
}

/* ---- exiting ------------------------------------------------------- */

static void check_exit(evutil_socket_t fd, short what, void *arg)
{
    struct router *r = arg;
    (void)fd;
    (void)what;
    if (r->exiting && r->nsessions == 0 && r->on_exit) {
        r->on_exit(r->exit_opaque, r->exit_status);
    }
}

static void exit_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct router *r = arg;
    (void)fd;
    (void)what;
    log_warn("%zu client(s) did not take their last messages; exiting "
             "anyway", r->nsessions);
    if (r->on_exit) {
        r->on_exit(r->exit_opaque, r->exit_status);
    }
}

/* Deliver what is queued to every client, close them, then exit. */
static void begin_exit(struct router *r, int status)
{
    struct timeval tv = { SHUTDOWN_GRACE_MS / 1000, 0 };

    if (r->exiting) {
        return;
    }
    r->exiting = true;
    r->exit_status = status;
    enable_listeners(r, false);
    /* session_finish may close sessions (and shrink the array) at once */
    for (size_t i = r->nsessions; i-- > 0;) {
        if (i < r->nsessions) {
            session_finish(r->sessions[i]);
        }
    }
    evtimer_add(r->exit_deadline, &tv);
    event_active(r->exit_check, 0, 0);
}

void router_shutdown(struct router *r)
{
    log_info("shutting down");
    begin_exit(r, 0);
}

void router_on_exit(struct router *r, void (*fn)(void *opaque, int status),
                    void *opaque)
{
    r->on_exit = fn;
    r->exit_opaque = opaque;
}

/* ---- upstream events ----------------------------------------------- */

static void on_ready(void *opaque)
{
    struct router *r = opaque;

    if (!r->exiting) {
        enable_listeners(r, true);
    }
}

static void on_lost(void *opaque, const char *why)
{
    struct router *r = opaque;

    log_info("QEMU's monitor closed (%s)", why);
    if (r->opts.reconnect && !r->exiting) {
        /* clients get what QEMU sent, then EOF; new ones wait for QEMU */
        enable_listeners(r, false);
        for (size_t i = r->nsessions; i-- > 0;) {
            if (i < r->nsessions) {
                session_finish(r->sessions[i]);
            }
        }
        log_info("waiting for QEMU to come back at %s",
                 upstream_display(r->up));
        upstream_connect(r->up, -1);
        return;
    }
    begin_exit(r, 0);
}

static void on_gave_up(void *opaque, const char *why)
{
    struct router *r = opaque;

    log_error("could not reach QEMU's monitor: %s", why);
    begin_exit(r, 1);
}

static void on_event(void *opaque, const char *raw, size_t len,
                     const struct js_text *text)
{
    struct router *r = opaque;
    (void)text;

    if (r->tlog && trafficlog_active(r->tlog)) {
        struct tlog_entry e = {
            .dir = TLOG_OUT, .from = TLOG_FROM_QEMU, .kind = "event",
            .broadcast = true, .raw = raw, .len = len, .latency_us = -1,
        };
        trafficlog_record(r->tlog, &e);
    }
    for (size_t i = 0; i < r->nsessions; i++) {
        session_event(r->sessions[i], raw, len);
    }
}

const struct upstream_callbacks router_upstream_callbacks = {
    .ready = on_ready,
    .lost = on_lost,
    .gave_up = on_gave_up,
    .event = on_event,
};

/* ---- sessions ------------------------------------------------------ */

void router_accept(void *opaque, struct listener *l, int fd)
{
    struct router *r = opaque;
    struct session *s;
    const char *greeting;
    size_t len;

    if (r->exiting || !upstream_is_ready(r->up)) {
        close(fd);
        return;
    }
    if (r->nsessions == r->cap_sessions) {
        r->cap_sessions = r->cap_sessions ? r->cap_sessions * 2 : 16;
        r->sessions = xrealloc(r->sessions,
                               sizeof(*r->sessions) * r->cap_sessions);
    }
    s = session_new(r, fd, ++r->next_client, listener_name(l));
    r->sessions[r->nsessions++] = s;
    log_info("client %u connected on %s", session_id(s),
             listener_display(l));
    greeting = upstream_greeting(r->up, &len);
    session_start(s, greeting, len, upstream_oob_offered(r->up));
}

void router_session_closed(struct router *r, struct session *s)
{
    for (size_t i = 0; i < r->nsessions; i++) {
        if (r->sessions[i] == s) {
            memmove(&r->sessions[i], &r->sessions[i + 1],
                    sizeof(*r->sessions) * (r->nsessions - i - 1));
            r->nsessions--;
            break;
        }
    }
    if (r->exiting) {
        event_active(r->exit_check, 0, 0);
    }
}

/* ---- commands ------------------------------------------------------ */

static void on_reply(void *opaque, const struct upstream_reply *reply)
{
    struct slot *slot = opaque;

    slot->req = NULL;
    if (reply->lost) {
        return;  /* the session is finished by on_lost */
    }
    session_reply(slot->session, slot, reply->raw, reply->len,
                  TLOG_FROM_QEMU, (int64_t)reply->latency_us);
}

/* As it is, to QEMU: the exact bytes, the fds with them. */
static enum route_result pass_through(struct router *r, struct slot *slot,
                                      struct client_cmd *cmd, bool granted)
{
    char *echo_id = NULL;

    if (!cmd->req.oob && !granted && !upstream_has_room(r->up)) {
        return ROUTE_NEED_ROOM;
    }
    if (cmd->req.oob && cmd->req.has_id) {
        struct strbuf sb = STRBUF_INIT;
        qjson_write(&sb, cmd->req.id);
        echo_id = strbuf_detach(&sb, NULL);
    }
    slot->req = upstream_send(r->up, cmd->raw, cmd->len, cmd->fds, cmd->nfds,
                              cmd->req.oob,
                              cmd->has_id_member ? &cmd->id_member : NULL,
                              echo_id, on_reply, slot);
    cmd->nfds = 0;  /* they travel with the command now */
    free(echo_id);
    return ROUTE_DONE;
}

enum route_result router_route(struct router *r, struct session *s,
                               struct slot *slot, struct client_cmd *cmd,
                               bool granted)
{
    (void)s;
    return pass_through(r, slot, cmd, granted);
}

/* ---- life ---------------------------------------------------------- */

struct router *router_new(struct event_base *base, struct trafficlog *tl,
                          const struct router_options *opts)
{
    struct router *r = xcalloc(1, sizeof(*r));

    r->base = base;
    r->tlog = tl;
    r->opts = *opts;
    r->exit_check = event_new(base, -1, 0, check_exit, r);
    r->exit_deadline = evtimer_new(base, exit_deadline, r);
    return r;
}

void router_set_upstream(struct router *r, struct upstream *up)
{
    r->up = up;
}

void router_add_listener(struct router *r, struct listener *l)
{
    r->listeners = xrealloc(r->listeners,
                            sizeof(*r->listeners) * (r->nlisteners + 1));
    r->listeners[r->nlisteners++] = l;
}

void router_free(struct router *r)
{
    if (!r) {
        return;
    }
    event_free(r->exit_check);
    event_free(r->exit_deadline);
    free(r->listeners);
    free(r->sessions);
    free(r);
}
