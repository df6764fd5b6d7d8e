/*
 * Automatic mirroring, as the policy's <mirroring> rules ask:
 *
 *  on="snapshot": a matching disk got a new overlay, whoever made it
 *    (blockdev-snapshot-sync, a transaction, libvirt's snapshot-create-as,
 *    HMP): the new overlay is mirrored (sync=top) into the rule's target
 *    directory, onto an overlay qmproxy creates there over the directory's
 *    copy of the older layers when precreate="yes" (the oVirt flow without
 *    the client's help), else onto one QEMU creates;
 *  on="connect": a continuous full copy of the disk (replication) from
 *    the moment the proxy attaches.
 *
 * pivot="when-ready" switches onto the copy once it is ready.  With
 * on-error="retry" a copy that fails (refused, or a BLOCK_JOB_ERROR that
 * ends it) is started again after 'backoff-ms', doubling up to
 * 'max-backoff-ms', at most 'retries' times; with "report" the failure is
 * reported and that is all.  Each automatic action is an operation of type
 * auto-mirror, visible with its rule in qmproxy-query-operations.
 */
#include "auto-mirror.h"

#include <event2/event.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "cmd.h"
#include "log.h"
#include "nbd-target.h"
#include "op.h"
#include "policy.h"
#include "replica-watch.h"
#include "spawn.h"
#include "util.h"

/* What an automatic operation remembers of its rule (the policy may be
 * reloaded under it) and of its attempts. */
struct auto_state {
    const struct cmd_env *env;
    struct op *op;
    struct policy_mirror_rule rule;   /* strings owned */
    int attempt;
    int next_backoff_ms;
    char *below, *below_format;       /* on="snapshot": what to build on */
    long long size;
    char *last_error;
    struct event *timer;
    struct replica_watch *watch;      /* a replica on another host */
};

static void auto_free(void *priv)
{
    struct auto_state *a = priv;

    if (a->timer) {
        event_free(a->timer);
    }
    replica_watch_free(a->watch);
    free(a->rule.name);
    free(a->rule.disks);
    free(a->rule.target);
    free(a->rule.format);
    free(a->below);
    free(a->below_format);
    free(a->last_error);
    free(a);
}

static void attempt(struct auto_state *a);

/* A copy failed: try again later, or say so and stop. */
static void failed(struct auto_state *a, const char *why)
{
    struct op *op = a->op;
    struct op_disk *d = &op->disks[0];

    /* the watch's reason (the outage budget) over QEMU's (cancelled) */
    why = replica_watch_gave_up(a->watch) ? replica_watch_gave_up(a->watch)
                                          : why;
    str_set(&a->last_error, why);
    why = a->last_error;   /* kept: the watch (which may own why) goes */
    replica_watch_free(a->watch);
    a->watch = NULL;
    if (a->rule.retry && a->attempt <= a->rule.retries) {
        struct timeval tv = { a->next_backoff_ms / 1000,
                              (a->next_backoff_ms % 1000) * 1000 };
        d->state = DISK_RETRYING;
        free(d->note);
        d->note = xasprintf("attempt %d of %d failed: %s; next attempt in "
                            "%d ms", a->attempt, a->rule.retries + 1, why,
                            a->next_backoff_ms);
        log_warn("automatic mirror %s of %s (rule %s): %s", op->name,
                 d->disk, a->rule.name, d->note);
        op_set_state(op, OP_MIRRORING);
        evtimer_add(a->timer, &tv);
        a->next_backoff_ms *= 2;
        if (a->next_backoff_ms > a->rule.max_backoff_ms) {
            a->next_backoff_ms = a->rule.max_backoff_ms;
        }
        return;
    }
    op_fail(op, "the automatic copy of %s (rule %s) failed%s: %s", d->disk,
            a->rule.name, a->rule.retry ? ", and every retry did" : "", why);
}

/* While ready (a replica, or a copy waiting to be reopened by someone):
 * a copy that ends with an error is a failure like any other. */
static void watch(struct op *op)
{
    struct auto_state *a = op->priv;
    struct op_disk *d = &op->disks[0];

    if (op->state != OP_READY || !(d->failed || d->done)) {
        return;
    }
    if (!d->failed && op_wait_for_model(op)) {
        return;   /* pivoted or dropped: QEMU's next answer says */
    }
    op->check = NULL;
    d->own_job = false;
    if (d->failed) {
        failed(a, d->job_error ? d->job_error : "the copy ended");
    } else {
        const char *top = chain_top_file(a->env->chain, d->disk);
        d->state = nbd_target_names(top, d->mirror_file) ? DISK_PIVOTED
                                                       : DISK_COPY_DROPPED;
        op_set_state(op, OP_PIVOTED);
    }
}

static void pivoted(struct op *op, bool ok)
{
    struct auto_state *a = op->priv;

    if (ok) {
        op_succeed(op, OP_PIVOTED);
    } else {
        failed(a, op->step_error ? op->step_error : "the pivot failed");
    }
}

