/*
 * op: the operations registry and the steps operations are made of.
 *
 * Every step is written the same way: send the commands, count them in
 * op->outstanding, record what their replies and the job events say on
 * the disks, and let the step's check() decide, after each reply or event,
 * whether the step is over.  Events can come before the reply to the
 * command that caused them (QEMU emits JOB_STATUS_CHANGE and even
 * BLOCK_JOB_READY before drive-mirror returns), so job ids are chosen by
 * the proxy and known before the command is sent.
 */
#include "op.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "cmd.h"
#include "jsonobj.h"
#include "log.h"
#include "qmp.h"
#include "upstream.h"
#include "util.h"

#define MAX_FINISHED_OPS 64

static struct {
    const struct cmd_env *env;
    struct op **ops;
    int nops;
    unsigned next_seq;
    unsigned tag;          /* keeps our node-names and job ids apart from
                            * those of an earlier run of the proxy */
} reg;

static const char *const state_names[] = {
    "running", "mirroring", "ready", "pivoting", "pivoted", "aborted",
    "failed",
};

const char *op_state_name(enum op_state s)
{
    return state_names[s];
}

static bool is_final(enum op_state s)
{
    return s == OP_PIVOTED || s == OP_ABORTED || s == OP_FAILED;
}

static struct chain *chain(void)
{
    return reg.env->chain;
}

/* ---- registry ------------------------------------------------------ */

void ops_init(const struct cmd_env *env)
{
    reg.env = env;
    reg.tag = ((unsigned)getpid() ^ (unsigned)now_monotonic_us()) & 0xfff;
}

static void disk_clear(struct op_disk *d)
{
    free(d->disk);
    free(d->snapshot_file);
    free(d->mirror_file);
    free(d->format);
    free(d->mode);
    free(d->sync);
    free(d->old_top_file);
    free(d->old_top_node);
    free(d->new_top_node);
    free(d->job);
    free(d->undo_job);
    free(d->job_status);
    free(d->job_error);
    free(d->state);
    free(d->note);
}

static void op_free(struct op *op)
{
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
    if (op->witness_fd >= 0) {
        close(op->witness_fd);
    }
    free(op);
}

void ops_free(void)
{
    for (int i = 0; i < reg.nops; i++) {
        op_free(reg.ops[i]);
    }
    free(reg.ops);
    reg.ops = NULL;
    reg.nops = 0;
}

/* Finished operations are kept for clients to look at, up to a limit. */
static void forget_old(void)
{
    int finished = 0;

    for (int i = reg.nops; i-- > 0;) {
        struct op *op = reg.ops[i];
        if (is_final(op->state) && !op->outstanding && !op->call
            && ++finished > MAX_FINISHED_OPS) {
            memmove(&reg.ops[i], &reg.ops[i + 1],
                    sizeof(*reg.ops) * (size_t)(reg.nops - i - 1));
            reg.nops--;
            op_free(op);
        }
    }
}

struct op *op_find(const char *name)
{
    for (int i = reg.nops; name && i-- > 0;) {
        if (!strcmp(reg.ops[i]->name, name)) {
            return reg.ops[i];
        }
    }
    return NULL;
}

bool op_name_free(const char *name)
{
    struct op *op = op_find(name);
    return !op || is_final(op->state);
}

struct op *op_new(const char *type, const char *name, unsigned client,
                  struct cmd_call *call)
{
    struct op *op = xcalloc(1, sizeof(*op));
    char when[40];

    forget_old();
    op->seq = ++reg.next_seq;
    op->type = xstrdup(type);
    op->name = name ? xstrdup(name) : xasprintf("%s-%u", type, op->seq);
    op->client = client;
    op->call = call;
    op->witness_fd = -1;
    op->state = OP_RUNNING;
    format_rfc3339_us(when, sizeof(when));
    op->started_at = xstrdup(when);
    reg.ops = xrealloc(reg.ops, sizeof(*reg.ops) * (size_t)(reg.nops + 1));
    reg.ops[reg.nops++] = op;
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
    d->state = xstrdup("untouched");
    return d;
}

