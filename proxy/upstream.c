/*
 * upstream: the connection to QEMU: connecting (with a bounded retry), the
 * greeting and negotiation, and QEMU going away.  Its requests (the FIFO,
 * exec-oob, the proxy's own queries) are upstream-queue.c's.
 */
#include "upstream.h"
#include "upstream-internal.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "jsonobj.h"
#include "linestream.h"
#include "address.h"
#include "log.h"
#include "qjson.h"
#include "trafficlog.h"
#include "util.h"

#define RETRY_INTERVAL_MS 100
#define GREETING_WARN_MS 5000

static void try_connect(struct upstream *up);
static void handle_greeting(struct upstream *up, const char *raw, size_t len);
static void second_greeting(struct upstream *up);

static bool on_text(void *opaque, const struct js_text *t)
{
    struct upstream *up = opaque;
    enum qmp_kind kind;
    const char *raw = t->raw;
    size_t len = t->len;
    char *copy = NULL;

    /* QEMU ends every message with CRLF; keep it, usually without copying */
    if (t->after >= 2 && raw[len] == '\r' && raw[len + 1] == '\n') {
        len += 2;
    } else {
        copy = xmalloc(len + 2);
        memcpy(copy, raw, len);
        memcpy(copy + len, "\r\n", 2);
        raw = copy;
        len += 2;
    }

    kind = qmp_classify(t);
    switch (kind) {
    case QMP_GREETING:
        if (up->state == UP_GREETING) {
            handle_greeting(up, raw, len);
        } else {
            second_greeting(up);
        }
        break;
    case QMP_EVENT:
        if (up->cb->event) {
            up->cb->event(up->opaque, raw, len, t);
        }
        break;
    case QMP_UNKNOWN:
        /* after the greeting QEMU sends only events and replies: a line
         * that is neither is taken as a reply, so the routing keeps step */
        log_warn("QEMU sent a message of no known kind; taken as a "
                 "reply: %.*s", (int)(t->len < 200 ? t->len : 200), t->raw);
        /* fall through */
    case QMP_RETURN:
    case QMP_ERROR:
        upstream_route_reply(up, kind, raw, len, t);
        break;
    }
    free(copy);
    /* the connection may have closed, or be closing, under us: what is
     * left of its input belongs to no session */
    return up->lines != NULL && !up->close_reason;
}

/* ---- connection ---------------------------------------------------- */

static void reap(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *up = arg;
    (void)fd;
    (void)what;
    conn_free(up->dead_conn);
    linestream_free(up->dead_lines);
    up->dead_conn = NULL;
    up->dead_lines = NULL;
}

static void give_up_or_retry(struct upstream *up, const char *why);

static void on_closed(void *opaque, const char *why)
{
    struct upstream *up = opaque;
    enum upstream_state was = up->state;
    char *reason = up->close_reason ? up->close_reason
                   : xstrdup(why ? why : "QEMU closed the monitor");

    up->close_reason = NULL;
    up->state = UP_CLOSED;
    if (up->greeting_timer) {
        evtimer_del(up->greeting_timer);
    }
    up->dead_conn = up->conn;
    up->dead_lines = up->lines;
    up->conn = NULL;
    up->lines = NULL;
    event_active(up->reap_ev, 0, 0);
    upstream_queue_fail_all(up);
    if (was == UP_READY) {
        if (up->cb->lost) {
            up->cb->lost(up->opaque, reason);
        }
    } else {
        /* it went away during the handshake: not there yet */
        char *what = xasprintf("%s closed during the handshake (%s)",
                               up->display, reason);
        up->state = UP_CONNECTING;
        give_up_or_retry(up, what);
        free(what);
    }
    free(reason);
}

/* QEMU's bytes: a message a line, whatever the line holds. */
static char *input_reserve(void *stream, size_t min, size_t *avail)
{
    return linestream_reserve(stream, min, avail);
}

static void input_commit(void *stream, size_t n)
{
    linestream_commit(stream, n);
}

static const struct conn_input upstream_input = {
    .reserve = input_reserve,
    .commit = input_commit,
};

static const struct conn_callbacks upstream_conn_cb = {
    .closed = on_closed,
};

static void on_greeting_slow(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *up = arg;
    (void)fd;
    (void)what;
    if (up->state == UP_GREETING) {
        log_warn("connected to %s but QEMU has sent no greeting for %d s; "
                 "is another client holding this monitor?", up->display,
                 GREETING_WARN_MS / 1000);
    }
}

