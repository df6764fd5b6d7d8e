/*
 * step-reopen: onto the copies or back onto the sources, all or nothing:
 * every copy is brought to PENDING before any is finalized.  A copy made
 * QEMU 10's way (a node of its own, see op_blockdev_way) first gets the
 * backing its header names: blockdev-add of that image, blockdev-reopen of
 * the copy with it as backing, then block-job-complete; dropped, its node
 * is deleted once the job is gone.
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>

#include "op-internal.h"
#include "chain.h"
#include "jsonobj.h"
#include "qmp.h"
#include "util.h"

static void reopen_finish(struct op *op);
static void give_copy_its_backing(struct op *op, int i);
static void end_copy(struct op *op, int i);

static void reopen_cmd_done(struct op *op, int i, bool ok, json_object *ret,
                            const char *error)
{
    struct op_disk *d = &op->disks[i];
    (void)ret;

    if (!ok) {
        d->failed = true;
        str_setf(&d->job_error, "%s", error);
    }
    if (op->check) {
        op->check(op);
    }
}

static void reopen_abort_check(struct op *op);

/* Phase 2: every copy is PENDING; finalize them. */
static void check_finalized(struct op *op)
{
    bool all = true;

    if (op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->done) {
            all = false;
        }
    }
    if (all) {
        reopen_finish(op);
    }
}

/* Phase 1: every copy asked to complete (or cancel) until PENDING. */
static void check_pending(struct op *op)
{
    bool all = true, any_failed = false;

    if (op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (d->failed) {
            any_failed = true;
        } else if (!(d->manual_finalize && d->pending) && !d->done) {
            /* a job QEMU finalizes itself is through when it is done */
            all = false;
        }
    }
    if (any_failed && all) {
        /* one cannot: none may pivot; abort those waiting to */
        op->check = reopen_abort_check;
        for (int i = 0; i < op->ndisks; i++) {
            struct op_disk *d = &op->disks[i];
            if (d->manual_finalize && d->pending && !d->done) {
                op_qmp(op, qmp_command("job-cancel", op_job_args("id", d->job)),
                       reopen_cmd_done, i);
            }
        }
        reopen_abort_check(op);
        return;
    }
    if (!all) {
        return;
    }
    op->check = check_finalized;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (d->manual_finalize && d->pending && !d->done) {
            op_qmp(op, qmp_command("job-finalize", op_job_args("id", d->job)),
                   reopen_cmd_done, i);
        }
    }
    check_finalized(op);
}

static void reopen_abort_check(struct op *op)
{
    if (op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (d->pending && !d->done && !d->failed) {
            return;
        }
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        const char *top = chain_top_file(op_chain(), d->disk);
        if (d->failed && d->job_error) {
            d->state = DISK_COPY_FAILED;
            str_setf(&d->note, "runs on %s; the copy failed: %s", top ? top : "?",
                 d->job_error);
        } else {
            d->state = DISK_COPY_DROPPED;
            str_setf(&d->note, "runs on %s; its copy was dropped so that no "
                 "disk pivots alone", top ? top : "?");
        }
    }
    str_setf(&op->step_error, "not every copy could be completed, so none was "
         "switched to");
    op->check = NULL;
    op->next(op, false);
}

static void copy_node_deleted(struct op *op, int i, bool ok, json_object *ret,
                              const char *error)
{
    (void)i; (void)ok; (void)ret; (void)error;
    if (op->outstanding == 0) {
        reopen_finish(op);
    }
}

/* The node of a copy made QEMU 10's way, when it is left behind unused
 * (the copy was dropped): delete it; true while that is under way. */
static bool drop_copy_nodes(struct op *op)
{
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (op->to_mirror && !d->failed) {
            continue;  /* it is the disk now */
        }
        if (d->copy_node) {
            op_qmp(op, qmp_command("blockdev-del",
                                   op_job_args("node-name", d->copy_node)),
                   copy_node_deleted, i);
            str_set(&d->copy_node, NULL);
        }
    }
    return op->outstanding > 0;
}

static void reopen_finish(struct op *op)
{
    bool all_ok = true;

    if (drop_copy_nodes(op)) {
        return;  /* back here when QEMU has deleted them */
    }

    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        const char *top = chain_top_file(op_chain(), d->disk);
        if (d->failed) {
            all_ok = false;
            d->state = DISK_REOPEN_FAILED;
            str_setf(&d->note, "runs on %s: %s", top ? top : "?",
                 d->job_error ? d->job_error : "the job failed");
        } else if (op->to_mirror) {
            d->state = DISK_PIVOTED;
            str_setf(&d->note, "runs on %s", d->mirror_file);
        } else {
            d->state = DISK_ON_SOURCE;
            str_setf(&d->note, "runs on %s; the copy to %s was dropped",
                 top ? top : "?", d->mirror_file);
        }
        d->own_job = false;
    }
    if (!all_ok) {
        str_setf(&op->step_error, "QEMU could not finalize every copy");
    }
    op->check = NULL;
    /* wait for the chain model to show QEMU's new chains */
    void (*next)(struct op *, bool) = op->next;
    op->next = NULL;
    next(op, all_ok);
}