bool ops_busy_disk(const char *disk, const struct op **by)
{
    for (int i = 0; i < reg.nops; i++) {
        struct op *op = reg.ops[i];
        if (is_final(op->state) || op->state == OP_READY) {
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

/* ---- checks --------------------------------------------------------- */

char *op_check_disk(const char *name, const char **resolved)
{
    const char *disk = chain_disk_name(chain(), name);
    const struct op *by;

    if (!disk) {
        return xasprintf("No disk named '%s' (give a device name, a qdev "
                         "id, a node-name or the disk's current image)", name);
    }
    if (chain_job_id(chain(), disk)) {
        return xasprintf("disk %s is busy: block job %s runs on it", disk,
                         chain_job_id(chain(), disk));
    }
    if (ops_busy_disk(disk, &by)) {
        return xasprintf("disk %s is busy: operation %s (%s) is %s on it",
                         disk, by->name, by->type, op_state_name(by->state));
    }
    *resolved = disk;
    return NULL;
}

static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash == path ? xstrdup("/")
                         : xstrndup(path, (size_t)(slash - path));
}

/*
 * The proxy will not have QEMU create an image over an existing file (that
 * is how a guest's data gets lost), and says plainly when a folder is
 * missing, before anything is touched.  Paths with a protocol prefix
 * (nbd:, blkdebug:...) are QEMU's business.
 */
char *op_check_new_file(const char *what, const char *path)
{
    char *dir;
    char *err = NULL;

    if (!path[0]) {
        return xasprintf("%s is empty", what);
    }
    if (path[0] != '/') {
        return strchr(path, ':') ? NULL
            : xasprintf("%s '%s' must be an absolute path", what, path);
    }
    if (access(path, F_OK) == 0) {
        return xasprintf("%s %s already exists; qmproxy will not have QEMU "
                         "create an image over it (remove it, or use mode "
                         "'existing' to use it as it is)", what, path);
    }
    dir = parent_dir(path);
    if (access(dir, F_OK) != 0) {
        err = xasprintf("%s %s cannot be created: folder %s does not exist",
                        what, path, dir);
    }
    free(dir);
    return err;
}

char *op_check_existing_file(const char *what, const char *path)
{
    if (!path[0]) {
        return xasprintf("%s is empty", what);
    }
    if (path[0] != '/') {
        return strchr(path, ':') ? NULL
            : xasprintf("%s '%s' must be an absolute path", what, path);
    }
    if (access(path, F_OK) != 0) {
        return xasprintf("%s %s does not exist (mode 'existing' uses an "
                         "image created beforehand): %s", what, path,
                         strerror(errno));
    }
    return NULL;
}

struct op *op_find_snapshot(struct cmd_call *call, const char *name)
{
    struct op *op = op_find(name);

    if (!op) {
        cmd_error(call, QMP_GENERIC_ERROR, "No operation named '%s' (see "
                  "qmproxy-query-operations)", name);
        return NULL;
    }
    if (strcmp(op->type, "snapshot-mirror") && strcmp(op->type, "transaction")) {
        cmd_error(call, QMP_GENERIC_ERROR, "operation %s is a %s, not a "
                  "snapshot with copies", name, op->type);
        return NULL;
    }
    return op;
}

struct op *op_owning_job(const char *job, int *index)
{
    for (int i = reg.nops; job && i-- > 0;) {
        struct op *op = reg.ops[i];
        if (is_final(op->state)) {
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

/* ---- JSON ---------------------------------------------------------- */


static json_object *disk_json(const struct op_disk *d, bool internal)
{
    json_object *o = json_object_new_object();

    jobj_add_str(o, "disk", d->disk);
    jobj_add_str(o, "state", d->state);
    jobj_add_str(o, "snapshot-file", d->snapshot_file);
    jobj_add_str(o, "mirror-file", d->mirror_file);
    jobj_add_str(o, "format", d->format);
    jobj_add_str(o, "job", d->job);
    if (d->job) {
        json_object_object_add(o, "offset", json_object_new_int64(d->offset));
        json_object_object_add(o, "len", json_object_new_int64(d->len));
    }
    jobj_add_str(o, "job-status", d->job_status);
    jobj_add_str(o, "error", d->job_error);
    jobj_add_str(o, "note", d->note);
    if (internal) {
        jobj_add_str(o, "mode", d->mode);
        jobj_add_str(o, "sync", d->sync);
        json_object_object_add(o, "speed", json_object_new_int64(d->speed));
        jobj_add_str(o, "old-top-file", d->old_top_file);
        jobj_add_str(o, "old-top-node", d->old_top_node);
        jobj_add_str(o, "new-top-node", d->new_top_node);
        jobj_add_bool(o, "own-job", d->own_job);
        jobj_add_bool(o, "manual-finalize", d->manual_finalize);
        jobj_add_bool(o, "ready", d->ready);
    }
    return o;
}

static json_object *op_json(const struct op *op, bool internal)
{
    json_object *o = json_object_new_object();
    json_object *disks = json_object_new_array();

    jobj_add_str(o, "name", op->name);
    jobj_add_str(o, "type", op->type);
    jobj_add_str(o, "state", op_state_name(op->state));
    for (int i = 0; i < op->ndisks; i++) {
        json_object_array_add(disks, disk_json(&op->disks[i], internal));
    }
    json_object_object_add(o, "disks", disks);
    jobj_add_str(o, "error", op->error);
    jobj_add_str(o, "rule", op->rule);
    json_object_object_add(o, "started-by", json_object_new_int((int)op->client));
    jobj_add_str(o, "started-at", op->started_at);
    if (internal) {
        json_object_object_add(o, "seq", json_object_new_int((int)op->seq));
    }
    return o;
}

json_object *op_to_json(const struct op *op)
{
    return op_json(op, false);
}

json_object *ops_to_json(const char *name)
{
    json_object *a = json_object_new_array();

    for (int i = 0; i < reg.nops; i++) {
        if (!name || !strcmp(reg.ops[i]->name, name)) {
            json_object_array_add(a, op_to_json(reg.ops[i]));
        }
    }
    return a;
}

json_object *ops_save(void)
{
    json_object *a = json_object_new_array();

    for (int i = 0; i < reg.nops; i++) {
        json_object_array_add(a, op_json(reg.ops[i], true));
    }
    return a;
}




void ops_load(json_object *saved)
{
    size_t n = saved && json_object_is_type(saved, json_type_array)
        ? json_object_array_length(saved) : 0;

    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(saved, i), *disks;
        const char *state = jobj_str(s, "state");
        const char *type = jobj_str(s, "type");
        struct op *op = op_new(type ? type : "unknown", jobj_str(s, "name"),
                               (unsigned)jobj_int(s, "started-by", 0), NULL);
        op->seq = (unsigned)jobj_int(s, "seq", 0);
        if (op->seq >= reg.next_seq) {
            reg.next_seq = op->seq + 1;
        }
        str_set(&op->started_at, jobj_str(s, "started-at"));
        str_set(&op->error, jobj_str(s, "error"));
        str_set(&op->rule, jobj_str(s, "rule"));
        for (int k = 0; state && k <= OP_FAILED; k++) {
            if (!strcmp(state, state_names[k])) {
                op->state = (enum op_state)k;
            }
        }
        if (!json_object_object_get_ex(s, "disks", &disks)) {
            continue;
        }
        for (size_t k = 0; k < json_object_array_length(disks); k++) {
            json_object *ds = json_object_array_get_idx(disks, k);
            struct op_disk *d = op_add_disk(op, jobj_str(ds, "disk")
                                                ? jobj_str(ds, "disk") : "?");
            str_set(&d->state, jobj_str(ds, "state"));
            str_set(&d->snapshot_file, jobj_str(ds, "snapshot-file"));
            str_set(&d->mirror_file, jobj_str(ds, "mirror-file"));
            str_set(&d->format, jobj_str(ds, "format"));
            str_set(&d->job, jobj_str(ds, "job"));
            str_set(&d->job_status, jobj_str(ds, "job-status"));
            str_set(&d->job_error, jobj_str(ds, "error"));
            str_set(&d->note, jobj_str(ds, "note"));
            str_set(&d->mode, jobj_str(ds, "mode"));
            str_set(&d->sync, jobj_str(ds, "sync"));
            str_set(&d->old_top_file, jobj_str(ds, "old-top-file"));
            str_set(&d->old_top_node, jobj_str(ds, "old-top-node"));
            str_set(&d->new_top_node, jobj_str(ds, "new-top-node"));
            d->speed = jobj_int(ds, "speed", 0);
            d->offset = jobj_int(ds, "offset", 0);
            d->len = jobj_int(ds, "len", 0);
            d->own_job = jobj_bool(ds, "own-job", false);
            d->manual_finalize = jobj_bool(ds, "manual-finalize", false);
            d->ready = jobj_bool(ds, "ready", false);
        }
    }
}

/* ---- announcing and answering -------------------------------------- */

static void announce(struct op *op)
{
    json_object *data = op_to_json(op);

    reg.env->broadcast_event(reg.env->opaque, "QMPROXY_OPERATION", data);
    json_object_put(data);
    reg.env->save_state(reg.env->opaque);
}

void op_set_state(struct op *op, enum op_state s)
{
    if (op->state != s) {
        log_info("operation %s (%s): %s -> %s", op->name, op->type,
                 op_state_name(op->state), op_state_name(s));
        op->state = s;
    }
    announce(op);
}

char *op_disks_summary(const struct op *op)
{
    struct strbuf sb = STRBUF_INIT;

    for (int i = 0; i < op->ndisks; i++) {
        const struct op_disk *d = &op->disks[i];
        strbuf_addf(&sb, "%s%s: %s", i ? "; " : "", d->disk, d->state);
        if (d->note) {
            strbuf_addf(&sb, " (%s)", d->note);
        }
    }
    return strbuf_detach(&sb, NULL);
}

/* Answer the caller, last: answering lets the client's next command run. */
static void answer(struct op *op)
{
    op->busy_with = NULL;
    if (op->call) {
        struct cmd_call *call = op->call;
        op->call = NULL;
        cmd_return(call, op_to_json(op));
    }
}

void op_succeed(struct op *op, enum op_state final)
{
    op->check = NULL;
    op->next = NULL;
    op_set_state(op, final);
    answer(op);
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

/* ---- commands ------------------------------------------------------ */

struct pending {
    struct op *op;
    int disk;
    char *command;
    json_object *args;
    void (*done)(struct op *, int, bool, json_object *, const char *);
};

static void on_reply(void *opaque, const struct upstream_reply *r)
{
    struct pending *p = opaque;
    struct op *op = p->op;
    bool ok = !r->lost && r->kind == QMP_RETURN;

    if (!r->lost) {
        /* the chain model follows the proxy's own commands too */
        chain_observe(chain(), p->command, p->args, 0, ok);
    }
    op->outstanding--;
    /* an operation that already ended (QEMU went away) takes no more */
    if (!is_final(op->state)) {
        p->done(op, p->disk, ok, ok ? upstream_reply_return(r) : NULL,
                ok ? NULL : upstream_reply_error_desc(r));
    }
    free(p->command);
    json_object_put(p->args);
    free(p);
}

void op_qmp(struct op *op, json_object *cmd,
            void (*done)(struct op *op, int disk, bool ok, json_object *ret,
                         const char *error),
            int disk)
{
    struct pending *p = xcalloc(1, sizeof(*p));
    json_object *v;

    p->op = op;
    p->disk = disk;
    p->done = done;
    json_object_object_get_ex(cmd, "execute", &v);
    p->command = xstrdup(json_object_get_string(v));
    if (json_object_object_get_ex(cmd, "arguments", &v)) {
        p->args = json_object_get(v);
    }
    op->outstanding++;
    upstream_send_internal(reg.env->up, cmd, on_reply, p);
    json_object_put(cmd);
}

static json_object *job_args(const char *key, const char *id)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, key, json_object_new_string(id));
    return a;
}

/* ---- events -------------------------------------------------------- */

static void reset_job_facts(struct op_disk *d)
{
    d->ready = d->pending = d->done = d->failed = false;
    str_set(&d->job_error, NULL);
}

static void disk_event(struct op *op, struct op_disk *d, const char *name,
                       json_object *data)
{
    if (!strcmp(name, "JOB_STATUS_CHANGE")) {
        const char *st = jobj_str(data, "status");
        str_set(&d->job_status, st);
        if (st && !strcmp(st, "pending")) {
            d->pending = true;
        } else if (st && (!strcmp(st, "concluded") || !strcmp(st, "null"))) {
            d->done = true;
        }
    } else if (!strcmp(name, "BLOCK_JOB_READY")) {
        d->ready = true;
    } else if (!strcmp(name, "BLOCK_JOB_PENDING")) {
        d->pending = true;
    } else if (!strcmp(name, "BLOCK_JOB_ERROR")) {
        str_setf(&d->job_error, "%s error on the %s, action %s",
             jobj_str(data, "operation") ? jobj_str(data, "operation") : "an I/O",
             "job's image", jobj_str(data, "action") ? jobj_str(data, "action") : "?");
    } else if (!strcmp(name, "BLOCK_JOB_COMPLETED")) {
        d->done = true;
        if (jobj_str(data, "error")) {
            d->failed = true;
            str_set(&d->job_error, jobj_str(data, "error"));
        }
    } else if (!strcmp(name, "BLOCK_JOB_CANCELLED")) {
        d->done = true;
        d->failed = true;
        if (!d->job_error) {
            str_set(&d->job_error, "the job was cancelled");
        }
    }
    if (json_object_object_get_ex(data, "offset", NULL)) {
        d->offset = jobj_int(data, "offset", 0);
        d->len = jobj_int(data, "len", 0);
    }
    (void)op;
}

void ops_observe_event(const char *name, json_object *data)
{
    const char *id = jobj_str(data, "device") ? jobj_str(data, "device")
                                          : jobj_str(data, "id");

    if (!id) {
        return;
    }
    for (int i = 0; i < reg.nops; i++) {
        struct op *op = reg.ops[i];
        bool touched = false;
        for (int k = 0; k < op->ndisks; k++) {
            struct op_disk *d = &op->disks[k];
            if ((d->job && !strcmp(d->job, id))
                || (d->undo_job && !strcmp(d->undo_job, id))) {
                disk_event(op, d, name, data);
                touched = true;
            }
        }
        if (touched && op->check) {
            op->check(op);
        }
    }
}

/* ---- step: the snapshot transaction --------------------------------- */

static void snapshot_done(struct op *op, int disk, bool ok, json_object *ret,
                          const char *error)
{
    (void)disk;
    (void)ret;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->snapshot_file) {
            continue;
        }
        if (ok) {
            str_set(&d->state, "snapshotted");
            str_setf(&d->note, "runs on %s over %s", d->snapshot_file,
                 d->old_top_file);
        } else {
            str_set(&d->state, "untouched");
            str_setf(&d->note, "still runs on %s", d->old_top_file);
        }
    }
    if (!ok) {
        str_setf(&op->step_error, "the snapshot transaction was refused, so no "
             "disk was touched: %s", error);
    }
    op->next(op, ok);
}

void step_snapshot(struct op *op, void (*next)(struct op *, bool))
{
    json_object *actions = json_object_new_array();
    int n = 0;

    op->next = next;
    op->check = NULL;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        const char *device = chain_job_device(chain(), d->disk);
        json_object *data, *act;
        if (!d->snapshot_file) {
            continue;
        }
        str_set(&d->old_top_file, chain_top_file(chain(), d->disk));
        str_set(&d->old_top_node, chain_top_node(chain(), d->disk));
        str_setf(&d->new_top_node, "qmp%03x%ud%d", reg.tag, op->seq, i);
        data = json_object_new_object();
        /* a device name when the disk has one, else its top node */
        if (device && !(d->old_top_node && !strcmp(device, d->old_top_node))) {
            json_object_object_add(data, "device", json_object_new_string(device));
        } else {
            json_object_object_add(data, "node-name",
                                   json_object_new_string(d->old_top_node));
        }
        json_object_object_add(data, "snapshot-file",
                               json_object_new_string(d->snapshot_file));
        json_object_object_add(data, "snapshot-node-name",
                               json_object_new_string(d->new_top_node));
        json_object_object_add(data, "format",
                               json_object_new_string(d->format ? d->format
                                                                : "qcow2"));
        json_object_object_add(data, "mode",
                               json_object_new_string("absolute-paths"));
        act = json_object_new_object();
        json_object_object_add(act, "type",
                               json_object_new_string("blockdev-snapshot-sync"));
        json_object_object_add(act, "data", data);
        json_object_array_add(actions, act);
        n++;
    }
    if (!n) {
        json_object_put(actions);
        next(op, true);
        return;
    }
    json_object *args = json_object_new_object();
    json_object_object_add(args, "actions", actions);
    op_qmp(op, qmp_command("transaction", args), snapshot_done, -1);
}

