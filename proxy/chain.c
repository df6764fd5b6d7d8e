/*
 * chain: backing chains predicted from the traffic and corrected from
 * QEMU's own answers.
 *
 * The model at any moment is QEMU's answer to the last reconciliation with
 * the observations made after it applied on top.  That is consistent
 * because QEMU writes replies and events in the order it does things, and
 * the proxy reads them in that order: everything observed before the reply
 * to its own query-block happened before QEMU answered it.
 */
#include "chain.h"
#include "chain-model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmp.h"
#include "upstream.h"
#include "util.h"

char *ch_plain_filename(const char *name)
{
    json_object *o, *v;
    char *out;

    if (!name || strncmp(name, "json:", 5)) {
        return dup_or_null(name);
    }
    o = json_tokener_parse(name + 5);
    v = o;
    while (v && json_object_is_type(v, json_type_object)) {
        json_object *file;
        if (json_object_object_get_ex(v, "filename", &file)
            && json_object_is_type(file, json_type_string)) {
            out = xstrdup(json_object_get_string(file));
            json_object_put(o);
            return out;
        }
        if (!json_object_object_get_ex(v, "file", &v)) {
            break;
        }
    }
    json_object_put(o);
    return xstrdup(name);
}

/* The id libvirt and people use for a device: the qdev id inside
 * "/machine/peripheral/ID/virtio-backend", else the qdev as given. */
static char *qdev_id(const char *qdev)
{
    static const char prefix[] = "/machine/peripheral/";
    const char *p, *end;

    if (!qdev || !qdev[0]) {
        return NULL;
    }
    if (strncmp(qdev, prefix, sizeof(prefix) - 1)) {
        return xstrdup(qdev);
    }
    p = qdev + sizeof(prefix) - 1;
    end = strchr(p, '/');
    return end ? xstrndup(p, (size_t)(end - p)) : xstrdup(p);
}

/* ---- disks and jobs ------------------------------------------------ */

void ch_layer_clear(struct layer *l)
{
    free(l->file);
    free(l->format);
    free(l->node_name);
}

void ch_disk_free(struct disk *d)
{
    if (!d) {
        return;
    }
    for (int i = 0; i < d->nlayers; i++) {
        ch_layer_clear(&d->layers[i]);
    }
    free(d->layers);
    free(d->name);
    free(d->device);
    free(d->qdev);
    free(d->published);
    free(d->last_top);
    free(d);
}

void ch_job_free(struct job *j)
{
    if (!j) {
        return;
    }
    free(j->id);
    free(j->type);
    free(j->disk);
    free(j->status);
    free(j->error);
    free(j->target_file);
    free(j->target_format);
    free(j->mode);
    free(j->sync);
    free(j->base_file);
    free(j->top_file);
    free(j->started_at);
    free(j->operation);
    free(j);
}

struct disk *ch_disk_by_name(const struct chain *c, const char *name)
{
    if (!name) {
        return NULL;
    }
    for (int i = 0; i < c->ndisks; i++) {
        if (!strcmp(c->disks[i]->name, name)) {
            return c->disks[i];
        }
    }
    return NULL;
}

/* Any name a client may use: device, qdev, a layer's node-name, the
 * active layer's file. */
struct disk *ch_find_disk(const struct chain *c, const char *any)
{
    struct disk *d;

    if (!any || !any[0]) {
        return NULL;
    }
    if ((d = ch_disk_by_name(c, any))) {
        return d;
    }
    for (int i = 0; i < c->ndisks; i++) {
        d = c->disks[i];
        if (same(d->device, any) || same(d->qdev, any)) {
            return d;
        }
        for (int k = 0; k < d->nlayers; k++) {
            if (same(d->layers[k].node_name, any)) {
                return d;
            }
        }
        if (d->nlayers && same(d->layers[0].file, any)) {
            return d;
        }
    }
    return NULL;
}

const char *chain_disk_name(const struct chain *c, const char *any_name)
{
    struct disk *d = ch_find_disk(c, any_name);
    return d ? d->name : NULL;
}

