/*
 * op-internal: what the files of the operations engine share, and nobody
 * outside proxy/ops/op*.c and step-*.c sees.
 */
#ifndef QMPROXY_OP_INTERNAL_H
#define QMPROXY_OP_INTERNAL_H

#include <stdbool.h>
#include <json-c/json.h>

#include "op.h"

struct chain;
struct cmd_env;

/* Every operation the proxy knows, live or kept for clients to see. */
struct op_registry {
    const struct cmd_env *env;
    struct op **ops;
    int nops;
    unsigned next_seq;
    unsigned tag;          /* keeps our node-names and job ids apart from
                            * those of an earlier run of the proxy */
};
extern struct op_registry op_reg;

struct chain *op_chain(void);
bool op_is_final(enum op_state s);
/* Whether the operation's state machine lets it move from one to the
 * other (the transition table, op.c). */
bool op_may_become(enum op_state from, enum op_state to);
bool op_state_from_name(const char *name, enum op_state *s);
bool op_disk_state_from_name(const char *name, enum op_disk_state *s);
/* Answer the caller, last: answering lets the client's next command run. */
void op_answer(struct op *op);
/* {key: id}, for the job commands. */
json_object *op_job_args(const char *key, const char *id);
/* Forget what the events said of the job waited for before. */
void op_reset_job_facts(struct op_disk *d);
/* The backing file a qcow2 image names, when it is not there (owned). */
char *op_missing_backing(const char *image);

#endif
