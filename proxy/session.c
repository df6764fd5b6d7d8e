/*
 * session: a management client's conversation, as QEMU's monitor would
 * hold it.
 */
#include "session.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "qapi.h"
#include "qemu-commands.h"
#include "qjson.h"
#include "qmp-pretty.h"
#include "util.h"

/* Backpressure: stop reading a client past these, resume below them. */
#define MAX_QUEUED_COMMANDS 32
#define MAX_QUEUED_BYTES (1u << 20)
#define MAX_SLOTS 512
#define OUTPUT_SOFT_LIMIT (1u << 20)
/* A client that does not read its events is cut off past this. */
#define OUTPUT_HARD_LIMIT ((size_t)64 << 20)
#define FINISH_TIMEOUT_MS 5000

TAILQ_HEAD(slot_list, slot);

struct session {
    TAILQ_ENTRY(session) link;
    const struct session_env *env;
    unsigned id;
    char *listener;
    struct conn *conn;
    struct jsonstream *in;
    bool started, negotiated, oob, closed;
    bool finishing;            /* QEMU is gone: no new command is taken */
    struct slot_list slots;
    unsigned nslots, nqueued;
    size_t queued_bytes;
    struct slot *barrier;
    int pending_fds[CONN_MAX_FDS];
    int npending_fds;
    struct upstream_waiter waiter;
    struct event *reap_ev;
    struct event *resume_ev;   /* parse what was left buffered */
    struct event *pump_ev;     /* go on after a barrier, from the loop */
    bool input_stopped;        /* the jsonstream holds unparsed bytes */
    bool eof;                  /* the client sent all it will */
    unsigned extras;           /* enum session_extras */
};

static const char *const qmp_capability_values[] = { "oob", NULL };
static const struct qapi_member qmp_capability_member = {
    "enable", QAPI_ENUM, false, qmp_capability_values, NULL, NULL
};
static const struct qapi_member qmp_capabilities_args[] = {
    { "enable", QAPI_LIST, true, NULL, NULL, &qmp_capability_member },
    { NULL, 0, false, NULL, NULL, NULL },
};

static void session_close(struct session *s, const char *why);
static void pump(struct session *s, bool granted);
static void end_if_answered(struct session *s);

unsigned session_id(const struct session *s)
{
    return s->id;
}

const char *session_listener(const struct session *s)
{
    return s->listener;
}

unsigned session_extras(const struct session *s)
{
    return s->extras;
}

void session_enable_extras(struct session *s, unsigned extras)
{
    s->extras |= extras;
}

static void log_traffic(struct session *s, enum tlog_dir dir,
                        enum tlog_from from, const char *kind,
                        const char *raw, size_t len, bool malformed,
                        int64_t latency)
{
    struct trafficlog *tl = s->env->tlog;
    struct tlog_entry e = {
        .dir = dir, .from = from, .kind = kind, .client = s->id,
        .raw = raw, .len = len, .malformed = malformed,
        .latency_us = latency,
        /* descriptors waiting go with the client's next command */
        .nfds = dir == TLOG_IN ? s->npending_fds : 0,
    };

    if (tl && trafficlog_active(tl)) {
        trafficlog_record(tl, &e);
    }
}

/* ---- slots --------------------------------------------------------- */

static void cmd_release(struct client_cmd *c)
{
    json_object_put(c->value);
    c->value = NULL;
    free(c->raw_owned);
    c->raw_owned = NULL;
    for (int i = 0; i < c->nfds; i++) {
        close(c->fds[i]);
    }
    c->nfds = 0;
}

/* Nobody will answer this slot through us any more. */
static void slot_detach(struct slot *slot)
{
    if (slot->owner && slot->owner_gone) {
        slot->owner_gone(slot->owner, slot);
    }
    slot->owner = NULL;
}

static void slot_free(struct session *s, struct slot *slot)
{
    TAILQ_REMOVE(&s->slots, slot, link);
    s->nslots--;
    if (slot->state == SLOT_QUEUED) {
        s->nqueued--;
        s->queued_bytes -= slot->cmd.len;
    }
    slot_detach(slot);
    if (s->barrier == slot) {
        s->barrier = NULL;
    }
    cmd_release(&slot->cmd);
    free(slot->reply);
    free(slot);
}

/* Too much in hand: stop reading (and parsing) this client for now. */
static bool overloaded(struct session *s)
{
    return s->nqueued >= MAX_QUEUED_COMMANDS
        || s->queued_bytes >= MAX_QUEUED_BYTES || s->nslots >= MAX_SLOTS
        || conn_output_pending(s->conn) >= OUTPUT_SOFT_LIMIT;
}