struct job *ch_find_job(const struct chain *c, const char *id)
{
    for (int i = 0; id && i < c->njobs; i++) {
        if (!strcmp(c->jobs[i]->id, id)) {
            return c->jobs[i];
        }
    }
    return NULL;
}

struct job *ch_disk_job(const struct chain *c, const struct disk *d)
{
    for (int i = 0; d && i < c->njobs; i++) {
        if (same(c->jobs[i]->disk, d->name)) {
            return c->jobs[i];
        }
    }
    return NULL;
}

void ch_remove_job(struct chain *c, struct job *j)
{
    for (int i = 0; i < c->njobs; i++) {
        if (c->jobs[i] == j) {
            c->jobs[i] = c->jobs[--c->njobs];
            ch_job_free(j);
            return;
        }
    }
}

struct job *ch_add_job(struct chain *c, const char *id)
{
    struct job *j = xcalloc(1, sizeof(*j));
    char when[40];

    j->id = xstrdup(id);
    j->status = xstrdup("created");
    j->offset = j->len = 0;
    format_rfc3339_us(when, sizeof(when));
    j->started_at = xstrdup(when);
    c->jobs = xrealloc(c->jobs, sizeof(*c->jobs) * (size_t)(c->njobs + 1));
    c->jobs[c->njobs++] = j;
    return j;
}

int ch_layer_index(const struct disk *d, const char *file_or_node)
{
    char *plain;
    int found = -1;

    if (!d || !file_or_node) {
        return -1;
    }
    plain = ch_plain_filename(file_or_node);
    for (int i = 0; i < d->nlayers && found < 0; i++) {
        if (same(d->layers[i].node_name, file_or_node)
            || same(d->layers[i].file, plain)) {
            found = i;
        }
    }
    free(plain);
    return found;
}

/* Keep layers [from, to) of d, dropping the rest. */
void ch_keep_layers(struct disk *d, int from, int to)
{
    for (int i = 0; i < d->nlayers; i++) {
        if (i < from || i >= to) {
            ch_layer_clear(&d->layers[i]);
        }
    }
    memmove(d->layers, d->layers + from, sizeof(*d->layers)
            * (size_t)(to - from));
    d->nlayers = to - from;
}

void ch_insert_top(struct disk *d, const char *file, const char *format,
                       const char *node)
{
    d->layers = xrealloc(d->layers, sizeof(*d->layers)
                         * (size_t)(d->nlayers + 1));
    memmove(d->layers + 1, d->layers, sizeof(*d->layers)
            * (size_t)d->nlayers);
    d->layers[0] = (struct layer){
        .file = ch_plain_filename(file),
        .format = xstrdup(format ? format : "qcow2"),
        .node_name = dup_or_null(node),
        .read_only = false,
        .virtual_size = d->nlayers > 0 ? d->layers[1].virtual_size : -1,
    };
    d->nlayers++;
    if (d->nlayers > 1) {
        d->layers[1].read_only = true;
    }
}

/* ---- accessors for operations -------------------------------------- */

static const struct layer *top(const struct chain *c, const char *name)
{
    struct disk *d = ch_find_disk(c, name);
    return d && d->nlayers ? &d->layers[0] : NULL;
}

const char *chain_top_file(const struct chain *c, const char *disk)
{
    const struct layer *l = top(c, disk);
    return l ? l->file : NULL;
}

const char *chain_top_format(const struct chain *c, const char *disk)
{
    const struct layer *l = top(c, disk);
    return l ? l->format : NULL;
}

const char *chain_top_node(const struct chain *c, const char *disk)
{
    const struct layer *l = top(c, disk);
    return l ? l->node_name : NULL;
}

const char *chain_job_device(const struct chain *c, const char *disk)
{
    struct disk *d = ch_find_disk(c, disk);
    if (!d) {
        return NULL;
    }
    if (d->device && d->device[0]) {
        return d->device;
    }
    return d->nlayers ? d->layers[0].node_name : NULL;
}

