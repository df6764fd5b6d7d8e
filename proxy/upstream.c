/*
 * upstream: the connection to QEMU, its greeting and negotiation, and the
 * routing of replies by QMP's in-order guarantee.
 */
#include "upstream.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "jsonobj.h"
#include "linestream.h"
#include "address.h"
#include "log.h"
#include "trafficlog.h"
#include "util.h"

/* QEMU queues 8 in-band commands and then stops reading its socket, which
 * would also hold back exec-oob commands; stay below that. */
#define UPSTREAM_WINDOW 6
#define RETRY_INTERVAL_MS 100
#define GREETING_WARN_MS 5000
#define OOB_ID_PREFIX "\"qmproxy-oob-"
/* While clients wait, the proxy's own queries get at least every this
 * many-th place in the window (clients first, but never starved). */
#define INTERNAL_TURN_EVERY 4
/* QEMU said it is shutting down but kept serving (-no-shutdown, say): the
 * proxy's own queries resume after this long at the latest. */
#define QUIESCE_MAX_MS 2000

struct upstream_request {
    TAILQ_ENTRY(upstream_request) link;
    upstream_reply_fn fn;
    void *opaque;
    uint64_t written_us;
    bool oob, internal;
    char *oob_id;        /* owned: the proxy's id, as JSON text */
    char *client_id;     /* owned: the id QEMU would echo; NULL: none */
    char *queued;        /* owned: internal command waiting for room */
    size_t queued_len;
    int fds[CONN_MAX_FDS];  /* owned while held: they go with queued */
    int nfds;
};

TAILQ_HEAD(request_list, upstream_request);

enum upstream_state {
    UP_IDLE,
    UP_CONNECTING,
    UP_GREETING,
    UP_NEGOTIATING,
    UP_READY,
    UP_CLOSED,
};

struct upstream {
    struct event_base *base;
    struct address addr;
    char *display;
    const struct upstream_callbacks *cb;
    void *opaque;
    struct trafficlog *tlog;

    enum upstream_state state;
    int connecting_fd;
    struct event *connect_ev, *retry_timer, *greeting_timer, *reap_ev;
    uint64_t deadline_us;
    bool forever;
    char *last_error;

    struct conn *conn;
    struct linestream *lines;
    struct conn *dead_conn;        /* freed once no callback is running */
    struct linestream *dead_lines;

    char *greeting;
    size_t greeting_len;
    bool oob_offered;
    int qemu_version;      /* major * 100 + minor, from the greeting */

    struct request_list fifo;      /* in-band, written, in order */
    struct request_list oob;       /* exec-oob, written, by id */
    struct request_list internal;  /* the proxy's own, waiting for room */
    struct request_list doomed;    /* asked while QEMU was away: fail them
                                    * from the loop, never inline */
    struct event *doom_ev;
    TAILQ_HEAD(, upstream_waiter) waiters;
    unsigned inflight;
    /* A client's command with descriptors, in the FIFO but not written:
     * QEMU's chardev (shared by every client) would hand them to whichever
     * getfd it dispatches next, and QEMU reads on while earlier commands
     * wait to be dispatched.  So it goes up once QEMU has answered every
     * earlier one, and nothing in-band goes up meanwhile. */
    struct upstream_request *held;
    unsigned oob_counter;
    unsigned oob_tag;
    bool pumping;
    unsigned client_turns;         /* clients served since our last query */
    bool quiesced;                 /* QEMU is going: hold our queries */
    uint64_t quiesced_at_us;
    struct event *quiesce_timer;
};

static void try_connect(struct upstream *up);
static void pump(struct upstream *up);
static void on_quiesce_over(evutil_socket_t fd, short what, void *arg);

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
}

static void request_free(struct upstream_request *req)
{
    close_fds(req->fds, req->nfds);
    free(req->oob_id);
    free(req->client_id);
    free(req->queued);
    free(req);
}

static void log_traffic(struct upstream *up, enum tlog_dir dir,
                        enum tlog_from from, const char *kind,
                        const char *raw, size_t len, int64_t latency)
{
    struct tlog_entry e = {
        .dir = dir, .from = from, .kind = kind, .client = 0,
        .raw = raw, .len = len, .latency_us = latency,
    };

    if (up->tlog && trafficlog_active(up->tlog)) {
        trafficlog_record(up->tlog, &e);
    }
}

static void deliver(struct upstream *up, struct upstream_request *req,
                    enum qmp_kind kind, const char *raw, size_t len,
                    const struct js_text *text)
{
    json_object *cache = NULL;
    struct upstream_reply r = {
        .kind = kind, .raw = raw, .len = len, .text = text,
        .latency_us = now_monotonic_us() - req->written_us,
        .value_cache = &cache,
    };

    if (req->internal) {
        log_traffic(up, TLOG_OUT, TLOG_FROM_QEMU, "reply", raw, len,
                    (int64_t)r.latency_us);
    }
    if (req->fn) {
        req->fn(req->opaque, &r);
    }
    json_object_put(cache);
    request_free(req);
}