static void update_reading(struct session *s)
{
    size_t out;

    if (s->closed) {
        return;
    }
    out = conn_output_pending(s->conn);
    if (out > OUTPUT_HARD_LIMIT) {
        log_warn("client %u has %zu bytes it does not read; disconnecting "
                 "it", s->id, out);
        session_close(s, "too much unread output");
        return;
    }
    if (overloaded(s)) {
        conn_pause_read(s->conn);
    } else if (s->input_stopped) {
        /* finish what is buffered before reading more, from the loop */
        event_active(s->resume_ev, 0, 0);
    } else {
        conn_resume_read(s->conn);
    }
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    (void)fd;
    (void)what;
    if (s->closed || overloaded(s)) {
        return;
    }
    s->input_stopped = false;
    if (!jsonstream_resume(s->in)) {
        s->input_stopped = !s->closed;
    }
    update_reading(s);
    end_if_answered(s);
}

void slot_claim(struct slot *slot, void *owner,
                void (*gone)(void *owner, struct slot *slot))
{
    slot->owner = owner;
    slot->owner_gone = gone;
}

void slot_release(struct slot *slot)
{
    slot->owner = NULL;
    slot->owner_gone = NULL;
}

struct session *slot_session(const struct slot *slot)
{
    return slot->session;
}

/* Everything the client is sent goes through here: QEMU's compact line,
 * or (a pretty client) its pretty form. */
static void send_message(struct session *s, const char *raw, size_t len)
{
    if (s->extras & SESSION_PRETTY) {
        size_t plen;
        char *pretty = qmp_pretty(raw, len, &plen);
        conn_write(s->conn, pretty, plen);
        free(pretty);
        return;
    }
    conn_write(s->conn, raw, len);
}

/* Write every answered slot at the head, in order. */
static void flush_slots(struct session *s)
{
    struct slot *slot;

    while ((slot = TAILQ_FIRST(&s->slots)) && slot->state == SLOT_READY) {
        if (!s->closed) {
            send_message(s, slot->reply, slot->reply_len);
        }
        slot_free(s, slot);
    }
}

void session_reply(struct session *s, struct slot *slot, const char *raw,
                   size_t len, enum tlog_from from, int64_t latency_us)
{
    bool was_barrier = s->barrier == slot;

    if (s->closed) {
        return;  /* the slot is only waiting to be freed with the session */
    }
    log_traffic(s, TLOG_OUT, from, "reply", raw, len, false, latency_us);
    slot_release(slot);
    if (slot->oob) {
        /* out of band: it goes now, whatever is still to come before it */
        send_message(s, raw, len);
        slot_free(s, slot);
        flush_slots(s);
    } else if (slot == TAILQ_FIRST(&s->slots)) {
        /* the usual case: nothing earlier is outstanding */
        if (!s->closed) {
            send_message(s, raw, len);
        }
        slot_free(s, slot);
        flush_slots(s);
    } else {
        slot->state = SLOT_READY;
        slot->reply = xmalloc(len);
        memcpy(slot->reply, raw, len);
        slot->reply_len = len;
        if (was_barrier) {
            s->barrier = NULL;
        }
    }
    if ((was_barrier || (!s->oob && s->nqueued)) && !s->closed) {
        /* the next command runs from the loop, not inside whatever just
         * answered this one (an operation's callback, say) */
        event_active(s->pump_ev, 0, 0);
    }
    update_reading(s);
    end_if_answered(s);
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg, false);
}

/* A reply the proxy makes itself, in QEMU's form. */
static void reply_local(struct session *s, struct slot *slot, char *reply,
                        size_t len)
{
    session_reply(s, slot, reply, len, TLOG_FROM_PROXY, -1);
    free(reply);
}

static void reply_error(struct session *s, struct slot *slot,
                        const char *cls, const char *desc,
                        const struct qmp_request *req)
{
    size_t len;
    char *reply = qmp_error_reply(cls, desc, req, &len);
    reply_local(s, slot, reply, len);
}

void session_set_barrier(struct session *s, struct slot *slot)
{
    if (s->closed) {
        return;
    }
    slot->barrier = true;
    s->barrier = slot;
}

/* ---- commands ------------------------------------------------------ */

/*
 * Hand one queued command to the router.  The command moves out of the
 * slot first: the router may answer (and free) the slot before returning.
 */
