/*
 * replica-watch: resume a replica paused by a broken link, bound a link
 * that stays down, announce the lag (see replica-watch.h for why).
 *
 * One timer a second per watched replica: it asks QEMU for the job's
 * progress (query-block-jobs, the cheap question) and then decides, from
 * what the events said (paused on an error or not) and the progress
 * (moving or not): give up past the budget, arm the resume timer when
 * the copy paused, announce the lag when it changed.  The resume timer
 * runs on the rule's backoff rather than on the tick, so a copy resumes
 * as soon as the backoff allows.
 */
#include "replica-watch.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "cmd.h"
#include "jsonobj.h"
#include "log.h"
#include "op.h"
#include "qmp.h"
#include "util.h"

#define TICK_MS 1000   /* the lag events' rate limit, and the watch's pace */

/* Where the replica stands, as QMPROXY_REPLICA_LAG says it. */
enum replica_state {
    REPLICA_UNKNOWN,   /* not ready yet: no lag to speak of */
    REPLICA_IN_SYNC,
    REPLICA_BEHIND,    /* bytes to copy, and copying them */
    REPLICA_STALLED,   /* bytes to copy, no progress (link dropping packets) */
    REPLICA_PAUSED,    /* paused on target errors, to be resumed */
};

static const char *const state_names[] = {
    [REPLICA_UNKNOWN] = "unknown",
    [REPLICA_IN_SYNC] = "in-sync",
    [REPLICA_BEHIND] = "behind",
    [REPLICA_STALLED] = "stalled",
    [REPLICA_PAUSED] = "paused",
};

struct replica_watch {
    const struct cmd_env *env;
    struct op *op;
    struct replica_budget budget;
    struct event *tick;
    struct event *resume;  /* the next block-job-resume, while paused */
    bool asking;           /* a progress question is out */
    bool freed;            /* freed while asking: the answer frees it */
    uint64_t last_good_us; /* last seen in sync or making progress */
    int next_backoff_ms;
    int64_t last_offset;
    bool have_offset;
    enum replica_state announced;
    int64_t announced_bytes;
    char *gave_up;         /* why the copy was given up */
};

static bool job_paused(const char *status)
{
    return status && (!strcmp(status, "paused") || !strcmp(status, "standby"));
}

static void after_command(struct op *op, int disk, bool ok, json_object *ret,
                          const char *error)
{
    (void)disk;
    (void)ret;
    if (!ok) {
        log_debug("replica %s: %s", op->name, error ? error : "refused");
    }
    /* a step waiting on job events skipped them while this was out */
    if (op->check) {
        op->check(op);
    }
}

static void send_job_command(struct op *op, const char *command, bool force)
{
    json_object *a = json_object_new_object();

    jobj_add_str(a, "device", op->disks[0].job);
    if (force) {
        jobj_add_bool(a, "force", 1);
    }
    op_qmp(op, qmp_command(command, a), after_command, 0);
}

/* Past the budget: cut a hung connection, cancel, let the operation fail
 * with the reason (its BLOCK_JOB_CANCELLED ends the copy). */
static void give_up(struct replica_watch *w, enum replica_state st,
                    double seconds)
{
    struct op *op = w->op;
    struct op_disk *d = &op->disks[0];

    w->gave_up = xasprintf("the link to the replica %s was down for %.0f s "
                           "(%s), past the outage budget of %.0f s; the "
                           "copy was given up, the disk runs on its own "
                           "image", d->mirror_file, seconds,
                           st == REPLICA_PAUSED
                               ? "the copy paused on write errors"
                               : "no progress with bytes left to copy",
                           w->budget.outage_budget_ms / 1000.0);
    log_warn("replica %s of %s: %s", op->name, d->disk, w->gave_up);
    event_del(w->tick);
    event_del(w->resume);
    if (st != REPLICA_PAUSED && d->target_node) {
        /* requests hung on a connection that drops packets: a force
         * cancel would wait for them (no NBD timeout in 7.2) */
        json_object *inst = json_object_new_object(), *a, *list;
        jobj_add_str(inst, "type", "block-node");
        jobj_add_str(inst, "node-name", d->target_node);
        list = json_object_new_array();
        json_object_array_add(list, inst);
        a = json_object_new_object();
        json_object_object_add(a, "instances", list);
        op_qmp(op, qmp_command("yank", a), after_command, 0);
    }
    send_job_command(op, "block-job-cancel", true);
}

