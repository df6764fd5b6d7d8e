/*
 * op: the operations registry and their state machines.  Announcing and
 * answering them is op-announce.c (above this file and op-json.c, which
 * it uses); the steps operations are made of are in step-*.c, their
 * checks in op-checks.c, their QMP in op-qmp.c, their saved form in
 * op-json.c.
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "op-internal.h"
#include "chain.h"
#include "cmd.h"
#include "util.h"

#define MAX_FINISHED_OPS 64

struct op_registry op_reg;

static const char *const state_names[] = {
    "running", "mirroring", "ready", "pivoting", "pivoted", "aborted",
    "failed", "migrating", "switching", "migrated",
};

const char *op_state_name(enum op_state s)
{
    return state_names[s];
}

/*
 * The operation's state machine: which state may follow which (a state
 * may always be announced again).  As QEMU's job.c keeps JobSTT.
 *
 *               to: RUN MIR RDY PIV PVD ABT FLD MIG SWI MGD
 */
static const bool transitions[OP_STATE__MAX][OP_STATE__MAX] = {
    [OP_RUNNING]   = { 1,  1,  1,  1,  0,  0,  1,  0,  0,  0 },
    [OP_MIRRORING] = { 0,  1,  1,  1,  1,  1,  1,  0,  0,  0 },
    [OP_READY]     = { 0,  1,  1,  1,  1,  1,  1,  1,  0,  0 },
    [OP_PIVOTING]  = { 0,  1,  1,  1,  1,  0,  1,  0,  0,  0 },
    [OP_PIVOTED]   = { 0,  0,  0,  0,  1,  0,  0,  0,  0,  0 },
    [OP_ABORTED]   = { 0,  0,  0,  0,  0,  1,  0,  0,  0,  0 },
    [OP_FAILED]    = { 0,  0,  0,  0,  0,  0,  1,  0,  0,  0 },
    /* a migration cancelled or failed before the switch-over is undone
     * (ABT/FLD); after the source stopped only forward or failed */
    [OP_MIGRATING] = { 0,  0,  0,  0,  0,  1,  1,  1,  1,  0 },
    [OP_SWITCHING] = { 0,  0,  0,  0,  0,  1,  1,  0,  1,  1 },
    [OP_MIGRATED]  = { 0,  0,  0,  0,  0,  0,  0,  0,  0,  1 },
};

/* What a client may ask of an operation in each state, as job.c keeps
 * JobVerbTable.  A verb is refused too while another one runs. */
static const struct {
    const char *name;
    bool allowed[OP_STATE__MAX];
    const char *why;   /* when refused for the state */
} verbs[] = {
    [OP_VERB_REOPEN] = { "reopen", { [OP_READY] = true },
                         "its disks can be reopened only when every copy "
                         "is ready" },
    [OP_VERB_ABORT] = { "abort",
                        { [OP_MIRRORING] = true, [OP_READY] = true },
                        "only a snapshot whose copies are running or ready "
                        "can be aborted" },
    [OP_VERB_MIGRATE_CANCEL] = { "cancel",
                        { [OP_MIRRORING] = true, [OP_READY] = true,
                          [OP_MIGRATING] = true },
                        "a migration can be cancelled only until its "
                        "switch-over begins" },
};

bool op_may_become(enum op_state from, enum op_state to)
{
    return transitions[from][to];
}

char *op_verb_refused(const struct op *op, enum op_verb verb)
{
    if (op->busy_with) {
        return xasprintf("operation %s is busy: a %s of it is under way",
                         op->name, op->busy_with);
    }
    if (!verbs[verb].allowed[op->state]) {
        return xasprintf("operation %s is %s; %s", op->name,
                         op_state_name(op->state), verbs[verb].why);
    }
    return NULL;
}

