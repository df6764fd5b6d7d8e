/*
 * step-mirror: start a copy of every disk that gets one (drive-mirror,
 * auto-finalize off so that reopening can be all or nothing), then wait
 * until every copy is ready.
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>

#include "op-internal.h"
#include "chain.h"
#include "jsonobj.h"
#include "qmp.h"
#include "util.h"

static void mirror_started(struct op *op, int i, bool ok, json_object *ret,
                           const char *error)
{
    struct op_disk *d = &op->disks[i];
    (void)ret;

    if (ok) {
        d->state = DISK_MIRRORING;
        str_setf(&d->note, "copying to %s", d->mirror_file);
    } else {
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
    if (op->outstanding == 0) {
        bool failed = op->step_failed;
        op->step_failed = false;
        op->next(op, !failed);
    }
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
        json_object_object_add(a, "target",
                               json_object_new_string(d->mirror_file));
        /* json:{} options name their driver (an NBD export with TLS:
         * the nbd node itself, raw data); a format beside them would be
         * laid over them and lack its "file" */
        if (strncmp(d->mirror_file, "json:", 5)) {
            jobj_add_str(a, "format", d->mirror_format ? d->mirror_format
                                                       : d->format);
        }
        json_object_object_add(a, "sync", json_object_new_string(
                                   d->sync ? d->sync : "top"));
        json_object_object_add(a, "mode", json_object_new_string(
                                   d->mode ? d->mode : "absolute-paths"));
        if (d->copy_mode) {
            jobj_add_str(a, "copy-mode", d->copy_mode);
        }
        if (d->speed > 0) {
            json_object_object_add(a, "speed", json_object_new_int64(d->speed));
        }
        /* so that reopening can be all or nothing: nothing pivots until
         * the proxy finalizes it */
        if (!d->plain_job) {
            jobj_add_bool(a, "auto-finalize", 0);
        }
        op_qmp(op, qmp_command("drive-mirror", a), mirror_started, i);
        n++;
    }
    if (!n) {
        next(op, true);
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
