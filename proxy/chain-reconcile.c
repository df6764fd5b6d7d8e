/*
 * chain-reconcile: QEMU's answers to the proxy's questions made into the
 * model.  QEMU wins where it and the prediction differ (unless the
 * prediction is newer than the answer), what only the proxy knows carries
 * over, the jobs QEMU reports replace those it no longer has, and what
 * changed is announced - after a restart, against the saved model too.
 * Asking, and waking whoever waits for the answers, stay in chain.c.
 */
#include "chain-reconcile.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

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

/* The key under which a node of query-named-block-nodes is indexed: its
 * driver and plain file name. */
static char *node_key(const char *drv, const char *file)
{
    return xasprintf("%s\n%s", drv ? drv : "", file ? file : "");
}

/*
 * query-named-block-nodes indexed once: "drv\nfile" -> the node-names of
 * that driver and file, in QEMU's order.  Looking each layer up in the
 * list instead would cost layers x nodes (80 million comparisons at 64
 * disks x 100 layers).
 */
static json_object *index_nodes(json_object *nodes)
{
    json_object *index = json_object_new_object();
    size_t n = nodes ? json_object_array_length(nodes) : 0;

    for (size_t i = 0; i < n; i++) {
        json_object *node = json_object_array_get_idx(nodes, i), *names;
        const char *name = jobj_str(node, "node-name");
        char *file, *key;
        if (!name) {
            continue;
        }
        file = ch_plain_filename(jobj_str(node, "file"));
        key = node_key(jobj_str(node, "drv"), file);
        if (!json_object_object_get_ex(index, key, &names)) {
            names = json_object_new_array();
            json_object_object_add(index, key, names);
        }
        json_object_array_add(names, json_object_new_string(name));
        free(key);
        free(file);
    }
    return index;
}

/* Node-names of layers QEMU's query-block does not name: it names only
 * the top node, and that is a filter's when one sits on the disk. */
static void name_backing_layers(struct disk *d, json_object *index,
                                json_object *used)
{
    for (int k = 0; k < d->nlayers; k++) {
        struct layer *l = &d->layers[k];
        char *key;
        json_object *names;
        if (l->node_name) {
            continue;
        }
        key = node_key(l->format, l->file);
        if (json_object_object_get_ex(index, key, &names)) {
            for (size_t i = 0; i < json_object_array_length(names); i++) {
                const char *name = json_object_get_string(
                    json_object_array_get_idx(names, i));
                if (!json_object_object_get_ex(used, name, NULL)) {
                    l->node_name = xstrdup(name);
                    json_object_object_add(used, name, NULL);
                    break;
                }
            }
        }
        free(key);
    }
}

static void add_filter(struct disk *d, const char *driver, const char *node)
{
    d->filters = xrealloc(d->filters, sizeof(*d->filters)
                          * (size_t)(d->nfilters + 1));
    d->filters[d->nfilters++] = (struct filter){
        .driver = xstrdup(driver),
        .node_name = dup_or_null(node),
        .above = d->nlayers,
    };
}

/* query-block's image and its backing-image chain: the images become
 * layers, the filters among them the disk's filters. */
static void layers_from_image(struct disk *d, json_object *inserted,
                              json_object *image, json_object *used)
{
    const char *top_node = jobj_str(inserted, "node-name");
    bool ro = jobj_bool(inserted, "ro", false);
    bool first = true;

    for (json_object *img = image; img; first = false) {
        json_object *next = NULL;
        const char *format = jobj_str(img, "format");
        json_object_object_get_ex(img, "backing-image", &next);
        if (ch_is_filter_driver(format) && next) {
            add_filter(d, format, first ? top_node : NULL);
            if (first && top_node) {
                json_object_object_add(used, top_node, NULL);
            }
            img = next;
            continue;
        }
        d->layers = xrealloc(d->layers, sizeof(*d->layers)
                             * (size_t)(d->nlayers + 1));
        d->layers[d->nlayers] = (struct layer){
            .file = ch_plain_filename(jobj_str(img, "filename")),
            .format = dup_or_null(format),
            .node_name = first ? dup_or_null(top_node) : NULL,
            .read_only = d->nlayers == 0 ? ro : true,
            .virtual_size = jobj_int(img, "virtual-size", -1),
        };
        if (!d->layers[d->nlayers].file) {
            d->layers[d->nlayers].file = xstrdup("");
        }
        if (first && top_node) {
            json_object_object_add(used, top_node, NULL);
        }
        d->nlayers++;
        img = next;
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
            layers_from_image(d, inserted, image, used);
        }
        out[k++] = d;
    }
    if (nodes) {
        json_object *index = index_nodes(nodes);
        for (int i = 0; i < k; i++) {
            name_backing_layers(out[i], index, used);
        }
        json_object_put(index);
    }
    json_object_put(used);
    *count = k;
    return out;
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

    nodes = jobj_typed(graph, "nodes", json_type_array);
    edges = jobj_typed(graph, "edges", json_type_array);
    if (!nodes || !edges) {
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
            j->manual_finalize = !jobj_bool(q, "auto-finalize", true);
            j->manual_dismiss = !jobj_bool(q, "auto-dismiss", true);
            log_info("found job %s (%s) that the proxy did not see start",
                     id, j->type ? j->type : "?");
        }
        ch_job_progress(j, q);
        if (!j->type) {
            str_set(&j->type, jobj_str(q, "type"));
        }
    }
}

