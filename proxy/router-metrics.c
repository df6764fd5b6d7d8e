/*
 * router-metrics: what the router counts for --metrics, and the values
 * it reads at scrape time (clients, QEMU's connection, the chain model's
 * disks and jobs, the operations, the traffic log's losses).  The lower
 * modules never see the registry: sessions and the upstream get the byte
 * counters to add to, commands and forwards a command_done hook.
 */
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "attach.h"
#include "chain.h"
#include "listener.h"
#include "cmd.h"
#include "jsonobj.h"
#include "metrics.h"
#include "qmp.h"
#include "ops/op.h"
#include "policy.h"
#include "router-internal.h"
#include "trafficlog.h"
#include "upstream.h"
#include "util.h"

struct router_metrics {
    struct metrics *registry;
    struct metric *commands;          /* {command, outcome} */
    struct metric *command_seconds;   /* {command}: QEMU's round trip */
    struct metric *events;            /* {event} */
    struct metric *refusals;          /* {rule} */
    struct metric *upstream_commands; /* {origin, command}: what QEMU did */
    struct metric_series *own_sent, *own_received, *client_sent,
                         *client_received;  /* commands' and replies' bytes */
    struct metric_series *reconnects;
    struct metric_series *client_in, *client_out, *qemu_in, *qemu_out;
    unsigned readies;
    json_object *qemu_commands;       /* QEMU's names, as keys */
    bool refreshing;                  /* jobs' progress asked of QEMU */
};

/* QEMU's round trips: from a tenth of a millisecond (a query on an idle
 * VM) to ten seconds (a command QEMU takes long over). */
static const double latency_bounds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

/*
 * The command label.  Clients may send any name, and each distinct label
 * value is a series kept for ever and written in every scrape, so names
 * are taken only from what exists: the proxy's own commands, and QEMU's
 * (its query-commands, asked once connected; before its answer, a name
 * QEMU answered without CommandNotFound is in its schema).  Anything else
 * is "other".
 */
static bool command_known(struct router_metrics *m, const char *command,
                          const char *outcome, bool from_qemu)
{
    const char *values[] = { command };

    if (metric_find(m->command_seconds, values)
        || json_object_object_get_ex(m->qemu_commands, command, NULL)) {
        return true;
    }
    for (const struct cmd_entry *const *e = cmd_table; *e; e++) {
        if (!strcmp((*e)->name, command)) {
            return true;
        }
    }
    return from_qemu && strcmp(outcome, "CommandNotFound") != 0;
}

void router_metrics_command(struct router *r, const char *command,
                            const char *outcome, int64_t latency_us)
{
    struct router_metrics *m = r->metrics;
    const char *label;

    if (!m) {
        return;
    }
    label = command_known(m, command, outcome, latency_us >= 0)
        ? command : METRICS_OTHER;
    {
        const char *values[] = { label, outcome };
        metric_series(m->commands, values)->value++;
    }
    if (latency_us >= 0) {
        const char *values[] = { label };
        const char *upstream[] = { "client", label };
        metric_observe(m->command_seconds,
                       metric_series(m->command_seconds, values),
                       (double)latency_us / 1e6);
        metric_series(m->upstream_commands, upstream)->value++;
    }
}

/* A client's command is named by command_done above (its label bounded
 * there); the proxy's own are named here: its own literals, bounded. */
void router_metrics_answered(struct router *r, bool own, const char *command,
                             size_t sent, size_t received)
{
    struct router_metrics *m = r->metrics;

    if (!m) {
        return;
    }
    if (own) {
        const char *values[] = { "proxy", command ? command : "unknown" };
        metric_series(m->upstream_commands, values)->value++;
        m->own_sent->value += (double)sent;
        m->own_received->value += (double)received;
    } else {
        m->client_sent->value += (double)sent;
        m->client_received->value += (double)received;
    }
}

static void command_done(void *opaque, const char *command,
                         const char *outcome, int64_t latency_us)
{
    router_metrics_command(opaque, command, outcome, latency_us);
}

/* Event names are QEMU's own (its schema bounds them) or the proxy's. */
void router_metrics_event(struct router *r, const char *name)
{
    if (r->metrics) {
        const char *values[] = { name };
        metric_series(r->metrics->events, values)->value++;
    }
}