static void announce(struct replica_watch *w, enum replica_state st)
{
    struct op *op = w->op;
    struct op_disk *d = &op->disks[0];
    json_object *data;
    double seconds;
    int64_t bytes = st == REPLICA_IN_SYNC ? 0 : d->len - d->offset;

    if (st == w->announced && bytes == w->announced_bytes) {
        return;
    }
    w->announced = st;
    w->announced_bytes = bytes;
    data = json_object_new_object();
    jobj_add_str(data, "operation", op->name);
    jobj_add_str(data, "disk", d->disk);
    jobj_add_str(data, "state", state_names[st]);
    json_object_object_add(data, "lag-bytes", json_object_new_int64(bytes));
    if (op_disk_lag_seconds(d, &seconds)) {
        json_object_object_add(data, "lag-seconds",
                               json_object_new_double(seconds));
    }
    w->env->broadcast_event(w->env->opaque, "QMPROXY_REPLICA_LAG", data);
    json_object_put(data);
}

static void arm_resume(struct replica_watch *w)
{
    struct timeval tv = { w->next_backoff_ms / 1000,
                          (w->next_backoff_ms % 1000) * 1000 };
    evtimer_add(w->resume, &tv);
}

static void judge(struct replica_watch *w)
{
    struct op *op = w->op;
    struct op_disk *d = &op->disks[0];
    uint64_t now = now_monotonic_us();
    int64_t offset, len;
    enum replica_state st;
    double down;

    if (op->state == OP_FAILED || op->state == OP_ABORTED
        || op->state == OP_PIVOTED || w->gave_up) {
        event_del(w->tick);   /* nothing more to watch */
        return;
    }
    if (!d->own_job || d->done || !d->job
        || !chain_job_progress(w->env->chain, d->disk, &offset, &len)) {
        return;
    }
    d->offset = offset;
    d->len = len;
    if (job_paused(d->job_status) && !d->stopped_on_error) {
        /* paused by a client: not an outage of ours */
        w->last_good_us = now;
        w->have_offset = false;
        return;
    }
    if (d->stopped_on_error) {
        st = REPLICA_PAUSED;
    } else if (len <= offset) {
        st = REPLICA_IN_SYNC;
    } else if (w->have_offset && offset == w->last_offset) {
        st = REPLICA_STALLED;
    } else {
        st = REPLICA_BEHIND;
    }
    w->last_offset = offset;
    w->have_offset = true;
    if (st == REPLICA_IN_SYNC || st == REPLICA_BEHIND) {
        w->last_good_us = now;
        event_del(w->resume);
        w->next_backoff_ms = w->budget.backoff_ms;
    }
    down = (double)(now - w->last_good_us) / 1e6;
    if ((st == REPLICA_PAUSED || st == REPLICA_STALLED)
        && down * 1000 > w->budget.outage_budget_ms) {
        give_up(w, st, down);
        return;
    }
    if (st == REPLICA_PAUSED && !evtimer_pending(w->resume, NULL)) {
        arm_resume(w);
    }
    if (d->ready) {
        announce(w, st);
    }
}

/* Resume a copy paused on errors; until it runs again, once more after
 * the next backoff (the first resume after the other side is back often
 * fails: it starts QEMU's reconnection, which the next one finds made). */
