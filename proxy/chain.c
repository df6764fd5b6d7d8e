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

#include <libxml/tree.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "upstream.h"
#include "util.h"

struct layer {
    char *file;
    char *format;
    char *node_name;      /* NULL: not known yet */
    bool read_only;
    int64_t virtual_size; /* -1: not known */
};

struct job {
    char *id;
    char *type;           /* mirror, commit, stream, backup, ... */
    char *disk;           /* the disk it runs on; NULL if unknown */
    char *status;
    int64_t offset, len;
    bool ready;
    char *error;          /* the last error QEMU reported */
    bool active_commit;
    char *target_file;    /* mirror: the copy; active commit: the base */
    char *target_format;
    char *mode, *sync;
    char *base_file;      /* commit/stream: down to here */
    char *top_file;       /* intermediate commit: from here */
    bool pivot_requested, cancel_requested;
    bool manual_finalize; /* started with auto-finalize false */
    unsigned touched;     /* the chain's event count when last changed */
    unsigned started_by;  /* client number; 0: the proxy itself */
    char *started_at;
    char *operation;      /* the proxy operation it belongs to */
};

struct disk {
    char *name;
    char *device;
    char *qdev;
    struct layer *layers;
    int nlayers;
    bool uncertain;       /* a prediction with parts QEMU must fill in */
    char *published;      /* the chain as last announced */
    char *last_top;       /* the active layer in QEMU's last answer */
};

struct waiter {
    void (*fn)(void *opaque);
    void *opaque;
};

struct chain {
    struct upstream *up;
    const struct chain_hooks *hooks;
    void *opaque;
    struct disk **disks;
    int ndisks;
    struct job **jobs;
    int njobs;
    json_object *blockdev_nodes;   /* node-name -> {file, format} seen added */
    json_object *early;            /* job id -> facts from events that came
                                    * before the reply that started the job */

    /* reconciliation */
    bool reconciling, dirty, lost;
    unsigned generation;
    int pending;
    json_object *q_block, *q_nodes, *q_jobs, *q_graph;
    /* Observations are numbered; QEMU's answers to the reconciliation
     * come at different points of the stream, so what was observed after
     * an answer arrived is newer than the answer. */
    unsigned seq, seq_at_block, seq_at_jobs;
    struct waiter *waiters;        /* for the end of the next reconcile */
    int nwaiters;
    struct waiter *next_waiters;   /* asked for while one was running */
    int nnext_waiters;
    bool seeded;
    json_object *loaded;           /* a saved model to compare, first time */
};

static const char *const watched_commands[] = {
    "blockdev-snapshot-sync", "blockdev-snapshot", "transaction",
    "drive-mirror", "blockdev-mirror", "block-commit", "block-stream",
    "drive-backup", "blockdev-backup", "block-job-complete", "job-complete",
    "block-job-cancel", "job-cancel", "job-finalize", "job-dismiss",
    "block-job-dismiss", "block-job-finalize", "blockdev-add",
    "blockdev-del", "blockdev-reopen", "blockdev-change-medium", "eject",
    "blockdev-open-tray", "blockdev-close-tray", "blockdev-insert-medium",
    "blockdev-remove-medium", "device_add", "device_del",
    "human-monitor-command", NULL,
};

static const char *const watched_events[] = {
    "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED",
    "BLOCK_JOB_ERROR", "BLOCK_JOB_PENDING", "JOB_STATUS_CHANGE",
    "DEVICE_DELETED", "DEVICE_TRAY_MOVED", NULL,
};

static bool in_list(const char *const *list, const char *s)
{
    for (; *list; list++) {
        if (!strcmp(*list, s)) {
            return true;
        }
    }
    return false;
}

bool chain_watches(const char *command)
{
    return in_list(watched_commands, command);
}

bool chain_watches_event(const char *name)
{
    return in_list(watched_events, name);
}

/* ---- small helpers ------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static const char *get_str(json_object *o, const char *key)
{
    json_object *v;
    if (o && json_object_object_get_ex(o, key, &v)
        && json_object_is_type(v, json_type_string)) {
        return json_object_get_string(v);
    }
    return NULL;
}

static int64_t get_int(json_object *o, const char *key, int64_t dflt)
{
    json_object *v;
    if (o && json_object_object_get_ex(o, key, &v)
        && json_object_is_type(v, json_type_int)) {
        return json_object_get_int64(v);
    }
    return dflt;
}

static bool get_bool(json_object *o, const char *key, bool dflt)
{
    json_object *v;
    if (o && json_object_object_get_ex(o, key, &v)
        && json_object_is_type(v, json_type_boolean)) {
        return json_object_get_boolean(v);
    }
    return dflt;
}

static bool same(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/*
 * QEMU names an image it opened with options by its options
 * ("json:{...,"file": {"driver": "file", "filename": "/x"}}"); the file
 * a person means is the innermost filename.
 */
static char *plain_filename(const char *name)
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

static void layer_clear(struct layer *l)
{
    free(l->file);
    free(l->format);
    free(l->node_name);
}

static void disk_free(struct disk *d)
{
    if (!d) {
        return;
    }
    for (int i = 0; i < d->nlayers; i++) {
        layer_clear(&d->layers[i]);
    }
    free(d->layers);
    free(d->name);
    free(d->device);
    free(d->qdev);
    free(d->published);
    free(d->last_top);
    free(d);
}