int chain_layer_count(const struct chain *c, const char *disk)
{
    struct disk *d = ch_find_disk(c, disk);
    return d ? d->nlayers : 0;
}

const char *chain_layer_file(const struct chain *c, const char *disk, int i)
{
    struct disk *d = ch_find_disk(c, disk);
    return d && i >= 0 && i < d->nlayers ? d->layers[i].file : NULL;
}

const char *chain_mirror_file(const struct chain *c, const char *disk)
{
    struct job *j = ch_disk_job(c, ch_find_disk(c, disk));
    return j && same(j->type, "mirror") ? j->target_file : NULL;
}

const char *chain_mirror_mode(const struct chain *c, const char *disk)
{
    struct job *j = ch_disk_job(c, ch_find_disk(c, disk));
    return j && same(j->type, "mirror") ? j->mode : NULL;
}

bool chain_job_manual_finalize(const struct chain *c, const char *disk)
{
    struct job *j = ch_disk_job(c, ch_find_disk(c, disk));
    return j && j->manual_finalize;
}

const char *chain_job_id(const struct chain *c, const char *disk)
{
    struct job *j = ch_disk_job(c, ch_find_disk(c, disk));
    return j ? j->id : NULL;
}

const char *chain_job_status(const struct chain *c, const char *disk)
{
    struct job *j = ch_disk_job(c, ch_find_disk(c, disk));
    return j ? j->status : NULL;
}

void chain_note_job_owner(struct chain *c, const char *job_id,
                          const char *operation)
{
    struct job *j = ch_find_job(c, job_id);
    if (j) {
        str_set(&j->operation, operation);
        j->started_by = 0;
    }
}

/* ---- reconciliation ------------------------------------------------ */

/* Node-names of backing layers: QEMU's query-block names only the top. */
static void name_backing_layers(struct disk *d, json_object *nodes,
                                json_object *used)
{
    size_t n = nodes ? json_object_array_length(nodes) : 0;

    for (int k = 1; k < d->nlayers; k++) {
        struct layer *l = &d->layers[k];
        for (size_t i = 0; i < n && !l->node_name; i++) {
            json_object *node = json_object_array_get_idx(nodes, i);
            const char *name = jobj_str(node, "node-name");
            char *file = ch_plain_filename(jobj_str(node, "file"));
            if (name && same(jobj_str(node, "drv"), l->format)
                && same(file, l->file)
                && !json_object_object_get_ex(used, name, NULL)) {
                l->node_name = xstrdup(name);
                json_object_object_add(used, name, NULL);
            }
            free(file);
        }
    }
}

/* QEMU's view, as disks. */
static struct disk **disks_from_qemu(json_object *blocks, json_object *nodes,
                                     int *count)
{
    size_t n = blocks ? json_object_array_length(blocks) : 0;
    struct disk **out = xcalloc(n ? n : 1, sizeof(*out));
    json_object *used = json_object_new_object();
    int k = 0;

    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(blocks, i);
        json_object *inserted, *image;
        const char *device = jobj_str(b, "device");
        char *id = qdev_id(jobj_str(b, "qdev"));
        struct disk *d;

        if (!(device && device[0]) && !id) {
            free(id);
            continue;
        }
        d = xcalloc(1, sizeof(*d));
        d->device = xstrdup(device ? device : "");
        d->qdev = dup_or_null(jobj_str(b, "qdev"));
        d->name = device && device[0] ? xstrdup(device) : xstrdup(id);
        free(id);
        if (json_object_object_get_ex(b, "inserted", &inserted)
            && json_object_object_get_ex(inserted, "image", &image)) {
            const char *top_node = jobj_str(inserted, "node-name");
            bool ro = jobj_bool(inserted, "ro", false);
            for (json_object *img = image; img;) {
                json_object *next = NULL;
                d->layers = xrealloc(d->layers, sizeof(*d->layers)
                                     * (size_t)(d->nlayers + 1));
                d->layers[d->nlayers] = (struct layer){
                    .file = ch_plain_filename(jobj_str(img, "filename")),
                    .format = dup_or_null(jobj_str(img, "format")),
                    .node_name = d->nlayers == 0 ? dup_or_null(top_node)
                                                 : NULL,
                    .read_only = d->nlayers == 0 ? ro : true,
                    .virtual_size = jobj_int(img, "virtual-size", -1),
                };
                if (!d->layers[d->nlayers].file) {
                    d->layers[d->nlayers].file = xstrdup("");
                }
                d->nlayers++;
                json_object_object_get_ex(img, "backing-image", &next);
                img = next;
            }
            if (top_node) {
                json_object_object_add(used, top_node, NULL);
            }
        }
        out[k++] = d;
    }
    for (int i = 0; i < k; i++) {
        name_backing_layers(out[i], nodes, used);
    }
    json_object_put(used);
    *count = k;
    return out;
}

