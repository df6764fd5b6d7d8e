/*
 * op-qmp: an operation's own QMP commands and the block-job events that
 * answer them.  Every step is written the same way: send the commands,
 * count them in op->outstanding, record what their replies and the job
 * events say on the disks, and let the step's check() decide, after each
 * reply or event, whether the step is over.  Events can come before the
 * reply to the command that caused them (QEMU emits JOB_STATUS_CHANGE and
 * even BLOCK_JOB_READY before drive-mirror returns), so job ids are chosen
 * by the proxy and known before the command is sent.
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "op-internal.h"
#include "chain.h"
#include "cmd.h"
#include "jsonobj.h"
#include "qmp.h"
#include "upstream.h"
#include "util.h"

/* ---- commands ------------------------------------------------------ */

struct pending {
    struct op *op;
    int disk;
    char *command;
    json_object *args;
    void (*done)(struct op *, int, bool, json_object *, const char *);
};

static void on_reply(void *opaque, const struct upstream_reply *r)
{
    struct pending *p = opaque;
    struct op *op = p->op;
    bool ok = !r->lost && r->kind == QMP_RETURN;

    if (!r->lost) {
        /* the chain model follows the proxy's own commands too */
        chain_observe(op_chain(), p->command, p->args, 0, ok);
    } else {
        chain_unanswered(op_chain());
    }
    op->outstanding--;
    /* an operation that already ended (QEMU went away) takes no more */
    if (!op_is_final(op->state)) {
        p->done(op, p->disk, ok, ok ? upstream_reply_return(r) : NULL,
                ok ? NULL : upstream_reply_error_desc(r));
    }
    free(p->command);
    json_object_put(p->args);
    free(p);
}

void op_qmp(struct op *op, json_object *cmd,
            void (*done)(struct op *op, int disk, bool ok, json_object *ret,
                         const char *error),
            int disk)
{
    op_qmp_fd(op, cmd, -1, done, disk);
}

void op_qmp_fd(struct op *op, json_object *cmd, int fd,
               void (*done)(struct op *op, int disk, bool ok,
                            json_object *ret, const char *error),
               int disk)
{
    struct pending *p = xcalloc(1, sizeof(*p));
    json_object *v;

    p->op = op;
    p->disk = disk;
    p->done = done;
    json_object_object_get_ex(cmd, "execute", &v);
    p->command = xstrdup(json_object_get_string(v));
    if (json_object_object_get_ex(cmd, "arguments", &v)) {
        p->args = json_object_get(v);
    }
    op->outstanding++;
    /* out until answered: an event about the job it starts, coming before
     * its reply, waits for the reply instead of asking QEMU */
    chain_command_sent(op_chain());
    upstream_send_internal_fds(op_reg.env->up, cmd, &fd, fd >= 0 ? 1 : 0,
                               on_reply, p);
    json_object_put(cmd);
}

bool op_blockdev_way(const struct op_disk *d)
{
    const char *mode = d->mode, *target = d->mirror_file;

    if (d->copy_image.fdset >= 0) {
        return true;   /* handed over by descriptor */
    }
    /* a RHEL-era client names its job by device and drives it itself;
     * blkdebug: and other filename prefixes are drive-mirror's syntax */
    return !d->plain_job && mode && !strcmp(mode, "existing")
        && target && target[0] == '/'
        && chain_disk_is_blockdev(op_chain(), d->disk)
        && upstream_qemu_version(op_reg.env->up) >= OP_BLOCKDEV_WAY_SINCE;
}

char *op_copy_node(const char *job, char which)
{
    /* job ids are "qmp<tag><seq>m<i>": a letter first, well under the
     * 31 characters QEMU allows a node-name */
    return xasprintf("%s%c", job, which);
}