void router_metrics_refusal(struct router *r, const char *listener,
                            const char *command)
{
    if (r->metrics) {
        char *rule = policy_rule_id(r->policy, listener, command);
        const char *values[] = { rule };
        metric_series(r->metrics->refusals, values)->value++;
        free(rule);
    }
}

static void qemu_commands_read(void *opaque, const struct upstream_reply *reply)
{
    struct router_metrics *m = opaque;
    json_object *list = upstream_reply_return(reply);

    for (size_t i = 0; list && json_object_is_type(list, json_type_array)
                       && i < json_object_array_length(list); i++) {
        const char *name = jobj_str(json_object_array_get_idx(list, i),
                                    "name");
        if (name) {
            json_object_object_add(m->qemu_commands, name, NULL);
        }
    }
}

void router_metrics_ready(struct router *r)
{
    struct router_metrics *m = r->metrics;
    json_object *cmd;

    if (!m) {
        return;
    }
    if (m->readies++ > 0) {
        m->reconnects->value++;
    }
    /* a new QEMU may be another version: its own list (kept: a name once
     * known stays a label, so series do not come and go) */
    cmd = qmp_command("query-commands", NULL);
    upstream_send_internal(r->up, cmd, qemu_commands_read, m);
    json_object_put(cmd);
}

/* ---- read at scrape time ------------------------------------------- */

static void collect_clients(struct router *r, struct metrics_out *out)
{
    /* every listener and --client, with 0 when nobody is connected */
    size_t nnames = r->nlisteners + r->nattaches;
    const char **names = xcalloc(nnames + r->nsessions + 1, sizeof(*names));
    unsigned *counts = xcalloc(nnames + r->nsessions + 1, sizeof(*counts));

    for (size_t i = 0; i < r->nlisteners; i++) {
        names[i] = listener_name(r->listeners[i]);
    }
    for (size_t i = 0; i < r->nattaches; i++) {
        names[r->nlisteners + i] = attach_name(r->attaches[i]);
    }
    for (size_t i = 0; i < r->nsessions; i++) {
        const char *l = session_listener(r->sessions[i]);
        size_t j;
        for (j = 0; j < nnames && strcmp(names[j], l); j++) {
        }
        if (j == nnames) {
            names[nnames++] = l;
        }
        counts[j]++;
    }
    metrics_out_family(out, "qmproxy_clients",
                       "Clients connected, by listener (or --client) name.",
                       "gauge");
    for (size_t i = 0; i < nnames; i++) {
        size_t j;
        for (j = 0; j < i && strcmp(names[j], names[i]); j++) {
        }
        if (j == i) {  /* two listeners may share a name: once each */
            unsigned n = 0;
            for (size_t k = i; k < nnames; k++) {
                n += strcmp(names[k], names[i]) ? 0 : counts[k];
            }
            metrics_out_sample(out, n, "qmproxy_clients", "listener",
                               names[i], NULL);
        }
    }
    free(names);
    free(counts);
}

static void collect_upstream(struct router *r, struct metrics_out *out)
{
    const char *now = r->up ? upstream_state_name(r->up) : "idle";

    metrics_out_family(out, "qmproxy_upstream_state",
                       "The connection to QEMU's monitor: 1 for the state "
                       "it is in, 0 for the others.", "gauge");
    for (const char *const *s = upstream_state_names(); *s; s++) {
        metrics_out_sample(out, !strcmp(*s, now), "qmproxy_upstream_state",
                           "state", *s, NULL);
    }
    metrics_out_family(out, "qmproxy_upstream_commands_in_flight",
                       "Commands written to QEMU and not yet answered.",
                       "gauge");
    metrics_out_sample(out, r->up ? upstream_inflight(r->up) : 0,
                       "qmproxy_upstream_commands_in_flight", NULL);
    metrics_out_family(out, "qmproxy_traffic_log_lost_lines_total",
                       "Traffic log lines lost because its ring was full.",
                       "counter");
    metrics_out_sample(out, r->tlog ? (double)trafficlog_dropped(r->tlog) : 0,
                       "qmproxy_traffic_log_lost_lines_total", NULL);
}

static void jobs_refreshed(void *opaque)
{
    struct router_metrics *m = opaque;
    m->refreshing = false;
    ops_observe_lag();  /* the ready copies' lag, from QEMU's answer */
}

