/*
 * qmproxy-query-operations: every operation the proxy runs or ran, with
 * its disks, state and job progress, and each ready copy's lag, asked of
 * QEMU afresh while a job runs.
 */
#include <stdlib.h>

#include "chain.h"
#include "cmd.h"
#include "op.h"
#include "qmp.h"
#include "util.h"

static const struct qapi_member args[] = {
    { "name", QAPI_STR, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

struct query {
    struct cmd_call *call;
    char *name;
};

static void answer(void *opaque)
{
    struct query *q = opaque;

    ops_observe_lag();
    if (q->name && !op_find(q->name)) {
        cmd_error(q->call, QMP_GENERIC_ERROR, "No operation named '%s'",
                  q->name);
    } else {
        cmd_return(q->call, ops_to_json(q->name));
    }
    free(q->name);
    free(q);
}

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    const char *name = qapi_get_str(a, "name", NULL);
    struct query *q;

    if (name && !op_find(name)) {
        cmd_error(call, QMP_GENERIC_ERROR, "No operation named '%s'", name);
        return CMD_RETURN_NORMAL;
    }
    q = xcalloc(1, sizeof(*q));
    q->call = call;
    q->name = name ? xstrdup(name) : NULL;
    /* job progress moves: QEMU's answer, not the last event's */
    chain_refresh(call->env->chain, answer, q);
    return CMD_RETURN_WAIT;
}

const struct cmd_entry cmd_query_operations_entry = {
    .name = "qmproxy-query-operations",
    .args = args,
    .exec = exec,
};
