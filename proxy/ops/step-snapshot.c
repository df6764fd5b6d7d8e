/*
 * step-snapshot: one transaction for every disk that gets a snapshot
 * (atomic: refused means no disk was touched).  An overlay QEMU creates
 * from its path is a blockdev-snapshot-sync; under a path policy the proxy
 * has created it beneath its folder (op-images.c), formatted it over the
 * disk's image named by its real path, handed it over and added it as a
 * node without a backing, and the action is blockdev-snapshot onto that
 * node, as libvirt takes its snapshots.
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>

#include "op-internal.h"
#include "chain.h"
#include "jsonobj.h"
#include "qmp.h"
#include "util.h"

static void overlay_deleted(struct op *op, int i, bool ok, json_object *ret,
                            const char *error)
{
    (void)op; (void)i; (void)ok; (void)ret; (void)error;
}

/* The overlays added for a transaction that did not happen go again. */
static void delete_overlays(struct op *op)
{
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (d->snapshot_image.fdset >= 0 && !d->snapshot_image.used
            && d->new_top_node) {
            op_qmp(op, qmp_command("blockdev-del", op_job_args(
                                       "node-name", d->new_top_node)),
                   overlay_deleted, i);
        }
    }
}

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
            d->snapshot_image.used = d->snapshot_image.fdset >= 0;
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
        delete_overlays(op);
    }
    op->next(op, ok);
}

static void send_transaction(struct op *op)
{
    json_object *actions = json_object_new_array();
    json_object *args;
    int n = 0;

    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        const char *device = chain_job_device(op_chain(), d->disk);
        bool by_node = d->snapshot_image.fdset >= 0;
        json_object *data, *act;
        if (!d->snapshot_file) {
            continue;
        }
        data = json_object_new_object();
        /* a device name when the disk has one, else its top node */
        if (device && !(d->old_top_node && !strcmp(device, d->old_top_node))) {
            jobj_add_str(data, by_node ? "node" : "device", device);
        } else {
            jobj_add_str(data, by_node ? "node" : "node-name",
                         d->old_top_node);
        }
        if (by_node) {
            jobj_add_str(data, "overlay", d->new_top_node);
        } else {
            jobj_add_str(data, "snapshot-file", d->snapshot_file);
            jobj_add_str(data, "snapshot-node-name", d->new_top_node);
            jobj_add_str(data, "format", d->format ? d->format : "qcow2");
            jobj_add_str(data, "mode", "absolute-paths");
        }
        act = json_object_new_object();
        jobj_add_str(act, "type", by_node ? "blockdev-snapshot"
                                          : "blockdev-snapshot-sync");
        json_object_object_add(act, "data", data);
        json_object_array_add(actions, act);
        n++;
    }
    if (!n) {
        json_object_put(actions);
        op->next(op, true);
        return;
    }
    args = json_object_new_object();
    json_object_object_add(args, "actions", actions);
    op_qmp(op, qmp_command("transaction", args), snapshot_done, -1);
}

/* Every overlay handed over and added (or one could not be): the
 * transaction, or the step fails with nothing snapshotted. */
static void overlays_ready(struct op *op)
{
    if (op->outstanding) {
        return;
    }
    if (op->step_failed) {
        op->step_failed = false;
        snapshot_done(op, -1, false, NULL, op->step_error
                      ? op->step_error : "an overlay could not be made");
        return;
    }
    send_transaction(op);
}

static void overlay_failed(struct op *op, int i, const char *error)
{
    if (!op->step_error) {
        str_setf(&op->step_error, "the overlay %s of %s: %s",
                 op->disks[i].snapshot_file, op->disks[i].disk, error);
    }
    op->step_failed = true;
}

static void overlay_added(struct op *op, int i, bool ok, json_object *ret,
                          const char *error)
{
    (void)ret;
    if (!ok) {
        overlay_failed(op, i, error);
    }
    overlays_ready(op);
}

/* QEMU holds the overlay's image: add it as a node of its own, without a
 * backing (blockdev-snapshot gives it the disk's image). */
static void overlay_handed_over(struct op *op, int i, const char *error)
{
    struct op_disk *d = &op->disks[i];
    char *file_node;

    if (error) {
        overlay_failed(op, i, error);
        overlays_ready(op);
        return;
    }
    file_node = xasprintf("%sf", d->new_top_node);
    op_qmp(op, qmp_command("blockdev-add", op_image_node_args(
               &d->snapshot_image, d->snapshot_file,
               d->format ? d->format : "qcow2", d->new_top_node, file_node)),
           overlay_added, i);
    free(file_node);
}

void step_snapshot(struct op *op, void (*next)(struct op *, bool))
{
    int handing = 0;

    op->next = next;
    op->check = NULL;
    op->step_failed = false;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->snapshot_file) {
            continue;
        }
        str_set(&d->old_top_file, chain_top_file(op_chain(), d->disk));
        str_set(&d->old_top_node, chain_top_node(op_chain(), d->disk));
        str_setf(&d->new_top_node, "qmp%03x%ud%d", op_reg.tag, op->seq, i);
        if (d->snapshot_image.fd >= 0) {
            /* the header names the disk's image by its path, as
             * blockdev-snapshot-sync would have */
            struct op_image_header hdr = {
                .format = d->format ? d->format : "qcow2",
                .size = chain_top_size(op_chain(), d->disk),
                .backing = d->old_top_file,
                .backing_format = chain_top_format(op_chain(), d->disk),
            };
            if (hdr.size < 0 || !hdr.backing || !hdr.backing_format) {
                overlay_failed(op, i, "the disk's image, format and size "
                               "are not known yet");
                continue;
            }
            op_image_hand_over(op, i, &d->snapshot_image, d->snapshot_file,
                               "snapshot", &hdr, overlay_handed_over);
            handing++;
        }
    }
    if (op->step_failed && !handing) {
        overlays_ready(op);
    } else if (!handing) {
        send_transaction(op);
    }
    /* else: overlays_ready() once the last overlay is added */
}
