/*
 * chain-model: the model's disks, layers and jobs: finding, adding and
 * dropping them, and the reads the operations make.  Every other chain
 * file builds on these and none of them is called from here, so the
 * chain's files call one way: chain.c (asking QEMU) -> chain-reconcile.c
 * -> chain-export.c -> here, and chain-observe.c -> here.
 */
#include "chain.h"
#include "chain-model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fdset-names.h"
#include "util.h"

char *ch_plain_filename(const char *name)
{
    json_object *o, *v;
    char *out;

    if (fdset_names_path(name)) {
        /* an image the proxy handed QEMU by descriptor: its path */
        return xstrdup(fdset_names_path(name));
    }
    if (!name || strncmp(name, "json:", 5)) {
        return dup_or_null(name);
    }
    o = json_tokener_parse(name + 5);
    v = o;
    while (v && json_object_is_type(v, json_type_object)) {
        json_object *file;
        if (json_object_object_get_ex(v, "filename", &file)
            && json_object_is_type(file, json_type_string)) {
            const char *f = json_object_get_string(file);
            out = xstrdup(fdset_names_path(f) ? fdset_names_path(f) : f);
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

/*
 * The drivers QEMU marks is_filter: a node of one of them passes I/O on to
 * one child and holds no data of its own, so it is no layer of the chain
 * (libvirt does not list one either).  QEMU's query-block puts an explicit
 * filter in the backing-image chain as if it were an image, with its
 * child's file name; its schema does not say which drivers are filters, so
 * they are named here (QEMU 7.2 to 10.0; "backup-top" is copy-before-write's
 * name before 6.2).
 */
bool ch_is_filter_driver(const char *driver)
{
    static const char *const filters[] = {
        "copy-before-write", "backup-top", "throttle", "preallocate",
        "compress", "copy-on-read", "mirror_top", "commit_top", "blkdebug",
        "blkverify", "blklogwrites", "replication", NULL,
    };

    for (int i = 0; driver && filters[i]; i++) {
        if (!strcmp(driver, filters[i])) {
            return true;
        }
    }
    return false;
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
    for (int i = 0; i < d->nfilters; i++) {
        free(d->filters[i].driver);
        free(d->filters[i].node_name);
    }
    free(d->filters);
    free(d->name);
    free(d->device);
    free(d->qdev);
    free(d->published);
    free(d->last_top);
    free(d->verified_files);
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
    free(j->target_node);
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

/* Any name a client may use: device, qdev, a layer's or filter's
 * node-name, the active layer's file. */
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
        for (int k = 0; k < d->nfilters; k++) {
            if (same(d->filters[k].node_name, any)) {
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
    if (to > from) {  /* a disk with no layers may have no array at all */
        memmove(d->layers, d->layers + from, sizeof(*d->layers)
                * (size_t)(to - from));
    }
    d->nlayers = to > from ? to - from : 0;
}

void ch_insert_top(struct disk *d, const char *file, const char *format,
                       const char *node)
{
    d->layers = xrealloc(d->layers, sizeof(*d->layers)
                         * (size_t)(d->nlayers + 1));
    memmove(d->layers + 1, d->layers, sizeof(*d->layers)
            * (size_t)d->nlayers);
    d->layers[0] = (struct layer){
        /* a layer always has a file: when the prediction does not know
         * it, the node-name stands in and QEMU's answer fills it in */
        .file = file ? ch_plain_filename(file) : xstrdup(node ? node : ""),
        .format = xstrdup(format ? format : "qcow2"),
        .node_name = dup_or_null(node),
        .read_only = false,
        .virtual_size = d->nlayers > 0 ? d->layers[1].virtual_size : -1,
    };
    d->nlayers++;
    if (d->nlayers > 1) {
        d->layers[1].read_only = true;
    }
    if (!file) {
        d->uncertain = true;
    }
}

void ch_nothing_predicted(struct chain *c)
{
    for (int i = 0; i < c->ndisks; i++) {
        c->disks[i]->uncertain = true;
    }
}

/* Words for a log line (how a predicted chain differs from QEMU's), and
 * what the lazy check compares. */
char *ch_describe_chain(const struct disk *d)
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

int64_t chain_top_size(const struct chain *c, const char *disk)
{
    const struct layer *l = top(c, disk);
    return l ? l->virtual_size : -1;
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

void ch_job_progress(struct job *j, json_object *q)
{
    if (jobj_str(q, "status")) {
        /* an answer without one says nothing of it: keep the last */
        str_set(&j->status, jobj_str(q, "status"));
    }
    j->offset = jobj_int(q, "offset", j->offset);
    j->len = jobj_int(q, "len", j->len);
    j->speed = jobj_int(q, "speed", j->speed);
    j->ready = jobj_bool(q, "ready", j->ready);
    if (jobj_str(q, "error")) {
        str_set(&j->error, jobj_str(q, "error"));
    }
}

int chain_disk_count(const struct chain *c)
{
    return c->ndisks;
}

const char *chain_disk_at(const struct chain *c, int i, int *depth)
{
    *depth = c->disks[i]->nlayers;
    return c->disks[i]->name;
}

int chain_job_count(const struct chain *c)
{
    return c->njobs;
}

void chain_job_at(const struct chain *c, int i, struct chain_job_info *out)
{
    const struct job *j = c->jobs[i];

    *out = (struct chain_job_info){
        .disk = j->disk, .id = j->id, .type = j->type, .offset = j->offset,
        .len = j->len, .speed = j->speed, .ready = j->ready,
    };
}

int chain_layer_count(const struct chain *c, const char *disk)
{
    struct disk *d = ch_find_disk(c, disk);
    return d ? d->nlayers : 0;
}

const char *chain_layer_node_of_file(const struct chain *c, const char *disk,
                                     const char *file)
{
    struct disk *d = ch_find_disk(c, disk);
    for (int i = 0; d && file && i < d->nlayers; i++) {
        if (same(d->layers[i].file, file)) {
            return d->layers[i].node_name;
        }
    }
    return NULL;
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

const char *chain_mirror_target_node(const struct chain *c, const char *disk)
{
    struct job *j = ch_disk_job(c, ch_find_disk(c, disk));
    return j && same(j->type, "mirror") ? j->target_node : NULL;
}

const char *chain_mirror_target_format(const struct chain *c, const char *disk)
{
    struct job *j = ch_disk_job(c, ch_find_disk(c, disk));
    return j && same(j->type, "mirror") ? j->target_format : NULL;
}

bool chain_disk_is_blockdev(const struct chain *c, const char *disk)
{
    struct disk *d = ch_find_disk(c, disk);
    return d && !(d->device && d->device[0]);
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

bool chain_job_progress(const struct chain *c, const char *disk,
                        int64_t *offset, int64_t *len)
{
    struct job *j = ch_disk_job(c, ch_find_disk(c, disk));

    if (!j) {
        return false;
    }
    *offset = j->offset;
    *len = j->len;
    return true;
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
