/*
 * qmproxy-reopen: the drive-reopen the 2012 RFC wanted, on QEMU 7.2.
 * Onto the copy (no file, or the copy's file): block-job-complete, and the
 * answer comes after BLOCK_JOB_COMPLETED without error (the pivot).  Onto
 * the current image: block-job-cancel, the copy is dropped, nothing moves.
 * Anything else is refused with the two files it could have been.
 *
 * __com.redhat_drive-reopen {device, new-image-file, format?, witness?} is
 * the same, under RHEL 6's name; witness names a descriptor the client
 * passed with getfd, and one byte is written to it on success, as RHEL did.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "cmd.h"
#include "fdstore.h"
#include "log.h"
#include "op.h"
#include "qmp.h"
#include "util.h"

static const struct qapi_member args[] = {
    { "disk", QAPI_STR, false, NULL, NULL, NULL },
    { "file", QAPI_STR, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static const struct qapi_member rhel_args[] = {
    { "device", QAPI_STR, false, NULL, NULL, NULL },
    { "new-image-file", QAPI_STR, false, NULL, NULL, NULL },
    { "format", QAPI_STR, true, NULL, NULL, NULL },
    { "witness", QAPI_STR, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static void reopened(struct op *op, bool ok)
{
    struct op *parent = op->parent;

    if (parent && op->disks[0].state != DISK_READY) {
        /* the disk of the snapshot operation moved too */
        for (int k = 0; k < parent->ndisks; k++) {
            struct op_disk *pd = &parent->disks[k];
            if (pd->job && op->disks[0].job && !strcmp(pd->job,
                                                       op->disks[0].job)) {
                free(pd->note);
                pd->state = op->disks[0].state;
                pd->note = op->disks[0].note ? xstrdup(op->disks[0].note)
                                             : NULL;
                pd->own_job = false;
            }
        }
        bool all = true;
        for (int k = 0; k < parent->ndisks; k++) {
            enum op_disk_state st = parent->disks[k].state;
            if (st != DISK_PIVOTED && st != DISK_ON_SOURCE) {
                all = false;
            }
        }
        if (all) {
            op_set_state(parent, OP_PIVOTED);
        } else {
            op_set_state(parent, parent->state);
        }
    }
    if (!ok) {
        op_fail(op, "%s", op->step_error ? op->step_error : "it failed");
        return;
    }
    if (op->witness_fd >= 0) {
        if (write(op->witness_fd, "", 1) != 1) {
            log_warn("reopen %s succeeded, but its witness could not be "
                     "written: %s", op->name, strerror(errno));
        }
    }
    op_succeed(op, OP_PIVOTED);
}

static void start(struct cmd_call *call, const char *name, const char *file,
                  int witness_fd)
{
    struct chain *c = call->env->chain;
    const char *disk = chain_disk_name(c, name);
    const char *job, *mirror, *top;
    struct op *op, *parent;
    struct op_disk *d;
    bool to_mirror;
    int index = -1;

    if (!disk) {
        cmd_error(call, QMP_GENERIC_ERROR, "No disk named '%s'", name);
        goto fail;
    }
    job = chain_job_id(c, disk);
    mirror = chain_mirror_file(c, disk);
    top = chain_top_file(c, disk);
    if (!job || !mirror) {
        cmd_error(call, QMP_GENERIC_ERROR, "disk %s has no copy to reopen "
                  "onto: no mirror job runs on it (it runs on %s)", disk,
                  top ? top : "nothing");
        goto fail;
    }
    if (!file || !strcmp(file, mirror)) {
        to_mirror = true;
    } else if (top && !strcmp(file, top)) {
        to_mirror = false;
    } else {
        cmd_error(call, QMP_GENERIC_ERROR, "%s is neither the copy of disk %s "
                  "(%s) nor its current image (%s): a reopen can only switch "
                  "to the copy, or stay and drop the copy", file, disk,
                  mirror, top ? top : "?");
        goto fail;
    }
    parent = op_owning_job(job, &index);
    if (parent && parent->state == OP_PIVOTING) {
        cmd_error(call, QMP_GENERIC_ERROR, "operation %s is already "
                  "reopening disk %s", parent->name, disk);
        goto fail;
    }
    op = op_new("reopen", NULL, call->client, call);
    op->parent = parent;
    op->witness_fd = witness_fd;
    d = op_add_disk(op, disk);
    d->job = xstrdup(job);
    d->mirror_file = xstrdup(mirror);
    d->manual_finalize = chain_job_manual_finalize(c, disk);
    d->state = DISK_READY;
    op_set_state(op, OP_PIVOTING);
    step_reopen(op, to_mirror, reopened);
    return;
fail:
    if (witness_fd >= 0) {
        close(witness_fd);
    }
}

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    start(call, qapi_get_str(a, "disk", NULL), qapi_get_str(a, "file", NULL),
          -1);
    return CMD_RETURN_WAIT;
}

static enum cmd_retval exec_rhel(struct cmd_call *call, json_object *a)
{
    const char *witness = qapi_get_str(a, "witness", NULL);
    int fd = -1;

    if (witness) {
        int kept = fdstore_get(witness);
        if (kept < 0) {
            cmd_error(call, QMP_GENERIC_ERROR, "witness '%s' names no file "
                      "descriptor passed with getfd", witness);
            return CMD_RETURN_NORMAL;
        }
        fd = dup(kept);
    }
    start(call, qapi_get_str(a, "device", NULL),
          qapi_get_str(a, "new-image-file", NULL), fd);
    return CMD_RETURN_WAIT;
}

static const struct location locations[] = {
    { "file", LOCATION_FILE },
    { NULL, LOCATION_FILE },
};

const struct cmd_entry cmd_reopen_entry = {
    .name = "qmproxy-reopen",
    .args = args,
    .exec = exec,
    .settle_chain = true,
    .locations = locations,
};

static const struct location rhel_locations[] = {
    { "new-image-file", LOCATION_FILE },
    { NULL, LOCATION_FILE },
};

const struct cmd_entry cmd_rhel_drive_reopen_entry = {
    .name = "__com.redhat_drive-reopen",
    .args = rhel_args,
    .exec = exec_rhel,
    .settle_chain = true,
    .locations = rhel_locations,
};
