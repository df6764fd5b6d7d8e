/*
 * cmd: the proxy's own QMP commands (qmproxy-*, and the RHEL-era names it
 * implements), one file each under proxy/ops/ with a cmd_entry, as tmux
 * keeps its commands.  A command gets its checked arguments and answers
 * through its cmd_call, at once or later; until it answers, the client's
 * later commands wait, as they would behind a QEMU command.
 */
#ifndef QMPROXY_CMD_H
#define QMPROXY_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "location.h"
#include "qapi.h"

struct chain;
struct event_base;
struct policy;
struct slot;
struct cmd_call;
struct upstream;

/*
 * What the proxy's commands and operations work with, given by the router
 * that runs them, so they never call up into it.
 */
struct cmd_env {
    struct event_base *base;
    struct upstream *up;
    struct chain *chain;
    /* the policy in force (it changes on SIGHUP); NULL: none */
    const struct policy *(*policy)(void *opaque);
    /* something only the proxy knows changed: save the state */
    void (*save_state)(void *opaque);
    /* an event of the proxy's own, to the clients that asked for them */
    void (*broadcast_event)(void *opaque, const char *name,
                            json_object *data);
    /* a client's command was answered (for the metrics; may be NULL):
     * outcome "return", the error class, or "lost" (QEMU went away);
     * latency_us: QEMU's round trip, or -1 when QEMU did not answer it */
    void (*command_done)(void *opaque, const char *command,
                         const char *outcome, int64_t latency_us);
    void *opaque;
};

/*
 * What a handler did, as tmux's enum cmd_retval: answered (cmd_return or
 * cmd_error, which return CMD_RETURN_NORMAL), or started something that
 * answers later, CMD_RETURN_WAIT (which may still answer before the
 * handler returns: QEMU's answer can already be there).  Until the call
 * is answered, the client's later commands wait.
 */
enum cmd_retval {
    CMD_RETURN_NORMAL,
    CMD_RETURN_WAIT,
};

struct cmd_entry {
    const char *name;
    /* Set when the name is QEMU's: the proxy takes the request over only
     * when claims(args) says so (RHEL's mirror actions in a transaction),
     * else it goes to QEMU; such an entry is not one of the proxy's
     * commands (query-commands lists it once, as QEMU's). */
    bool (*claims)(json_object *args);
    const struct qapi_member *args;  /* checked before exec is called */
    enum cmd_retval (*exec)(struct cmd_call *call, json_object *args);
    /* Reads the chain model to act on it: run once the model has QEMU's
     * answer to everything done before (a reconciliation may be due). */
    bool settle_chain;
    /* Which arguments name places outside QEMU: the policy confines
     * them (NULL: none). */
    const struct location *locations;
};

/* One invocation. */
struct cmd_call {
    const struct cmd_env *env;
    const struct cmd_entry *entry;
    struct slot *slot;        /* NULL once the client has gone */
    unsigned client;          /* the client's number */
    char *listener;           /* owned: the listener it came through */
    bool has_id;
    json_object *id;          /* owned reference */
    bool answered;
    int holds;                /* freed once answered and not held */
    json_object *args;        /* owned: kept while it waits to run */
};

/* cmd.c, above the commands: the table and finding an entry in it. */

/* Every command the proxy answers itself, NULL-terminated. */
extern const struct cmd_entry *const cmd_table[];
/* One of the proxy's own commands by name (not a claiming entry). */
const struct cmd_entry *cmd_find(const char *name);
/* The locations a command names, the proxy's own or QEMU's. */
const struct location *cmd_locations(const char *name);
/* The proxy's handler for this request, or NULL to pass it to QEMU. */
const struct cmd_entry *cmd_for_request(const char *name, json_object *args);

/* cmd-call.c, below the commands: a call's life and its answer. */

/* Answer with a return value (ownership taken; NULL means {}). */
enum cmd_retval cmd_return(struct cmd_call *call, json_object *ret);
/* Answer with an error of QEMU's form. */
enum cmd_retval cmd_error(struct cmd_call *call, const char *cls,
                          const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* For the router. */
struct cmd_call *cmd_call_new(const struct cmd_env *env,
                              const struct cmd_entry *e,
                              struct slot *slot, unsigned client,
                              const char *listener, bool has_id,
                              json_object *id);
void cmd_call_slot_gone(void *call, struct slot *slot);
/* Shutting down: a call whose client has gone will never be answered
 * (an operation still running); let it go.  No-op while it has a slot. */
void cmd_call_abandon(struct cmd_call *call);
/* Run the handler; the call is held meanwhile, so that whether it has
 * answered can be seen after it returns.  Returns whether it answered. */
bool cmd_call_run(struct cmd_call *call, json_object *args);

#endif
