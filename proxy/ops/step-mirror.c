/*
 * step-mirror: start a copy of every disk that gets one (auto-finalize off
 * so that reopening can be all or nothing), then wait until every copy is
 * ready.  The copy is a drive-mirror, or on QEMU 10 for a -blockdev disk
 * and an existing image a blockdev-add of the image followed by a
 * blockdev-mirror to that node (op_blockdev_way).
 */
#include "op.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op-internal.h"
#include "chain.h"
#include "cmd.h"
#include "fdset-names.h"
#include "jsonobj.h"
#include "spawn.h"
#include "qmp.h"
#include "util.h"

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
        d->mirror_used = true;
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

/* The name QEMU opens the copy by: its path, or /dev/fdset/N when the
 * proxy handed it over (owned). */
static char *qemu_name(const struct op_disk *d)
{
    return d->mirror_fdset >= 0
        ? xasprintf("/dev/fdset/%lld", (long long)d->mirror_fdset)
        : xstrdup(d->mirror_file);
}

/* QEMU 10's way: blockdev-add {format node over a file node, no backing
 * yet: step-reopen gives it the one its header names before the pivot},
 * then blockdev-mirror onto it with the same job arguments. */
static void start_blockdev_mirror(struct op *op, int i, json_object *a)
{
    struct op_disk *d = &op->disks[i];
    json_object *add = json_object_new_object(), *file;
    char *node = op_copy_node(d->job, 't'), *file_node = op_copy_node(d->job, 'f');
    char *name = qemu_name(d);

    /* no format given: the image's, as drive-mirror would have probed */
    jobj_add_str(add, "driver", d->mirror_format ? d->mirror_format
                                : d->format ? d->format
                                : op_image_format(d->mirror_file));
    jobj_add_str(add, "node-name", node);
    file = json_object_new_object();
    jobj_add_str(file, "driver", "file");
    jobj_add_str(file, "node-name", file_node);
    jobj_add_str(file, "filename", name);
    json_object_object_add(add, "file", file);
    json_object_object_add(add, "backing", NULL);
    jobj_add_str(a, "target", node);
    d->pending_args = a;
    op_qmp(op, qmp_command("blockdev-add", add), target_added, i);
    free(node);
    free(file_node);
    free(name);
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
    name = qemu_name(d);
    jobj_add_str(a, "target", name);
    /* json:{} options name their driver (an NBD export with TLS:
     * the nbd node itself, raw data); a format beside them would
     * be laid over them and lack its "file" */
    if (strncmp(d->mirror_file, "json:", 5)) {
        jobj_add_str(a, "format", d->mirror_format ? d->mirror_format
                                                   : d->format);
    }
    jobj_add_str(a, "mode", d->mode ? d->mode : "absolute-paths");
    op_qmp(op, qmp_command("drive-mirror", a), mirror_started, i);
    free(name);
}

/* add-fd answered: QEMU holds a descriptor of the copy's image in an fd
 * set of the proxy's; the next one, or start the copy onto /dev/fdset/N
 * (its arguments waited in d->pending_args). */
static void image_handed_over(struct op *op, int i, bool ok, json_object *ret,
                              const char *error)
{
    struct op_disk *d = &op->disks[i];
    json_object *a = d->pending_args;
    json_object *id;

    d->pending_args = NULL;
    if (!ok || !json_object_object_get_ex(ret, "fdset-id", &id)) {
        json_object_put(a);
        copy_refused(op, i, error ? error : "add-fd gave no fdset-id");
        step_maybe_over(op);
        return;
    }
    d->mirror_fdset = json_object_get_int64(id);
    fdset_names_set(d->mirror_fdset, d->mirror_file);
    start_copy(op, i, a);
}

/* Hand QEMU the image the proxy opened beneath the allowed folder
 * (op-images.c), in an fd set of the proxy's own; the opaque string says
 * whose it is in query-fdsets.  Only the read-write descriptor: a node
 * added with blockdev-add opens it read-write only, and a read-only
 * descriptor of another open file beside it would make QEMU's image
 * locks (per open file) conflict with each other. */
