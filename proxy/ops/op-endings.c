/*
 * op-endings: how operations end and what they do once ready (watch their
 * copies), when QEMU goes away, and after a restart of the proxy.
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "migrate.h"
#include "op-internal.h"
#include "qmp.h"
#include "chain.h"
#include "log.h"
#include "nbd-target.h"
#include "util.h"

/* ---- endings --------------------------------------------------------- */

static void rolled_back(struct op *op, bool ok)
{
    char *why = op->step_error ? xstrdup(op->step_error)
                               : xstrdup("it failed");
    op_fail(op, "%s; %s", why, ok ? "everything it did was undone"
                                  : "undoing it did not fully succeed");
    free(why);
}

/*
 * A ready operation keeps watching its copies: one that fails while the
 * operation waits to be reopened takes the whole operation back (every
 * disk it touched is rolled back), as a failure before it would have; one
 * that someone else completed has pivoted.
 */
static void model_settled(void *opaque)
{
    struct op *op = opaque;

    op->awaiting_model = false;
    if (op->check) {
        op->model_settled = true;
        op->check(op);
        op->model_settled = false;
    }
}

bool op_wait_for_model(struct op *op)
{
    if (op->model_settled) {
        return false;
    }
    if (!op->awaiting_model) {
        op->awaiting_model = true;
        chain_settle(op_chain(), model_settled, op);
    }
    return true;
}

static void watch_ready(struct op *op)
{
    bool all_pivoted = true;

    if (op->state != OP_READY || op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->job || !d->own_job) {
            all_pivoted = all_pivoted && d->state == DISK_PIVOTED;
            continue;
        }
        if (d->failed) {
            d->own_job = false;
            op_note_copy_failed(op, d, "failed after it was ready",
                                "it ended");
            op->check = NULL;
            step_rollback(op, rolled_back);
            return;
        }
        if (d->done) {
            const char *top;
            if (op_wait_for_model(op)) {
                return;   /* judged once QEMU's answer is in */
            }
            top = chain_top_file(op_chain(), d->disk);
            d->own_job = false;
            d->state = nbd_target_names(top, d->mirror_file)
                ? DISK_PIVOTED : DISK_COPY_DROPPED;
            str_setf(&d->note, "runs on %s (done by another client)",
                 top ? top : "?");
        }
        all_pivoted = all_pivoted && d->state == DISK_PIVOTED;
    }
    if (all_pivoted) {
        op->check = NULL;
        op_set_state(op, OP_PIVOTED);
    }
}

void op_watch(struct op *op)
{
    op->check = watch_ready;
}

void op_ready_or_rollback(struct op *op, bool ok)
{
    if (ok) {
        op->next = NULL;
        op_set_state(op, OP_READY);
        op->check = watch_ready;   /* before the answer lets anything run */
        op_answer(op);
        return;
    }
    step_rollback(op, rolled_back);
}

void ops_upstream_lost(void)
{
    for (int i = 0; i < op_reg.nops; i++) {
        struct op *op = op_reg.ops[i];
        if (op_is_final(op->state) || op->state == OP_READY) {
            continue;
        }
        for (int k = 0; k < op->ndisks; k++) {
            op->disks[k].state = DISK_UNKNOWN;
            str_set(&op->disks[k].note, "QEMU's monitor went away in the "
                    "middle; see qmproxy-query-chain once it is back");
        }
        op_fail(op, "QEMU's monitor went away during the operation");
    }
}

/* ---- resuming after a restart -------------------------------------- */

static void resumed_ready(struct op *op, bool ok)
{
    if (ok) {
        op_set_state(op, OP_READY);
        op->check = watch_ready;
    } else {
        op_fail(op, "%s", op->step_error ? op->step_error : "a copy failed");
    }
}

/* A migration carries on from what QEMU did while the proxy was away
 * (migrate.c); it is told which copies QEMU still runs. */
static void resume_migration(struct op *op)
{
    for (int k = 0; k < op->ndisks; k++) {
        struct op_disk *d = &op->disks[k];
        const char *job = chain_job_id(op_chain(), d->disk);
        bool there = d->job && job && !strcmp(job, d->job);
        str_set(&d->job_status, there
                ? chain_job_status(op_chain(), d->disk) : NULL);
        d->ready = there && d->job_status
            && !strcmp(d->job_status, "ready");
    }
    migrate_resume(op, op_reg.env->base);
}

void ops_resume(void)
{
    for (int i = 0; i < op_reg.nops; i++) {
        struct op *op = op_reg.ops[i];
        bool ready = true, lost = false;
        struct strbuf why = STRBUF_INIT;

        if (op_is_final(op->state)) {
            continue;
        }
        if (!strcmp(op->type, "migrate")) {
            resume_migration(op);
            continue;
        }
        for (int k = 0; k < op->ndisks; k++) {
            struct op_disk *d = &op->disks[k];
            const char *job = chain_job_id(op_chain(), d->disk);
            const char *status = chain_job_status(op_chain(), d->disk);
            const char *top = chain_top_file(op_chain(), d->disk);
            if (!d->job || !d->mirror_file) {
                continue;
            }
            if (job && !strcmp(job, d->job)) {
                /* standby: ready, and paused (a replica's copy paused on
                 * errors, to be resumed) */
                d->ready = status && (!strcmp(status, "ready")
                                      || !strcmp(status, "standby"));
                str_set(&d->job_status, status);
                d->state = d->ready ? DISK_READY : DISK_MIRRORING;
                if (!d->ready) {
                    ready = false;
                }
                continue;
            }
            lost = true;
            if (nbd_target_names(top, d->mirror_file)) {
                d->state = DISK_PIVOTED;
                str_setf(&d->note, "runs on %s (pivoted while the proxy was "
                     "away)", top);
            } else {
                d->state = DISK_COPY_LOST;
                str_setf(&d->note, "runs on %s; its copy job %s ended while the "
                     "proxy was away", top ? top : "?", d->job);
            }
            strbuf_addf(&why, "%s%s", why.len ? ", " : "", d->disk);
        }
        if (lost) {
            op_fail(op, "qmproxy restarted during the operation and found "
                    "the copies of %s gone", why.buf);
        } else if (ready) {
            log_info("operation %s resumed after a restart: ready", op->name);
            op_set_state(op, OP_READY);
            op->check = watch_ready;
        } else {
            log_info("operation %s resumed after a restart: waiting for its "
                     "copies", op->name);
            op_set_state(op, OP_MIRRORING);
            step_wait_ready(op, resumed_ready);
        }
        strbuf_release(&why);
    }
}