/* ---- step: start the copies ---------------------------------------- */

static void mirror_started(struct op *op, int i, bool ok, json_object *ret,
                           const char *error)
{
    struct op_disk *d = &op->disks[i];
    (void)ret;

    if (ok) {
        str_set(&d->state, "mirroring");
        str_setf(&d->note, "copying to %s", d->mirror_file);
    } else {
        d->failed = true;
        d->own_job = false;
        str_set(&d->state, d->snapshot_file ? "snapshotted" : "untouched");
        str_setf(&d->note, "QEMU refused the copy to %s: %s", d->mirror_file,
             error);
        if (!op->step_error) {
            str_setf(&op->step_error, "the copy of %s to %s was refused: %s",
                 d->disk, d->mirror_file, error);
        }
        op->step_failed = true;
    }
    if (op->outstanding == 0) {
        bool failed = op->step_failed;
        op->step_failed = false;
        op->next(op, !failed);
    }
}

void step_start_mirrors(struct op *op, void (*next)(struct op *, bool))
{
    int n = 0;

    op->next = next;
    op->check = NULL;
    op->step_failed = false;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        json_object *a;
        const char *device;
        if (!d->mirror_file) {
            continue;
        }
        /* after the snapshot: its new node, or the device name */
        device = chain_job_device(chain(), d->disk);
        if (d->plain_job) {
            str_set(&d->job, device);  /* QEMU names the job after the device */
        } else {
            str_setf(&d->job, "qmp%03x%um%d", reg.tag, op->seq, i);
        }
        d->manual_finalize = !d->plain_job;
        d->own_job = true;
        reset_job_facts(d);
        a = json_object_new_object();
        if (!d->plain_job) {
            json_object_object_add(a, "job-id", json_object_new_string(d->job));
        }
        json_object_object_add(a, "device", json_object_new_string(device));
        json_object_object_add(a, "target",
                               json_object_new_string(d->mirror_file));
        jobj_add_str(a, "format", d->format);
        json_object_object_add(a, "sync", json_object_new_string(
                                   d->sync ? d->sync : "top"));
        json_object_object_add(a, "mode", json_object_new_string(
                                   d->mode ? d->mode : "absolute-paths"));
        if (d->speed > 0) {
            json_object_object_add(a, "speed", json_object_new_int64(d->speed));
        }
        /* so that reopening can be all or nothing: nothing pivots until
         * the proxy finalizes it */
        if (!d->plain_job) {
            jobj_add_bool(a, "auto-finalize", 0);
        }
        op_qmp(op, qmp_command("drive-mirror", a), mirror_started, i);
        n++;
    }
    if (!n) {
        next(op, true);
    }
}