static void hand_over_image(struct op *op, int i, json_object *a)
{
    struct op_disk *d = &op->disks[i];
    json_object *args = json_object_new_object();
    int fd = d->mirror_fd;
    char *opaque = xasprintf("qmproxy %s %s copy %s", op->name, d->disk,
                             d->mirror_file);

    d->mirror_fd = -1;   /* the upstream's now */
    if (d->mirror_fdset < 0) {
        d->mirror_fdset = fdset_names_next_id(op_reg.tag);
    }
    json_object_object_add(args, "fdset-id",
                           json_object_new_int64(d->mirror_fdset));
    jobj_add_str(args, "opaque", opaque);
    d->pending_args = a;
    op_qmp_fd(op, qmp_command("add-fd", args), fd, image_handed_over, i);
    free(opaque);
}

struct creating {
    struct op *op;
    int disk;
    json_object *args;
};

static void image_created(void *opaque, int status, const char *output)
{
    struct creating *c = opaque;
    struct op *op = c->op;

    op->outstanding--;
    if (op_is_final(op->state)) {
        json_object_put(c->args);   /* ended meanwhile (QEMU went away) */
    } else if (status != 0) {
        char *why = xasprintf("qemu-img could not format the image qmproxy "
                              "created: %s", output);
        json_object_put(c->args);
        copy_refused(op, c->disk, why);
        free(why);
        step_maybe_over(op);
    } else {
        hand_over_image(op, c->disk, c->args);
    }
    free(c);
}

/*
 * A new image the proxy created (empty) beneath the allowed folder: QEMU
 * would format it through /dev/fdset/N, but writes into a new overlay's
 * header the name its nodes have, which for an image handed over is
 * /dev/fdset/N.  So qemu-img formats it, on the descriptor itself
 * (/dev/fd/3 in the child: the open file, not a path), with the backing
 * file named by its real path, as drive-mirror would have named it (the
 * layer below for a shallow copy, none for a full one).
 */
static void create_image(struct op *op, int i, json_object *a)
{
    struct op_disk *d = &op->disks[i];
    const char *format = d->mirror_format ? d->mirror_format
                       : d->format ? d->format : "qcow2";
    int64_t size = chain_top_size(op_chain(), d->disk);
    const char *below = d->sync && !strcmp(d->sync, "top")
        ? chain_layer_file(op_chain(), d->disk, 1) : NULL;
    struct creating *c;
    char sz[32];
    char *argv[16];
    int n = 0;

    if (size < 0) {
        json_object_put(a);
        copy_refused(op, i, "the disk's size is not known yet");
        return;
    }
    snprintf(sz, sizeof(sz), "%lld", (long long)size);
    argv[n++] = "qemu-img";
    argv[n++] = "create";
    argv[n++] = "-q";
    argv[n++] = "-f";
    argv[n++] = (char *)format;
    if (below && strcmp(format, "raw")) {
        argv[n++] = "-u";   /* QEMU has it open; no need to look */
        argv[n++] = "-b";
        argv[n++] = (char *)below;
        argv[n++] = "-F";
        argv[n++] = (char *)op_image_format(below);
    }
    argv[n++] = "/dev/fd/3";
    argv[n++] = sz;
    argv[n] = NULL;
    c = xcalloc(1, sizeof(*c));
    c->op = op;
    c->disk = i;
    c->args = a;
    op->outstanding++;  /* keeps the step while qemu-img runs */
    spawn_run_with_fd(op_reg.env->base, argv, d->mirror_fd, image_created, c);
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
        if (d->speed > 0) {
            json_object_object_add(a, "speed", json_object_new_int64(d->speed));
        }
        /* so that reopening can be all or nothing: nothing pivots until
         * the proxy finalizes it */
        if (!d->plain_job) {
            jobj_add_bool(a, "auto-finalize", 0);
        }
        if (d->mirror_fd >= 0 && d->mode && !strcmp(d->mode, "existing")) {
            hand_over_image(op, i, a);
        } else if (d->mirror_fd >= 0) {
            create_image(op, i, a);
        } else {
            start_copy(op, i, a);
        }
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