static void job_free(struct job *j)
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

static struct disk *disk_by_name(const struct chain *c, const char *name)
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
static struct disk *find_disk(const struct chain *c, const char *any)
{
    struct disk *d;

    if (!any || !any[0]) {
        return NULL;
    }
    if ((d = disk_by_name(c, any))) {
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
    struct disk *d = find_disk(c, any_name);
    return d ? d->name : NULL;
}

static struct job *find_job(const struct chain *c, const char *id)
{
    for (int i = 0; id && i < c->njobs; i++) {
        if (!strcmp(c->jobs[i]->id, id)) {
            return c->jobs[i];
        }
    }
    return NULL;
}

static struct job *disk_job(const struct chain *c, const struct disk *d)
{
    for (int i = 0; d && i < c->njobs; i++) {
        if (same(c->jobs[i]->disk, d->name)) {
            return c->jobs[i];
        }
    }
    return NULL;
}

static void remove_job(struct chain *c, struct job *j)
{
    for (int i = 0; i < c->njobs; i++) {
        if (c->jobs[i] == j) {
            c->jobs[i] = c->jobs[--c->njobs];
            job_free(j);
            return;
        }
    }
}

static struct job *add_job(struct chain *c, const char *id)
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

static int layer_index(const struct disk *d, const char *file_or_node)
{
    char *plain;
    int found = -1;

    if (!d || !file_or_node) {
        return -1;
    }
    plain = plain_filename(file_or_node);
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
static void keep_layers(struct disk *d, int from, int to)
{
    for (int i = 0; i < d->nlayers; i++) {
        if (i < from || i >= to) {
            layer_clear(&d->layers[i]);
        }
    }
    memmove(d->layers, d->layers + from, sizeof(*d->layers)
            * (size_t)(to - from));
    d->nlayers = to - from;
}

static void insert_top(struct disk *d, const char *file, const char *format,
                       const char *node)
{
    d->layers = xrealloc(d->layers, sizeof(*d->layers)
                         * (size_t)(d->nlayers + 1));
    memmove(d->layers + 1, d->layers, sizeof(*d->layers)
            * (size_t)d->nlayers);
    d->layers[0] = (struct layer){
        .file = plain_filename(file),
        .format = xstrdup(format ? format : "qcow2"),
        .node_name = dup_or_null(node),
        .read_only = false,
        .virtual_size = d->nlayers > 1 ? d->layers[1].virtual_size : -1,
    };
    d->nlayers++;
    if (d->nlayers > 1) {
        d->layers[1].read_only = true;
    }
}

/* ---- JSON and XML -------------------------------------------------- */

static json_object *layer_json(const struct layer *l)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "file", json_object_new_string(l->file));
    json_object_object_add(o, "format",
                           json_object_new_string(l->format ? l->format : ""));
    if (l->node_name) {
        json_object_object_add(o, "node-name",
                               json_object_new_string(l->node_name));
    }
    json_object_object_add(o, "read-only",
                           json_object_new_boolean(l->read_only));
    if (l->virtual_size >= 0) {
        json_object_object_add(o, "virtual-size",
                               json_object_new_int64(l->virtual_size));
    }
    return o;
}

static json_object *layers_json(const struct disk *d)
{
    json_object *a = json_object_new_array();
    for (int i = 0; i < d->nlayers; i++) {
        json_object_array_add(a, layer_json(&d->layers[i]));
    }
    return a;
}

static bool job_is_mirror(const struct job *j)
{
    return j && (same(j->type, "mirror") || j->active_commit);
}

/* libvirt's <mirror ready=...>: what state the copy is in. */
static const char *mirror_ready(const struct job *j)
{
    if (j->pivot_requested) {
        return "pivot";
    }
    if (j->cancel_requested || same(j->status, "aborting")) {
        return "abort";
    }
    return j->ready || same(j->status, "ready") ? "yes" : "no";
}

static json_object *mirror_json(const struct job *j)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "file",
                           json_object_new_string(j->target_file
                                                  ? j->target_file : ""));
    if (j->target_format) {
        json_object_object_add(o, "format",
                               json_object_new_string(j->target_format));
    }
    json_object_object_add(o, "job", json_object_new_string(j->id));
    json_object_object_add(o, "type", json_object_new_string(
                               j->active_commit ? "active-commit" : "copy"));
    json_object_object_add(o, "status", json_object_new_string(j->status));
    json_object_object_add(o, "ready",
                           json_object_new_string(mirror_ready(j)));
    json_object_object_add(o, "offset", json_object_new_int64(j->offset));
    json_object_object_add(o, "len", json_object_new_int64(j->len));
    return o;
}

static json_object *job_json(const struct job *j)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "id", json_object_new_string(j->id));
    json_object_object_add(o, "type",
                           json_object_new_string(j->type ? j->type : ""));
    json_object_object_add(o, "status", json_object_new_string(j->status));
    json_object_object_add(o, "offset", json_object_new_int64(j->offset));
    json_object_object_add(o, "len", json_object_new_int64(j->len));
    json_object_object_add(o, "ready", json_object_new_boolean(j->ready));
    if (j->error) {
        json_object_object_add(o, "error", json_object_new_string(j->error));
    }
    json_object_object_add(o, "started-by",
                           json_object_new_int((int)j->started_by));
    if (j->started_at) {
        json_object_object_add(o, "started-at",
                               json_object_new_string(j->started_at));
    }
    if (j->operation) {
        json_object_object_add(o, "operation",
                               json_object_new_string(j->operation));
    }
    return o;
}