/* Words for a log line: how a predicted chain differs from QEMU's. */
static char *describe_chain(const struct disk *d)
{
    struct strbuf sb = STRBUF_INIT;

    if (!d) {
        return xstrdup("(no such disk)");
    }
    for (int i = 0; i < d->nlayers; i++) {
        strbuf_addf(&sb, "%s%s", i ? " <- " : "", d->layers[i].file);
    }
    if (!d->nlayers) {
        strbuf_adds(&sb, "(no medium)");
    }
    return strbuf_detach(&sb, NULL);
}

static bool chains_equal(const struct disk *a, const struct disk *b)
{
    if (a->nlayers != b->nlayers) {
        return false;
    }
    for (int i = 0; i < a->nlayers; i++) {
        const struct layer *x = &a->layers[i], *y = &b->layers[i];
        if (!same(x->file, y->file)) {
            return false;
        }
        if (x->format && y->format && strcmp(x->format, y->format)) {
            return false;
        }
        if (x->node_name && y->node_name && strcmp(x->node_name, y->node_name)
            && x->node_name[0] != '#') {
            return false;
        }
    }
    return true;
}

/*
 * A job the proxy did not see start names no disk; QEMU's block graph
 * (x-debug-query-block-graph) shows which nodes it works on.
 */
static const char *job_disk_from_graph(const struct chain *c,
                                       json_object *graph, const char *job)
{
    json_object *nodes, *edges;
    int64_t job_node = -1;

    if (!json_object_object_get_ex(graph, "nodes", &nodes)
        || !json_object_object_get_ex(graph, "edges", &edges)) {
        return NULL;
    }
    for (size_t i = 0; i < json_object_array_length(nodes); i++) {
        json_object *n = json_object_array_get_idx(nodes, i);
        if (same(jobj_str(n, "type"), "block-job") && same(jobj_str(n, "name"),
                                                         job)) {
            job_node = jobj_int(n, "id", -1);
        }
    }
    for (size_t i = 0; job_node >= 0 && i < json_object_array_length(edges);
         i++) {
        json_object *e = json_object_array_get_idx(edges, i);
        if (jobj_int(e, "parent", -2) != job_node) {
            continue;
        }
        int64_t child = jobj_int(e, "child", -1);
        for (size_t k = 0; k < json_object_array_length(nodes); k++) {
            json_object *n = json_object_array_get_idx(nodes, k);
            struct disk *d;
            if (jobj_int(n, "id", -2) == child
                && (d = ch_find_disk(c, jobj_str(n, "name")))) {
                return d->name;
            }
        }
    }
    return NULL;
}

