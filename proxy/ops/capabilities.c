/*
 * qmproxy-capabilities: a client asks to see what the proxy adds to QEMU's
 * conversation.  By default a client sees exactly QEMU's greeting,
 * replies, events and command list; after
 *
 *   {"execute": "qmproxy-capabilities", "arguments": {"enable": ["events"]}}
 *
 * it also gets the proxy's events (QMPROXY_CHAIN_CHANGED,
 * QMPROXY_OPERATION, QMPROXY_REPLICA_LAG), and with "commands" the proxy's commands in
 * query-commands.  Without "enable", both.  Against a plain QEMU the
 * command is simply not found, so a client can try it either way.
 */
#include <string.h>

#include "cmd.h"
#include "qmp.h"
#include "session.h"

static const char *const extras[] = { "events", "commands", NULL };
static const struct qapi_member extra = {
    "enable", QAPI_ENUM, false, extras, NULL, NULL
};
static const struct qapi_member args[] = {
    { "enable", QAPI_LIST, true, NULL, NULL, &extra },
    { NULL, 0, false, NULL, NULL, NULL },
};

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    json_object *enable, *ret = json_object_new_object();
    json_object *list = json_object_new_array();
    unsigned want = 0, now;

    if (a && json_object_object_get_ex(a, "enable", &enable)) {
        for (size_t i = 0; i < json_object_array_length(enable); i++) {
            const char *e = json_object_get_string(
                json_object_array_get_idx(enable, i));
            want |= !strcmp(e, "events") ? SESSION_EXTRA_EVENTS
                                         : SESSION_EXTRA_COMMANDS;
        }
    } else {
        want = SESSION_EXTRAS_ALL;
    }
    if (!call->slot) {
        json_object_put(ret);
        json_object_put(list);
        cmd_error(call, QMP_GENERIC_ERROR, "the client has gone");
        return CMD_RETURN_NORMAL;
    }
    session_enable_extras(call->slot->session, want);
    now = session_extras(call->slot->session);
    if (now & SESSION_EXTRA_EVENTS) {
        json_object_array_add(list, json_object_new_string("events"));
    }
    if (now & SESSION_EXTRA_COMMANDS) {
        json_object_array_add(list, json_object_new_string("commands"));
    }
    json_object_object_add(ret, "enabled", list);
    return cmd_return(call, ret);
}

const struct cmd_entry cmd_capabilities_entry = {
    .name = "qmproxy-capabilities",
    .args = args,
    .exec = exec,
};