static void deliver_lost(struct upstream_request *req)
{
    struct upstream_reply r = { .lost = true };

    if (req->fn) {
        req->fn(req->opaque, &r);
    }
    request_free(req);
}

/* Put the client's id back where the proxy's was (or take ours out). */
static void restore_oob_id(struct upstream *up, struct upstream_request *req,
                           const struct js_text *t, const struct js_member *m,
                           enum qmp_kind kind)
{
    struct strbuf sb = STRBUF_INIT;
    const char *raw = t->raw;

    if (req->client_id) {
        strbuf_add(&sb, raw, m->value_start);
        strbuf_adds(&sb, req->client_id);
        strbuf_add(&sb, raw + m->value_end, t->len - m->value_end);
    } else {
        int i = (int)(m - t->members);
        size_t from, to;
        if (i + 1 < t->nmembers) {
            from = m->key_start;
            to = t->members[i + 1].key_start;
        } else if (i > 0) {
            from = t->members[i - 1].value_end;
            to = m->value_end;
        } else {
            from = to = 0;  /* cannot happen: a reply has return/error */
        }
        strbuf_add(&sb, raw, from);
        strbuf_add(&sb, raw + to, t->len - to);
    }
    strbuf_adds(&sb, "\r\n");
    deliver(up, req, kind, sb.buf, sb.len, t);
    strbuf_release(&sb);
}

static void handle_greeting(struct upstream *up, const char *raw, size_t len);

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
            log_warn("QEMU sent a second greeting; ignored");
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
    case QMP_ERROR: {
        const struct js_member *id = js_text_member(t, "id");
        struct upstream_request *req;

        if (id && id->value_end - id->value_start > strlen(OOB_ID_PREFIX)
            && !memcmp(t->raw + id->value_start, OOB_ID_PREFIX,
                       strlen(OOB_ID_PREFIX))) {
            TAILQ_FOREACH(req, &up->oob, link) {
                if (strlen(req->oob_id) == id->value_end - id->value_start
                    && !memcmp(req->oob_id, t->raw + id->value_start,
                               id->value_end - id->value_start)) {
                    break;
                }
            }
            if (req) {
                TAILQ_REMOVE(&up->oob, req, link);
                restore_oob_id(up, req, t, id, kind);
                break;
            }
        }
        req = TAILQ_FIRST(&up->fifo);
        if (!req) {
            log_warn("QEMU sent a reply nobody is waiting for; dropped: "
                     "%.*s", (int)(t->len < 200 ? t->len : 200), t->raw);
            break;
        }
        TAILQ_REMOVE(&up->fifo, req, link);
        up->inflight--;
        if (up->quiesced && !req->internal
            && req->written_us > up->quiesced_at_us) {
            /* a command sent since was answered: QEMU is still serving */
            up->quiesced = false;
            evtimer_del(up->quiesce_timer);
        }
        deliver(up, req, kind, raw, len, t);
        pump(up);
        break;
    }
    }
    free(copy);
    return up->state != UP_CLOSED;
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

static void fail_all(struct upstream *up)
{
    struct upstream_request *req;
    struct upstream_waiter *w;

    while ((req = TAILQ_FIRST(&up->fifo))) {
        TAILQ_REMOVE(&up->fifo, req, link);
        deliver_lost(req);
    }
    while ((req = TAILQ_FIRST(&up->oob))) {
        TAILQ_REMOVE(&up->oob, req, link);
        deliver_lost(req);
    }
    while ((req = TAILQ_FIRST(&up->internal))) {
        TAILQ_REMOVE(&up->internal, req, link);
        deliver_lost(req);
    }
    while ((req = TAILQ_FIRST(&up->doomed))) {
        TAILQ_REMOVE(&up->doomed, req, link);
        deliver_lost(req);
    }
    while ((w = TAILQ_FIRST(&up->waiters))) {
        TAILQ_REMOVE(&up->waiters, w, link);
        w->queued = false;
    }
    up->inflight = 0;
    up->held = NULL;
}

static void give_up_or_retry(struct upstream *up, const char *why);
static void fail_doomed(evutil_socket_t fd, short what, void *arg);