static void collect_chain(struct router *r, struct metrics_out *out)
{
    int ndisks = r->chain ? chain_disk_count(r->chain) : 0;
    int njobs = r->chain ? chain_job_count(r->chain) : 0;
    struct chain_job_info *jobs = xcalloc((size_t)njobs + 1, sizeof(*jobs));

    metrics_out_family(out, "qmproxy_chain_depth",
                       "Images in a disk's backing chain, the active one "
                       "included.", "gauge");
    for (int i = 0; i < ndisks; i++) {
        int depth;
        const char *disk = chain_disk_at(r->chain, i, &depth);
        metrics_out_sample(out, depth, "qmproxy_chain_depth", "disk", disk,
                           NULL);
    }
    for (int i = 0; i < njobs; i++) {
        chain_job_at(r->chain, i, &jobs[i]);
    }
    /* the model's last knowledge: job events, QEMU's answers after every
     * change, and the refresh the last scrape asked for (below) */
    metrics_out_family(out, "qmproxy_block_job_progress_ratio",
                       "A block job's progress, offset/len as QEMU last "
                       "reported them (1 for a ready job with nothing to "
                       "copy).", "gauge");
    for (int i = 0; i < njobs; i++) {
        /* nothing to copy (len 0) is all copied once QEMU says ready */
        metrics_out_sample(out, jobs[i].len > 0
                           ? (double)jobs[i].offset / (double)jobs[i].len
                           : jobs[i].ready, "qmproxy_block_job_progress_ratio",
                           "disk", jobs[i].disk ? jobs[i].disk : "",
                           "job", jobs[i].id,
                           "type", jobs[i].type ? jobs[i].type : "", NULL);
    }
    metrics_out_family(out, "qmproxy_block_job_speed_bytes_per_second",
                       "A block job's speed limit in bytes per second (0: "
                       "none).", "gauge");
    for (int i = 0; i < njobs; i++) {
        metrics_out_sample(out, (double)jobs[i].speed,
                           "qmproxy_block_job_speed_bytes_per_second",
                           "disk", jobs[i].disk ? jobs[i].disk : "",
                           "job", jobs[i].id, NULL);
    }
    metrics_out_family(out, "qmproxy_block_job_ready",
                       "1 when a mirror job is ready to pivot.", "gauge");
    for (int i = 0; i < njobs; i++) {
        metrics_out_sample(out, jobs[i].ready, "qmproxy_block_job_ready",
                           "disk", jobs[i].disk ? jobs[i].disk : "",
                           "job", jobs[i].id, NULL);
    }
    free(jobs);
    /* QEMU sends no event while a job copies, so a running job's progress
     * would stand still until it is ready: ask QEMU now, without waiting
     * for the answer (a scrape never waits for QEMU), so the next scrape
     * has it.  Only while jobs run, one refresh at a time. */
    if (njobs > 0 && !r->metrics->refreshing && upstream_is_ready(r->up)) {
        r->metrics->refreshing = true;
        chain_refresh_progress(r->chain, jobs_refreshed, r->metrics);
    }
}

static void lag_bytes(void *opaque, const char *operation, const char *disk,
                      int64_t bytes, const double *seconds)
{
    (void)seconds;
    metrics_out_sample(opaque, (double)bytes, "qmproxy_replica_lag_bytes",
                       "operation", operation, "disk", disk, NULL);
}

static void lag_seconds(void *opaque, const char *operation,
                        const char *disk, int64_t bytes,
                        const double *seconds)
{
    (void)bytes;
    if (seconds) {
        metrics_out_sample(opaque, *seconds, "qmproxy_replica_lag_seconds",
                           "operation", operation, "disk", disk, NULL);
    }
}

static void collect_operations(struct metrics_out *out)
{
    unsigned counts[OP_STATE__MAX];

    ops_count_by_state(counts);
    metrics_out_family(out, "qmproxy_operations",
                       "The proxy's operations by state (finished ones as "
                       "long as the proxy keeps them).", "gauge");
    for (int s = 0; s < OP_STATE__MAX; s++) {
        metrics_out_sample(out, counts[s], "qmproxy_operations", "state",
                           op_state_name((enum op_state)s), NULL);
    }
    /* a ready copy (a replica, on another host or not) whose lag is
     * known; none: no sample (absent, rather than a 0 that would claim a
     * copy in step) */
    metrics_out_family(out, "qmproxy_replica_lag_bytes",
                       "What a ready copy has yet to copy of its disk.",
                       "gauge");
    ops_each_lag(lag_bytes, out);
    metrics_out_family(out, "qmproxy_replica_lag_seconds",
                       "How long a ready copy has trailed its disk (0: in "
                       "step).", "gauge");
    ops_each_lag(lag_seconds, out);
}