static json_object *disk_json(const struct chain *c, const struct disk *d)
{
    json_object *o = json_object_new_object();
    struct job *j = disk_job(c, d);

    json_object_object_add(o, "disk", json_object_new_string(d->name));
    json_object_object_add(o, "device",
                           json_object_new_string(d->device ? d->device : ""));
    if (d->qdev) {
        json_object_object_add(o, "qdev", json_object_new_string(d->qdev));
    }
    if (d->nlayers && d->layers[0].node_name) {
        json_object_object_add(o, "node-name",
                               json_object_new_string(d->layers[0].node_name));
    }
    json_object_object_add(o, "chain", layers_json(d));
    if (job_is_mirror(j)) {
        json_object_object_add(o, "mirror", mirror_json(j));
    }
    if (j) {
        json_object_object_add(o, "job", job_json(j));
    }
    return o;
}

json_object *chain_to_json(const struct chain *c, const char *name)
{
    json_object *a;

    if (name) {
        struct disk *d = find_disk(c, name);
        return d ? disk_json(c, d) : NULL;
    }
    a = json_object_new_array();
    for (int i = 0; i < c->ndisks; i++) {
        json_object_array_add(a, disk_json(c, c->disks[i]));
    }
    return a;
}

/* What QMPROXY_CHAIN_CHANGED announces: the layers and any mirror. */
static char *publishable(const struct chain *c, const struct disk *d)
{
    json_object *o = json_object_new_object();
    struct job *j = disk_job(c, d);
    char *s;

    json_object_object_add(o, "chain", layers_json(d));
    if (job_is_mirror(j)) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "file", json_object_new_string(
                                   j->target_file ? j->target_file : ""));
        json_object_object_add(m, "job", json_object_new_string(j->id));
        json_object_object_add(o, "mirror", m);
    }
    s = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return s;
}

static xmlNodePtr xml_source(xmlNodePtr parent, const struct layer *l)
{
    xmlNodePtr n = xmlNewChild(parent, NULL, BAD_CAST "format", NULL);
    xmlNewProp(n, BAD_CAST "type", BAD_CAST(l->format ? l->format : "raw"));
    n = xmlNewChild(parent, NULL, BAD_CAST "source", NULL);
    xmlNewProp(n, BAD_CAST "file", BAD_CAST l->file);
    return n;
}

static xmlNodePtr disk_xml(const struct chain *c, const struct disk *d)
{
    xmlNodePtr disk = xmlNewNode(NULL, BAD_CAST "disk");
    xmlNodePtr parent = disk, n;
    struct job *j = disk_job(c, d);

    xmlNewProp(disk, BAD_CAST "type", BAD_CAST "file");
    xmlNewProp(disk, BAD_CAST "device", BAD_CAST "disk");
    if (d->nlayers) {
        xml_source(disk, &d->layers[0]);
    }
    /* <backingStore type='file' index='N'> ... ending in an empty one */
    for (int i = 1; i <= d->nlayers; i++) {
        char index[16];
        n = xmlNewChild(parent, NULL, BAD_CAST "backingStore", NULL);
        if (i == d->nlayers) {
            break;
        }
        snprintf(index, sizeof(index), "%d", i);
        xmlNewProp(n, BAD_CAST "type", BAD_CAST "file");
        xmlNewProp(n, BAD_CAST "index", BAD_CAST index);
        xml_source(n, &d->layers[i]);
        parent = n;
    }
    if (job_is_mirror(j)) {
        n = xmlNewChild(disk, NULL, BAD_CAST "mirror", NULL);
        xmlNewProp(n, BAD_CAST "type", BAD_CAST "file");
        xmlNewProp(n, BAD_CAST "file",
                   BAD_CAST(j->target_file ? j->target_file : ""));
        if (j->target_format) {
            xmlNewProp(n, BAD_CAST "format", BAD_CAST j->target_format);
        }
        xmlNewProp(n, BAD_CAST "job", BAD_CAST(j->active_commit
                                               ? "active-commit" : "copy"));
        xmlNewProp(n, BAD_CAST "ready", BAD_CAST mirror_ready(j));
        if (j->target_format) {
            xmlNodePtr f = xmlNewChild(n, NULL, BAD_CAST "format", NULL);
            xmlNewProp(f, BAD_CAST "type", BAD_CAST j->target_format);
        }
        xmlNodePtr s = xmlNewChild(n, NULL, BAD_CAST "source", NULL);
        xmlNewProp(s, BAD_CAST "file",
                   BAD_CAST(j->target_file ? j->target_file : ""));
    }
    n = xmlNewChild(disk, NULL, BAD_CAST "target", NULL);
    xmlNewProp(n, BAD_CAST "dev", BAD_CAST d->name);
    n = xmlNewChild(disk, NULL, BAD_CAST "alias", NULL);
    xmlNewProp(n, BAD_CAST "name", BAD_CAST(d->qdev ? d->qdev : d->name));
    return disk;
}