static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct replica_watch *w = arg;
    struct op *op = w->op;
    struct op_disk *d = &op->disks[0];

    (void)fd;
    (void)what;
    if (!d->stopped_on_error || d->done || w->gave_up) {
        return;   /* running again (the tick re-arms it if it pauses) */
    }
    log_info("replica %s of %s: paused on write errors, resuming", op->name,
             d->disk);
    send_job_command(op, "block-job-resume", false);
    w->next_backoff_ms *= 2;
    if (w->next_backoff_ms > w->budget.max_backoff_ms) {
        w->next_backoff_ms = w->budget.max_backoff_ms;
    }
    arm_resume(w);
}

/* A job event: a copy that just paused is resumed after the backoff,
 * not a tick later. */
static void job_event(struct op *op, void *opaque)
{
    struct replica_watch *w = opaque;

    if (op->disks[0].stopped_on_error && !w->gave_up
        && !evtimer_pending(w->resume, NULL)) {
        arm_resume(w);
    }
}

static void on_progress(void *opaque)
{
    struct replica_watch *w = opaque;

    w->asking = false;
    if (w->freed) {
        replica_watch_free(w);
        return;
    }
    ops_observe_lag();
    judge(w);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct replica_watch *w = arg;

    (void)fd;
    (void)what;
    if (w->asking) {
        return;   /* QEMU has not answered the last one yet */
    }
    w->asking = true;
    chain_refresh_progress(w->env->chain, on_progress, w);
}

/* QEMU's word on a job found when the proxy started: paused with a
 * failed I/O status is a copy paused on errors. */
static void on_jobs(struct op *op, int disk, bool ok, json_object *ret,
                    const char *error)
{
    struct op_disk *d = &op->disks[0];

    (void)disk;
    (void)error;
    for (size_t i = 0; ok && i < json_object_array_length(ret); i++) {
        json_object *j = json_object_array_get_idx(ret, i);
        const char *io = jobj_str(j, "io-status");
        if (d->job && jobj_str(j, "device")
            && !strcmp(jobj_str(j, "device"), d->job)
            && jobj_bool(j, "paused", false) && io && !strcmp(io, "failed")) {
            d->stopped_on_error = true;
            if (op->job_watcher) {
                op->job_watcher(op, op->job_watcher_opaque);
            }
        }
    }
    if (op->check) {
        op->check(op);
    }
}

struct replica_watch *replica_watch_new(const struct cmd_env *env,
                                        struct op *op,
                                        const struct replica_budget *b,
                                        bool adopted)
{
    struct replica_watch *w = xcalloc(1, sizeof(*w));
    struct timeval tv = { TICK_MS / 1000, (TICK_MS % 1000) * 1000 };

    w->env = env;
    w->op = op;
    w->budget = *b;
    w->next_backoff_ms = b->backoff_ms;
    w->last_good_us = now_monotonic_us();
    w->announced = REPLICA_UNKNOWN;
    w->announced_bytes = -1;
    w->tick = event_new(env->base, -1, EV_PERSIST, on_tick, w);
    w->resume = evtimer_new(env->base, on_resume, w);
    op->job_watcher = job_event;
    op->job_watcher_opaque = w;
    if (adopted) {
        op_qmp(op, qmp_command("query-block-jobs", NULL), on_jobs, 0);
    }
    event_add(w->tick, &tv);
    return w;
}

void replica_watch_free(struct replica_watch *w)
{
    if (!w) {
        return;
    }
    if (w->op->job_watcher_opaque == w) {
        w->op->job_watcher = NULL;
        w->op->job_watcher_opaque = NULL;
    }
    if (w->tick) {
        event_free(w->tick);
        event_free(w->resume);
        w->tick = NULL;
        w->resume = NULL;
    }
    if (w->asking) {
        w->freed = true;   /* the progress answer still names it */
        return;
    }
    free(w->gave_up);
    free(w);
}

const char *replica_watch_gave_up(const struct replica_watch *w)
{
    return w ? w->gave_up : NULL;
}