static void ready(struct op *op, bool ok)
{
    struct auto_state *a = op->priv;

    if (!ok) {
        failed(a, op->step_error ? op->step_error : "the copy failed");
        return;
    }
    if (a->rule.pivot_when_ready) {
        op_set_state(op, OP_PIVOTING);
        step_reopen(op, true, pivoted);
        return;
    }
    op_set_state(op, OP_READY);
    op->check = watch;
}

static void started(struct op *op, bool ok)
{
    struct auto_state *a = op->priv;

    if (!ok) {
        failed(a, op->step_error ? op->step_error : "QEMU refused the copy");
        return;
    }
    op_set_state(op, OP_MIRRORING);
    if (op->disks[0].on_target_error) {
        a->watch = replica_watch_new(a->env, op, &(struct replica_budget){
            a->rule.outage_budget_ms, a->rule.backoff_ms,
            a->rule.max_backoff_ms }, false);
    }
    step_wait_ready(op, ready);
}

static void precreated(void *opaque, int status, const char *output)
{
    struct auto_state *a = opaque;

    a->op->outstanding--;
    if (a->op->state == OP_FAILED) {
        return;
    }
    if (status != 0) {
        char *why = xasprintf("qemu-img could not create %s: %s",
                              a->op->disks[0].mirror_file, output);
        failed(a, why);
        free(why);
        return;
    }
    step_start_mirrors(a->op, started);
}

/* The destination's copy of the layer below the new overlay (owned). */
static char *destination_below(const struct auto_state *a)
{
    char *below_copy = xstrdup(a->below);
    char *dest = xasprintf("%s/%s", a->rule.target, basename(below_copy));

    free(below_copy);
    return dest;
}

static void attempt(struct auto_state *a)
{
    struct op *op = a->op;
    struct op_disk *d = &op->disks[0];
    struct chain *c = a->env->chain;

    if (op->state == OP_FAILED || op->state == OP_PIVOTED
        || op->state == OP_ABORTED) {
        return;  /* ended meanwhile (QEMU went away, say) */
    }
    a->attempt++;
    if (chain_job_id(c, d->disk)) {
        failed(a, "another job runs on the disk");
        return;
    }
    if (a->below && a->rule.precreate && d->copy_image.fd < 0
        && d->copy_image.fdset < 0) {
        /* the destination overlay, over the destination's copy of the
         * layer below (which may not be there yet: -u); under a path
         * policy the copy step formats the image the proxy opened */
        char *dest_below = destination_below(a);
        char size[32];
        snprintf(size, sizeof(size), "%lld", a->size);
        char *argv[] = { "qemu-img", "create", "-q", "-f", a->rule.format,
                         "-u", "-b", dest_below, "-F",
                         a->below_format ? a->below_format : "qcow2",
                         d->mirror_file, size, NULL };
        op->outstanding++;  /* keeps the operation while qemu-img runs */
        spawn_run(a->env->base, argv, precreated, a);
        free(dest_below);
        return;
    }
    step_start_mirrors(op, started);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    attempt(arg);
}

/* The operation's own state, its rule copied (the policy may change). */
static struct auto_state *new_state(const struct cmd_env *env, struct op *op,
                                    const struct policy_mirror_rule *rule)
{
    struct auto_state *a = xcalloc(1, sizeof(*a));

    a->env = env;
    a->op = op;
    a->rule = *rule;
    a->rule.name = xstrdup(rule->name);
    a->rule.disks = xstrdup(rule->disks);
    a->rule.target = xstrdup(rule->target);
    a->rule.format = xstrdup(rule->format);
    a->next_backoff_ms = rule->backoff_ms;
    a->timer = evtimer_new(env->base, on_timer, a);
    op->priv = a;
    op->priv_free = auto_free;
    return a;
}

