/*
 * qmproxy-snapshot-abort: undo a snapshot-with-mirror in O(changes in the
 * new overlays): cancel its copies, fold each new overlay back into the
 * image below it by active commit (only the clusters written since the
 * snapshot are copied), pivot.  The chains are then what they were before.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "op.h"
#include "qmp.h"
#include "util.h"

static const struct qapi_member args[] = {
    { "name", QAPI_STR, false, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static void aborted(struct op *op, bool ok)
{
    if (ok) {
        op_succeed(op, OP_ABORTED);
    } else {
        op_fail(op, "undoing the snapshot did not fully succeed");
    }
}

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    const char *name = qapi_get_str(a, "name", NULL);
    struct op *op = NULL;
    char *refused = op_find_snapshot(name, &op);

    if (!op_for_verb(call, refused, op, OP_VERB_ABORT)) {
        return CMD_RETURN_NORMAL;
    }
    /* the snapshot's own caller may still be waiting for READY */
    op_take_over_call(op, call, "operation %s was aborted by "
                      "qmproxy-snapshot-abort before its copies were ready",
                      name);
    op->busy_with = "abort";
    free(op->step_error);
    op->step_error = xstrdup("aborted on request");
    step_rollback(op, aborted);
    return CMD_RETURN_WAIT;
}

const struct cmd_entry cmd_snapshot_abort_entry = {
    .name = "qmproxy-snapshot-abort",
    .args = args,
    .exec = exec,
    .settle_chain = true,
};