char *op_copy_target(const struct op_disk *d)
{
    const char *node;
    char *ours;

    if (!d->job) {
        return NULL;
    }
    ours = op_copy_node(d->job, 't');
    node = chain_mirror_target_node(op_chain(), d->disk);
    /* the job QEMU runs says so; or this operation started it that way
     * (the job may already be gone) */
    if ((node && !strcmp(node, ours))
        || op_blockdev_way(d)) {
        return ours;
    }
    free(ours);
    return NULL;
}

json_object *op_job_args(const char *key, const char *id)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, key, json_object_new_string(id));
    return a;
}

/* ---- events -------------------------------------------------------- */

void op_reset_job_facts(struct op_disk *d)
{
    d->ready = d->pending = d->done = d->failed = false;
    str_set(&d->job_error, NULL);
}

static void disk_event(struct op *op, struct op_disk *d, const char *name,
                       json_object *data)
{
    if (!strcmp(name, "JOB_STATUS_CHANGE")) {
        const char *st = jobj_str(data, "status");
        str_set(&d->job_status, st);
        if (st && (!strcmp(st, "running") || !strcmp(st, "ready"))) {
            d->stopped_on_error = false;   /* resumed */
        }
        if (st && !strcmp(st, "ready")) {
            /* a ready job resumed is ready again, with no new
             * BLOCK_JOB_READY (a restarted proxy may have missed it) */
            d->ready = true;
        }
        if (st && !strcmp(st, "pending")) {
            d->pending = true;
        } else if (st && (!strcmp(st, "concluded") || !strcmp(st, "null"))) {
            d->done = true;
        }
    } else if (!strcmp(name, "BLOCK_JOB_READY")) {
        d->ready = true;
        op_disk_in_sync(d);
    } else if (!strcmp(name, "BLOCK_JOB_PENDING")) {
        d->pending = true;
    } else if (!strcmp(name, "BLOCK_JOB_ERROR")) {
        const char *action = jobj_str(data, "action");
        if (action && !strcmp(action, "stop")) {
            d->stopped_on_error = true;   /* on-target-error=stop: paused */
        }
        str_setf(&d->job_error, "%s error on the %s, action %s",
             jobj_str(data, "operation") ? jobj_str(data, "operation") : "an I/O",
             "job's image", jobj_str(data, "action") ? jobj_str(data, "action") : "?");
    } else if (!strcmp(name, "BLOCK_JOB_COMPLETED")) {
        d->done = true;
        if (jobj_str(data, "error")) {
            d->failed = true;
            str_set(&d->job_error, jobj_str(data, "error"));
        }
    } else if (!strcmp(name, "BLOCK_JOB_CANCELLED")) {
        d->done = true;
        d->failed = true;
        if (!d->job_error) {
            str_set(&d->job_error, "the job was cancelled");
        }
    }
    if (json_object_object_get_ex(data, "offset", NULL)) {
        d->offset = jobj_int(data, "offset", 0);
        d->len = jobj_int(data, "len", 0);
    }
    (void)op;
}

bool ops_watch_event(const char *name)
{
    return !strcmp(name, "MIGRATION");
}

void ops_observe_event(const char *name, json_object *data)
{
    const char *id = jobj_str(data, "device") ? jobj_str(data, "device")
                                          : jobj_str(data, "id");

    for (int i = 0; !id && i < op_reg.nops; i++) {
        struct op *op = op_reg.ops[i];
        if (op->vm_event && !op_is_final(op->state)) {
            op->vm_event(op, name, data);
        }
    }
    if (!id) {
        return;
    }
    for (int i = 0; i < op_reg.nops; i++) {
        struct op *op = op_reg.ops[i];
        bool touched = false;
        for (int k = 0; k < op->ndisks; k++) {
            struct op_disk *d = &op->disks[k];
            if ((d->job && !strcmp(d->job, id))
                || (d->undo_job && !strcmp(d->undo_job, id))) {
                disk_event(op, d, name, data);
                touched = true;
            }
        }
        if (touched && op->job_watcher) {
            op->job_watcher(op, op->job_watcher_opaque);
        }
        if (touched && op->check) {
            op->check(op);
        }
    }
}
