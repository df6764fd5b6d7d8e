/*
 * cmd-call: one invocation of a proxy command, from the router handing it
 * its arguments to its answer, at once or later.  The commands call down
 * into it; the table that names them is cmd.c.
 */
#include "cmd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "qmp.h"
#include "session.h"
#include "util.h"

struct cmd_call *cmd_call_new(const struct cmd_env *env,
                              const struct cmd_entry *e,
                              struct slot *slot, unsigned client,
                              const char *listener, bool has_id,
                              json_object *id)
{
    struct cmd_call *call = xcalloc(1, sizeof(*call));

    call->env = env;
    call->entry = e;
    call->slot = slot;
    call->client = client;
    call->listener = xstrdup(listener ? listener : "default");
    call->has_id = has_id;
    call->id = json_object_get(id);
    call->holds = 1;  /* released when it answers */
    return call;
}

void cmd_call_slot_gone(void *opaque, struct slot *slot)
{
    struct cmd_call *call = opaque;
    (void)slot;
    call->slot = NULL;
}

static void release(struct cmd_call *call)
{
    if (--call->holds > 0) {
        return;
    }
    json_object_put(call->id);
    json_object_put(call->args);
    free(call->listener);
    free(call);
}

void cmd_call_abandon(struct cmd_call *call)
{
    if (!call->slot && !call->answered) {
        release(call);
    }
}

bool cmd_call_run(struct cmd_call *call, json_object *args)
{
    enum cmd_retval rv;
    bool answered;

    call->holds++;
    rv = call->entry->exec(call, args);
    answered = call->answered;
    if (rv == CMD_RETURN_NORMAL && !answered) {
        log_error("bug: %s returned without answering", call->entry->name);
    }
    release(call);
    return answered;
}

static enum cmd_retval finish(struct cmd_call *call, char *reply, size_t len,
                              const char *outcome)
{
    struct slot *slot = call->slot;

    call->answered = true;
    if (call->env->command_done) {
        call->env->command_done(call->env->opaque, call->entry->name,
                                outcome, -1);
    }
    if (slot) {
        /* answering releases the slot: no need to hear of it leaving */
        session_reply(slot_session(slot), slot, reply, len, TLOG_FROM_PROXY,
                      -1);
    }
    free(reply);
    release(call);
    return CMD_RETURN_NORMAL;
}

enum cmd_retval cmd_return(struct cmd_call *call, json_object *ret)
{
    struct qmp_request req = { .has_id = call->has_id, .id = call->id };
    size_t len;
    char *reply = qmp_return_reply(ret, &req, &len);

    json_object_put(ret);
    return finish(call, reply, len, "return");
}

enum cmd_retval cmd_error(struct cmd_call *call, const char *cls,
                          const char *fmt, ...)
{
    struct qmp_request req = { .has_id = call->has_id, .id = call->id };
    va_list ap;
    char *desc, *reply;
    size_t len;

    va_start(ap, fmt);
    desc = xvasprintf(fmt, ap);
    va_end(ap);
    reply = qmp_error_reply(cls, desc, &req, &len);
    free(desc);
    return finish(call, reply, len, cls);
}