static void connected(struct upstream *up, int fd)
{
    struct timeval tv = { GREETING_WARN_MS / 1000, 0 };

    up->state = UP_GREETING;
    up->conn = conn_new(up->base, fd, &upstream_conn_cb, up);
    conn_count_bytes(up->conn, up->bytes_in, up->bytes_out);
    /* QEMU's last words (the reply to quit, SHUTDOWN) must be read even
     * when a write of ours meets the closing socket */
    conn_drain_on_write_error(up->conn);
    up->lines = linestream_new(on_text, up);
    conn_read_into(up->conn, &upstream_input, up->lines);
    evtimer_add(up->greeting_timer, &tv);
    log_info("connected to QEMU at %s", up->display);
}

static void on_negotiated(void *opaque, const struct upstream_reply *r)
{
    struct upstream *up = opaque;

    if (r->lost) {
        return;  /* on_closed handles it */
    }
    if (r->kind != QMP_RETURN) {
        log_error("QEMU refused capabilities negotiation: %.*s", (int)r->len,
                  r->raw);
        conn_close_after_flush(up->conn, 0);
        return;
    }
    up->state = UP_READY;
    log_info("QMP negotiated with %s%s", up->display,
             up->oob_offered ? " (oob enabled)" : "");
    if (up->cb->ready) {
        up->cb->ready(up->opaque);
    }
    upstream_pump(up);
}

static void handle_greeting(struct upstream *up, const char *raw, size_t len)
{
    json_object *g = qjson_parse(raw, len);
    json_object *qmp, *caps, *ver;
    const char *cmd;

    evtimer_del(up->greeting_timer);
    free(up->greeting);
    up->greeting = xstrndup(raw, len);
    up->greeting_len = len;
    up->oob_offered = false;
    if (json_object_object_get_ex(g, "QMP", &qmp)
        && json_object_object_get_ex(qmp, "capabilities", &caps)
        && json_object_is_type(caps, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(caps); i++) {
            const char *c = json_object_get_string(
                json_object_array_get_idx(caps, i));
            if (c && !strcmp(c, "oob")) {
                up->oob_offered = true;
            }
        }
    }
    up->qemu_version = 0;
    if (json_object_object_get_ex(g, "QMP", &qmp)
        && json_object_object_get_ex(qmp, "version", &ver)
        && json_object_object_get_ex(ver, "qemu", &ver)) {
        up->qemu_version = (int)jobj_int(ver, "major", 0) * 100
                         + (int)jobj_int(ver, "minor", 0);
    }
    json_object_put(g);
    upstream_log(up, TLOG_OUT, TLOG_FROM_QEMU, "greeting", raw, len, -1);

    up->state = UP_NEGOTIATING;
    cmd = up->oob_offered
        ? "{\"execute\": \"qmp_capabilities\", \"arguments\": "
          "{\"enable\": [\"oob\"]}}"
        : "{\"execute\": \"qmp_capabilities\"}";
    upstream_send_negotiation(up, cmd, on_negotiated, up);
}

/*
 * QEMU greets once a connection; a second greeting on the same one means
 * its monitor was opened again under it and is back to capabilities
 * negotiation: what was sent before may never be read or answered.  QEMU
 * 7.2 does this to a client that connects while the monitor is being set
 * up (its I/O thread and the main loop both announce the connection), and
 * then answered nothing: qmp_capabilities waited forever.  The session
 * cannot be trusted, so it is closed like any lost one: during the
 * handshake it is tried again, once up it is QEMU's monitor lost.
 */
static void second_greeting(struct upstream *up)
{
    log_warn("QEMU greeted a second time on one connection (its monitor "
             "restarted negotiation); %s", up->state == UP_READY
             ? "the session is lost" : "connecting again");
    free(up->close_reason);
    up->close_reason = xstrdup("QEMU greeted a second time: its monitor "
                               "restarted the QMP handshake");
    conn_close_after_flush(up->conn, 0);
}

static void give_up_or_retry(struct upstream *up, const char *why)
{
    free(up->last_error);
    up->last_error = xstrdup(why);
    if (!up->forever && now_monotonic_us() >= up->deadline_us) {
        up->state = UP_IDLE;
        if (up->cb->gave_up) {
            up->cb->gave_up(up->opaque, up->last_error);
        }
        return;
    }
    struct timeval tv = { 0, RETRY_INTERVAL_MS * 1000 };
    evtimer_add(up->retry_timer, &tv);
}

