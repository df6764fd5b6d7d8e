/*
 * upstream-queue: the requests on the connection to QEMU and who each
 * reply belongs to: in-band commands in a FIFO, because QEMU answers them
 * strictly in order, within a window QEMU will read; exec-oob under an id
 * of the proxy's own; the proxy's own queries taking turns with clients;
 * a command with descriptors held until it is alone in the FIFO.
 */
#include "upstream.h"
#include "upstream-internal.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* QEMU queues 8 in-band commands and then stops reading its socket, which
 * would also hold back exec-oob commands; stay below that. */
#define UPSTREAM_WINDOW 6
#define OOB_ID_PREFIX "\"qmproxy-oob-"
/* While clients wait, the proxy's own queries get at least every this
 * many-th place in the window (clients first, but never starved). */
#define INTERNAL_TURN_EVERY 4
/* QEMU said it is shutting down but kept serving (-no-shutdown, say): the
 * proxy's own queries resume after this long at the latest. */
#define QUIESCE_MAX_MS 2000

static void on_quiesce_over(evutil_socket_t fd, short what, void *arg);
static void fail_doomed(evutil_socket_t fd, short what, void *arg);

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
    free(req->command);
    free(req->queued);
    free(req);
}

void upstream_log(struct upstream *up, enum tlog_dir dir,
                  enum tlog_from from, const char *kind, const char *raw,
                  size_t len, int64_t latency)
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
        upstream_log(up, TLOG_OUT, TLOG_FROM_QEMU, "reply", raw, len,
                     (int64_t)r.latency_us);
    }
    if (up->cb->answered) {
        up->cb->answered(up->opaque, req->internal, req->command,
                         req->sent_len, len);
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

/*
 * exec-oob replies come back under the proxy's id and go to their request;
 * everything else answers the oldest in-band command: QEMU answers those
 * strictly in order.
 */
void upstream_route_reply(struct upstream *up, enum qmp_kind kind,
                          const char *raw, size_t len,
                          const struct js_text *t)
{
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
            return;
        }
    }
    req = TAILQ_FIRST(&up->fifo);
    if (!req) {
        log_warn("QEMU sent a reply nobody is waiting for; dropped: "
                 "%.*s", (int)(t->len < 200 ? t->len : 200), t->raw);
        return;
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
    upstream_pump(up);
}

void upstream_queue_fail_all(struct upstream *up)
{
    struct upstream_request *req;
    struct upstream_waiter *w;

    up->quiesced = false;
    evtimer_del(up->quiesce_timer);

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

void upstream_queue_init(struct upstream *up)
{
    TAILQ_INIT(&up->fifo);
    TAILQ_INIT(&up->oob);
    TAILQ_INIT(&up->internal);
    TAILQ_INIT(&up->doomed);
    TAILQ_INIT(&up->waiters);
    up->doom_ev = event_new(up->base, -1, 0, fail_doomed, up);
    up->quiesce_timer = evtimer_new(up->base, on_quiesce_over, up);
    up->oob_tag = (unsigned)getpid() ^ (unsigned)now_monotonic_us();
}

void upstream_queue_free(struct upstream *up)
{
    upstream_queue_fail_all(up);
    event_free(up->quiesce_timer);
    event_free(up->doom_ev);
}

static void write_request(struct upstream *up, struct upstream_request *req,
                          const char *data, size_t len, const int *fds,
                          int nfds)
{
    req->written_us = now_monotonic_us();
    req->sent_len = len;
    conn_write_fds(up->conn, data, len, fds, nfds);
}

/* A request whose bytes waited (the proxy's own for room, a client's with
 * descriptors for the FIFO to empty): written now, descriptors and all. */
static void write_queued(struct upstream *up, struct upstream_request *req)
{
    char *data = req->queued;
    int nfds = req->nfds;

    req->queued = NULL;
    req->nfds = 0;   /* they go with the bytes now */
    /* a failed write closes the connection and frees req */
    write_request(up, req, data, req->queued_len, req->fds, nfds);
    free(data);
}

void upstream_send_negotiation(struct upstream *up, const char *cmd,
                               upstream_reply_fn fn, void *opaque)
{
    struct upstream_request *req = xcalloc(1, sizeof(*req));

    req->internal = true;
    req->command = xstrdup("qmp_capabilities");
    req->fn = fn;
    req->opaque = opaque;
    TAILQ_INSERT_TAIL(&up->fifo, req, link);
    up->inflight++;
    upstream_log(up, TLOG_IN, TLOG_FROM_PROXY, "command", cmd, strlen(cmd),
                 -1);
    write_request(up, req, cmd, strlen(cmd), NULL, 0);
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
void upstream_pump(struct upstream *up)
{
    if (up->pumping) {
        return;
    }
    up->pumping = true;
    if (up->held && up->state == UP_READY
        && TAILQ_FIRST(&up->fifo) == up->held) {
        /* every earlier command answered: its descriptors are its own */
        struct upstream_request *req = up->held;
        up->held = NULL;
        write_queued(up, req);
    }
    while (up->state == UP_READY && up->inflight < UPSTREAM_WINDOW
           && !up->held) {
        struct upstream_request *req = up->quiesced
            ? NULL : TAILQ_FIRST(&up->internal);
        struct upstream_waiter *w = TAILQ_FIRST(&up->waiters);

        if (req && (!w || up->client_turns >= INTERNAL_TURN_EVERY)) {
            bool hold = req->nfds > 0 && !TAILQ_EMPTY(&up->fifo);
            up->client_turns = 0;
            TAILQ_REMOVE(&up->internal, req, link);
            TAILQ_INSERT_TAIL(&up->fifo, req, link);
            up->inflight++;
            upstream_log(up, TLOG_IN, TLOG_FROM_PROXY, "command", req->queued,
                         req->queued_len, -1);
            if (hold) {
                /* the proxy's own add-fd: its descriptors are held like a
                 * client's, until every earlier command is answered */
                up->held = req;
                break;
            }
            write_queued(up, req);
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
    upstream_pump(up);
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
    return upstream_send_internal_fds(up, cmd, NULL, 0, fn, opaque);
}

struct upstream_request *upstream_send_internal_fds(struct upstream *up,
                                                    json_object *cmd,
                                                    const int *fds, int nfds,
                                                    upstream_reply_fn fn,
                                                    void *opaque)
{
    struct upstream_request *req = xcalloc(1, sizeof(*req));
    json_object *name;
    size_t len;
    const char *s = json_object_to_json_string_length(
        cmd, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

    req->internal = true;
    req->command = xstrdup(json_object_object_get_ex(cmd, "execute", &name)
                           ? json_object_get_string(name) : "unknown");
    req->fn = fn;
    req->opaque = opaque;
    req->queued = xstrndup(s, len);
    req->queued_len = len;
    if (nfds > 0) {
        req->nfds = nfds > CONN_MAX_FDS ? CONN_MAX_FDS : nfds;
        memcpy(req->fds, fds, sizeof(int) * (size_t)req->nfds);
        close_fds((int *)fds + req->nfds, nfds - req->nfds);
    }
    if (up->state != UP_READY) {
        /* request_free closes the descriptors */
        TAILQ_INSERT_TAIL(&up->doomed, req, link);
        event_active(up->doom_ev, 0, 0);
        return req;
    }
    TAILQ_INSERT_TAIL(&up->internal, req, link);
    upstream_pump(up);
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