/* ---- step: wait until every copy is ready --------------------------- */

static void check_ready(struct op *op)
{
    bool all = true, mirroring = false;

    if (op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->job) {
            continue;
        }
        if (d->failed || (d->done && !d->ready)) {
            str_set(&d->state, "copy failed");
            str_setf(&d->note, "the copy to %s failed: %s", d->mirror_file,
                 d->job_error ? d->job_error : "the job ended");
            d->own_job = false;
            str_setf(&op->step_error, "the copy of %s to %s failed: %s", d->disk,
                 d->mirror_file, d->job_error ? d->job_error : "it ended");
            op->check = NULL;
            op->next(op, false);
            return;
        }
        if (d->ready) {
            str_set(&d->state, "ready");
            str_setf(&d->note, "%s mirrored to %s", chain_top_file(chain(), d->disk)
                 ? chain_top_file(chain(), d->disk) : d->disk, d->mirror_file);
        } else {
            all = false;
        }
        mirroring = true;
    }
    if (all) {
        op->check = NULL;
        op->next(op, true);
    } else if (mirroring && op->state == OP_RUNNING) {
        op_set_state(op, OP_MIRRORING);
    }
}

void step_wait_ready(struct op *op, void (*next)(struct op *, bool))
{
    op->next = next;
    op->check = check_ready;
    check_ready(op);
}