char *chain_to_xml(const struct chain *c, const char *name)
{
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlBufferPtr buf = xmlBufferCreate();
    xmlNodePtr root;
    char *out;

    if (name) {
        struct disk *d = find_disk(c, name);
        if (!d) {
            xmlBufferFree(buf);
            xmlFreeDoc(doc);
            return NULL;
        }
        root = disk_xml(c, d);
    } else {
        root = xmlNewNode(NULL, BAD_CAST "disks");
        for (int i = 0; i < c->ndisks; i++) {
            xmlAddChild(root, disk_xml(c, c->disks[i]));
        }
    }
    xmlDocSetRootElement(doc, root);
    xmlNodeDump(buf, doc, root, 0, 1);
    out = xstrdup((const char *)xmlBufferContent(buf));
    xmlBufferFree(buf);
    xmlFreeDoc(doc);
    return out;
}

/* ---- accessors for operations -------------------------------------- */

static const struct layer *top(const struct chain *c, const char *name)
{
    struct disk *d = find_disk(c, name);
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
    struct disk *d = find_disk(c, disk);
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
    struct disk *d = find_disk(c, disk);
    return d ? d->nlayers : 0;
}

const char *chain_layer_file(const struct chain *c, const char *disk, int i)
{
    struct disk *d = find_disk(c, disk);
    return d && i >= 0 && i < d->nlayers ? d->layers[i].file : NULL;
}

const char *chain_mirror_file(const struct chain *c, const char *disk)
{
    struct job *j = disk_job(c, find_disk(c, disk));
    return j && same(j->type, "mirror") ? j->target_file : NULL;
}

const char *chain_mirror_mode(const struct chain *c, const char *disk)
{
    struct job *j = disk_job(c, find_disk(c, disk));
    return j && same(j->type, "mirror") ? j->mode : NULL;
}

bool chain_job_manual_finalize(const struct chain *c, const char *disk)
{
    struct job *j = disk_job(c, find_disk(c, disk));
    return j && j->manual_finalize;
}

const char *chain_job_id(const struct chain *c, const char *disk)
{
    struct job *j = disk_job(c, find_disk(c, disk));
    return j ? j->id : NULL;
}

const char *chain_job_status(const struct chain *c, const char *disk)
{
    struct job *j = disk_job(c, find_disk(c, disk));
    return j ? j->status : NULL;
}

