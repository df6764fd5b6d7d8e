/*
 * step-mirror: start a copy of every disk that gets one (auto-finalize off
 * so that reopening can be all or nothing), then wait until every copy is
 * ready.  The copy is a drive-mirror, or on QEMU 10 for a -blockdev disk
 * and an existing image a blockdev-add of the image followed by a
 * blockdev-mirror to that node (op_blockdev_way).
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>

#include "nbd-target.h"
#include "op-internal.h"
#include "chain.h"
#include "cmd.h"
#include "jsonobj.h"
#include "nbd-target.h"
#include "qmp.h"
#include "upstream.h"
#include "util.h"

/* the buffer of a copy to an NBD export on a QEMU older than
 * NBD_COPY_BUF_UNTIL (major * 100 + minor; see where it is used) */
#define NBD_COPY_BUF_SIZE (32 << 20)
#define NBD_COPY_BUF_UNTIL 1000

/* The step ends when the last of its commands is answered. */
static void step_maybe_over(struct op *op)
{
    if (op->outstanding == 0) {
        bool failed = op->step_failed;
        op->step_failed = false;
        op->next(op, !failed);
    }
}

static void copy_refused(struct op *op, int i, const char *error)
{
    struct op_disk *d = &op->disks[i];

    d->failed = true;
    d->own_job = false;
    d->state = d->snapshot_file ? DISK_SNAPSHOTTED : DISK_UNTOUCHED;
    str_setf(&d->note, "QEMU refused the copy to %s: %s", d->mirror_file,
         error);
    if (!op->step_error) {
        str_setf(&op->step_error, "the copy of %s to %s was refused: %s",
             d->disk, d->mirror_file, error);
    }
    op->step_failed = true;
}

static void target_deleted(struct op *op, int i, bool ok, json_object *ret,
                           const char *error)
{
    (void)i; (void)ok; (void)ret; (void)error;
    step_maybe_over(op);
}

static void mirror_started(struct op *op, int i, bool ok, json_object *ret,
                           const char *error)
{
    struct op_disk *d = &op->disks[i];
    (void)ret;

    if (ok) {
        d->copy_image.used = true;
        d->state = DISK_MIRRORING;
        str_setf(&d->note, "copying to %s", d->mirror_file);
    } else {
        if (op_blockdev_way(d)) {
            /* the node added for it goes too */
            char *node = op_copy_node(d->job, 't');
            op_qmp(op, qmp_command("blockdev-del",
                                   op_job_args("node-name", node)),
                   target_deleted, i);
            free(node);
        }
        copy_refused(op, i, error);
    }
    step_maybe_over(op);
}

/* The copy's node is there: start the job on it (its arguments waited in
 * d->pending_args). */
static void target_added(struct op *op, int i, bool ok, json_object *ret,
                         const char *error)
{
    struct op_disk *d = &op->disks[i];
    json_object *a = d->pending_args;
    (void)ret;

    d->pending_args = NULL;
    if (!ok) {
        json_object_put(a);
        copy_refused(op, i, error);  /* QEMU added no node */
        step_maybe_over(op);
        return;
    }
    op_qmp(op, qmp_command("blockdev-mirror", a), mirror_started, i);
}

/* QEMU 10's way: blockdev-add {format node over a file node, no backing
 * yet: step-reopen gives it the one its header names before the pivot},
 * then blockdev-mirror onto it with the same job arguments. */
static void start_blockdev_mirror(struct op *op, int i, json_object *a)
{
    struct op_disk *d = &op->disks[i];
    char *node = op_copy_node(d->job, 't'), *file_node = op_copy_node(d->job, 'f');
    /* no format given: the image's, as drive-mirror would have probed */
    json_object *add = op_image_node_args(
        &d->copy_image, d->mirror_file,
        d->mirror_format ? d->mirror_format
        : d->format ? d->format : op_image_format(d->mirror_file),
        node, file_node);

    jobj_add_str(a, "target", node);
    d->pending_args = a;
    op_qmp(op, qmp_command("blockdev-add", add), target_added, i);
    free(node);
    free(file_node);
}

/* The job's arguments are ready: start the copy (a is taken). */
static void start_copy(struct op *op, int i, json_object *a)
{
    struct op_disk *d = &op->disks[i];
    char *name;

    if (op_blockdev_way(d)) {
        start_blockdev_mirror(op, i, a);
        return;
    }
    name = op_image_qemu_name(&d->copy_image, d->mirror_file);
    jobj_add_str(a, "target", name);
    if (d->on_target_error && nbd_target_is(d->mirror_file)) {
        /* a replica's export: the nbd node itself (format nbd for a
         * URI: the same raw data), under a name of ours, which yank
         * takes when the connection hangs */
        str_set(&d->target_node, NULL);
        d->target_node = op_copy_node(d->job, 'n');
        jobj_add_str(a, "node-name", d->target_node);
        if (strncmp(d->mirror_file, "json:", 5)) {
            jobj_add_str(a, "format", "nbd");
        }
    } else if (strncmp(d->mirror_file, "json:", 5)) {
        /* json:{} options name their driver (an NBD export with TLS:
         * the nbd node itself, raw data); a format beside them would
         * be laid over them and lack its "file" */
        jobj_add_str(a, "format", d->mirror_format ? d->mirror_format
                                                   : d->format);
    }
    jobj_add_str(a, "mode", d->mode ? d->mode : "absolute-paths");
    op_qmp(op, qmp_command("drive-mirror", a), mirror_started, i);
    free(name);
}

/* QEMU holds the copy's image: start the copy onto /dev/fdset/N (its
 * arguments waited in d->pending_args). */