/* ---- step: reopen, all or nothing ----------------------------------- */

/*
 * The destination of a mode=existing copy opens its backing file when it
 * is finalized; if that file is not there yet, that disk alone would fail
 * after others had pivoted.  Look first (when the proxy can see the file).
 */
static char *missing_backing(const char *image)
{
    unsigned char hdr[24];
    char path[4096];
    int fd;
    uint64_t off;
    uint32_t len;

    if (!image || image[0] != '/') {
        return NULL;
    }
    fd = open(image, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)
        || memcmp(hdr, "QFI\xfb", 4)) {
        close(fd);
        return NULL;  /* not qcow2: nothing to say */
    }
    off = 0;
    for (int i = 8; i < 16; i++) {
        off = off << 8 | hdr[i];
    }
    len = (uint32_t)hdr[16] << 24 | (uint32_t)hdr[17] << 16
        | (uint32_t)hdr[18] << 8 | hdr[19];
    if (!off || !len || len >= sizeof(path)
        || pread(fd, path, len, (off_t)off) != (ssize_t)len) {
        close(fd);
        return NULL;
    }
    close(fd);
    path[len] = 0;
    if (path[0] != '/') {
        /* relative to the image's folder */
        const char *slash = strrchr(image, '/');
        char *full = xasprintf("%.*s/%s", (int)(slash - image), image, path);
        bool there = access(full, F_OK) == 0;
        if (there) {
            free(full);
            return NULL;
        }
        return full;
    }
    return access(path, F_OK) == 0 ? NULL : xstrdup(path);
}