static void update_jobs_from_qemu(struct chain *c, json_object *jobs)
{
    size_t n = jobs ? json_object_array_length(jobs) : 0;

    /* jobs QEMU no longer has are over (unless seen since its answer) */
    for (int i = c->njobs; i-- > 0;) {
        bool present = c->jobs[i]->touched > c->seq_at_jobs;
        for (size_t k = 0; k < n && !present; k++) {
            present = same(jobj_str(json_object_array_get_idx(jobs, k),
                                   "device"), c->jobs[i]->id);
        }
        if (!present) {
            log_debug("job %s is no longer in QEMU", c->jobs[i]->id);
            ch_remove_job(c, c->jobs[i]);
        }
    }
    for (size_t k = 0; k < n; k++) {
        json_object *q = json_object_array_get_idx(jobs, k);
        const char *id = jobj_str(q, "device");
        struct job *j = ch_find_job(c, id);
        if (!id) {
            continue;
        }
        if (j && j->touched > c->seq_at_jobs) {
            continue;  /* an event since then says more than this answer */
        }
        if (!j) {
            /* started behind the proxy's back (another monitor, or while
             * it was away): the id names the disk unless one was given */
            j = ch_add_job(c, id);
            str_set(&j->type, jobj_str(q, "type"));
            str_set(&j->disk, chain_disk_name(c, id));
            if (!j->disk) {
                str_set(&j->disk, job_disk_from_graph(c, c->q_graph, id));
            }
            str_set(&j->started_at, NULL);
            log_info("found job %s (%s) that the proxy did not see start",
                     id, j->type ? j->type : "?");
        }
        str_set(&j->status, jobj_str(q, "status"));
        j->offset = jobj_int(q, "offset", j->offset);
        j->len = jobj_int(q, "len", j->len);
        j->ready = jobj_bool(q, "ready", j->ready);
        if (jobj_str(q, "error")) {
            str_set(&j->error, jobj_str(q, "error"));
        }
        if (!j->type) {
            str_set(&j->type, jobj_str(q, "type"));
        }
    }
}

static void run_waiters(struct waiter *w, int n)
{
    for (int i = 0; i < n; i++) {
        w[i].fn(w[i].opaque);
    }
    free(w);
}

void ch_announce(struct chain *c, struct disk *d, const char *reason,
                     const char *before)
{
    json_object *data = json_object_new_object();

    json_object_object_add(data, "disk", json_object_new_string(d->name));
    json_object_object_add(data, "chain", ch_layers_json(d));
    struct job *j = ch_disk_job(c, d);
    if (ch_job_is_mirror(j)) {
        json_object_object_add(data, "mirror", ch_mirror_json(j));
    }
    jobj_add_str(data, "reason", reason);
    jobj_add_str(data, "before", before);
    if (c->hooks->emit_event) {
        c->hooks->emit_event(c->opaque, "QMPROXY_CHAIN_CHANGED", data);
    }
    json_object_put(data);
}

void ch_schedule(struct chain *c);

