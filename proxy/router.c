/*
 * router: per command, per reply and per event, where it goes.
 */
#include "router.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attach.h"
#include "chain.h"
#include "cmd.h"
#include "fdstore.h"
#include "forward.h"
#include "listener.h"
#include "ops/auto-mirror.h"
#include "ops/op.h"
#include "policy.h"
#include "qemu-guards.h"
#include "qemu-schema.h"
#include "qjson.h"
#include "router-internal.h"
#include "session.h"
#include "statefile.h"
#include "log.h"
#include "trafficlog.h"
#include "upstream.h"
#include "util.h"

#define SHUTDOWN_GRACE_MS 5000



/*
 * An event to the negotiated clients that take it, recorded once.  QEMU's
 * events go to every client, as QEMU sends them to every monitor; the
 * proxy's own go only to clients that asked for them (invisible by
 * default: a client must see exactly what QEMU would send it).
 */
static void fan_out(struct router *r, const char *raw, size_t len,
                    enum tlog_from from)
{
    bool own = from != TLOG_FROM_QEMU;

    if (r->tlog && trafficlog_active(r->tlog)) {
        struct tlog_entry e = {
            .dir = TLOG_OUT, .from = from, .kind = "event",
            .broadcast = true, .raw = raw, .len = len, .latency_us = -1,
        };
        trafficlog_record(r->tlog, &e);
    }
    /* backwards: a client that fails the write leaves the array */
    for (size_t i = r->nsessions; i-- > 0;) {
        if (i < r->nsessions
            && (!own || session_extras(r->sessions[i])
                        & SESSION_EXTRA_EVENTS)) {
            session_event(r->sessions[i], raw, len);
        }
    }
}

void router_broadcast_event(struct router *r, const char *name,
                            json_object *data)
{
    size_t len;
    char *msg = qmp_event_message(name, data, &len);

    router_metrics_event(r, name);
    fan_out(r, msg, len, TLOG_FROM_PROXY);
    free(msg);
}

void router_save_state(struct router *r)
{
    json_object *state;

    if (!r->state) {
        return;
    }
    state = json_object_new_object();
    json_object_object_add(state, "chain", chain_save(r->chain));
    json_object_object_add(state, "operations", ops_save());
    statefile_save(r->state, state);
    json_object_put(state);
}

void router_set_state(struct router *r, const char *path)
{
    json_object *saved, *chain;
    char *problem = NULL;

    r->state = statefile_new(path);
    saved = statefile_load(r->state, &problem);
    if (problem) {
        log_error("%s", problem);
        if (r->tlog) {
            trafficlog_note(r->tlog, "state-file-set-aside", problem);
        }
        free(problem);
    }
    if (saved && json_object_object_get_ex(saved, "chain", &chain)) {
        json_object *ops;
        chain_load(r->chain, chain);
        if (json_object_object_get_ex(saved, "operations", &ops)) {
            ops_load(ops);
        }
        log_info("loaded the state saved in %s", path);
    }
    json_object_put(saved);
}

static void chain_event(void *opaque, const char *name, json_object *data)
{
    router_broadcast_event(opaque, name, data);
}

static void chain_changed(void *opaque)
{
    router_save_state(opaque);
}

static void chain_new_overlay(void *opaque, const char *disk,
                              const char *overlay, const char *below,
                              const char *below_format, long long size)
{
    struct router *r = opaque;
    auto_mirror_snapshot(&r->cmd_env, disk, overlay, below, below_format,
                         size);
}

static const struct chain_hooks router_chain_hooks = {
    .emit_event = chain_event,
    .changed = chain_changed,
    .new_overlay = chain_new_overlay,
};

static void read_schema_if_confined(struct router *r);

void router_set_policy(struct router *r, struct policy *p)
{
    policy_free(r->policy);
    r->policy = p;
    /* replicas a new policy asks for start now (when QEMU is there) */
    if (r->up && upstream_is_ready(r->up) && r->chain) {
        read_schema_if_confined(r);
        auto_mirror_connect(&r->cmd_env);
    }
}

static void notify_changed(struct router *r)
{
    if (r->observer && r->observer->changed) {
        r->observer->changed(r->observer_opaque);
    }
}

static void enable_listeners(struct router *r, bool on)
{
    for (size_t i = 0; i < r->nlisteners; i++) {
        listener_enable(r->listeners[i], on);
    }
    if (r->serving != on) {
        r->serving = on;
        if (r->observer && r->observer->serving) {
            r->observer->serving(r->observer_opaque, on);
        }
    }
}

void router_set_observer(struct router *r, const struct router_observer *o,
                         void *opaque)
{
    r->observer = o;
    r->observer_opaque = opaque;
}

