/*
 * qmproxy-query-operations: every operation the proxy runs or ran, with
 * its disks, state and job progress.
 */
#include "cmd.h"
#include "op.h"
#include "qmp.h"

static const struct qapi_member args[] = {
    { "name", QAPI_STR, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    const char *name = qapi_get_str(a, "name", NULL);

    if (name && !op_find(name)) {
        cmd_error(call, QMP_GENERIC_ERROR, "No operation named '%s'", name);
        return CMD_RETURN_NORMAL;
    }
    return cmd_return(call, ops_to_json(name));
}

const struct cmd_entry cmd_query_operations_entry = {
    .name = "qmproxy-query-operations",
    .args = args,
    .exec = exec,
};