static void copy_handed_over(struct op *op, int i, const char *error)
{
    struct op_disk *d = &op->disks[i];
    json_object *a = d->pending_args;

    d->pending_args = NULL;
    if (error) {
        json_object_put(a);
        copy_refused(op, i, error);
        step_maybe_over(op);
        return;
    }
    start_copy(op, i, a);
}

/* The copy's image, opened by the proxy under a path policy (op-images.c):
 * a new one is formatted as drive-mirror would have made it (over the
 * layer below for a shallow copy, alone for a full one), then handed
 * over.  false when it cannot be. */
static bool hand_over_copy(struct op *op, int i, json_object *a)
{
    struct op_disk *d = &op->disks[i];
    const char *below = d->copy_backing ? d->copy_backing
        : d->sync && !strcmp(d->sync, "top")
        ? chain_layer_file(op_chain(), d->disk, 1) : NULL;
    struct op_image_header hdr = {
        .format = d->mirror_format ? d->mirror_format
                : d->format ? d->format : "qcow2",
        .size = chain_top_size(op_chain(), d->disk),
        .backing = below,
        .backing_format = d->copy_backing_format ? d->copy_backing_format
                        : below ? op_image_format(below) : NULL,
    };
    bool existing = d->mode && !strcmp(d->mode, "existing");

    if (!existing && hdr.size < 0) {
        json_object_put(a);
        copy_refused(op, i, "the disk's size is not known yet");
        return false;
    }
    d->pending_args = a;
    op_image_hand_over(op, i, &d->copy_image, d->mirror_file, "copy",
                       existing ? NULL : &hdr, copy_handed_over);
    return true;
}

void step_start_mirrors(struct op *op, void (*next)(struct op *, bool))
{
    int n = 0;

    op->next = next;
    op->check = NULL;
    op->step_failed = false;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        json_object *a;
        const char *device;
        if (!d->mirror_file) {
            continue;
        }
        /* after the snapshot: its new node, or the device name */
        device = chain_job_device(op_chain(), d->disk);
        if (d->plain_job) {
            str_set(&d->job, device);  /* QEMU names the job after the device */
        } else {
            str_setf(&d->job, "qmp%03x%um%d", op_reg.tag, op->seq, i);
        }
        d->manual_finalize = !d->plain_job;
        d->own_job = true;
        op_reset_job_facts(d);
        a = json_object_new_object();
        if (!d->plain_job) {
            json_object_object_add(a, "job-id", json_object_new_string(d->job));
        }
        json_object_object_add(a, "device", json_object_new_string(device));
        json_object_object_add(a, "sync", json_object_new_string(
                                   d->sync ? d->sync : "top"));
        if (d->copy_mode) {
            jobj_add_str(a, "copy-mode", d->copy_mode);
        }
        if (d->on_target_error) {
            jobj_add_str(a, "on-target-error", d->on_target_error);
        }
        if (d->speed > 0) {
            json_object_object_add(a, "speed", json_object_new_int64(d->speed));
        }
        if (nbd_target_is(d->mirror_file) && d->speed <= 0
            && upstream_qemu_version(op_reg.env->up) < NBD_COPY_BUF_UNTIL) {
            /* QEMU 7.2's mirror splits its buffer among 16 requests:
             * 32 MiB makes them 2 MiB, as qemu-img convert sends, where
             * the default 16 MiB (1 MiB requests) leaves throughput to
             * another host unused; QEMU 10.0's mirror is faster with its
             * default (both measured by tests/bench/bench_remote.py).
             * Not for a copy capped by speed: it gains nothing, and the
             * buffer is sent in one burst followed by a sleep as long as
             * the burst is big, during which a lost server goes
             * unnoticed */
            json_object_object_add(a, "buf-size",
                                   json_object_new_int64(NBD_COPY_BUF_SIZE));
        }
        /* so that reopening can be all or nothing: nothing pivots until
         * the proxy finalizes it */
        if (!d->plain_job) {
            jobj_add_bool(a, "auto-finalize", 0);
        }
        if (d->copy_image.fd >= 0) {
            if (!hand_over_copy(op, i, a)) {
                continue;
            }
        } else {
            start_copy(op, i, a);
        }
        n++;
    }
    if (!n) {
        /* nothing sent: fine, unless a copy was refused before it went */
        bool failed = op->step_failed;
        op->step_failed = false;
        next(op, !failed);
    }
}

/* ---- step: wait until every copy is ready --------------------------- */

static void check_ready(struct op *op)
{
    bool all = true, mirroring = false;

    if (op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->job) {
            continue;
        }
        if (d->failed || (d->done && !d->ready)) {
            d->state = DISK_COPY_FAILED;
            str_setf(&d->note, "the copy to %s failed: %s", d->mirror_file,
                 d->job_error ? d->job_error : "the job ended");
            d->own_job = false;
            str_setf(&op->step_error, "the copy of %s to %s failed: %s", d->disk,
                 d->mirror_file, d->job_error ? d->job_error : "it ended");
            op->check = NULL;
            op->next(op, false);
            return;
        }
        if (d->ready) {
            d->state = DISK_READY;
            str_setf(&d->note, "%s mirrored to %s", chain_top_file(op_chain(), d->disk)
                 ? chain_top_file(op_chain(), d->disk) : d->disk, d->mirror_file);
        } else {
            all = false;
        }
        mirroring = true;
    }
    if (all) {
        op->check = NULL;
        op->next(op, true);
    } else if (mirroring && op->state == OP_RUNNING) {
        op_set_state(op, OP_MIRRORING);
    }
}

void step_wait_ready(struct op *op, void (*next)(struct op *, bool))
{
    op->next = next;
    op->check = check_ready;
    check_ready(op);
}