static const char *const disk_state_names[] = {
    [DISK_UNTOUCHED] = "untouched", [DISK_SNAPSHOTTED] = "snapshotted",
    [DISK_MIRRORING] = "mirroring", [DISK_READY] = "ready",
    [DISK_REOPENING] = "reopening", [DISK_PIVOTED] = "pivoted",
    [DISK_ON_SOURCE] = "on source", [DISK_COPY_FAILED] = "copy failed",
    [DISK_COPY_DROPPED] = "copy dropped", [DISK_COPY_LOST] = "copy lost",
    [DISK_REOPEN_FAILED] = "reopen failed",
    [DISK_ROLLED_BACK] = "rolled back",
    [DISK_ROLLBACK_FAILED] = "rollback failed",
    [DISK_RETRYING] = "retrying", [DISK_UNKNOWN] = "unknown",
};

const char *op_disk_state_name(enum op_disk_state s)
{
    return disk_state_names[s];
}

bool op_disk_state_from_name(const char *name, enum op_disk_state *s)
{
    for (int k = 0; name && k < OP_DISK_STATE__MAX; k++) {
        if (!strcmp(name, disk_state_names[k])) {
            *s = (enum op_disk_state)k;
            return true;
        }
    }
    return false;
}

bool op_state_from_name(const char *name, enum op_state *s)
{
    for (int k = 0; name && k < OP_STATE__MAX; k++) {
        if (!strcmp(name, state_names[k])) {
            *s = (enum op_state)k;
            return true;
        }
    }
    return false;
}

bool op_is_final(enum op_state s)
{
    return s == OP_PIVOTED || s == OP_ABORTED || s == OP_FAILED
        || s == OP_MIGRATED;
}

size_t ops_count_active(void)
{
    size_t n = 0;

    for (int i = 0; i < op_reg.nops; i++) {
        n += !op_is_final(op_reg.ops[i]->state);
    }
    return n;
}

void ops_each_live(const char *type, void (*fn)(struct op *op, void *opaque),
                   void *opaque)
{
    for (int i = 0; i < op_reg.nops; i++) {
        struct op *op = op_reg.ops[i];
        if (!op_is_final(op->state) && !strcmp(op->type, type)) {
            fn(op, opaque);
        }
    }
}

struct chain *op_chain(void)
{
    return op_reg.env->chain;
}

/* ---- registry ------------------------------------------------------ */

void ops_init(const struct cmd_env *env)
{
    op_reg.env = env;
    op_reg.tag = ((unsigned)getpid() ^ (unsigned)now_monotonic_us()) & 0xfff;
}

static void disk_clear(struct op_disk *d)
{
    free(d->disk);
    free(d->snapshot_file);
    free(d->mirror_file);
    free(d->format);
    free(d->mirror_format);
    free(d->copy_mode);
    free(d->mode);
    free(d->sync);
    free(d->old_top_file);
    free(d->old_top_node);
    free(d->new_top_node);
    free(d->job);
    free(d->undo_job);
    free(d->job_status);
    free(d->job_error);
    json_object_put(d->pending_args);
    free(d->copy_node);
    free(d->on_target_error);
    free(d->target_node);
    free(d->copy_backing);
    free(d->copy_backing_format);
    free(d->note);
    if (d->copy_image.fd >= 0) {
        close(d->copy_image.fd);
    }
    if (d->snapshot_image.fd >= 0) {
        close(d->snapshot_image.fd);
    }
}

static void op_free(struct op *op)
{
    if (op->call) {
        /* still running when the proxy stops, its client gone */
        cmd_call_abandon(op->call);
    }
    for (int i = 0; i < op->ndisks; i++) {
        disk_clear(&op->disks[i]);
    }
    free(op->disks);
    free(op->name);
    free(op->type);
    free(op->error);
    free(op->step_error);
    free(op->started_at);
    free(op->rule);
    if (op->priv_free) {
        op->priv_free(op->priv);
    }
    json_object_put(op->loaded_priv);
    if (op->witness_fd >= 0) {
        close(op->witness_fd);
    }
    free(op);
}

void ops_free(void)
{
    for (int i = 0; i < op_reg.nops; i++) {
        op_free(op_reg.ops[i]);
    }
    free(op_reg.ops);
    op_reg.ops = NULL;
    op_reg.nops = 0;
}