void chain_note_job_owner(struct chain *c, const char *job_id,
                          const char *operation)
{
    struct job *j = find_job(c, job_id);
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
            const char *name = get_str(node, "node-name");
            char *file = plain_filename(get_str(node, "file"));
            if (name && same(get_str(node, "drv"), l->format)
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
        const char *device = get_str(b, "device");
        char *id = qdev_id(get_str(b, "qdev"));
        struct disk *d;

        if (!(device && device[0]) && !id) {
            free(id);
            continue;
        }
        d = xcalloc(1, sizeof(*d));
        d->device = xstrdup(device ? device : "");
        d->qdev = dup_or_null(get_str(b, "qdev"));
        d->name = device && device[0] ? xstrdup(device) : xstrdup(id);
        free(id);
        if (json_object_object_get_ex(b, "inserted", &inserted)
            && json_object_object_get_ex(inserted, "image", &image)) {
            const char *top_node = get_str(inserted, "node-name");
            bool ro = get_bool(inserted, "ro", false);
            for (json_object *img = image; img;) {
                json_object *next = NULL;
                d->layers = xrealloc(d->layers, sizeof(*d->layers)
                                     * (size_t)(d->nlayers + 1));
                d->layers[d->nlayers] = (struct layer){
                    .file = plain_filename(get_str(img, "filename")),
                    .format = dup_or_null(get_str(img, "format")),
                    .node_name = d->nlayers == 0 ? dup_or_null(top_node)
                                                 : NULL,
                    .read_only = d->nlayers == 0 ? ro : true,
                    .virtual_size = get_int(img, "virtual-size", -1),
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
        if (same(get_str(n, "type"), "block-job") && same(get_str(n, "name"),
                                                         job)) {
            job_node = get_int(n, "id", -1);
        }
    }
    for (size_t i = 0; job_node >= 0 && i < json_object_array_length(edges);
         i++) {
        json_object *e = json_object_array_get_idx(edges, i);
        if (get_int(e, "parent", -2) != job_node) {
            continue;
        }
        int64_t child = get_int(e, "child", -1);
        for (size_t k = 0; k < json_object_array_length(nodes); k++) {
            json_object *n = json_object_array_get_idx(nodes, k);
            struct disk *d;
            if (get_int(n, "id", -2) == child
                && (d = find_disk(c, get_str(n, "name")))) {
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
            present = same(get_str(json_object_array_get_idx(jobs, k),
                                   "device"), c->jobs[i]->id);
        }
        if (!present) {
            log_debug("job %s is no longer in QEMU", c->jobs[i]->id);
            remove_job(c, c->jobs[i]);
        }
    }
    for (size_t k = 0; k < n; k++) {
        json_object *q = json_object_array_get_idx(jobs, k);
        const char *id = get_str(q, "device");
        struct job *j = find_job(c, id);
        if (!id) {
            continue;
        }
        if (j && j->touched > c->seq_at_jobs) {
            continue;  /* an event since then says more than this answer */
        }
        if (!j) {
            /* started behind the proxy's back (another monitor, or while
             * it was away): the id names the disk unless one was given */
            j = add_job(c, id);
            str_set(&j->type, get_str(q, "type"));
            str_set(&j->disk, chain_disk_name(c, id));
            if (!j->disk) {
                str_set(&j->disk, job_disk_from_graph(c, c->q_graph, id));
            }
            str_set(&j->started_at, NULL);
            log_info("found job %s (%s) that the proxy did not see start",
                     id, j->type ? j->type : "?");
        }
        str_set(&j->status, get_str(q, "status"));
        j->offset = get_int(q, "offset", j->offset);
        j->len = get_int(q, "len", j->len);
        j->ready = get_bool(q, "ready", j->ready);
        if (get_str(q, "error")) {
            str_set(&j->error, get_str(q, "error"));
        }
        if (!j->type) {
            str_set(&j->type, get_str(q, "type"));
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

static void announce(struct chain *c, struct disk *d, const char *reason,
                     const char *before)
{
    json_object *data = json_object_new_object();

    json_object_object_add(data, "disk", json_object_new_string(d->name));
    json_object_object_add(data, "chain", layers_json(d));
    struct job *j = disk_job(c, d);
    if (job_is_mirror(j)) {
        json_object_object_add(data, "mirror", mirror_json(j));
    }
    if (reason) {
        json_object_object_add(data, "reason", json_object_new_string(reason));
    }
    if (before) {
        json_object_object_add(data, "before", json_object_new_string(before));
    }
    if (c->hooks->emit_event) {
        c->hooks->emit_event(c->opaque, "QMPROXY_CHAIN_CHANGED", data);
    }
    json_object_put(data);
}

static void schedule(struct chain *c);

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
        const char *name = get_str(saved, "disk");
        json_object *layers;
        struct disk *now = disk_by_name(c, name);
        struct strbuf before = STRBUF_INIT;

        if (!name) {
            continue;
        }
        if (json_object_object_get_ex(saved, "chain", &layers)) {
            for (size_t k = 0; k < json_object_array_length(layers); k++) {
                strbuf_addf(&before, "%s%s", k ? " <- " : "",
                            get_str(json_object_array_get_idx(layers, k),
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
            announce(c, now, "changed-while-away", before.buf);
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
            struct job *j = find_job(c, get_str(s, "id"));
            if (!j) {
                continue;
            }
            j->started_by = (unsigned)get_int(s, "started-by", 0);
            str_set(&j->started_at, get_str(s, "started-at"));
            str_set(&j->operation, get_str(s, "operation"));
            str_set(&j->target_file, get_str(s, "target-file"));
            str_set(&j->target_format, get_str(s, "target-format"));
            str_set(&j->mode, get_str(s, "mode"));
            str_set(&j->sync, get_str(s, "sync"));
            j->active_commit = get_bool(s, "active-commit", false);
            j->pivot_requested = get_bool(s, "pivot-requested", false);
            j->cancel_requested = get_bool(s, "cancel-requested", false);
            j->manual_finalize = get_bool(s, "manual-finalize", false);
            if (!j->disk) {
                str_set(&j->disk, get_str(s, "disk"));
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
        struct disk *old = disk_by_name(c, truth[i]->name);
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
                int o = layer_index(old, truth[i]->layers[k].file);
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
        disk_free(c->disks[i]);
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
        char *now = publishable(c, d);
        if (d->published && strcmp(d->published, now)) {
            announce(c, d, NULL, NULL);
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
        schedule(c);
    } else if (c->nwaiters) {
        schedule(c);
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
    json_object *cmd = json_object_new_object();

    q->chain = c;
    q->generation = c->generation;
    q->into = into;
    json_object_object_add(cmd, "execute", json_object_new_string(command));
    if (flat) {
        json_object *args = json_object_new_object();
        json_object_object_add(args, "flat", json_object_new_boolean(1));
        json_object_object_add(cmd, "arguments", args);
    }
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
static void schedule(struct chain *c)
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
    schedule(c);
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
        schedule(c);
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

/* ---- observations -------------------------------------------------- */

static void observe_snapshot_sync(struct chain *c, json_object *a)
{
    const char *dev = get_str(a, "device");
    struct disk *d = find_disk(c, dev ? dev : get_str(a, "node-name"));

    if (!d) {
        return;
    }
    insert_top(d, get_str(a, "snapshot-file"), get_str(a, "format"),
               get_str(a, "snapshot-node-name"));
    if (same(get_str(a, "mode"), "existing")) {
        /* its backing file is whatever the image's header says */
        d->uncertain = true;
    }
}

static void observe_snapshot(struct chain *c, json_object *a)
{
    struct disk *d = find_disk(c, get_str(a, "node"));
    const char *overlay = get_str(a, "overlay");
    json_object *added = NULL;

    if (!d || !overlay) {
        return;
    }
    json_object_object_get_ex(c->blockdev_nodes, overlay, &added);
    insert_top(d, added ? get_str(added, "file") : overlay,
               added ? get_str(added, "format") : NULL, overlay);
    d->uncertain = !added;
}

static struct job *start_job(struct chain *c, json_object *a,
                             const char *type, unsigned client)
{
    const char *dev = get_str(a, "device");
    const char *id = get_str(a, "job-id");
    struct disk *d = find_disk(c, dev);
    struct job *j;

    if (!id) {
        id = dev;
    }
    if (!id) {
        return NULL;
    }
    if ((j = find_job(c, id))) {
        remove_job(c, j);  /* a concluded job of the same id, now replaced */
    }
    j = add_job(c, id);
    j->touched = c->seq;
    str_set(&j->type, type);
    str_set(&j->disk, d ? d->name : NULL);
    str_set(&j->status, "running");
    j->started_by = client;
    j->manual_finalize = !get_bool(a, "auto-finalize", true);
    /* QEMU may have reported on the job before answering the command */
    json_object *early;
    if (json_object_object_get_ex(c->early, id, &early)) {
        if (get_str(early, "status")) {
            str_set(&j->status, get_str(early, "status"));
        }
        j->ready = get_bool(early, "ready", false);
        j->offset = get_int(early, "offset", 0);
        j->len = get_int(early, "len", 0);
        json_object_object_del(c->early, id);
    }
    return j;
}

static void observe_mirror(struct chain *c, json_object *a, unsigned client,
                           bool blockdev)
{
    struct job *j = start_job(c, a, "mirror", client);
    struct disk *d;

    if (!j) {
        return;
    }
    d = disk_by_name(c, j->disk);
    str_set(&j->sync, get_str(a, "sync"));
    if (blockdev) {
        const char *node = get_str(a, "target");
        json_object *added = NULL;
        json_object_object_get_ex(c->blockdev_nodes, node ? node : "",
                                  &added);
        str_set(&j->target_file, added ? get_str(added, "file") : node);
        str_set(&j->target_format, added ? get_str(added, "format") : NULL);
        str_set(&j->mode, "existing");
    } else {
        char *plain = plain_filename(get_str(a, "target"));
        str_set(&j->target_file, plain);
        free(plain);
        str_set(&j->mode, get_str(a, "mode") ? get_str(a, "mode")
                                             : "absolute-paths");
        str_set(&j->target_format, get_str(a, "format") ? get_str(a, "format")
                : (d && d->nlayers ? d->layers[0].format : NULL));
    }
}

static void observe_commit(struct chain *c, json_object *a, unsigned client)
{
    struct job *j = start_job(c, a, "commit", client);
    struct disk *d;
    const char *topname, *basename;
    int ti, bi;

    if (!j) {
        return;
    }
    d = disk_by_name(c, j->disk);
    topname = get_str(a, "top-node") ? get_str(a, "top-node")
                                     : get_str(a, "top");
    basename = get_str(a, "base-node") ? get_str(a, "base-node")
                                       : get_str(a, "base");
    /* QEMU's defaults: the active layer down to the bottom of the chain */
    ti = topname ? layer_index(d, topname) : 0;
    bi = basename ? layer_index(d, basename) : (d ? d->nlayers - 1 : -1);
    j->active_commit = ti == 0;
    if (d && ti >= 0 && ti < d->nlayers) {
        str_set(&j->top_file, d->layers[ti].file);
    }
    if (d && bi >= 0 && bi < d->nlayers) {
        str_set(&j->base_file, d->layers[bi].file);
        if (j->active_commit) {
            str_set(&j->target_file, d->layers[bi].file);
            str_set(&j->target_format, d->layers[bi].format);
        }
    }
}

static void observe_stream(struct chain *c, json_object *a, unsigned client)
{
    struct job *j = start_job(c, a, "stream", client);
    struct disk *d;
    const char *basename;
    int bi;

    if (!j) {
        return;
    }
    d = disk_by_name(c, j->disk);
    basename = get_str(a, "base-node") ? get_str(a, "base-node")
                                       : get_str(a, "base");
    bi = basename ? layer_index(d, basename) : -1;
    if (d && bi >= 0) {
        str_set(&j->base_file, d->layers[bi].file);
    }
}

static void observe_transaction(struct chain *c, json_object *a,
                                unsigned client)
{
    json_object *actions;

    if (!json_object_object_get_ex(a, "actions", &actions)
        || !json_object_is_type(actions, json_type_array)) {
        return;
    }
    for (size_t i = 0; i < json_object_array_length(actions); i++) {
        json_object *act = json_object_array_get_idx(actions, i), *data;
        const char *type = get_str(act, "type");
        if (!json_object_object_get_ex(act, "data", &data) || !type) {
            continue;
        }
        if (!strcmp(type, "blockdev-snapshot-sync")) {
            observe_snapshot_sync(c, data);
        } else if (!strcmp(type, "blockdev-snapshot")) {
            observe_snapshot(c, data);
        } else if (!strcmp(type, "drive-backup")
                   || !strcmp(type, "blockdev-backup")) {
            start_job(c, data, "backup", client);
        }
    }
}

static void observe_blockdev_add(struct chain *c, json_object *a)
{
    const char *node = get_str(a, "node-name");
    json_object *file, *info;
    const char *filename = NULL;

    if (!node) {
        return;
    }
    if (json_object_object_get_ex(a, "file", &file)) {
        filename = json_object_is_type(file, json_type_string)
            ? NULL : get_str(file, "filename");
    }
    if (!filename) {
        filename = get_str(a, "filename");
    }
    info = json_object_new_object();
    if (filename) {
        json_object_object_add(info, "file",
                               json_object_new_string(filename));
    }
    json_object_object_add(info, "format",
                           json_object_new_string(get_str(a, "driver")
                                                  ? get_str(a, "driver")
                                                  : "raw"));
    json_object_object_add(c->blockdev_nodes, node, info);
}

void chain_observe(struct chain *c, const char *command, json_object *args,
                   unsigned client, bool ok)
{
    struct job *j;
    const char *id;

    if (!ok) {
        return;  /* QEMU refused it: nothing changed */
    }
    c->seq++;
    if (!strcmp(command, "blockdev-snapshot-sync")) {
        observe_snapshot_sync(c, args);
    } else if (!strcmp(command, "blockdev-snapshot")) {
        observe_snapshot(c, args);
    } else if (!strcmp(command, "transaction")) {
        observe_transaction(c, args, client);
    } else if (!strcmp(command, "drive-mirror")) {
        observe_mirror(c, args, client, false);
    } else if (!strcmp(command, "blockdev-mirror")) {
        observe_mirror(c, args, client, true);
    } else if (!strcmp(command, "block-commit")) {
        observe_commit(c, args, client);
    } else if (!strcmp(command, "block-stream")) {
        observe_stream(c, args, client);
    } else if (!strcmp(command, "drive-backup")
               || !strcmp(command, "blockdev-backup")) {
        start_job(c, args, "backup", client);
    } else if (!strcmp(command, "blockdev-add")) {
        observe_blockdev_add(c, args);
        return;  /* a node on its own changes no disk's chain */
    } else if (!strcmp(command, "human-monitor-command")) {
        const char *line = get_str(args, "command-line");
        /* HMP can change chains too (snapshot_blkdev, block_job_*...) */
        if (!line || (strncmp(line, "snapshot_blkdev", 15)
                      && strncmp(line, "block_", 6)
                      && strncmp(line, "drive_", 6)
                      && strncmp(line, "change", 6)
                      && strncmp(line, "eject", 5))) {
            return;
        }
    } else {
        id = get_str(args, "device") ? get_str(args, "device")
                                     : get_str(args, "id");
        j = find_job(c, id);
        if (j && (!strcmp(command, "block-job-complete")
                  || !strcmp(command, "job-complete"))) {
            j->pivot_requested = true;
        } else if (j && (!strcmp(command, "block-job-cancel")
                         || !strcmp(command, "job-cancel"))) {
            j->cancel_requested = true;
        } else if (j && (!strcmp(command, "job-dismiss")
                         || !strcmp(command, "block-job-dismiss"))) {
            remove_job(c, j);
        }
    }
    schedule(c);
}

/* A job finished without error: predict the chain QEMU now has. */
static void job_completed(struct chain *c, struct job *j)
{
    struct disk *d = disk_by_name(c, j->disk);
    int bi, ti;

    if (!d) {
        return;
    }
    if (same(j->type, "mirror") && j->pivot_requested) {
        /* the copy is the disk now: its backing is the old backing for a
         * top-only copy QEMU created, nothing for a full one, and whatever
         * the image says for an existing one */
        bool top_only = same(j->sync, "top");
        bool created = same(j->mode, "absolute-paths");
        int keep_from = top_only && created ? 1 : d->nlayers;
        struct layer new_top = {
            .file = dup_or_null(j->target_file),
            .format = dup_or_null(j->target_format),
            .virtual_size = d->nlayers ? d->layers[0].virtual_size : -1,
        };
        keep_layers(d, keep_from, d->nlayers);
        d->layers = xrealloc(d->layers, sizeof(*d->layers)
                             * (size_t)(d->nlayers + 1));
        memmove(d->layers + 1, d->layers, sizeof(*d->layers)
                * (size_t)d->nlayers);
        d->layers[0] = new_top;
        d->nlayers++;
        d->uncertain = !(top_only && created) && !same(j->sync, "full");
    } else if (same(j->type, "commit")) {
        bi = layer_index(d, j->base_file);
        ti = j->active_commit ? 0 : layer_index(d, j->top_file);
        if (bi < 0 || ti < 0) {
            d->uncertain = true;
        } else if (j->active_commit && j->pivot_requested) {
            keep_layers(d, bi, d->nlayers);
            d->layers[0].read_only = false;
        } else if (!j->active_commit) {
            /* layers top..base-1 are folded into base */
            for (int i = ti; i < bi; i++) {
                layer_clear(&d->layers[i]);
            }
            memmove(d->layers + ti, d->layers + bi, sizeof(*d->layers)
                    * (size_t)(d->nlayers - bi));
            d->nlayers -= bi - ti;
        }
    } else if (same(j->type, "stream")) {
        bi = j->base_file ? layer_index(d, j->base_file) : d->nlayers;
        if (bi > 1) {
            for (int i = 1; i < bi; i++) {
                layer_clear(&d->layers[i]);
            }
            memmove(d->layers + 1, d->layers + bi, sizeof(*d->layers)
                    * (size_t)(d->nlayers - bi));
            d->nlayers -= bi - 1;
        }
    }
}

void chain_observe_event(struct chain *c, const char *name, json_object *data)
{
    const char *id = get_str(data, "device");
    struct job *j;

    c->seq++;
    if ((j = find_job(c, id ? id : get_str(data, "id")))) {
        j->touched = c->seq;
    }
    if (!id) {
        id = get_str(data, "id");
    }
    if (id && !find_job(c, id)) {
        /* not started as far as the model knows: keep what was said, for
         * the reply that is probably on its way */
        json_object *e = NULL;
        if (!json_object_object_get_ex(c->early, id, &e)) {
            e = json_object_new_object();
            json_object_object_add(c->early, id, e);
        }
        if (!strcmp(name, "JOB_STATUS_CHANGE") && get_str(data, "status")) {
            json_object_object_add(e, "status", json_object_new_string(
                                       get_str(data, "status")));
        } else if (!strcmp(name, "BLOCK_JOB_READY")) {
            json_object_object_add(e, "status", json_object_new_string("ready"));
            json_object_object_add(e, "ready", json_object_new_boolean(1));
        }
        if (json_object_object_get_ex(data, "offset", NULL)) {
            json_object_object_add(e, "offset", json_object_new_int64(
                                       get_int(data, "offset", 0)));
            json_object_object_add(e, "len", json_object_new_int64(
                                       get_int(data, "len", 0)));
        }
    }
    if (!strcmp(name, "JOB_STATUS_CHANGE")) {
        j = find_job(c, get_str(data, "id"));
        if (j) {
            str_set(&j->status, get_str(data, "status"));
            if (same(j->status, "null")) {
                remove_job(c, j);
                schedule(c);
            }
        }
        return;
    }
    if (!strcmp(name, "BLOCK_JOB_PENDING")) {
        j = find_job(c, get_str(data, "id"));
        if (j) {
            str_set(&j->status, "pending");
        }
        return;
    }
    if (!strncmp(name, "DEVICE_", 7)) {
        schedule(c);
        return;
    }
    j = find_job(c, id);
    if (!j) {
        schedule(c);  /* a job we never saw start: learn about it */
        return;
    }
    j->offset = get_int(data, "offset", j->offset);
    j->len = get_int(data, "len", j->len);
    if (!strcmp(name, "BLOCK_JOB_READY")) {
        j->ready = true;
        str_set(&j->status, "ready");
    } else if (!strcmp(name, "BLOCK_JOB_ERROR")) {
        char *e = xasprintf("%s error, action %s",
                            get_str(data, "operation") ? get_str(data,
                                                                 "operation")
                                                       : "I/O",
                            get_str(data, "action") ? get_str(data, "action")
                                                    : "?");
        str_set(&j->error, e);
        free(e);
    } else if (!strcmp(name, "BLOCK_JOB_COMPLETED")) {
        if (get_str(data, "error")) {
            str_set(&j->error, get_str(data, "error"));
        } else {
            job_completed(c, j);
        }
        str_set(&j->status, "concluded");
        schedule(c);
    } else if (!strcmp(name, "BLOCK_JOB_CANCELLED")) {
        str_set(&j->status, "concluded");
        schedule(c);
    }
}

/* ---- persistence --------------------------------------------------- */

json_object *chain_save(const struct chain *c)
{
    json_object *o = json_object_new_object();
    json_object *jobs = json_object_new_array();

    json_object_object_add(o, "disks", chain_to_json(c, NULL));
    for (int i = 0; i < c->njobs; i++) {
        const struct job *j = c->jobs[i];
        json_object *s = job_json(j);
        if (j->disk) {
            json_object_object_add(s, "disk", json_object_new_string(j->disk));
        }
        if (j->target_file) {
            json_object_object_add(s, "target-file",
                                   json_object_new_string(j->target_file));
        }
        if (j->target_format) {
            json_object_object_add(s, "target-format",
                                   json_object_new_string(j->target_format));
        }
        if (j->mode) {
            json_object_object_add(s, "mode", json_object_new_string(j->mode));
        }
        if (j->sync) {
            json_object_object_add(s, "sync", json_object_new_string(j->sync));
        }
        json_object_object_add(s, "active-commit",
                               json_object_new_boolean(j->active_commit));
        json_object_object_add(s, "pivot-requested",
                               json_object_new_boolean(j->pivot_requested));
        json_object_object_add(s, "cancel-requested",
                               json_object_new_boolean(j->cancel_requested));
        json_object_object_add(s, "manual-finalize",
                               json_object_new_boolean(j->manual_finalize));
        json_object_array_add(jobs, s);
    }
    json_object_object_add(o, "jobs", jobs);
    json_object_object_add(o, "blockdev-nodes",
                           json_object_get(c->blockdev_nodes));
    return o;
}

void chain_load(struct chain *c, json_object *saved)
{
    json_object_put(c->loaded);
    c->loaded = json_object_get(saved);
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
        disk_free(c->disks[i]);
    }
    free(c->disks);
    for (int i = 0; i < c->njobs; i++) {
        job_free(c->jobs[i]);
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