static enum route_result route(struct session *s, struct slot *slot,
                               bool granted)
{
    struct client_cmd cmd = slot->cmd;
    enum route_result res;

    memset(&slot->cmd, 0, sizeof(slot->cmd));
    s->nqueued--;
    s->queued_bytes -= cmd.len;
    slot->state = SLOT_WAITING;
    res = s->env->hooks->route(s->env->opaque, s, slot, &cmd, granted);
    if (res == ROUTE_NEED_ROOM) {
        slot->cmd = cmd;
        slot->state = SLOT_QUEUED;
        s->nqueued++;
        s->queued_bytes += cmd.len;
        upstream_wait_room(s->env->up, &s->waiter);
    } else {
        cmd_release(&cmd);
    }
    return res;
}

static struct slot *first_queued(struct session *s)
{
    struct slot *slot;

    if (s->nqueued == 0) {
        return NULL;
    }
    TAILQ_FOREACH(slot, &s->slots, link) {
        if (slot->state == SLOT_QUEUED) {
            return slot;
        }
    }
    return NULL;
}

/*
 * QEMU reads a client that did not negotiate oob one command at a time:
 * the next is read only once the reply to the previous one is written.
 * So does the proxy, or what QEMU does for the next command (its messages
 * on stderr, a file it writes) could come before the reply to this one.
 */
static bool may_forward(struct session *s, struct slot *slot)
{
    return s->oob || slot == TAILQ_FIRST(&s->slots);
}

static void pump(struct session *s, bool granted)
{
    struct slot *slot;

    /* a client that does not read its replies gets no new ones */
    while (!s->closed && !s->finishing && !s->barrier
           && conn_output_pending(s->conn) < OUTPUT_SOFT_LIMIT
           && (slot = first_queued(s)) && may_forward(s, slot)) {
        if (route(s, slot, granted) == ROUTE_NEED_ROOM) {
            break;
        }
        granted = false;
    }
    update_reading(s);
}

static void on_room(void *opaque)
{
    pump(opaque, true);
}

/* qmp_capabilities, answered here as QEMU's monitor would. */
static void negotiate(struct session *s, struct slot *slot,
                      const struct qmp_request *req)
{
    char *err;
    size_t len;

    if (req->oob) {
        char *desc = xasprintf("The command %s does not support OOB",
                               req->command);
        reply_error(s, slot, QMP_GENERIC_ERROR, desc, req);
        free(desc);
        return;
    }
    err = qapi_check(qmp_capabilities_args, req->args);
    if (err) {
        reply_error(s, slot, QMP_GENERIC_ERROR, err, req);
        free(err);
        return;
    }
    if (s->negotiated) {
        reply_error(s, slot, QMP_COMMAND_NOT_FOUND,
                    "Capabilities negotiation is already complete, command "
                    "ignored", req);
        return;
    }
    bool want_oob = false;
    json_object *enable;
    if (req->args && json_object_object_get_ex(req->args, "enable", &enable)) {
        want_oob = json_object_array_length(enable) > 0;
    }
    if (want_oob && !upstream_oob_offered(s->env->up)) {
        reply_error(s, slot, QMP_GENERIC_ERROR, "Capability oob not available",
                    req);
        return;
    }
    s->negotiated = true;
    s->oob = want_oob;
    char *reply = qmp_return_reply(NULL, req, &len);
    reply_local(s, slot, reply, len);
}

/*
 * Only getfd and add-fd take descriptors from QEMU's chardev (marked so
 * in qemu-commands.c, with the arguments QEMU accepts), and that
 * chardev is shared by every client of the proxy: descriptors that went up
 * with any other command would wait there for whichever client's getfd or
 * add-fd came next.  So they wait here, for this client's own, as they
 * would in the chardev of a direct monitor.  A call QEMU refuses before
 * its handler runs (arguments QAPI rejects) would leave them in QEMU too,
 * so such a call does not take them either.
 */
static bool takes_fds(const struct qmp_request *req)
{
    const struct qapi_member *args =
        req->oob ? NULL : qemu_command_fd_args(req->command);
    char *refused;

    if (!args || (req->args
                  && !json_object_is_type(req->args, json_type_object))) {
        return false;
    }
    refused = qapi_check(args, req->args);
    free(refused);
    return !refused;
}

static void take_fds(struct session *s, struct client_cmd *cmd)
{
    if (!s->npending_fds || !takes_fds(&cmd->req)) {
        return;  /* most commands: nothing is waiting, nothing to look up */
    }
    memcpy(cmd->fds, s->pending_fds, sizeof(int) * (size_t)s->npending_fds);
    cmd->nfds = s->npending_fds;
    s->npending_fds = 0;
}