/* Compare the saved model with QEMU's: what changed while we were away. */
static void compare_loaded(struct chain *c)
{
    json_object *disks;
    size_t n;

    if (!c->loaded) {
        return;
    }
    if (!json_object_object_get_ex(c->loaded, "disks", &disks)
        || !json_object_is_type(disks, json_type_array)) {
        disks = NULL;
    }
    n = disks ? json_object_array_length(disks) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *saved = json_object_array_get_idx(disks, i);
        const char *name = jobj_str(saved, "disk");
        json_object *layers;
        struct disk *now = ch_disk_by_name(c, name);
        struct strbuf before = STRBUF_INIT;

        if (!name) {
            continue;
        }
        if (json_object_object_get_ex(saved, "chain", &layers)) {
            for (size_t k = 0; k < json_object_array_length(layers); k++) {
                strbuf_addf(&before, "%s%s", k ? " <- " : "",
                            jobj_str(json_object_array_get_idx(layers, k),
                                    "file"));
            }
        }
        char *after = describe_chain(now);
        if (!now) {
            log_warn("while qmproxy was away, disk %s went away (its chain "
                     "was %s)", name, before.buf ? before.buf : "");
        } else if (strcmp(before.buf ? before.buf : "(no medium)", after)) {
            log_warn("while qmproxy was away, the chain of disk %s changed: "
                     "was %s, is %s", name, before.buf ? before.buf : "",
                     after);
            ch_announce(c, now, "changed-while-away", before.buf);
        }
        free(after);
        strbuf_release(&before);
    }
    /* what only the proxy knew about jobs that still run */
    json_object *jobs;
    if (json_object_object_get_ex(c->loaded, "jobs", &jobs)
        && json_object_is_type(jobs, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(jobs); i++) {
            json_object *s = json_object_array_get_idx(jobs, i);
            struct job *j = ch_find_job(c, jobj_str(s, "id"));
            if (!j) {
                continue;
            }
            j->started_by = (unsigned)jobj_int(s, "started-by", 0);
            str_set(&j->started_at, jobj_str(s, "started-at"));
            str_set(&j->operation, jobj_str(s, "operation"));
            str_set(&j->target_file, jobj_str(s, "target-file"));
            str_set(&j->target_format, jobj_str(s, "target-format"));
            str_set(&j->mode, jobj_str(s, "mode"));
            str_set(&j->sync, jobj_str(s, "sync"));
            j->active_commit = jobj_bool(s, "active-commit", false);
            j->pivot_requested = jobj_bool(s, "pivot-requested", false);
            j->cancel_requested = jobj_bool(s, "cancel-requested", false);
            j->manual_finalize = jobj_bool(s, "manual-finalize", false);
            if (!j->disk) {
                str_set(&j->disk, jobj_str(s, "disk"));
            }
        }
    }
    json_object *nodes;
    if (json_object_object_get_ex(c->loaded, "blockdev-nodes", &nodes)) {
        json_object_put(c->blockdev_nodes);
        c->blockdev_nodes = json_object_get(nodes);
    }
    json_object_put(c->loaded);
    c->loaded = NULL;
}

static void reconciled(struct chain *c)
{
    int n;
    struct disk **truth;
    struct waiter *w;
    int nw;

    truth = disks_from_qemu(c->q_block, c->q_nodes, &n);
    for (int i = 0; i < n; i++) {
        struct disk *old = ch_disk_by_name(c, truth[i]->name);
        bool overtaken = c->seq > c->seq_at_block;
        if (old && !chains_equal(old, truth[i]) && overtaken) {
            /* QEMU answered before the latest change: the prediction is
             * newer than this answer; keep it and ask again */
            c->dirty = true;
            for (int k = 0; k < c->ndisks; k++) {
                if (c->disks[k] == old) {
                    c->disks[k] = truth[i];
                }
            }
            truth[i] = old;
            continue;
        } else if (old && !chains_equal(old, truth[i])) {
            char *was = describe_chain(old), *is = describe_chain(truth[i]);
            if (old->uncertain) {
                log_debug("chain of %s completed from QEMU: %s", old->name, is);
            } else {
                log_warn("the chain of disk %s differs from what the traffic "
                         "said: predicted %s, QEMU has %s; QEMU wins",
                         old->name, was, is);
            }
            free(was);
            free(is);
        }
        if (old && !c->q_nodes) {
            /* no node-names asked this time: keep those of the same files */
            for (int k = 1; k < truth[i]->nlayers; k++) {
                int o = ch_layer_index(old, truth[i]->layers[k].file);
                if (o >= 0 && old->layers[o].node_name
                    && !truth[i]->layers[k].node_name) {
                    truth[i]->layers[k].node_name =
                        xstrdup(old->layers[o].node_name);
                }
            }
        }
        if (old) {
            truth[i]->published = old->published;
            old->published = NULL;
            truth[i]->last_top = old->last_top;
            old->last_top = NULL;
        }
    }
    for (int i = 0; i < c->ndisks; i++) {
        ch_disk_free(c->disks[i]);
    }
    free(c->disks);
    c->disks = truth;
    c->ndisks = n;
    update_jobs_from_qemu(c, c->q_jobs);
    json_object_put(c->early);
    c->early = json_object_new_object();
    json_object_put(c->q_block);
    json_object_put(c->q_nodes);
    json_object_put(c->q_jobs);
    json_object_put(c->q_graph);
    c->q_block = c->q_nodes = c->q_jobs = c->q_graph = NULL;

    bool first = !c->seeded;
    c->seeded = true;
    if (first) {
        compare_loaded(c);
    }
    for (int i = 0; i < c->ndisks; i++) {
        struct disk *d = c->disks[i];
        char *now = ch_publishable(c, d);
        if (d->published && strcmp(d->published, now)) {
            ch_announce(c, d, NULL, NULL);
        }
        free(d->published);
        d->published = now;
        /* a new overlay over what was the active layer: a snapshot */
        if (d->nlayers >= 2 && d->last_top
            && strcmp(d->last_top, d->layers[0].file)
            && !strcmp(d->last_top, d->layers[1].file)
            && c->hooks->new_overlay) {
            c->hooks->new_overlay(c->opaque, d->name, d->layers[0].file,
                                  d->layers[1].file, d->layers[1].format,
                                  (long long)d->layers[0].virtual_size);
        }
        str_set(&d->last_top, d->nlayers ? d->layers[0].file : NULL);
    }
    if (c->hooks->changed) {
        c->hooks->changed(c->opaque);
    }
    c->reconciling = false;
    w = c->waiters;
    nw = c->nwaiters;
    c->waiters = c->next_waiters;
    c->nwaiters = c->nnext_waiters;
    c->next_waiters = NULL;
    c->nnext_waiters = 0;
    if (c->dirty) {
        c->dirty = false;
        ch_schedule(c);
    } else if (c->nwaiters) {
        ch_schedule(c);
    }
    run_waiters(w, nw);
}