void router_status(const struct router *r, struct router_status *st)
{
    st->serving = r->serving;
    st->exiting = r->exiting;
    st->clients = r->nsessions;
    st->operations = ops_count_active();
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

static void seeded(void *opaque)
{
    struct router *r = opaque;

    if (!r->exiting && upstream_is_ready(r->up)) {
        /* operations of an earlier life: carry on, or say they failed */
        ops_resume();
        auto_mirror_connect(&r->cmd_env);
        enable_listeners(r, true);
        for (size_t i = 0; i < r->nattaches; i++) {
            attach_start(r->attaches[i]);
        }
    }
}

/* QEMU's schema, for the commands a path policy must refuse because
 * nobody declared where they point. */
static void schema_read(void *opaque, const struct upstream_reply *reply)
{
    struct router *r = opaque;
    json_object *ret = upstream_reply_return(reply);

    r->schema_asked = false;
    if (!ret) {
        if (!reply->lost) {
            log_warn("QEMU's schema could not be read: commands no table "
                     "declares pass the path policy unchecked");
        }
        return;
    }
    qemu_schema_free(r->schema);
    r->schema = qemu_schema_new(ret);
}

static void read_schema_if_confined(struct router *r)
{
    if (policy_confines_places(r->policy) && !r->schema && !r->schema_asked
        && r->up && upstream_is_ready(r->up)) {
        json_object *cmd = qmp_command("query-qmp-schema", NULL);
        r->schema_asked = true;
        upstream_send_internal(r->up, cmd, schema_read, r);
        json_object_put(cmd);
    }
}

static const char *undeclared_place(void *opaque, const char *command)
{
    struct router *r = opaque;
    return qemu_schema_place_argument(r->schema, command);
}

/* QEMU is there: learn its disks first (and its schema, under a path
 * policy), then let clients in, so nobody can ask for a chain before the
 * proxy knows it. */
static void on_ready(void *opaque)
{
    struct router *r = opaque;

    router_metrics_ready(r);
    read_schema_if_confined(r);
    chain_seed(r->chain, seeded, r);
}

static void on_lost(void *opaque, const char *why)
{
    struct router *r = opaque;

    log_info("QEMU's monitor closed (%s)", why);
    chain_upstream_lost(r->chain);
    ops_upstream_lost();
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

/* The event's name (up to 63 bytes) into name; false if it has none. */
static bool event_name(const struct js_text *text, char name[64])
{
    const struct js_member *m = js_text_member(text, "event");
    size_t n;

    if (!m || m->value_end - m->value_start < 3
        || m->value_end - m->value_start - 2 >= 64) {
        return false;
    }
    n = m->value_end - m->value_start - 2;
    memcpy(name, text->raw + m->value_start + 1, n);
    name[n] = 0;
    return true;
}

/* Block job events feed the chain model (parsed only when they do); a
 * migration's events the operation waiting for them. */
static void observe_event(struct router *r, const char *raw, size_t len,
                          const char *name)
{
    json_object *ev, *data = NULL;

    if (!chain_watches_event(name) && !ops_watch_event(name)) {
        return;
    }
    ev = qjson_parse(raw, len);
    json_object_object_get_ex(ev, "data", &data);
    chain_observe_event(r->chain, name, data);
    ops_observe_event(name, data);
    json_object_put(ev);
}

static bool is_event(const struct js_text *text, const char *name)
{
    const struct js_member *m = js_text_member(text, "event");
    size_t n = strlen(name);

    return m && m->value_end - m->value_start == n + 2
        && !memcmp(text->raw + m->value_start + 1, name, n);
}

static void on_event(void *opaque, const char *raw, size_t len,
                     const struct js_text *text)
{
    struct router *r = opaque;
    char name[64];

    if (is_event(text, "SHUTDOWN")) {
        upstream_quiesce(r->up);
    }
    fan_out(r, raw, len, TLOG_FROM_QEMU);
    if (event_name(text, name)) {
        router_metrics_event(r, name);
        observe_event(r, raw, len, name);
    }
}

static void on_answered(void *opaque, bool own, const char *command,
                        size_t sent, size_t received)
{
    router_metrics_answered(opaque, own, command, sent, received);
}

const struct upstream_callbacks router_upstream_callbacks = {
    .ready = on_ready,
    .lost = on_lost,
    .gave_up = on_gave_up,
    .event = on_event,
    .answered = on_answered,
};

/* ---- sessions ------------------------------------------------------ */

static void add_session(struct router *r, int rfd, int wfd,
                        const char *name, const char *display,
                        unsigned extras)
{
    struct session *s;
    const char *greeting;
    size_t len;

    if (r->nsessions == r->cap_sessions) {
        r->cap_sessions = r->cap_sessions ? r->cap_sessions * 2 : 16;
        r->sessions = xrealloc(r->sessions,
                               sizeof(*r->sessions) * r->cap_sessions);
    }
    s = session_new(&r->session_env, rfd, wfd, ++r->next_client, name,
                    extras);
    r->sessions[r->nsessions++] = s;
    log_info("client %u connected on %s", session_id(s), display);
    greeting = upstream_greeting(r->up, &len);
    session_start(s, greeting, len, upstream_oob_offered(r->up));
    notify_changed(r);
}

void router_accept(void *opaque, struct listener *l, int fd)
{
    struct router *r = opaque;
    unsigned extras = 0;

    if (r->exiting || !upstream_is_ready(r->up)) {
        close(fd);
        return;
    }
    for (size_t i = 0; i < r->nlisteners; i++) {
        if (r->listeners[i] == l) {
            extras = r->listener_extras[i];
        }
    }
    add_session(r, fd, fd, listener_name(l), listener_display(l), extras);
}

static void attached(void *opaque, struct attach *a, int rfd, int wfd)
{
    struct router *r = opaque;
    unsigned extras = 0;

    for (size_t i = 0; i < r->nattaches; i++) {
        if (r->attaches[i] == a) {
            extras = r->attach_extras[i];
        }
    }
    if (r->exiting || !upstream_is_ready(r->up)) {
        close(rfd);
        if (wfd != rfd) {
            close(wfd);
        }
        return;
    }
    add_session(r, rfd, wfd, attach_name(a), attach_display(a), extras);
}

/* A client the proxy was told to serve cannot be reached: as QEMU does
 * with a client-mode monitor it cannot connect, give up. */
static void attach_failed(void *opaque, struct attach *a, const char *why)
{
    struct router *r = opaque;

    log_error("--client %s: %s", attach_display(a), why);
    begin_exit(r, 1);
}

static const struct attach_hooks router_attach_hooks = {
    .attached = attached,
    .failed = attach_failed,
};

static void session_closed(void *opaque, struct session *s)
{
    struct router *r = opaque;

    for (size_t i = 0; i < r->nsessions; i++) {
        if (r->sessions[i] == s) {
            memmove(&r->sessions[i], &r->sessions[i + 1],
                    sizeof(*r->sessions) * (r->nsessions - i - 1));
            r->nsessions--;
            break;
        }
    }
    notify_changed(r);
    if (r->exiting) {
        event_active(r->exit_check, 0, 0);
    }
}

/* ---- commands ------------------------------------------------------ */

static void run_settled(void *opaque)
{
    struct cmd_call *call = opaque;
    json_object *args = call->args;

    call->args = NULL;
    cmd_call_run(call, args);
    json_object_put(args);
}

/* One of the proxy's own commands: check the arguments, run it.  If it
 * does not answer at once, the client's next commands wait for it. */
static void run_own(struct router *r, struct session *s, struct slot *slot,
                    const struct cmd_entry *e, struct client_cmd *cmd)
{
    struct cmd_call *call = cmd_call_new(&r->cmd_env, e, slot, session_id(s),
                                         session_listener(s),
                                         cmd->req.has_id, cmd->req.id);
    char *err;

    if (cmd->req.oob) {
        cmd_error(call, QMP_GENERIC_ERROR,
                  "The command %s does not support OOB", e->name);
        return;
    }
    err = qapi_check(e->args, cmd->req.args);
    if (err) {
        cmd_error(call, QMP_GENERIC_ERROR, "%s", err);
        free(err);
        return;
    }
    slot_claim(slot, call, cmd_call_slot_gone);
    if (e->settle_chain) {
        /* runs once the model has QEMU's answer to everything before;
         * the router's hold on the call passes to run_settled */
        call->args = json_object_get(cmd->req.args);
        session_set_barrier(s, slot);
        chain_settle(r->chain, run_settled, call);
        return;
    }
    if (!cmd_call_run(call, cmd->req.args)) {
        session_set_barrier(s, slot);
    }
}

/* The policy said no, or QEMU would abort on it: QEMU never sees it. */
static void refuse(struct router *r, struct session *s, struct slot *slot,
                   struct client_cmd *cmd, const char *why)
{
    size_t len;
    char *reply = qmp_error_reply(QMP_GENERIC_ERROR, why, &cmd->req, &len);

    router_metrics_refusal(r, session_listener(s), cmd->req.command);
    router_metrics_command(r, cmd->req.command, QMP_GENERIC_ERROR, -1);
    log_warn("client %u (listener %s): %s", session_id(s),
             session_listener(s), why);
    session_reply(s, slot, reply, len, TLOG_FROM_PROXY, -1);
    free(reply);
}

static enum route_result route(void *opaque, struct session *s,
                               struct slot *slot, struct client_cmd *cmd,
                               bool granted)
{
    struct router *r = opaque;
    const struct cmd_entry *e;
    char *why = policy_check_request(r->policy, session_listener(s),
                                     cmd->req.command, cmd->req.args,
                                     &r->locations);

    if (!why) {
        why = qemu_guard_check(cmd->req.command, cmd->req.args);
    }
    if (!why) {
        why = chain_check_backing_names(r->chain, cmd->req.command,
                                        cmd->req.args);
    }
    if (why) {
        refuse(r, s, slot, cmd, why);
        free(why);
        return ROUTE_DONE;
    }
    e = cmd_for_request(cmd->req.command, cmd->req.args);

    if (e) {
        run_own(r, s, slot, e, cmd);
        return ROUTE_DONE;
    }
    return forward_command(&r->cmd_env, s, slot, cmd, granted);
}

static const struct policy *policy_in_force(void *opaque)
{
    return ((struct router *)opaque)->policy;
}

static void save_state(void *opaque)
{
    router_save_state(opaque);
}

static void broadcast_event(void *opaque, const char *name,
                            json_object *data)
{
    router_broadcast_event(opaque, name, data);
    if (!strcmp(name, "QMPROXY_OPERATION")) {
        notify_changed(opaque);   /* an operation began, moved or ended */
    }
}

static const struct session_hooks router_session_hooks = {
    .route = route,
    .closed = session_closed,
};

/* ---- life ---------------------------------------------------------- */

struct router *router_new(struct event_base *base, struct trafficlog *tl,
                          const struct router_options *opts)
{
    struct router *r = xcalloc(1, sizeof(*r));

    r->base = base;
    r->tlog = tl;
    r->opts = *opts;
    r->session_env = (struct session_env){
        .base = base, .tlog = tl, .max_message = opts->max_message,
        .hooks = &router_session_hooks, .opaque = r,
    };
    r->cmd_env = (struct cmd_env){
        .base = base, .policy = policy_in_force, .save_state = save_state,
        .broadcast_event = broadcast_event, .opaque = r,
    };
    r->locations = (struct location_lookup){
        .declared = cmd_locations, .undeclared = undeclared_place,
        .opaque = r,
    };
    r->exit_check = event_new(base, -1, 0, check_exit, r);
    r->exit_deadline = evtimer_new(base, exit_deadline, r);
    return r;
}

struct chain *router_chain(struct router *r)
{
    return r->chain;
}

static void create_chain(struct router *r)
{
    if (!r->chain) {
        r->chain = chain_new(r->base, r->up, &router_chain_hooks, r);
        r->cmd_env.chain = r->chain;
        ops_init(&r->cmd_env);
    }
}

void router_set_upstream(struct router *r, struct upstream *up)
{
    r->up = up;
    r->session_env.up = up;
    r->cmd_env.up = up;
    router_metrics_upstream(r);
    create_chain(r);
}

void router_add_listener(struct router *r, struct listener *l,
                         unsigned extras)
{
    r->listeners = xrealloc(r->listeners,
                            sizeof(*r->listeners) * (r->nlisteners + 1));
    r->listener_extras = xrealloc(r->listener_extras,
                                  sizeof(*r->listener_extras)
                                  * (r->nlisteners + 1));
    r->listener_extras[r->nlisteners] = extras;
    r->listeners[r->nlisteners++] = l;
}

struct attach *router_add_client(struct router *r,
                                 const struct address *addr,
                                 unsigned extras, char **error)
{
    struct attach *a = attach_new(r->base, addr, &router_attach_hooks, r,
                                  error);

    if (!a) {
        return NULL;
    }
    r->attaches = xrealloc(r->attaches,
                           sizeof(*r->attaches) * (r->nattaches + 1));
    r->attach_extras = xrealloc(r->attach_extras,
                                sizeof(*r->attach_extras)
                                * (r->nattaches + 1));
    r->attach_extras[r->nattaches] = extras;
    r->attaches[r->nattaches++] = a;
    return a;
}

void router_free(struct router *r)
{
    if (!r) {
        return;
    }
    event_free(r->exit_check);
    event_free(r->exit_deadline);
    if (r->state) {
        router_save_state(r);
        statefile_free(r->state);
    }
    ops_free();
    fdstore_clear();
    chain_free(r->chain);
    router_metrics_free(r->metrics);  /* after: a refresh may wait on it */
    policy_free(r->policy);
    qemu_schema_free(r->schema);
    for (size_t i = 0; i < r->nattaches; i++) {
        attach_free(r->attaches[i]);
    }
    free(r->attaches);
    free(r->attach_extras);
    free(r->listeners);
    free(r->listener_extras);
    free(r->sessions);
    free(r);
}