static void reopen_finish(struct op *op);

static void reopen_cmd_done(struct op *op, int i, bool ok, json_object *ret,
                            const char *error)
{
    struct op_disk *d = &op->disks[i];
    (void)ret;

    if (!ok) {
        d->failed = true;
        str_setf(&d->job_error, "%s", error);
    }
    if (op->check) {
        op->check(op);
    }
}

static void reopen_abort_check(struct op *op);

/* Phase 2: every copy is PENDING; finalize them. */
static void check_finalized(struct op *op)
{
    bool all = true;

    if (op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->done) {
            all = false;
        }
    }
    if (all) {
        reopen_finish(op);
    }
}

/* Phase 1: every copy asked to complete (or cancel) until PENDING. */
static void check_pending(struct op *op)
{
    bool all = true, any_failed = false;

    if (op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (d->failed) {
            any_failed = true;
        } else if (!(d->manual_finalize && d->pending) && !d->done) {
            /* a job QEMU finalizes itself is through when it is done */
            all = false;
        }
    }
    if (any_failed && all) {
        /* one cannot: none may pivot; abort those waiting to */
        op->check = reopen_abort_check;
        for (int i = 0; i < op->ndisks; i++) {
            struct op_disk *d = &op->disks[i];
            if (d->manual_finalize && d->pending && !d->done) {
                op_qmp(op, qmp_command("job-cancel", job_args("id", d->job)),
                       reopen_cmd_done, i);
            }
        }
        reopen_abort_check(op);
        return;
    }
    if (!all) {
        return;
    }
    op->check = check_finalized;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (d->manual_finalize && d->pending && !d->done) {
            op_qmp(op, qmp_command("job-finalize", job_args("id", d->job)),
                   reopen_cmd_done, i);
        }
    }
    check_finalized(op);
}

static void reopen_abort_check(struct op *op)
{
    if (op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (d->pending && !d->done && !d->failed) {
            return;
        }
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        const char *top = chain_top_file(chain(), d->disk);
        if (d->failed && d->job_error) {
            str_set(&d->state, "copy failed");
            str_setf(&d->note, "runs on %s; the copy failed: %s", top ? top : "?",
                 d->job_error);
        } else {
            str_set(&d->state, "copy dropped");
            str_setf(&d->note, "runs on %s; its copy was dropped so that no "
                 "disk pivots alone", top ? top : "?");
        }
    }
    str_setf(&op->step_error, "not every copy could be completed, so none was "
         "switched to");
    op->check = NULL;
    op->next(op, false);
}

static void reopen_finish(struct op *op)
{
    bool all_ok = true;

    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        const char *top = chain_top_file(chain(), d->disk);
        if (d->failed) {
            all_ok = false;
            str_set(&d->state, "reopen failed");
            str_setf(&d->note, "runs on %s: %s", top ? top : "?",
                 d->job_error ? d->job_error : "the job failed");
        } else if (op->to_mirror) {
            str_set(&d->state, "pivoted");
            str_setf(&d->note, "runs on %s", d->mirror_file);
        } else {
            str_set(&d->state, "on source");
            str_setf(&d->note, "runs on %s; the copy to %s was dropped",
                 top ? top : "?", d->mirror_file);
        }
        d->own_job = false;
    }
    if (!all_ok) {
        str_setf(&op->step_error, "QEMU could not finalize every copy");
    }
    op->check = NULL;
    /* wait for the chain model to show QEMU's new chains */
    void (*next)(struct op *, bool) = op->next;
    op->next = NULL;
    next(op, all_ok);
}

void step_reopen(struct op *op, bool to_mirror,
                 void (*next)(struct op *, bool))
{
    op->next = next;
    op->check = NULL;
    op->to_mirror = to_mirror;
    /* every copy must be ready before any is touched */
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        const char *status = chain_job_status(chain(), d->disk);
        const char *job = chain_job_id(chain(), d->disk);
        char *missing;
        if (!d->job || !job || strcmp(job, d->job)) {
            str_setf(&op->step_error, "%s has no copy running (it runs on %s)",
                 d->disk, chain_top_file(chain(), d->disk)
                 ? chain_top_file(chain(), d->disk) : "?");
            next(op, false);
            return;
        }
        if (!status || strcmp(status, "ready")) {
            str_setf(&op->step_error, "the copy of %s to %s is not ready (job %s "
                 "is %s)", d->disk, d->mirror_file, d->job,
                 status ? status : "gone");
            next(op, false);
            return;
        }
        /* only an existing image opens its backing from its header; a copy
         * QEMU created gets the source's backing node */
        const char *mode = chain_mirror_mode(chain(), d->disk);
        if (to_mirror && mode && !strcmp(mode, "existing")
            && (missing = missing_backing(d->mirror_file))) {
            str_setf(&op->step_error, "the copy of %s, %s, is backed by %s, which "
                 "does not exist yet (copy the older layers there first)",
                 d->disk, d->mirror_file, missing);
            free(missing);
            next(op, false);
            return;
        }
    }
    op->check = check_pending;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        reset_job_facts(d);
        str_set(&d->state, "reopening");
        op_qmp(op, qmp_command(to_mirror ? "block-job-complete" : "block-job-cancel",
                           job_args("device", d->job)),
               reopen_cmd_done, i);
    }
}