struct query {
    struct chain *chain;
    unsigned generation;
    json_object **into;
};

static void on_query_reply(void *opaque, const struct upstream_reply *r)
{
    struct query *q = opaque;
    struct chain *c = q->chain;
    json_object **into = q->into;
    bool current = q->generation == c->generation;
    json_object *ret;

    free(q);
    if (!current) {
        return;  /* asked before QEMU went away */
    }
    if (r->lost) {
        c->reconciling = false;
        return;
    }
    if (into == &c->q_block) {
        c->seq_at_block = c->seq;
    } else if (into == &c->q_jobs) {
        c->seq_at_jobs = c->seq;
    }
    ret = upstream_reply_return(r);
    if (!ret && into != &c->q_graph) {
        log_warn("QEMU refused a query the chain model needs: %.*s",
                 (int)r->len, r->raw);
    }
    json_object_put(*into);
    *into = json_object_get(ret);
    if (--c->pending == 0) {
        reconciled(c);
    }
}

static void ask(struct chain *c, const char *command, bool flat,
                json_object **into)
{
    struct query *q = xcalloc(1, sizeof(*q));
    json_object *args = NULL, *cmd;

    q->chain = c;
    q->generation = c->generation;
    q->into = into;
    if (flat) {
        args = json_object_new_object();
        jobj_add_bool(args, "flat", true);
    }
    cmd = qmp_command(command, args);
    c->pending++;
    upstream_send_internal(c->up, cmd, on_query_reply, q);
    json_object_put(cmd);
}

/*
 * QEMU 7.2 crashes in bdrv_refresh_filename() when query-named-block-nodes
 * walks over the nodes a block job took out of the graph and still holds
 * (seen with block-stream between its end and its dismissal, reproduced on
 * QEMU alone).  A job can reach that point between the moment the proxy
 * asks and the moment QEMU answers, so while any job lives the proxy asks
 * only query-block and query-block-jobs, which walk the disks' own chains,
 * and keeps the node-names it knew; the reconciliation after the last job
 * is gone asks for everything again.
 */
static bool jobs_alive(const struct chain *c)
{
    return c->njobs > 0;
}

/* Ask QEMU for the truth, unless a question is already out (then ask
 * again when it is answered, since the change may postdate it). */
