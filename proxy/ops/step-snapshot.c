/*
 * step-snapshot: one transaction of blockdev-snapshot-sync for every disk
 * that gets a snapshot (atomic: refused means no disk was touched).
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>

#include "op-internal.h"
#include "chain.h"
#include "jsonobj.h"
#include "qmp.h"
#include "util.h"

static void snapshot_done(struct op *op, int disk, bool ok, json_object *ret,
                          const char *error)
{
    (void)disk;
    (void)ret;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->snapshot_file) {
            continue;
        }
        if (ok) {
            d->state = DISK_SNAPSHOTTED;
            str_setf(&d->note, "runs on %s over %s", d->snapshot_file,
                 d->old_top_file);
        } else {
            d->state = DISK_UNTOUCHED;
            str_setf(&d->note, "still runs on %s", d->old_top_file);
        }
    }
    if (!ok) {
        str_setf(&op->step_error, "the snapshot transaction was refused, so no "
             "disk was touched: %s", error);
    }
    op->next(op, ok);
}

void step_snapshot(struct op *op, void (*next)(struct op *, bool))
{
    json_object *actions = json_object_new_array();
    int n = 0;

    op->next = next;
    op->check = NULL;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        const char *device = chain_job_device(op_chain(), d->disk);
        json_object *data, *act;
        if (!d->snapshot_file) {
            continue;
        }
        str_set(&d->old_top_file, chain_top_file(op_chain(), d->disk));
        str_set(&d->old_top_node, chain_top_node(op_chain(), d->disk));
        str_setf(&d->new_top_node, "qmp%03x%ud%d", op_reg.tag, op->seq, i);
        data = json_object_new_object();
        /* a device name when the disk has one, else its top node */
        if (device && !(d->old_top_node && !strcmp(device, d->old_top_node))) {
            json_object_object_add(data, "device", json_object_new_string(device));
        } else {
            json_object_object_add(data, "node-name",
                                   json_object_new_string(d->old_top_node));
        }
        json_object_object_add(data, "snapshot-file",
                               json_object_new_string(d->snapshot_file));
        json_object_object_add(data, "snapshot-node-name",
                               json_object_new_string(d->new_top_node));
        json_object_object_add(data, "format",
                               json_object_new_string(d->format ? d->format
                                                                : "qcow2"));
        json_object_object_add(data, "mode",
                               json_object_new_string("absolute-paths"));
        act = json_object_new_object();
        json_object_object_add(act, "type",
                               json_object_new_string("blockdev-snapshot-sync"));
        json_object_object_add(act, "data", data);
        json_object_array_add(actions, act);
        n++;
    }
    if (!n) {
        json_object_put(actions);
        next(op, true);
        return;
    }
    json_object *args = json_object_new_object();
    json_object_object_add(args, "actions", actions);
    op_qmp(op, qmp_command("transaction", args), snapshot_done, -1);
}