/* Finished operations are kept for clients to look at, up to a limit. */
static void forget_old(void)
{
    int finished = 0;

    for (int i = op_reg.nops; i-- > 0;) {
        struct op *op = op_reg.ops[i];
        if (op_is_final(op->state) && !op->outstanding && !op->call
            && ++finished > MAX_FINISHED_OPS) {
            memmove(&op_reg.ops[i], &op_reg.ops[i + 1],
                    sizeof(*op_reg.ops) * (size_t)(op_reg.nops - i - 1));
            op_reg.nops--;
            op_free(op);
        }
    }
}

void ops_count_by_state(unsigned counts[OP_STATE__MAX])
{
    memset(counts, 0, sizeof(unsigned) * OP_STATE__MAX);
    for (int i = 0; i < op_reg.nops; i++) {
        counts[op_reg.ops[i]->state]++;
    }
}

struct op *op_find(const char *name)
{
    for (int i = op_reg.nops; name && i-- > 0;) {
        if (!strcmp(op_reg.ops[i]->name, name)) {
            return op_reg.ops[i];
        }
    }
    return NULL;
}

bool op_name_free(const char *name)
{
    struct op *op = op_find(name);
    return !op || op_is_final(op->state);
}

struct op *op_new(const char *type, const char *name, unsigned client,
                  struct cmd_call *call)
{
    struct op *op = xcalloc(1, sizeof(*op));
    char when[40];

    forget_old();
    op->seq = ++op_reg.next_seq;
    op->type = xstrdup(type);
    op->name = name ? xstrdup(name) : xasprintf("%s-%u", type, op->seq);
    op->client = client;
    op->call = call;
    op->witness_fd = -1;
    op->state = OP_RUNNING;
    format_rfc3339_us(when, sizeof(when));
    op->started_at = xstrdup(when);
    op_reg.ops = xrealloc(op_reg.ops, sizeof(*op_reg.ops) * (size_t)(op_reg.nops + 1));
    op_reg.ops[op_reg.nops++] = op;
    return op;
}

struct op_disk *op_add_disk(struct op *op, const char *disk)
{
    struct op_disk *d;

    op->disks = xrealloc(op->disks, sizeof(*op->disks)
                         * (size_t)(op->ndisks + 1));
    d = &op->disks[op->ndisks++];
    memset(d, 0, sizeof(*d));
    d->disk = xstrdup(disk);
    d->state = DISK_UNTOUCHED;
    op_image_init(&d->copy_image);
    op_image_init(&d->snapshot_image);
    return d;
}

bool ops_busy_disk(const char *disk, const struct op **by)
{
    for (int i = 0; i < op_reg.nops; i++) {
        struct op *op = op_reg.ops[i];
        if (op_is_final(op->state) || op->state == OP_READY) {
            continue;
        }
        for (int k = 0; k < op->ndisks; k++) {
            if (!strcmp(op->disks[k].disk, disk)) {
                *by = op;
                return true;
            }
        }
    }
    return false;
}

char *op_find_of_type(const char *name, const char *const *types,
                      const char *what, struct op **found)
{
    struct op *op = op_find(name);

    if (!op) {
        return xasprintf("No operation named '%s' (see "
                         "qmproxy-query-operations)", name);
    }
    for (int k = 0; types[k]; k++) {
        if (!strcmp(op->type, types[k])) {
            *found = op;
            return NULL;
        }
    }
    return xasprintf("operation %s is a %s, not %s", name, op->type, what);
}

char *op_find_snapshot(const char *name, struct op **found)
{
    static const char *const types[] = { "snapshot-mirror", "transaction",
                                         NULL };

    return op_find_of_type(name, types, "a snapshot with copies", found);
}

struct op *op_owning_job(const char *job, int *index)
{
    for (int i = op_reg.nops; job && i-- > 0;) {
        struct op *op = op_reg.ops[i];
        if (op_is_final(op->state)) {
            continue;
        }
        for (int k = 0; k < op->ndisks; k++) {
            if (op->disks[k].job && !strcmp(op->disks[k].job, job)
                && strcmp(op->type, "reopen")) {
                *index = k;
                return op;
            }
        }
    }
    return NULL;
}