static void on_closed(void *opaque, const char *why)
{
    struct upstream *up = opaque;
    enum upstream_state was = up->state;
    char *reason = xstrdup(why ? why : "QEMU closed the monitor");

    up->state = UP_CLOSED;
    up->quiesced = false;
    evtimer_del(up->quiesce_timer);
    if (up->greeting_timer) {
        evtimer_del(up->greeting_timer);
    }
    up->dead_conn = up->conn;
    up->dead_lines = up->lines;
    up->conn = NULL;
    up->lines = NULL;
    event_active(up->reap_ev, 0, 0);
    fail_all(up);
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
    pump(up);
}

static void write_request(struct upstream *up, struct upstream_request *req,
                          const char *data, size_t len, const int *fds,
                          int nfds)
{
    req->written_us = now_monotonic_us();
    conn_write_fds(up->conn, data, len, fds, nfds);
}

static void handle_greeting(struct upstream *up, const char *raw, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(JSONSTREAM_MAX_NESTING);
    json_object *g = json_tokener_parse_ex(tok, raw, (int)len);
    json_object *qmp, *caps, *ver;
    struct upstream_request *req;
    const char *cmd;

    json_tokener_free(tok);
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
    log_traffic(up, TLOG_OUT, TLOG_FROM_QEMU, "greeting", raw, len, -1);

    up->state = UP_NEGOTIATING;
    cmd = up->oob_offered
        ? "{\"execute\": \"qmp_capabilities\", \"arguments\": "
          "{\"enable\": [\"oob\"]}}"
        : "{\"execute\": \"qmp_capabilities\"}";
    req = xcalloc(1, sizeof(*req));
    req->internal = true;
    req->fn = on_negotiated;
    req->opaque = up;
    TAILQ_INSERT_TAIL(&up->fifo, req, link);
    up->inflight++;
    log_traffic(up, TLOG_IN, TLOG_FROM_PROXY, "command", cmd, strlen(cmd),
                -1);
    write_request(up, req, cmd, strlen(cmd), NULL, 0);
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
    up->quiesce_timer = evtimer_new(base, on_quiesce_over, up);
    up->oob_tag = (unsigned)getpid() ^ (unsigned)now_monotonic_us();
    TAILQ_INIT(&up->fifo);
    TAILQ_INIT(&up->oob);
    TAILQ_INIT(&up->internal);
    TAILQ_INIT(&up->doomed);
    TAILQ_INIT(&up->waiters);
    up->doom_ev = event_new(base, -1, 0, fail_doomed, up);
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
    event_free(up->quiesce_timer);
    fail_all(up);
    event_free(up->doom_ev);
    conn_free(up->conn);
    linestream_free(up->lines);
    reap(-1, 0, up);
    event_free(up->reap_ev);
    free(up->greeting);
    free(up->display);
    free(up->last_error);
    address_clear(&up->addr);
    free(up);
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

/* ---- the window ---------------------------------------------------- */

bool upstream_has_room(const struct upstream *up)
{
    return up->state == UP_READY && up->inflight < UPSTREAM_WINDOW
        && !up->held
        && (TAILQ_EMPTY(&up->internal) || up->quiesced)
        && TAILQ_EMPTY(&up->waiters);
}

unsigned upstream_inflight(const struct upstream *up)
{
    return up->inflight;
}

void upstream_wait_room(struct upstream *up, struct upstream_waiter *w)
{
    /* No pump here: room and waiters never coexist outside pump(). */
    if (!w->queued) {
        TAILQ_INSERT_TAIL(&up->waiters, w, link);
        w->queued = true;
    }
}

void upstream_cancel_wait(struct upstream *up, struct upstream_waiter *w)
{
    if (w->queued) {
        TAILQ_REMOVE(&up->waiters, w, link);
        w->queued = false;
    }
}

/*
 * Hand free room out: clients in turn, one command each, so a flooding
 * client cannot starve the rest; the proxy's own queries between them
 * (at once when nobody waits, else every INTERNAL_TURN_EVERY-th place),
 * and none while QEMU is shutting down.
 */
static void pump(struct upstream *up)
{
    if (up->pumping) {
        return;
    }
    up->pumping = true;
    if (up->held && up->state == UP_READY
        && TAILQ_FIRST(&up->fifo) == up->held) {
        /* every earlier command answered: its descriptors are its own */
        struct upstream_request *req = up->held;
        char *data = req->queued;
        int nfds = req->nfds;
        up->held = NULL;
        req->queued = NULL;
        req->nfds = 0;
        write_request(up, req, data, req->queued_len, req->fds, nfds);
        free(data);
    }
    while (up->state == UP_READY && up->inflight < UPSTREAM_WINDOW
           && !up->held) {
        struct upstream_request *req = up->quiesced
            ? NULL : TAILQ_FIRST(&up->internal);
        struct upstream_waiter *w = TAILQ_FIRST(&up->waiters);

        if (req && (!w || up->client_turns >= INTERNAL_TURN_EVERY)) {
            /* a failed write closes the connection and frees req */
            char *data = req->queued;
            size_t len = req->queued_len;
            up->client_turns = 0;
            req->queued = NULL;
            TAILQ_REMOVE(&up->internal, req, link);
            TAILQ_INSERT_TAIL(&up->fifo, req, link);
            up->inflight++;
            log_traffic(up, TLOG_IN, TLOG_FROM_PROXY, "command", data, len,
                        -1);
            write_request(up, req, data, len, NULL, 0);
            free(data);
            continue;
        }
        if (!w) {
            break;
        }
        up->client_turns++;
        TAILQ_REMOVE(&up->waiters, w, link);
        w->queued = false;
        w->fn(w->opaque);
    }
    up->pumping = false;
}

static void on_quiesce_over(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *up = arg;
    (void)fd;
    (void)what;
    up->quiesced = false;
    pump(up);
}

void upstream_quiesce(struct upstream *up)
{
    struct timeval tv = { QUIESCE_MAX_MS / 1000,
                          (QUIESCE_MAX_MS % 1000) * 1000 };

    if (up->state != UP_READY) {
        return;
    }
    up->quiesced = true;
    up->quiesced_at_us = now_monotonic_us();
    evtimer_add(up->quiesce_timer, &tv);
}

struct upstream_request *upstream_send(struct upstream *up, const char *data,
                                       size_t len, const int *fds, int nfds,
                                       bool oob, const struct js_member *id,
                                       const char *echo_id,
                                       upstream_reply_fn fn, void *opaque)
{
    struct upstream_request *req = xcalloc(1, sizeof(*req));

    req->fn = fn;
    req->opaque = opaque;
    if (up->state != UP_READY) {
        /* QEMU is gone: clients are being finished; fail it from the loop */
        close_fds((int *)fds, nfds);
        TAILQ_INSERT_TAIL(&up->doomed, req, link);
        event_active(up->doom_ev, 0, 0);
        return req;
    }
    if (!oob) {
        bool hold = nfds > 0 && !TAILQ_EMPTY(&up->fifo);
        TAILQ_INSERT_TAIL(&up->fifo, req, link);
        up->inflight++;
        if (up->held) {
            log_error("bug: a command went up past one holding descriptors");
        }
        if (hold && !up->held) {
            req->queued = xmalloc(len);
            memcpy(req->queued, data, len);
            req->queued_len = len;
            memcpy(req->fds, fds, sizeof(int) * (size_t)nfds);
            req->nfds = nfds;
            up->held = req;
            return req;
        }
        write_request(up, req, data, len, fds, nfds);
        return req;
    }
    /* exec-oob: its reply may overtake, so it travels under our own id */
    struct strbuf sb = STRBUF_INIT;
    req->oob = true;
    req->client_id = echo_id ? xstrdup(echo_id) : NULL;
    req->oob_id = xasprintf(OOB_ID_PREFIX "%08x-%u\"", up->oob_tag,
                            ++up->oob_counter);
    if (id) {
        strbuf_add(&sb, data, id->value_start);
        strbuf_adds(&sb, req->oob_id);
        strbuf_add(&sb, data + id->value_end, len - id->value_end);
    } else {
        strbuf_addc(&sb, data[0]);  /* the '{' */
        strbuf_addf(&sb, "\"id\": %s, ", req->oob_id);
        strbuf_add(&sb, data + 1, len - 1);
    }
    TAILQ_INSERT_TAIL(&up->oob, req, link);
    write_request(up, req, sb.buf, sb.len, fds, nfds);
    strbuf_release(&sb);
    return req;
}

struct upstream_request *upstream_send_internal(struct upstream *up,
                                                json_object *cmd,
                                                upstream_reply_fn fn,
                                                void *opaque)
{
    struct upstream_request *req = xcalloc(1, sizeof(*req));
    size_t len;
    const char *s = json_object_to_json_string_length(
        cmd, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

    req->internal = true;
    req->fn = fn;
    req->opaque = opaque;
    req->queued = xstrndup(s, len);
    req->queued_len = len;
    if (up->state != UP_READY) {
        TAILQ_INSERT_TAIL(&up->doomed, req, link);
        event_active(up->doom_ev, 0, 0);
        return req;
    }
    TAILQ_INSERT_TAIL(&up->internal, req, link);
    pump(up);
    return req;
}

static void fail_doomed(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *up = arg;
    struct upstream_request *req;
    (void)fd;
    (void)what;

    while ((req = TAILQ_FIRST(&up->doomed))) {
        TAILQ_REMOVE(&up->doomed, req, link);
        deliver_lost(req);
    }
}