static void collect(void *opaque, struct metrics_out *out)
{
    struct router *r = opaque;

    collect_clients(r, out);
    collect_upstream(r, out);
    collect_chain(r, out);
    collect_operations(out);
}

void router_set_metrics(struct router *r, struct metrics *registry)
{
    struct router_metrics *m = xcalloc(1, sizeof(*m));
    struct metric *received, *sent, *reconnects, *command_bytes;
    const char *own_sent[] = { "proxy", "sent" };
    const char *own_received[] = { "proxy", "received" };
    const char *client_sent[] = { "client", "sent" };
    const char *client_received[] = { "client", "received" };
    const char *client[] = { "client" }, *qemu[] = { "qemu" };

    m->registry = registry;
    m->qemu_commands = json_object_new_object();
    m->commands = metrics_counter(registry, "qmproxy_commands_total",
        "Commands clients sent, by name and outcome (return, the error "
        "class, or lost); names neither QEMU nor the proxy knows are "
        "\"other\".", "command,outcome");
    m->command_seconds = metrics_histogram(registry,
        "qmproxy_command_duration_seconds",
        "QEMU's round trip for a client's command, from writing it to "
        "QEMU to reading the reply.", "command", latency_bounds,
        sizeof(latency_bounds) / sizeof(*latency_bounds));
    m->events = metrics_counter(registry, "qmproxy_events_total",
        "Events sent to clients, QEMU's and the proxy's, by name.", "event");
    m->refusals = metrics_counter(registry,
        "qmproxy_policy_refusals_total",
        "Commands the policy refused, by the rule that refused them "
        "(ROLE/rule-N, ROLE/default, no-role, paths).", "rule");
    /* the proxy's own questions to QEMU apart from clients': what the
     * chain model and the operations cost QEMU's monitor */
    m->upstream_commands = metrics_counter(registry,
        "qmproxy_upstream_commands_total",
        "Commands QEMU answered, by origin (client: forwarded; proxy: the "
        "proxy's own) and name.", "origin,command");
    command_bytes = metrics_counter(registry,
        "qmproxy_upstream_command_bytes_total",
        "Bytes of the commands QEMU answered (sent) and of its replies "
        "(received), by origin (client or proxy).", "origin,direction");
    m->own_sent = metric_series(command_bytes, own_sent);
    m->own_received = metric_series(command_bytes, own_received);
    m->client_sent = metric_series(command_bytes, client_sent);
    m->client_received = metric_series(command_bytes, client_received);
    received = metrics_counter(registry, "qmproxy_received_bytes_total",
        "Bytes read from clients and from QEMU.", "peer");
    sent = metrics_counter(registry, "qmproxy_sent_bytes_total",
        "Bytes written (queued) to clients and to QEMU.", "peer");
    reconnects = metrics_counter(registry,
        "qmproxy_upstream_reconnects_total",
        "Times QEMU's monitor was negotiated again after the first.", NULL);
    m->reconnects = metric_single(reconnects);
    m->client_in = metric_series(received, client);
    m->qemu_in = metric_series(received, qemu);
    m->client_out = metric_series(sent, client);
    m->qemu_out = metric_series(sent, qemu);
    r->metrics = m;
    r->session_env.bytes_in = &m->client_in->value;
    r->session_env.bytes_out = &m->client_out->value;
    r->cmd_env.command_done = command_done;
    router_metrics_upstream(r);
    metrics_add_collector(registry, collect, r);
}

void router_metrics_upstream(struct router *r)
{
    if (r->metrics && r->up) {
        upstream_count_bytes(r->up, &r->metrics->qemu_in->value,
                             &r->metrics->qemu_out->value);
    }
}

void router_metrics_free(struct router_metrics *m)
{
    if (m) {
        json_object_put(m->qemu_commands);
    }
    free(m);
}
