/*
 * op-announce: an operation's moves told to everyone: the new state
 * announced to the clients (QMPROXY_OPERATION) and saved, the caller
 * answered when it ends.
 */
#include "op.h"

#include <stdarg.h>
#include <stdlib.h>

#include "op-internal.h"
#include "cmd.h"
#include "log.h"
#include "qmp.h"
#include "util.h"

static void announce(struct op *op)
{
    json_object *data = op_to_json(op);

    op_reg.env->broadcast_event(op_reg.env->opaque, "QMPROXY_OPERATION", data);
    json_object_put(data);
    op_reg.env->save_state(op_reg.env->opaque);
}

void op_set_state(struct op *op, enum op_state s)
{
    if (!op_may_become(op->state, s)) {
        log_error("bug: operation %s (%s) moved from %s to %s, which its "
                  "state machine does not allow", op->name, op->type,
                  op_state_name(op->state), op_state_name(s));
    }
    if (op->state != s) {
        log_info("operation %s (%s): %s -> %s", op->name, op->type,
                 op_state_name(op->state), op_state_name(s));
        op->state = s;
        if (op_is_final(s)) {
            op_release_images(op);
        }
    }
    announce(op);
}

char *op_disks_summary(const struct op *op)
{
    struct strbuf sb = STRBUF_INIT;

    for (int i = 0; i < op->ndisks; i++) {
        const struct op_disk *d = &op->disks[i];
        strbuf_addf(&sb, "%s%s: %s", i ? "; " : "", d->disk,
                    op_disk_state_name(d->state));
        if (d->note) {
            strbuf_addf(&sb, " (%s)", d->note);
        }
    }
    return strbuf_detach(&sb, NULL);
}

/* Answer the caller, last: answering lets the client's next command run. */
void op_answer(struct op *op)
{
    op->busy_with = NULL;
    if (op->call) {
        struct cmd_call *call = op->call;
        op->call = NULL;
        cmd_return(call, op_to_json(op));
    }
}

struct op *op_for_verb(struct cmd_call *call, char *refused, struct op *op,
                       enum op_verb verb)
{
    if (!refused) {
        refused = op_verb_refused(op, verb);
    }
    if (refused) {
        cmd_error(call, QMP_GENERIC_ERROR, "%s", refused);
        free(refused);
        return NULL;
    }
    return op;
}

void op_note_copy_failed(struct op *op, struct op_disk *d, const char *what,
                         const char *fallback)
{
    const char *why = d->job_error ? d->job_error : fallback;

    d->state = DISK_COPY_FAILED;
    str_setf(&d->note, "the copy to %s %s: %s", d->mirror_file, what, why);
    str_setf(&op->step_error, "the copy of %s to %s %s: %s", d->disk,
             d->mirror_file, what, why);
}

void op_take_over_call(struct op *op, struct cmd_call *call,
                       const char *why_fmt, ...)
{
    if (op->call) {
        struct cmd_call *waiting = op->call;
        va_list ap;
        char *why;

        va_start(ap, why_fmt);
        why = xvasprintf(why_fmt, ap);
        va_end(ap);
        op->call = NULL;
        cmd_error(waiting, QMP_GENERIC_ERROR, "%s", why);
        free(why);
    }
    op->call = call;
}

void op_succeed(struct op *op, enum op_state final)
{
    op->check = NULL;
    op->next = NULL;
    op_set_state(op, final);
    op_answer(op);
}

void op_fail(struct op *op, const char *fmt, ...)
{
    va_list ap;
    char *why, *disks;

    va_start(ap, fmt);
    why = xvasprintf(fmt, ap);
    va_end(ap);
    disks = op_disks_summary(op);
    str_setf(&op->error, "%s; disks now: %s", why, disks);
    log_warn("operation %s (%s) failed: %s", op->name, op->type, op->error);
    op->check = NULL;
    op->next = NULL;
    op->busy_with = NULL;
    op_set_state(op, OP_FAILED);
    if (op->call) {
        struct cmd_call *call = op->call;
        op->call = NULL;
        cmd_error(call, QMP_GENERIC_ERROR, "%s %s: %s", op->type, op->name,
                  op->error);
    }
    free(why);
    free(disks);
}
