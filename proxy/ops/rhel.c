/*
 * The RHEL 6 names, for clients of that era pointed at qmproxy unchanged.
 *
 * __com.redhat_drive-mirror {device, target, format?, speed?, mode?, full?}
 *   is drive-mirror with sync=full when full is true, else sync=top.
 *
 * A transaction whose actions mix blockdev-snapshot-sync (and the other
 * standard actions) with __com.redhat_drive-mirror is how oVirt took a
 * mirrored snapshot in one call: it becomes the snapshot transaction, then
 * the copies, as one operation, answered once the copies have started (as
 * RHEL answered), rolled back if they cannot start.  The copies keep
 * QEMU's default job ids (the device name) so the client can drive them by
 * device, as it did.
 */
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "cmd.h"
#include "op.h"
#include "qmp.h"
#include "upstream.h"
#include "util.h"

#define RHEL_MIRROR "__com.redhat_drive-mirror"

static const char *const modes[] = { "existing", "absolute-paths", NULL };

static const struct qapi_member mirror_args[] = {
    { "device", QAPI_STR, false, NULL, NULL, NULL },
    { "target", QAPI_STR, false, NULL, NULL, NULL },
    { "format", QAPI_STR, true, NULL, NULL, NULL },
    { "speed", QAPI_INT, true, NULL, NULL, NULL },
    { "mode", QAPI_ENUM, true, modes, NULL, NULL },
    { "full", QAPI_BOOL, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

/* drive-mirror's arguments for a RHEL mirror request. */
static json_object *drive_mirror_args(json_object *a)
{
    json_object *m = json_object_new_object();
    static const char *const copied[] = { "device", "target", "format",
                                          "speed", "mode", NULL };

    for (const char *const *k = copied; *k; k++) {
        json_object *v;
        if (json_object_object_get_ex(a, *k, &v)) {
            json_object_object_add(m, *k, json_object_get(v));
        }
    }
    json_object_object_add(m, "sync", json_object_new_string(
                               qapi_get_bool(a, "full", false) ? "full"
                                                               : "top"));
    return m;
}

/* ---- __com.redhat_drive-mirror -------------------------------------- */

struct forwarded {
    struct cmd_call *call;
    json_object *args;
};

static void mirror_reply(void *opaque, const struct upstream_reply *r)
{
    struct forwarded *f = opaque;
    struct cmd_call *call = f->call;

    if (r->lost) {
        chain_unanswered(call->env->chain);
        cmd_error(call, QMP_GENERIC_ERROR, "QEMU closed its monitor before "
                  "answering");
    } else if (r->kind == QMP_RETURN) {
        chain_observe(call->env->chain, "drive-mirror", f->args,
                      call->client, true);
        cmd_return(call, NULL);
    } else {
        chain_observe(call->env->chain, "drive-mirror", f->args,
                      call->client, false);
        /* QEMU's own words (and class) for what is wrong */
        cmd_error(call, upstream_reply_error_class(r), "%s",
                  upstream_reply_error_desc(r));
    }
    json_object_put(f->args);
    free(f);
}

static enum cmd_retval exec_mirror(struct cmd_call *call, json_object *a)
{
    struct forwarded *f = xcalloc(1, sizeof(*f));
    json_object *cmd;

    f->call = call;
    f->args = drive_mirror_args(a);
    cmd = qmp_command("drive-mirror", json_object_get(f->args));
    chain_command_sent(call->env->chain);  /* answered in mirror_reply */
    upstream_send_internal(call->env->up, cmd, mirror_reply, f);
    json_object_put(cmd);
    return CMD_RETURN_WAIT;
}

static const struct location mirror_locations[] = {
    { "target", LOCATION_FILE },
    { NULL, LOCATION_FILE },
};

const struct cmd_entry cmd_rhel_drive_mirror_entry = {
    .name = RHEL_MIRROR,
    .args = mirror_args,
    .exec = exec_mirror,
    .locations = mirror_locations,
};

/* ---- the mixed transaction ------------------------------------------ */

static bool rhel_transaction_wanted(json_object *args)
{
    json_object *actions;

    if (!args || !json_object_object_get_ex(args, "actions", &actions)
        || !json_object_is_type(actions, json_type_array)) {
        return false;
    }
    for (size_t i = 0; i < json_object_array_length(actions); i++) {
        json_object *t;
        if (json_object_object_get_ex(json_object_array_get_idx(actions, i),
                                      "type", &t)
            && json_object_is_type(t, json_type_string)
            && !strcmp(json_object_get_string(t), RHEL_MIRROR)) {
            return true;
        }
    }
    return false;
}

static const struct qapi_member action_members[] = {
    { "type", QAPI_STR, false, NULL, NULL, NULL },
    { "data", QAPI_ANY, false, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};
static const struct qapi_member action_element = {
    "actions", QAPI_OBJECT, false, NULL, action_members, NULL
};
static const struct qapi_member transaction_args[] = {
    { "actions", QAPI_LIST, false, NULL, NULL, &action_element },
    { "properties", QAPI_ANY, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static void transaction_ready(struct op *op, bool ok)
{
    op_ready_or_rollback(op, ok);
}

static void transaction_mirrors(struct op *op, bool ok)
{
    if (!ok) {
        op_ready_or_rollback(op, false);
        return;
    }
    /* RHEL answered here, with the copies running */
    struct cmd_call *call = op->call;
    op->call = NULL;
    cmd_return(call, NULL);
    op_set_state(op, OP_MIRRORING);
    step_wait_ready(op, transaction_ready);
}

static void transaction_done(struct op *op, int disk, bool ok,
                             json_object *ret, const char *error)
{
    (void)disk;
    (void)ret;
    if (!ok) {
        /* atomic in QEMU: nothing happened; QEMU's words */
        struct cmd_call *call = op->call;
        op->call = NULL;
        free(op->step_error);
        op->step_error = xstrdup(error);
        op_fail(op, "the snapshot transaction was refused, no disk was "
                "touched: %s", error);
        if (call) {
            cmd_error(call, QMP_GENERIC_ERROR, "%s", error);
        }
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (d->snapshot_file) {
            d->state = DISK_SNAPSHOTTED;
        }
    }
    step_start_mirrors(op, transaction_mirrors);
}

static enum cmd_retval exec_transaction(struct cmd_call *call, json_object *a)
{
    struct chain *c = call->env->chain;
    json_object *actions, *standard = json_object_new_array();
    struct op *op;
    char *err = NULL;
    size_t n;

    json_object_object_get_ex(a, "actions", &actions);
    n = json_object_array_length(actions);
    op = op_new("transaction", NULL, call->client, NULL);
    for (size_t i = 0; i < n && !err; i++) {
        json_object *act = json_object_array_get_idx(actions, i), *data;
        const char *type = qapi_get_str(act, "type", "");
        json_object_object_get_ex(act, "data", &data);
        if (strcmp(type, RHEL_MIRROR)) {
            json_object_array_add(standard, json_object_get(act));
            if (!strcmp(type, "blockdev-snapshot-sync")) {
                const char *dev = qapi_get_str(data, "device", NULL);
                const char *disk = chain_disk_name(c, dev ? dev
                    : qapi_get_str(data, "node-name", ""));
                if (disk) {
                    struct op_disk *d = op_add_disk(op, disk);
                    d->snapshot_file = xstrdup(qapi_get_str(data,
                                                            "snapshot-file",
                                                            ""));
                    d->old_top_file = xstrdup(chain_top_file(c, disk));
                    if (chain_top_node(c, disk)) {
                        d->old_top_node = xstrdup(chain_top_node(c, disk));
                    }
                }
            }
            continue;
        }
        char *aerr = qapi_check(mirror_args, data);
        if (aerr) {
            err = xasprintf("actions[%zu]: %s", i, aerr);
            free(aerr);
            break;
        }
        const char *disk = chain_disk_name(c, qapi_get_str(data, "device", ""));
        if (!disk) {
            err = xasprintf("actions[%zu]: No disk named '%s'", i,
                            qapi_get_str(data, "device", ""));
            break;
        }
        struct op_disk *d = NULL;
        for (int k = 0; k < op->ndisks; k++) {
            if (!strcmp(op->disks[k].disk, disk)) {
                d = &op->disks[k];
            }
        }
        if (!d) {
            d = op_add_disk(op, disk);
        }
        d->mirror_file = xstrdup(qapi_get_str(data, "target", ""));
        if (qapi_get_str(data, "format", NULL)) {
            d->format = xstrdup(qapi_get_str(data, "format", NULL));
        }
        d->mode = xstrdup(qapi_get_str(data, "mode", "absolute-paths"));
        d->sync = xstrdup(qapi_get_bool(data, "full", false) ? "full" : "top");
        d->speed = qapi_get_int(data, "speed", 0);
        d->plain_job = true;
    }
    if (err) {
        json_object_put(standard);
        op_fail(op, "%s", err);
        cmd_error(call, QMP_GENERIC_ERROR, "%s", err);
        free(err);
        return CMD_RETURN_NORMAL;
    }
    op->call = call;
    op_set_state(op, OP_RUNNING);
    if (json_object_array_length(standard) == 0) {
        json_object_put(standard);
        transaction_done(op, -1, true, NULL, NULL);
        return CMD_RETURN_WAIT;
    }
    json_object *targs = json_object_new_object();
    json_object *props;
    json_object_object_add(targs, "actions", standard);
    if (json_object_object_get_ex(a, "properties", &props)) {
        json_object_object_add(targs, "properties", json_object_get(props));
    }
    op_qmp(op, qmp_command("transaction", targs), transaction_done, -1);
    return CMD_RETURN_WAIT;
}

const struct cmd_entry cmd_rhel_transaction_entry = {
    .name = "transaction",
    .claims = rhel_transaction_wanted,
    .args = transaction_args,
    .exec = exec_transaction,
    .settle_chain = true,
};