/* Tell clients a disk's chain changed. */
static void announce(struct chain *c, struct disk *d, const char *reason,
                     const char *before, bool predicted)
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
    if (predicted) {
        /* a job event's prediction, not yet checked with QEMU */
        jobj_add_bool(data, "predicted", true);
    }
    if (c->hooks->emit_event) {
        c->hooks->emit_event(c->opaque, "QMPROXY_CHAIN_CHANGED", data);
    }
    json_object_put(data);
}

/* The disks of the saved model against QEMU's: what changed while away. */
static void compare_saved_disks(struct chain *c, json_object *disks)
{
    size_t n = disks ? json_object_array_length(disks) : 0;

    for (size_t i = 0; i < n; i++) {
        json_object *saved = json_object_array_get_idx(disks, i);
        const char *name = jobj_str(saved, "disk");
        json_object *layers;
        struct disk *now = ch_disk_by_name(c, name);
        struct strbuf before = STRBUF_INIT;

        if (!name) {
            continue;
        }
        layers = jobj_typed(saved, "chain", json_type_array);
        for (size_t k = 0; layers && k < json_object_array_length(layers);
             k++) {
            const char *file = jobj_str(json_object_array_get_idx(layers, k),
                                        "file");
            strbuf_addf(&before, "%s%s", k ? " <- " : "", file ? file : "?");
        }
        char *after = ch_describe_chain(now);
        if (!now) {
            log_warn("while qmproxy was away, disk %s went away (its chain "
                     "was %s)", name, before.buf ? before.buf : "");
        } else if (strcmp(before.buf ? before.buf : "(no medium)", after)) {
            log_warn("while qmproxy was away, the chain of disk %s changed: "
                     "was %s, is %s", name, before.buf ? before.buf : "",
                     after);
            announce(c, now, "changed-while-away", before.buf, false);
        }
        free(after);
        strbuf_release(&before);
    }
}

/* What only the proxy knew about jobs that still run. */
static void restore_saved_jobs(struct chain *c, json_object *jobs)
{
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
        str_set(&j->target_node, jobj_str(s, "target-node"));
        str_set(&j->mode, jobj_str(s, "mode"));
        str_set(&j->sync, jobj_str(s, "sync"));
        j->active_commit = jobj_bool(s, "active-commit", false);
        j->pivot_requested = jobj_bool(s, "pivot-requested", false);
        j->cancel_requested = jobj_bool(s, "cancel-requested", false);
        j->manual_finalize = jobj_bool(s, "manual-finalize", false);
        j->manual_dismiss = jobj_bool(s, "manual-dismiss", false);
        if (!j->disk) {
            str_set(&j->disk, jobj_str(s, "disk"));
        }
    }
}

/* Compare the saved model with QEMU's: what changed while we were away. */
static void compare_loaded(struct chain *c)
{
    json_object *disks, *jobs, *nodes;

    if (!c->loaded) {
        return;
    }
    if (!json_object_object_get_ex(c->loaded, "disks", &disks)
        || !json_object_is_type(disks, json_type_array)) {
        disks = NULL;
    }
    compare_saved_disks(c, disks);
    if (json_object_object_get_ex(c->loaded, "jobs", &jobs)
        && json_object_is_type(jobs, json_type_array)) {
        restore_saved_jobs(c, jobs);
    }
    nodes = jobj_typed(c->loaded, "blockdev-nodes", json_type_object);
    if (nodes) {
        json_object_put(c->blockdev_nodes);
        c->blockdev_nodes = json_object_get(nodes);
    }
    json_object_put(c->loaded);
    c->loaded = NULL;
}

/* Without node-names asked this time, keep those of the same files. */
static void keep_node_names(struct disk *truth, const struct disk *old)
{
    for (int k = 0; k < truth->nlayers; k++) {
        int o = ch_layer_index(old, truth->layers[k].file);
        if (o >= 0 && old->layers[o].node_name
            && !truth->layers[k].node_name) {
            truth->layers[k].node_name = xstrdup(old->layers[o].node_name);
        }
    }
}

/* The node names in QEMU's block graph, as a set; NULL without a graph. */
static json_object *graph_names(json_object *graph)
{
    json_object *nodes = jobj_typed(graph, "nodes", json_type_array);
    json_object *set;

    if (!nodes) {
        return NULL;
    }
    set = json_object_new_object();
    for (size_t i = 0; i < json_object_array_length(nodes); i++) {
        const char *name = jobj_str(json_object_array_get_idx(nodes, i),
                                    "name");
        if (name) {
            json_object_object_add(set, name, NULL);
        }
    }
    return set;
}

