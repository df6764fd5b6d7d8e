/*
 * forward: a client's command to QEMU, and QEMU's reply back.
 */
#include "forward.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "cmd.h"
#include "fdstore.h"
#include "qjson.h"
#include "upstream.h"
#include "util.h"

/* A client's command in QEMU's hands, and what to do with its reply. */
struct forward {
    struct chain *chain;       /* told of what it watches */
    struct slot *slot;         /* NULL once the client has gone */
    unsigned client;
    const struct cmd_env *env; /* told when it is answered */
    char *command;             /* its name */
    bool watched;              /* by the chain model: args kept for it */
    json_object *args;
    bool extend_commands;      /* query-commands: add the proxy's own */
    int kept_fd;               /* getfd: the proxy's duplicate, or -1 */
    char *fdname;              /* getfd/closefd: the name */
};

static void forward_slot_gone(void *opaque, struct slot *slot)
{
    struct forward *f = opaque;
    (void)slot;
    f->slot = NULL;
}

/*
 * query-commands is the one reply the proxy extends: its own commands are
 * added to QEMU's list, so clients that probe for them find them.
 */
static char *extend_commands(const struct upstream_reply *reply, size_t *len)
{
    const struct js_member *ret = js_text_member(reply->text, "return");
    struct strbuf sb = STRBUF_INIT;
    size_t close;
    bool empty;

    if (!ret || reply->raw[ret->value_end - 1] != ']') {
        return NULL;
    }
    close = ret->value_end - 1;
    empty = reply->raw[ret->value_start + 1] == ']';
    strbuf_add(&sb, reply->raw, close);
    for (const struct cmd_entry *const *e = cmd_table; *e; e++) {
        if (!(*e)->claims) {  /* QEMU lists its own names */
            strbuf_addf(&sb, "%s{\"name\": \"%s\"}", empty ? "" : ", ",
                        (*e)->name);
            empty = false;
        }
    }
    strbuf_add(&sb, reply->raw + close, reply->len - close);
    return strbuf_detach(&sb, len);
}

static void on_forward_reply(void *opaque, const struct upstream_reply *reply)
{
    struct forward *f = opaque;

    if (f->slot) {
        /* answered or never will be: the slot must not point at us */
        slot_release(f->slot);
    }
    if (!reply->lost) {
        if (f->slot) {
            struct slot *slot = f->slot;
            char *extended = NULL;
            size_t len = reply->len;
            if (f->extend_commands && reply->kind == QMP_RETURN) {
                extended = extend_commands(reply, &len);
            }
            session_reply(slot->session, slot, extended ? extended
                                                        : reply->raw,
                          len, TLOG_FROM_QEMU, (int64_t)reply->latency_us);
            free(extended);
        }
        if (f->watched) {
            chain_observe(f->chain, f->command, f->args, f->client,
                          reply->kind == QMP_RETURN);
        }
        if (f->fdname && reply->kind == QMP_RETURN) {
            if (f->kept_fd >= 0) {
                fdstore_put(f->fdname, f->kept_fd);
                f->kept_fd = -1;
            } else {
                fdstore_close(f->fdname);  /* closefd */
            }
        }
    }
    if (f->env->command_done) {
        const char *outcome = reply->lost ? "lost"
            : reply->kind == QMP_RETURN ? "return"
            : upstream_reply_error_class(reply);
        f->env->command_done(f->env->opaque, f->command,
                             outcome ? outcome : "unknown",
                             reply->lost ? -1 : (int64_t)reply->latency_us);
    }
    if (reply->lost && f->watched) {
        chain_unanswered(f->chain);
    }
    if (f->kept_fd >= 0) {
        close(f->kept_fd);
    }
    free(f->fdname);
    free(f->command);
    json_object_put(f->args);
    free(f);
}

/* As it is, to QEMU: the exact bytes, the fds with them. */
enum route_result forward_command(const struct cmd_env *env,
                                  struct session *s, struct slot *slot,
                                  struct client_cmd *cmd, bool granted)
{
    struct forward *f;
    char *echo_id = NULL;

    if (!cmd->req.oob && !granted && !upstream_has_room(env->up)) {
        return ROUTE_NEED_ROOM;
    }
    if (cmd->req.oob && cmd->req.has_id) {
        struct strbuf sb = STRBUF_INIT;
        qjson_write(&sb, cmd->req.id);
        echo_id = strbuf_detach(&sb, NULL);
    }
    f = xcalloc(1, sizeof(*f));
    f->chain = env->chain;
    f->slot = slot;
    f->client = session_id(s);
    f->env = env;
    f->command = xstrdup(cmd->req.command);
    if (chain_watches(cmd->req.command)) {
        f->watched = true;
        f->args = json_object_get(cmd->req.args);
        chain_command_sent(env->chain);
    }
    /* only for clients that asked: QEMU's list is what QEMU would say */
    f->extend_commands = (session_extras(s) & SESSION_EXTRA_COMMANDS)
        && !strcmp(cmd->req.command, "query-commands");
    f->kept_fd = -1;
    /* a command that uses a getfd descriptor (migrate "fd:NAME", say) makes
     * QEMU close it when done: the proxy's copy must not keep a pipe open */
    if (cmd->req.args && strcmp(cmd->req.command, "getfd")) {
        fdstore_forget_used(cmd->req.args);
    }
    /* getfd/closefd: keep a duplicate by name, for RHEL's reopen witness */
    if (cmd->req.args && (!strcmp(cmd->req.command, "getfd")
                          || !strcmp(cmd->req.command, "closefd"))) {
        json_object *name;
        if (json_object_object_get_ex(cmd->req.args, "fdname", &name)
            && json_object_is_type(name, json_type_string)) {
            f->fdname = xstrdup(json_object_get_string(name));
            if (!strcmp(cmd->req.command, "getfd") && cmd->nfds > 0) {
                f->kept_fd = fcntl(cmd->fds[0], F_DUPFD_CLOEXEC, 0);
            }
        }
    }
    slot_claim(slot, f, forward_slot_gone);
    if (!strcmp(cmd->req.command, "quit")) {
        upstream_quiesce(env->up);
    }
    upstream_send(env->up, cmd->raw, cmd->len, cmd->fds, cmd->nfds,
                  cmd->req.oob, cmd->has_id_member ? &cmd->id_member : NULL,
                  echo_id, on_forward_reply, f);
    cmd->nfds = 0;  /* they travel with the command now */
    free(echo_id);
    return ROUTE_DONE;
}