/* After each text: go on parsing, or leave the rest buffered for later. */
static bool keep_reading(struct session *s)
{
    if (s->closed) {
        return false;
    }
    update_reading(s);
    if (overloaded(s)) {
        s->input_stopped = true;
        return false;
    }
    return true;
}

static bool on_text(void *opaque, const struct js_text *t)
{
    struct session *s = opaque;
    struct slot *slot;
    struct qmp_request req;
    char *err;

    if (s->closed || s->finishing) {
        return false;
    }
    log_traffic(s, TLOG_IN, TLOG_FROM_CLIENT, "command", t->raw, t->len,
                t->error != NULL, -1);
    slot = xcalloc(1, sizeof(*slot));
    slot->session = s;
    slot->state = SLOT_WAITING;
    TAILQ_INSERT_TAIL(&s->slots, slot, link);
    s->nslots++;

    if (t->error) {
        reply_error(s, slot, QMP_GENERIC_ERROR, t->error, NULL);
        return keep_reading(s);
    }
    err = qmp_check_request(t->value, t->has_value, s->negotiated && s->oob,
                            &req);
    if (err) {
        reply_error(s, slot, QMP_GENERIC_ERROR, err, &req);
        free(err);
        return keep_reading(s);
    }
    if (!strcmp(req.command, "qmp_capabilities")) {
        negotiate(s, slot, &req);
        return keep_reading(s);
    }
    if (!s->negotiated) {
        reply_error(s, slot, QMP_COMMAND_NOT_FOUND,
                    "Expecting capabilities negotiation with "
                    "'qmp_capabilities'", &req);
        return keep_reading(s);
    }

    /* a command for the router, in turn */
    struct client_cmd *cmd = &slot->cmd;
    const struct js_member *id = js_text_member(t, "id");
    cmd->req = req;
    cmd->value = json_object_get(t->value);
    cmd->raw = t->raw;
    cmd->len = t->len;
    if (id) {
        cmd->has_id_member = true;
        cmd->id_member = *id;
    }
    take_fds(s, cmd);
    if (req.oob) {
        /* out of band: past the queue, the barriers and the window */
        struct client_cmd oob = *cmd;
        memset(cmd, 0, sizeof(*cmd));
        slot->oob = true;
        s->env->hooks->route(s->env->opaque, s, slot, &oob, true);
        cmd_release(&oob);
        return keep_reading(s);
    }
    slot->state = SLOT_QUEUED;
    s->nqueued++;
    s->queued_bytes += cmd->len;
    if (s->nqueued > 1 || s->barrier || s->waiter.queued
        || conn_output_pending(s->conn) >= OUTPUT_SOFT_LIMIT
        || !may_forward(s, slot)
        || route(s, slot, false) == ROUTE_NEED_ROOM) {
        /* it waits its turn: keep its own copy of the bytes */
        slot->cmd.raw_owned = xmalloc(slot->cmd.len);
        memcpy(slot->cmd.raw_owned, slot->cmd.raw, slot->cmd.len);
        slot->cmd.raw = slot->cmd.raw_owned;
    }
    return keep_reading(s);
}

/* ---- connection ---------------------------------------------------- */

static void on_fds(void *opaque, int *fds, int nfds)
{
    struct session *s = opaque;

    /* a message that brings descriptors replaces those still waiting, as
     * in QEMU's chardev (tcp_chr_process_IO_msg) */
    if (nfds > 0) {
        for (int i = 0; i < s->npending_fds; i++) {
            close(s->pending_fds[i]);
        }
        s->npending_fds = 0;
    }
    for (int i = 0; i < nfds; i++) {
        if (s->npending_fds < CONN_MAX_FDS) {
            s->pending_fds[s->npending_fds++] = fds[i];
        } else {
            log_warn("client %u passed more than %d file descriptors with "
                     "one command; closing the rest", s->id, CONN_MAX_FDS);
            close(fds[i]);
        }
    }
}

static void on_closed(void *opaque, const char *why)
{
    struct session *s = opaque;
    session_close(s, why);
}

/*
 * A client that shuts down its sending side after its last command (a
 * here-document on -qmp stdio, socat) still gets every reply, as QEMU's
 * own monitor answers what it read before end of file.  Then a socket is
 * closed, as QEMU closes its socket chardev; standard input ending is not
 * the end of a stdio client, which QEMU goes on sending events to.
 */
static void end_if_answered(struct session *s)
{
    if (s->eof && !s->closed && TAILQ_EMPTY(&s->slots) && !s->input_stopped) {
        conn_close_after_flush(s->conn, 5000);
    }
}