/* ---- step: roll back ------------------------------------------------ */

enum { RB_START, RB_CANCELLING, RB_COMMITTING, RB_COMPLETING, RB_DONE };

static void rollback_check(struct op *op);

static void rollback_cmd_done(struct op *op, int i, bool ok,
                              json_object *ret, const char *error)
{
    struct op_disk *d = &op->disks[i];
    (void)ret;
    if (!ok) {
        /* recorded; the check decides what it means for this disk */
        d->failed = true;
        str_setf(&d->job_error, "%s", error);
    }
    rollback_check(op);
}

static void rollback_commit(struct op *op, int i)
{
    struct op_disk *d = &op->disks[i];
    json_object *a = json_object_new_object();

    str_setf(&d->undo_job, "qmp%03x%uu%d", reg.tag, op->seq, i);
    free(d->job);
    d->job = NULL;
    reset_job_facts(d);
    json_object_object_add(a, "job-id", json_object_new_string(d->undo_job));
    json_object_object_add(a, "device", json_object_new_string(
                               chain_job_device(chain(), d->disk)));
    /* by file: a node-name may have changed since, a file has not */
    json_object_object_add(a, "base", json_object_new_string(d->old_top_file));
    d->phase = RB_COMMITTING;
    op_qmp(op, qmp_command("block-commit", a), rollback_cmd_done, i);
}

static void rollback_disk(struct op *op, int i)
{
    struct op_disk *d = &op->disks[i];
    const char *top = chain_top_file(chain(), d->disk);

    switch (d->phase) {
    case RB_START:
        if (d->own_job && d->job && !d->done) {
            /* the copy goes first: a disk with a job takes no commit */
            json_object *a = job_args("device", d->job);
            jobj_add_bool(a, "force", 1);
            d->phase = RB_CANCELLING;
            d->failed = false;
            op_qmp(op, qmp_command("block-job-cancel", a), rollback_cmd_done, i);
            return;
        }
        /* fall through */
    case RB_CANCELLING:
        if (d->phase == RB_CANCELLING && !d->done && !d->failed) {
            return;  /* not gone yet */
        }
        d->own_job = false;
        if (d->snapshot_file && top && !strcmp(top, d->snapshot_file)) {
            rollback_commit(op, i);
            return;
        }
        d->phase = RB_DONE;
        str_set(&d->state, d->snapshot_file ? "untouched" : "copy dropped");
        str_setf(&d->note, "runs on %s", top ? top : "?");
        return;
    case RB_COMMITTING:
        if (d->failed) {
            d->phase = RB_DONE;
            str_set(&d->state, "rollback failed");
            str_setf(&d->note, "runs on %s; folding it back into %s failed: %s",
                 top ? top : "?", d->old_top_file, d->job_error);
            return;
        }
        if (d->ready && !d->done) {
            d->phase = RB_COMPLETING;
            op_qmp(op, qmp_command("block-job-complete",
                               job_args("device", d->undo_job)),
                   rollback_cmd_done, i);
        }
        return;
    case RB_COMPLETING:
        if (d->failed) {
            d->phase = RB_DONE;
            str_set(&d->state, "rollback failed");
            str_setf(&d->note, "runs on %s; folding it back into %s failed: %s",
                 top ? top : "?", d->old_top_file, d->job_error);
        } else if (d->done) {
            d->phase = RB_DONE;
            str_set(&d->state, "rolled back");
            str_setf(&d->note, "runs on %s again; %s was created and is no "
                 "longer used", d->old_top_file, d->snapshot_file);
        }
        return;
    case RB_DONE:
        return;
    }
}

static void rollback_check(struct op *op)
{
    bool all = true, ok = true;

    for (int i = 0; i < op->ndisks; i++) {
        rollback_disk(op, i);
    }
    if (op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        if (op->disks[i].phase != RB_DONE) {
            all = false;
        } else if (!strcmp(op->disks[i].state, "rollback failed")) {
            ok = false;
        }
    }
    if (all && op->next) {
        void (*next)(struct op *, bool) = op->next;
        op->check = NULL;
        op->next = NULL;
        next(op, ok);
    }
}

void step_rollback(struct op *op, void (*next)(struct op *, bool))
{
    if (!upstream_is_ready(reg.env->up)) {
        for (int i = 0; i < op->ndisks; i++) {
            str_set(&op->disks[i].state, "unknown");
            str_set(&op->disks[i].note, "QEMU's monitor went away during the "
                "operation");
        }
        op->check = NULL;
        op->next = NULL;
        next(op, false);
        return;
    }
    op->next = next;
    op->check = rollback_check;
    for (int i = 0; i < op->ndisks; i++) {
        op->disks[i].phase = RB_START;
    }
    rollback_check(op);
}