static void start(const struct cmd_env *env,
                  const struct policy_mirror_rule *rule,
                  const char *disk, const char *target, bool full,
                  const char *below, const char *below_format, long long size)
{
    struct op *op = op_new("auto-mirror", NULL, 0, NULL);
    struct op_disk *d = op_add_disk(op, disk);
    struct auto_state *a = new_state(env, op, rule);

    a->below = below ? xstrdup(below) : NULL;
    a->below_format = below_format ? xstrdup(below_format) : NULL;
    a->size = size;
    op->rule = xstrdup(rule->name);
    d->mirror_file = xstrdup(target);
    d->sync = xstrdup(full ? "full" : "top");
    if (nbd_target_is(target)) {
        /* an export: made beforehand, serving the disk's data */
        d->format = xstrdup("raw");
        d->mode = xstrdup("existing");
        if (full) {
            /* a replica across a link: a write error pauses the copy, its
             * dirty bitmap kept, to be resumed (replica-watch.h) */
            d->on_target_error = xstrdup("stop");
        }
    } else {
        d->format = xstrdup(rule->format);
        d->mode = xstrdup(below && rule->precreate ? "existing"
                                                   : "absolute-paths");
    }
    d->speed = rule->speed;
    log_info("policy rule %s: mirroring %s to %s", rule->name, disk, target);
    if (!nbd_target_is(target)) {
        /* under a path policy the proxy makes the copy's image beneath the
         * folder and hands it over (op-images.c), replacing a file there
         * as QEMU or qemu-img would have */
        int fd;
        char *err = op_open_image(env->policy(env->opaque), "target", target,
                                  OP_IMAGE_REPLACE, &fd);
        if (err) {
            op_set_state(op, OP_RUNNING);
            op_fail(op, "the automatic copy of %s (rule %s) cannot start: %s",
                    disk, rule->name, err);
            free(err);
            return;
        }
        if (fd >= 0) {
            op_image_take(&d->copy_image, fd, true);
            str_set(&d->mode, "absolute-paths");   /* the proxy formats it */
            if (below && rule->precreate) {
                d->copy_backing = destination_below(a);
                d->copy_backing_format = xstrdup(below_format ? below_format
                                                              : "qcow2");
            }
        }
    }
    op_set_state(op, OP_RUNNING);
    attempt(a);
}

void auto_mirror_snapshot(const struct cmd_env *env, const char *disk,
                          const char *overlay, const char *below,
                          const char *below_format, long long size)
{
    const struct policy *p = env->policy(env->opaque);
    const struct policy_mirror_rule *rule;
    const struct op *busy;
    char *copy, *target;

    rule = policy_mirror_for(p, MIRROR_ON_SNAPSHOT, disk);
    if (!rule || ops_busy_disk(disk, &busy)
        || chain_job_id(env->chain, disk)) {
        return;  /* no rule, or the snapshot is part of an operation */
    }
    copy = xstrdup(overlay);
    target = xasprintf("%s/%s", rule->target, basename(copy));
    start(env, rule, disk, target, false, below, below_format, size);
    free(target);
    free(copy);
}

/* A replica an earlier run of the proxy started (carried on by
 * ops_resume): watched again, under its rule as the policy now says. */
static void adopt(struct op *op, void *opaque)
{
    const struct cmd_env *env = opaque;
    const struct policy *p = env->policy(env->opaque);
    const struct policy_mirror_rule *rule = NULL;
    struct auto_state *a;

    if (op->priv || !op->ndisks || !op->disks[0].on_target_error
        || !op->rule) {
        return;   /* ours already, or not a replica across a link */
    }
    for (int i = 0; p && i < policy_mirror_rule_count(p); i++) {
        if (!strcmp(policy_mirror_rule(p, i)->name, op->rule)) {
            rule = policy_mirror_rule(p, i);
        }
    }
    if (!rule) {
        log_warn("replica %s: its rule %s is no longer in the policy; not "
                 "watched", op->name, op->rule);
        return;
    }
    a = new_state(env, op, rule);
    a->attempt = 1;
    if (op->state == OP_READY) {
        op->check = watch;
    } else {
        step_wait_ready(op, ready);
    }
    a->watch = replica_watch_new(env, op, &(struct replica_budget){
        a->rule.outage_budget_ms, a->rule.backoff_ms,
        a->rule.max_backoff_ms }, true);
    log_info("replica %s of %s: watched again after a restart", op->name,
             op->disks[0].disk);
}

void auto_mirror_connect(const struct cmd_env *env)
{
    const struct policy *p = env->policy(env->opaque);
    struct chain *c = env->chain;
    json_object *disks = chain_to_json(c, NULL);
    const struct op *busy;

    ops_each_live("auto-mirror", adopt, (void *)env);

    for (size_t i = 0; i < json_object_array_length(disks); i++) {
        json_object *d = json_object_array_get_idx(disks, i), *name;
        const struct policy_mirror_rule *rule;
        const char *disk;
        char *target;

        json_object_object_get_ex(d, "disk", &name);
        disk = json_object_get_string(name);
        rule = policy_mirror_for(p, MIRROR_ON_CONNECT, disk);
        if (!rule || chain_job_id(c, disk) || ops_busy_disk(disk, &busy)) {
            continue;
        }
        if (nbd_target_is(rule->target)) {
            /* the receiving side made and exports DISK-replica */
            char *export = xasprintf("%s-replica", disk);
            char *err = nbd_target_export_on("target", rule->target, export,
                                             &target);
            free(export);
            if (err) {   /* the policy's check lets none through */
                log_warn("policy rule %s: %s", rule->name, err);
                free(err);
                continue;
            }
        } else {
            /* the replica is the proxy's own file: a new run starts it
             * over */
            target = xasprintf("%s/%s-replica.%s", rule->target, disk,
                               rule->format);
        }
        start(env, rule, disk, target, true, NULL, NULL, 0);
        free(target);
    }
    json_object_put(disks);
}