bool ch_needs_node_names(const struct chain *c)
{
    int n;
    struct disk **truth = disks_from_qemu(c->q_block, NULL, &n);
    json_object *in_graph = graph_names(c->q_graph);
    bool need = false;

    for (int i = 0; i < n; i++) {
        struct disk *old = ch_disk_by_name(c, truth[i]->name);
        if (old) {
            keep_node_names(truth[i], old);
        }
        for (int k = 0; k < truth[i]->nlayers && !need; k++) {
            const char *name = truth[i]->layers[k].node_name;
            need = !name || (in_graph
                             && !json_object_object_get_ex(in_graph, name,
                                                           NULL));
        }
        ch_disk_free(truth[i]);
    }
    free(truth);
    json_object_put(in_graph);
    return need;
}

/*
 * QEMU's answer for one disk against the model's: QEMU wins and the
 * difference is logged, unless the prediction is newer than the answer
 * (then *slot becomes the prediction and QEMU is asked again).  What only
 * the model knows moves over to the disk kept.
 */
static void adopt_disk(struct chain *c, struct disk **slot)
{
    struct disk *truth = *slot;
    struct disk *old = ch_disk_by_name(c, truth->name);
    bool overtaken = c->seq > c->seq_at_block;

    if (old && !chains_equal(old, truth) && overtaken) {
        /* QEMU answered before the latest change: the prediction is
         * newer than this answer; keep it and ask again */
        c->dirty = true;
        for (int k = 0; k < c->ndisks; k++) {
            if (c->disks[k] == old) {
                c->disks[k] = truth;
            }
        }
        *slot = old;
        return;
    } else if (old && !chains_equal(old, truth)) {
        char *was = ch_describe_chain(old), *is = ch_describe_chain(truth);
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
        keep_node_names(truth, old);
    }
    if (old && overtaken && old->uncertain) {
        /* an uncertain prediction (a job's end QEMU must say more of)
         * came after this answer, which still matches the chain before
         * it: the next answer completes it, quietly */
        truth->uncertain = true;
        c->dirty = true;
    }
    if (old) {
        truth->published = old->published;
        old->published = NULL;
        truth->last_top = old->last_top;
        old->last_top = NULL;
    }
}

/* QEMU's disks become the model's. */
static void adopt_disks(struct chain *c)
{
    int n;
    struct disk **truth = disks_from_qemu(c->q_block, c->q_nodes, &n);

    for (int i = 0; i < n; i++) {
        adopt_disk(c, &truth[i]);
    }
    for (int i = 0; i < c->ndisks; i++) {
        ch_disk_free(c->disks[i]);
    }
    free(c->disks);
    c->disks = truth;
    c->ndisks = n;
}

/* The answers are used up; so are the facts that came before them. */
static void forget_answers(struct chain *c)
{
    json_object_put(c->early);
    c->early = json_object_new_object();
    json_object_put(c->q_block);
    json_object_put(c->q_nodes);
    json_object_put(c->q_jobs);
    json_object_put(c->q_graph);
    c->q_block = c->q_nodes = c->q_jobs = c->q_graph = NULL;
}

/* Announce d's chain if it differs from what was last announced. */
static void announce_if_changed(struct chain *c, struct disk *d,
                                bool predicted)
{
    char *now = ch_publishable(c, d);

    if (d->published && strcmp(d->published, now)) {
        announce(c, d, NULL, NULL, predicted);
    }
    free(d->published);
    d->published = now;
}

void ch_publish_prediction(struct chain *c, struct disk *d)
{
    announce_if_changed(c, d, true);
}

/* A disk's chain as QEMU has it now: announce it if it changed, and tell
 * the hooks of a new overlay over what was the active layer. */
static void publish_disk(struct chain *c, struct disk *d)
{
    announce_if_changed(c, d, d->unverified);
    if (!d->unverified) {
        /* QEMU's own answer (not a prediction kept over an older one):
         * what a block graph unchanged since means */
        free(d->verified_files);
        d->verified_files = ch_describe_chain(d);
    }
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

/* Tell what changed: after a restart, against the saved model first. */
static void announce_changes(struct chain *c)
{
    bool first = !c->seeded;

    c->seeded = true;
    if (first) {
        compare_loaded(c);
    }
    for (int i = 0; i < c->ndisks; i++) {
        publish_disk(c, c->disks[i]);
    }
    if (c->hooks->changed) {
        c->hooks->changed(c->opaque);
    }
}

void ch_reconciled(struct chain *c)
{
    /* the graph's fingerprint holds for the model only if nothing was
     * observed after QEMU's answers (else another reconciliation comes) */
    c->graph_known = c->q_graph && c->graph_print && c->seq == c->seq_at_block;
    adopt_disks(c);
    update_jobs_from_qemu(c, c->q_jobs);
    forget_answers(c);
    announce_changes(c);
}
