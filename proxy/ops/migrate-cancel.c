/*
 * qmproxy-migrate-cancel: stop a qmproxy-migrate before its switch-over.
 * The migration and the copies are cancelled, the source runs on as
 * before; the destination is left to whoever prepared it.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "migrate.h"
#include "op.h"
#include "qmp.h"
#include "util.h"

static const struct qapi_member args[] = {
    { "name", QAPI_STR, false, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    static const char *const migrations[] = { "migrate", NULL };
    const char *name = qapi_get_str(a, "name", NULL);
    struct op *op = NULL;
    char *refused = op_find_of_type(name, migrations, "a migration", &op);

    if (!op_for_verb(call, refused, op, OP_VERB_MIGRATE_CANCEL)) {
        return CMD_RETURN_NORMAL;
    }
    /* qmproxy-migrate's own caller is still waiting */
    op_take_over_call(op, call, "migration %s was cancelled by "
                      "qmproxy-migrate-cancel; the source runs on", name);
    migrate_cancel(op);
    return CMD_RETURN_WAIT;
}

const struct cmd_entry cmd_migrate_cancel_entry = {
    .name = "qmproxy-migrate-cancel",
    .args = args,
    .exec = exec,
    .settle_chain = true,
};
