/*
 * qmproxy-snapshot-reopen: reopen every disk of a snapshot-with-mirror
 * operation, all or nothing: onto the copies (target "mirror") or staying
 * on the sources and dropping the copies (target "source").  Every copy is
 * brought to PENDING (its data complete, its pivot not yet done) before
 * any is finalized; if one cannot get there, none pivots.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "op.h"
#include "qmp.h"
#include "util.h"

static const char *const targets[] = { "mirror", "source", NULL };

static const struct qapi_member args[] = {
    { "name", QAPI_STR, false, NULL, NULL, NULL },
    { "target", QAPI_ENUM, false, targets, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static void reopened(struct op *op, bool ok)
{
    bool untouched = true;

    if (ok) {
        op_succeed(op, OP_PIVOTED);
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        if (op->disks[i].state != DISK_READY) {
            untouched = false;
        }
    }
    if (untouched) {
        /* refused before anything was touched: still ready, try again */
        struct cmd_call *call = op->call;
        char *disks = op_disks_summary(op);
        op->call = NULL;
        op->busy_with = NULL;
        op_set_state(op, OP_READY);
        op_watch(op);
        cmd_error(call, QMP_GENERIC_ERROR, "%s; nothing was switched and the "
                  "copies still run (disks now: %s)", op->step_error, disks);
        free(disks);
        return;
    }
    op_fail(op, "%s", op->step_error ? op->step_error : "it failed");
}

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    const char *name = qapi_get_str(a, "name", NULL);
    struct op *op = NULL;
    char *refused = op_find_snapshot(name, &op);
    bool to_mirror = !strcmp(qapi_get_str(a, "target", "mirror"), "mirror");

    if (!op_for_verb(call, refused, op, OP_VERB_REOPEN)) {
        return CMD_RETURN_NORMAL;
    }
    op->busy_with = "reopen";
    op->call = call;
    op_set_state(op, OP_PIVOTING);
    step_reopen(op, to_mirror, reopened);
    return CMD_RETURN_WAIT;
}

const struct cmd_entry cmd_snapshot_reopen_entry = {
    .name = "qmproxy-snapshot-reopen",
    .args = args,
    .exec = exec,
    .settle_chain = true,
};