static void on_tcp_connected(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *up = arg;
    char *why;
    (void)what;

    event_free(up->connect_ev);
    up->connect_ev = NULL;
    up->connecting_fd = -1;
    why = address_connect_finish(&up->addr, fd);
    if (why) {
        close(fd);
        give_up_or_retry(up, why);
        free(why);
        return;
    }
    connected(up, fd);
}

static void try_connect(struct upstream *up)
{
    int fd;
    char *why = NULL;

    up->state = UP_CONNECTING;
    switch (address_connect(&up->addr, &fd, &why)) {
    case ADDRESS_CONNECTED:
        connected(up, fd);
        return;
    case ADDRESS_CONNECT_PENDING:
        up->connecting_fd = fd;
        up->connect_ev = event_new(up->base, fd, EV_WRITE, on_tcp_connected,
                                   up);
        event_add(up->connect_ev, NULL);
        return;
    case ADDRESS_CONNECT_FAILED:
        break;
    }
    give_up_or_retry(up, why);
    free(why);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    try_connect(arg);
}

void upstream_connect(struct upstream *up, int timeout_ms)
{
    struct timeval now = { 0, 0 };

    up->forever = timeout_ms < 0;
    up->deadline_us = now_monotonic_us()
        + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000u;
    /* from the loop: this may be called while the old connection's last
     * bytes are still being read, and they must not meet the new one */
    up->state = UP_CONNECTING;
    evtimer_add(up->retry_timer, &now);
}

struct upstream *upstream_new(struct event_base *base,
                              const struct address *addr,
                              const struct upstream_callbacks *cb,
                              void *opaque, struct trafficlog *tlog)
{
    struct upstream *up = xcalloc(1, sizeof(*up));

    up->base = base;
    up->addr = *addr;
    up->addr.name = xstrdup(addr->name ? addr->name : "qemu");
    up->addr.path = addr->path ? xstrdup(addr->path) : NULL;
    up->addr.port = addr->port ? xstrdup(addr->port) : NULL;
    up->display = address_format(addr);
    up->cb = cb;
    up->opaque = opaque;
    up->tlog = tlog;
    up->connecting_fd = -1;
    up->retry_timer = evtimer_new(base, on_retry, up);
    up->greeting_timer = evtimer_new(base, on_greeting_slow, up);
    up->reap_ev = event_new(base, -1, 0, reap, up);
    upstream_queue_init(up);
    return up;
}

void upstream_free(struct upstream *up)
{
    if (!up) {
        return;
    }
    if (up->connect_ev) {
        event_free(up->connect_ev);
        close(up->connecting_fd);
    }
    event_free(up->retry_timer);
    event_free(up->greeting_timer);
    upstream_queue_free(up);
    conn_free(up->conn);
    linestream_free(up->lines);
    reap(-1, 0, up);
    event_free(up->reap_ev);
    free(up->greeting);
    free(up->display);
    free(up->last_error);
    free(up->close_reason);
    address_clear(&up->addr);
    free(up);
}

/* enum upstream_state's names, for the metrics */
static const char *const state_names[] = {
    [UP_IDLE] = "idle",
    [UP_CONNECTING] = "connecting",
    [UP_GREETING] = "greeting",
    [UP_NEGOTIATING] = "negotiating",
    [UP_READY] = "ready",
    [UP_CLOSED] = "closed",
    NULL,
};

const char *const *upstream_state_names(void)
{
    return state_names;
}

const char *upstream_state_name(const struct upstream *up)
{
    return state_names[up->state];
}

void upstream_count_bytes(struct upstream *up, double *in, double *out)
{
    up->bytes_in = in;
    up->bytes_out = out;
    if (up->conn) {
        conn_count_bytes(up->conn, in, out);
    }
}

bool upstream_is_ready(const struct upstream *up)
{
    return up->state == UP_READY;
}

const char *upstream_greeting(const struct upstream *up, size_t *len)
{
    *len = up->greeting_len;
    return up->greeting;
}

int upstream_qemu_version(const struct upstream *up)
{
    return up->qemu_version;
}

bool upstream_oob_offered(const struct upstream *up)
{
    return up->oob_offered;
}

const char *upstream_display(const struct upstream *up)
{
    return up->display;
}