void ch_schedule(struct chain *c)
{
    if (c->lost) {
        return;
    }
    if (c->reconciling) {
        c->dirty = true;
        return;
    }
    c->reconciling = true;
    /* the answers complete each other; reconciled() runs on the last */
    c->pending = 0;
    ask(c, "query-block", false, &c->q_block);
    ask(c, "query-block-jobs", false, &c->q_jobs);
    if (!jobs_alive(c)) {
        ask(c, "query-named-block-nodes", true, &c->q_nodes);
        /* only to name the disk of jobs started behind the proxy's back */
        ask(c, "x-debug-query-block-graph", false, &c->q_graph);
    }
}

void chain_reconcile(struct chain *c)
{
    ch_schedule(c);
}

static void add_waiter(struct waiter **list, int *n, void (*fn)(void *),
                       void *opaque)
{
    *list = xrealloc(*list, sizeof(**list) * (size_t)(*n + 1));
    (*list)[(*n)++] = (struct waiter){ fn, opaque };
}

void chain_after_reconcile(struct chain *c, void (*done)(void *opaque),
                           void *opaque)
{
    if (c->lost) {
        done(opaque);
        return;
    }
    if (c->reconciling) {
        /* the one running may have been asked before the caller's change */
        add_waiter(&c->next_waiters, &c->nnext_waiters, done, opaque);
        c->dirty = true;
    } else {
        add_waiter(&c->waiters, &c->nwaiters, done, opaque);
        ch_schedule(c);
    }
}

void chain_settle(struct chain *c, void (*done)(void *opaque), void *opaque)
{
    if (c->lost || (!c->reconciling && !c->dirty)) {
        done(opaque);
    } else if (c->dirty) {
        add_waiter(&c->next_waiters, &c->nnext_waiters, done, opaque);
    } else {
        add_waiter(&c->waiters, &c->nwaiters, done, opaque);
    }
}

/* A query answers with QEMU's truth: wait for a reconciliation under
 * way, and ask QEMU afresh while a job runs (its progress moves). */
void chain_refresh(struct chain *c, void (*done)(void *opaque), void *opaque)
{
    if (c->lost || (!c->reconciling && !c->dirty && c->njobs == 0)) {
        done(opaque);
        return;
    }
    if (c->reconciling && !c->dirty && c->njobs == 0) {
        add_waiter(&c->waiters, &c->nwaiters, done, opaque);
        return;
    }
    chain_after_reconcile(c, done, opaque);
}

void chain_seed(struct chain *c, void (*done)(void *opaque), void *opaque)
{
    c->lost = false;
    c->generation++;
    c->reconciling = false;
    c->dirty = false;
    chain_after_reconcile(c, done, opaque);
}

void chain_upstream_lost(struct chain *c)
{
    struct waiter *w = c->waiters, *nw = c->next_waiters;
    int n = c->nwaiters, nn = c->nnext_waiters;

    c->lost = true;
    c->generation++;
    c->reconciling = false;
    c->dirty = false;
    c->waiters = c->next_waiters = NULL;
    c->nwaiters = c->nnext_waiters = 0;
    run_waiters(w, n);
    run_waiters(nw, nn);
}

/* ---- life ---------------------------------------------------------- */

struct chain *chain_new(struct upstream *up, const struct chain_hooks *hooks,
                        void *opaque)
{
    struct chain *c = xcalloc(1, sizeof(*c));

    c->up = up;
    c->hooks = hooks;
    c->opaque = opaque;
    c->blockdev_nodes = json_object_new_object();
    c->early = json_object_new_object();
    c->lost = true;
    return c;
}

void chain_free(struct chain *c)
{
    if (!c) {
        return;
    }
    for (int i = 0; i < c->ndisks; i++) {
        ch_disk_free(c->disks[i]);
    }
    free(c->disks);
    for (int i = 0; i < c->njobs; i++) {
        ch_job_free(c->jobs[i]);
    }
    free(c->jobs);
    free(c->waiters);
    free(c->next_waiters);
    json_object_put(c->blockdev_nodes);
    json_object_put(c->early);
    json_object_put(c->q_block);
    json_object_put(c->q_nodes);
    json_object_put(c->q_jobs);
    json_object_put(c->q_graph);
    json_object_put(c->loaded);
    free(c);
}