/* ---- endings --------------------------------------------------------- */

static void rolled_back(struct op *op, bool ok)
{
    char *why = op->step_error ? xstrdup(op->step_error)
                               : xstrdup("it failed");
    op_fail(op, "%s; %s", why, ok ? "everything it did was undone"
                                  : "undoing it did not fully succeed");
    free(why);
}

/*
 * A ready operation keeps watching its copies: one that fails while the
 * operation waits to be reopened takes the whole operation back (every
 * disk it touched is rolled back), as a failure before it would have; one
 * that someone else completed has pivoted.
 */
static void watch_ready(struct op *op)
{
    bool all_pivoted = true;

    if (op->state != OP_READY || op->outstanding) {
        return;
    }
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->job || !d->own_job) {
            all_pivoted = all_pivoted && !strcmp(d->state, "pivoted");
            continue;
        }
        if (d->failed) {
            d->own_job = false;
            str_set(&d->state, "copy failed");
            str_setf(&d->note, "the copy to %s failed after it was ready: %s",
                 d->mirror_file, d->job_error ? d->job_error : "it ended");
            str_setf(&op->step_error, "the copy of %s to %s failed after it was "
                 "ready: %s", d->disk, d->mirror_file,
                 d->job_error ? d->job_error : "it ended");
            op->check = NULL;
            step_rollback(op, rolled_back);
            return;
        }
        if (d->done) {
            const char *top = chain_top_file(chain(), d->disk);
            d->own_job = false;
            str_set(&d->state, top && !strcmp(top, d->mirror_file) ? "pivoted"
                                                               : "copy dropped");
            str_setf(&d->note, "runs on %s (done by another client)",
                 top ? top : "?");
        }
        all_pivoted = all_pivoted && !strcmp(d->state, "pivoted");
    }
    if (all_pivoted) {
        op->check = NULL;
        op_set_state(op, OP_PIVOTED);
    }
}

void op_watch(struct op *op)
{
    op->check = watch_ready;
}

void op_ready_or_rollback(struct op *op, bool ok)
{
    if (ok) {
        op->next = NULL;
        op_set_state(op, OP_READY);
        op->check = watch_ready;   /* before the answer lets anything run */
        answer(op);
        return;
    }
    step_rollback(op, rolled_back);
}

void ops_upstream_lost(void)
{
    for (int i = 0; i < reg.nops; i++) {
        struct op *op = reg.ops[i];
        if (is_final(op->state) || op->state == OP_READY) {
            continue;
        }
        for (int k = 0; k < op->ndisks; k++) {
            str_set(&op->disks[k].state, "unknown");
            str_set(&op->disks[k].note, "QEMU's monitor went away in the "
                    "middle; see qmproxy-query-chain once it is back");
        }
        op_fail(op, "QEMU's monitor went away during the operation");
    }
}

/* ---- resuming after a restart -------------------------------------- */

static void resumed_ready(struct op *op, bool ok)
{
    if (ok) {
        op_set_state(op, OP_READY);
        op->check = watch_ready;
    } else {
        op_fail(op, "%s", op->step_error ? op->step_error : "a copy failed");
    }
}

void ops_resume(void)
{
    for (int i = 0; i < reg.nops; i++) {
        struct op *op = reg.ops[i];
        bool ready = true, lost = false;
        struct strbuf why = STRBUF_INIT;

        if (is_final(op->state)) {
            continue;
        }
        for (int k = 0; k < op->ndisks; k++) {
            struct op_disk *d = &op->disks[k];
            const char *job = chain_job_id(chain(), d->disk);
            const char *status = chain_job_status(chain(), d->disk);
            const char *top = chain_top_file(chain(), d->disk);
            if (!d->job || !d->mirror_file) {
                continue;
            }
            if (job && !strcmp(job, d->job)) {
                d->ready = status && !strcmp(status, "ready");
                str_set(&d->job_status, status);
                str_set(&d->state, d->ready ? "ready" : "mirroring");
                if (!d->ready) {
                    ready = false;
                }
                continue;
            }
            lost = true;
            if (top && !strcmp(top, d->mirror_file)) {
                str_set(&d->state, "pivoted");
                str_setf(&d->note, "runs on %s (pivoted while the proxy was "
                     "away)", top);
            } else {
                str_set(&d->state, "copy lost");
                str_setf(&d->note, "runs on %s; its copy job %s ended while the "
                     "proxy was away", top ? top : "?", d->job);
            }
            strbuf_addf(&why, "%s%s", why.len ? ", " : "", d->disk);
        }
        if (lost) {
            op_fail(op, "qmproxy restarted during the operation and found "
                    "the copies of %s gone", why.buf);
        } else if (ready) {
            log_info("operation %s resumed after a restart: ready", op->name);
            op_set_state(op, OP_READY);
            op->check = watch_ready;
        } else {
            log_info("operation %s resumed after a restart: waiting for its "
                     "copies", op->name);
            op_set_state(op, OP_MIRRORING);
            step_wait_ready(op, resumed_ready);
        }
        strbuf_release(&why);
    }
}