/* Pivot onto the copy or drop it. */
static void end_copy(struct op *op, int i)
{
    op_qmp(op, qmp_command(op->to_mirror ? "block-job-complete"
                                         : "block-job-cancel",
                           op_job_args("device", op->disks[i].job)),
           reopen_cmd_done, i);
}

static void backing_given(struct op *op, int i, bool ok, json_object *ret,
                          const char *error)
{
    (void)ret;
    if (!ok) {
        reopen_cmd_done(op, i, false, NULL, error);
        return;
    }
    end_copy(op, i);
}

static void backing_added(struct op *op, int i, bool ok, json_object *ret,
                          const char *error)
{
    struct op_disk *d = &op->disks[i];
    json_object *opts, *list, *a;
    char *file_node, *backing_node;
    const char *format = chain_mirror_target_format(op_chain(), d->disk);
    (void)ret;

    if (!ok) {
        reopen_cmd_done(op, i, false, NULL, error);
        return;
    }
    /* blockdev-reopen restates the node's options; what is left out goes
     * back to its default, so the file child is named again */
    file_node = op_copy_node(d->job, 'f');
    backing_node = op_copy_node(d->job, 'b');
    opts = json_object_new_object();
    jobj_add_str(opts, "driver", format ? format : "qcow2");
    jobj_add_str(opts, "node-name", d->copy_node);
    jobj_add_str(opts, "file", file_node);
    jobj_add_str(opts, "backing", backing_node);
    list = json_object_new_array();
    json_object_array_add(list, opts);
    a = json_object_new_object();
    json_object_object_add(a, "options", list);
    op_qmp(op, qmp_command("blockdev-reopen", a), backing_given, i);
    free(file_node);
    free(backing_node);
}

/* The copy was added without its backing (the image below may have been
 * copied only since); open the one its header names and attach it. */
static void give_copy_its_backing(struct op *op, int i)
{
    struct op_disk *d = &op->disks[i];
    char *backing = op_backing_file(chain_mirror_file(op_chain(), d->disk));
    json_object *add, *file;
    char *node;

    if (!backing) {
        end_copy(op, i);  /* a copy with no backing needs none */
        return;
    }
    node = op_copy_node(d->job, 'b');
    add = json_object_new_object();
    jobj_add_str(add, "driver", op_image_format(backing));
    jobj_add_str(add, "node-name", node);
    jobj_add_bool(add, "read-only", 1);  /* a backing is only read */
    file = json_object_new_object();
    jobj_add_str(file, "driver", "file");
    jobj_add_str(file, "filename", backing);
    json_object_object_add(add, "file", file);
    op_qmp(op, qmp_command("blockdev-add", add), backing_added, i);
    free(node);
    free(backing);
}

void step_reopen(struct op *op, bool to_mirror,
                 void (*next)(struct op *, bool))
{
    op->next = next;
    op->check = NULL;
    op->to_mirror = to_mirror;
    /* every copy must be ready before any is touched */
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        const char *status = chain_job_status(op_chain(), d->disk);
        const char *job = chain_job_id(op_chain(), d->disk);
        char *missing;
        if (!d->job || !job || strcmp(job, d->job)) {
            str_setf(&op->step_error, "%s has no copy running (it runs on %s)",
                 d->disk, chain_top_file(op_chain(), d->disk)
                 ? chain_top_file(op_chain(), d->disk) : "?");
            next(op, false);
            return;
        }
        if (!status || strcmp(status, "ready")) {
            str_setf(&op->step_error, "the copy of %s to %s is not ready (job %s "
                 "is %s)", d->disk, d->mirror_file, d->job,
                 status ? status : "gone");
            next(op, false);
            return;
        }
        /* only an existing image opens its backing from its header; a copy
         * QEMU created gets the source's backing node */
        const char *mode = chain_mirror_mode(op_chain(), d->disk);
        if (to_mirror && mode && !strcmp(mode, "existing")
            && (missing = op_missing_backing(d->mirror_file))) {
            str_setf(&op->step_error, "the copy of %s, %s, is backed by %s, which "
                 "does not exist yet (copy the older layers there first)",
                 d->disk, d->mirror_file, missing);
            free(missing);
            next(op, false);
            return;
        }
    }
    op->check = check_pending;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        op_reset_job_facts(d);
        d->state = DISK_REOPENING;
        free(d->copy_node);
        d->copy_node = op_copy_target(d);
        if (to_mirror && d->copy_node) {
            give_copy_its_backing(op, i);
        } else {
            end_copy(op, i);
        }
    }
}