static void on_eof(void *opaque)
{
    struct session *s = opaque;
    struct stat st;

    if (fstat(conn_fd(s->conn), &st) == 0 && !S_ISSOCK(st.st_mode)) {
        return;   /* reading has stopped; the output stays open */
    }
    s->eof = true;
    end_if_answered(s);
}

static void on_drained(void *opaque)
{
    struct session *s = opaque;
    pump(s, false);
}

/* A client's bytes go through QEMU's own lexer, parser and checks. */
static char *input_reserve(void *stream, size_t min, size_t *avail)
{
    return jsonstream_reserve(stream, min, avail);
}

static void input_commit(void *stream, size_t n)
{
    jsonstream_commit(stream, n);
}

static const struct conn_input session_input = {
    .reserve = input_reserve,
    .commit = input_commit,
};

static const struct conn_callbacks session_conn_cb = {
    .fds = on_fds,
    .closed = on_closed,
    .drained = on_drained,
    .eof = on_eof,
};

static void reap(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    struct slot *slot;
    (void)fd;
    (void)what;
    while ((slot = TAILQ_FIRST(&s->slots))) {
        slot_free(s, slot);
    }
    conn_free(s->conn);
    jsonstream_free(s->in);
    event_free(s->reap_ev);
    event_free(s->resume_ev);
    event_free(s->pump_ev);
    free(s->listener);
    free(s);
}

static void session_close(struct session *s, const char *why)
{
    struct slot *slot;

    if (s->closed) {
        return;
    }
    s->closed = true;
    log_info("client %u (%s) disconnected%s%s", s->id, s->listener,
             why ? ": " : "", why ? why : "");
    upstream_cancel_wait(s->env->up, &s->waiter);
    /* whoever would answer a slot forgets it now; the memory goes with the
     * session, later: a caller up the stack may still hold a slot */
    TAILQ_FOREACH(slot, &s->slots, link) {
        slot_detach(slot);
    }
    s->barrier = NULL;
    for (int i = 0; i < s->npending_fds; i++) {
        close(s->pending_fds[i]);
    }
    s->npending_fds = 0;
    conn_pause_read(s->conn);
    s->env->hooks->closed(s->env->opaque, s);
    /* free later: we may be inside this session's own read callback */
    event_active(s->reap_ev, 0, 0);
}

struct session *session_new(const struct session_env *env, int rfd, int wfd,
                            unsigned id, const char *listener_name,
                            unsigned extras)
{
    struct session *s = xcalloc(1, sizeof(*s));

    s->env = env;
    s->id = id;
    s->extras = extras;
    s->listener = xstrdup(listener_name);
    TAILQ_INIT(&s->slots);
    s->conn = conn_new_pair(env->base, rfd, wfd, &session_conn_cb, s);
    conn_count_bytes(s->conn, env->bytes_in, env->bytes_out);
    s->in = jsonstream_new(true, env->max_message, on_text, s);
    s->waiter.fn = on_room;
    s->waiter.opaque = s;
    s->reap_ev = event_new(env->base, -1, 0, reap, s);
    s->resume_ev = event_new(env->base, -1, 0, on_resume, s);
    s->pump_ev = event_new(env->base, -1, 0, on_pump, s);
    return s;
}

void session_start(struct session *s, const char *greeting, size_t len,
                   bool oob_offered)
{
    (void)oob_offered;
    s->started = true;
    log_traffic(s, TLOG_OUT, TLOG_FROM_QEMU, "greeting", greeting, len,
                false, -1);
    send_message(s, greeting, len);
    conn_read_into(s->conn, &session_input, s->in);
}

void session_event(struct session *s, const char *raw, size_t len)
{
    if (s->closed || !s->negotiated) {
        return;
    }
    send_message(s, raw, len);
    if (conn_output_pending(s->conn) >= OUTPUT_SOFT_LIMIT) {
        update_reading(s);
    }
}

void session_finish(struct session *s)
{
    struct slot *slot;

    if (s->closed || s->finishing) {
        return;
    }
    s->finishing = true;
    upstream_cancel_wait(s->env->up, &s->waiter);
    /* what QEMU answered goes out; what it never will is dropped (the
     * slots' memory goes with the session: a caller may hold one) */
    flush_slots(s);
    TAILQ_FOREACH(slot, &s->slots, link) {
        slot_detach(slot);
    }
    s->barrier = NULL;
    conn_close_after_flush(s->conn, FINISH_TIMEOUT_MS);
}
