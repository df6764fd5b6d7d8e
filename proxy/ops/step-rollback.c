/*
 * step-rollback: undo what an operation did: cancel its copies, fold each
 * new overlay back into the image below it by active commit, pivot.
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>

#include "op-internal.h"
#include "chain.h"
#include "cmd.h"
#include "jsonobj.h"
#include "qmp.h"
#include "upstream.h"
#include "util.h"

static void rollback_check(struct op *op);

static void rollback_cmd_done(struct op *op, int i, bool ok,
                              json_object *ret, const char *error)
{
    struct op_disk *d = &op->disks[i];
    (void)ret;
    if (!ok) {
        /* recorded; the check decides what it means for this disk */
        d->failed = true;
        str_setf(&d->job_error, "%s", error);
    }
    rollback_check(op);
}

static void copy_node_deleted(struct op *op, int i, bool ok,
                              json_object *ret, const char *error)
{
    (void)i; (void)ok; (void)ret; (void)error;  /* best effort */
    rollback_check(op);
}

static void rollback_commit(struct op *op, int i)
{
    struct op_disk *d = &op->disks[i];
    json_object *a = json_object_new_object();

    str_setf(&d->undo_job, "qmp%03x%uu%d", op_reg.tag, op->seq, i);
    free(d->job);
    d->job = NULL;
    op_reset_job_facts(d);
    json_object_object_add(a, "job-id", json_object_new_string(d->undo_job));
    json_object_object_add(a, "device", json_object_new_string(
                               chain_job_device(op_chain(), d->disk)));
    /* the layer on the old top's file, by its node-name as it is now (a
     * node-name may have changed since, a file has not): "base" by file
     * is deprecated since QEMU 3.1 (still in 10.0); kept for a layer the
     * model cannot name */
    const char *base = chain_layer_node_of_file(op_chain(), d->disk,
                                                d->old_top_file);
    if (base) {
        jobj_add_str(a, "base-node", base);
    } else {
        jobj_add_str(a, "base", d->old_top_file);
    }
    d->rollback = ROLLBACK_COMMITTING;
    op_qmp(op, qmp_command("block-commit", a), rollback_cmd_done, i);
}

static void rollback_disk(struct op *op, int i)
{
    struct op_disk *d = &op->disks[i];
    const char *top = chain_top_file(op_chain(), d->disk);

    switch (d->rollback) {
    case ROLLBACK_START:
        if (d->own_job && d->job && !d->done) {
            /* the copy goes first: a disk with a job takes no commit */
            json_object *a = op_job_args("device", d->job);
            jobj_add_bool(a, "force", 1);
            d->rollback = ROLLBACK_CANCELLING;
            d->failed = false;
            op_qmp(op, qmp_command("block-job-cancel", a), rollback_cmd_done, i);
            return;
        }
        /* fall through */
    case ROLLBACK_CANCELLING:
        if (d->rollback == ROLLBACK_CANCELLING && !d->done && !d->failed) {
            return;  /* not gone yet */
        }
        d->own_job = false;
        if (d->copy_node) {
            op_qmp(op, qmp_command("blockdev-del",
                                   op_job_args("node-name", d->copy_node)),
                   copy_node_deleted, i);
            str_set(&d->copy_node, NULL);
            return;  /* back here when QEMU has answered */
        }
        if (d->snapshot_file && top && !strcmp(top, d->snapshot_file)) {
            rollback_commit(op, i);
            return;
        }
        d->rollback = ROLLBACK_DONE;
        d->state = d->snapshot_file ? DISK_UNTOUCHED : DISK_COPY_DROPPED;
        str_setf(&d->note, "runs on %s", top ? top : "?");
        return;
    case ROLLBACK_COMMITTING:
        if (d->failed) {
            d->rollback = ROLLBACK_DONE;
            d->state = DISK_ROLLBACK_FAILED;
            str_setf(&d->note, "runs on %s; folding it back into %s failed: %s",
                 top ? top : "?", d->old_top_file, d->job_error);
            return;
        }
        if (d->ready && !d->done) {
            d->rollback = ROLLBACK_COMPLETING;
            op_qmp(op, qmp_command("block-job-complete",
                               op_job_args("device", d->undo_job)),
                   rollback_cmd_done, i);
        }
        return;
    case ROLLBACK_COMPLETING:
        if (d->failed) {
            d->rollback = ROLLBACK_DONE;
            d->state = DISK_ROLLBACK_FAILED;
            str_setf(&d->note, "runs on %s; folding it back into %s failed: %s",
                 top ? top : "?", d->old_top_file, d->job_error);
        } else if (d->done) {
            d->rollback = ROLLBACK_DONE;
            d->state = DISK_ROLLED_BACK;
            str_setf(&d->note, "runs on %s again; %s was created and is no "
                 "longer used", d->old_top_file, d->snapshot_file);
        }
        return;
    case ROLLBACK_DONE:
        return;
    }
}

static void rollback_check(struct op *op)
{
    bool all = true, ok = true;

    for (int i = 0; i < op->ndisks; i++) {
        rollback_disk(op, i);
    }
    if (op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        if (op->disks[i].rollback != ROLLBACK_DONE) {
            all = false;
        } else if (op->disks[i].state == DISK_ROLLBACK_FAILED) {
            ok = false;
        }
    }
    if (all && op->next) {
        void (*next)(struct op *, bool) = op->next;
        op->check = NULL;
        op->next = NULL;
        next(op, ok);
    }
}

void step_rollback(struct op *op, void (*next)(struct op *, bool))
{
    if (!upstream_is_ready(op_reg.env->up)) {
        for (int i = 0; i < op->ndisks; i++) {
            op->disks[i].state = DISK_UNKNOWN;
            str_set(&op->disks[i].note, "QEMU's monitor went away during the "
                "operation");
        }
        op->check = NULL;
        op->next = NULL;
        next(op, false);
        return;
    }
    op->next = next;
    op->check = rollback_check;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        d->rollback = ROLLBACK_START;
        /* a copy made QEMU 10's way leaves its node behind: it is deleted
         * once the job is gone (else QEMU keeps the image open) */
        free(d->copy_node);
        d->copy_node = op_copy_target(d);
    }
    rollback_check(op);
}
