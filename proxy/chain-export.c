/*
 * chain-export: the chain model as clients and the state file see it:
 * JSON, libvirt-style <disk> XML, and the saved form.
 */
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain-model.h"
#include "fdset-names.h"

/* ---- JSON and XML -------------------------------------------------- */

static json_object *layer_json(const struct layer *l)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "file", json_object_new_string(l->file));
    json_object_object_add(o, "format",
                           json_object_new_string(l->format ? l->format : ""));
    jobj_add_str(o, "node-name", l->node_name);
    jobj_add_bool(o, "read-only", l->read_only);
    if (l->virtual_size >= 0) {
        json_object_object_add(o, "virtual-size",
                               json_object_new_int64(l->virtual_size));
    }
    return o;
}

json_object *ch_layers_json(const struct disk *d)
{
    json_object *a = json_object_new_array();
    for (int i = 0; i < d->nlayers; i++) {
        json_object_array_add(a, layer_json(&d->layers[i]));
    }
    return a;
}

/* The filters on the disk, each with the index of the layer it filters;
 * NULL when there are none (the usual case, and then nothing is said). */
static json_object *filters_json(const struct disk *d)
{
    json_object *a;

    if (!d->nfilters) {
        return NULL;
    }
    a = json_object_new_array();
    for (int i = 0; i < d->nfilters; i++) {
        json_object *o = json_object_new_object();
        jobj_add_str(o, "driver", d->filters[i].driver);
        jobj_add_str(o, "node-name", d->filters[i].node_name);
        json_object_object_add(o, "layer",
                               json_object_new_int(d->filters[i].above));
        json_object_array_add(a, o);
    }
    return a;
}

bool ch_job_is_mirror(const struct job *j)
{
    return j && (same(j->type, "mirror") || j->active_commit);
}

/* libvirt's <mirror ready=...>: what state the copy is in. */
const char *ch_mirror_ready(const struct job *j)
{
    if (j->pivot_requested) {
        return "pivot";
    }
    if (j->cancel_requested || same(j->status, "aborting")) {
        return "abort";
    }
    return j->ready || same(j->status, "ready") ? "yes" : "no";
}

json_object *ch_mirror_json(const struct job *j)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "file",
                           json_object_new_string(j->target_file
                                                  ? j->target_file : ""));
    jobj_add_str(o, "format", j->target_format);
    json_object_object_add(o, "job", json_object_new_string(j->id));
    json_object_object_add(o, "type", json_object_new_string(
                               j->active_commit ? "active-commit" : "copy"));
    json_object_object_add(o, "status", json_object_new_string(j->status));
    json_object_object_add(o, "ready",
                           json_object_new_string(ch_mirror_ready(j)));
    json_object_object_add(o, "offset", json_object_new_int64(j->offset));
    json_object_object_add(o, "len", json_object_new_int64(j->len));
    return o;
}

json_object *ch_job_json(const struct job *j)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "id", json_object_new_string(j->id));
    json_object_object_add(o, "type",
                           json_object_new_string(j->type ? j->type : ""));
    json_object_object_add(o, "status", json_object_new_string(j->status));
    json_object_object_add(o, "offset", json_object_new_int64(j->offset));
    json_object_object_add(o, "len", json_object_new_int64(j->len));
    jobj_add_bool(o, "ready", j->ready);
    jobj_add_str(o, "error", j->error);
    json_object_object_add(o, "started-by",
                           json_object_new_int((int)j->started_by));
    jobj_add_str(o, "started-at", j->started_at);
    jobj_add_str(o, "operation", j->operation);
    return o;
}

json_object *ch_disk_json(const struct chain *c, const struct disk *d)
{
    json_object *o = json_object_new_object();
    struct job *j = ch_disk_job(c, d);

    json_object_object_add(o, "disk", json_object_new_string(d->name));
    json_object_object_add(o, "device",
                           json_object_new_string(d->device ? d->device : ""));
    jobj_add_str(o, "qdev", d->qdev);
    if (d->nlayers && d->layers[0].node_name) {
        json_object_object_add(o, "node-name",
                               json_object_new_string(d->layers[0].node_name));
    }
    json_object_object_add(o, "chain", ch_layers_json(d));
    if (d->nfilters) {
        json_object_object_add(o, "filters", filters_json(d));
    }
    if (ch_job_is_mirror(j)) {
        json_object_object_add(o, "mirror", ch_mirror_json(j));
    }
    if (j) {
        json_object_object_add(o, "job", ch_job_json(j));
    }
    return o;
}

json_object *chain_to_json(const struct chain *c, const char *name)
{
    json_object *a;

    if (name) {
        struct disk *d = ch_find_disk(c, name);
        return d ? ch_disk_json(c, d) : NULL;
    }
    a = json_object_new_array();
    for (int i = 0; i < c->ndisks; i++) {
        json_object_array_add(a, ch_disk_json(c, c->disks[i]));
    }
    return a;
}

/* What QMPROXY_CHAIN_CHANGED announces: the layers and any mirror. */
char *ch_publishable(const struct chain *c, const struct disk *d)
{
    json_object *o = json_object_new_object();
    struct job *j = ch_disk_job(c, d);
    char *s;

    json_object_object_add(o, "chain", ch_layers_json(d));
    if (ch_job_is_mirror(j)) {
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

/*
 * An attribute whose value came from QEMU or a client: a file name may
 * hold characters XML 1.0 cannot carry at all, not even as references
 * (control characters, U+FFFE, bytes that are not UTF-8); each becomes
 * U+FFFD, so the document stays well-formed.
 */
static void xml_prop(xmlNodePtr n, const char *name, const char *value)
{
    struct strbuf sb = STRBUF_INIT;
    size_t len = value ? strlen(value) : 0;

    for (size_t i = 0; i < len;) {
        size_t used = 1;
        int cp = (unsigned char)value[i] < 0x80
            ? (unsigned char)value[i]
            : mod_utf8_codepoint(value + i, len - i, &used);
        if (cp < 0
            || (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r')) {
            strbuf_adds(&sb, "\xEF\xBF\xBD");
        } else {
            strbuf_add(&sb, value + i, used);
        }
        i += used ? used : 1;
    }
    xmlNewProp(n, BAD_CAST name, BAD_CAST(sb.buf ? sb.buf : ""));
    strbuf_release(&sb);
}

/* A layer's format and file.  As libvirt writes it, the active layer's
 * format is <driver name='qemu' type=...> and a backing layer's is
 * <format type=...>. */
static xmlNodePtr xml_source(xmlNodePtr parent, const struct layer *l,
                             bool active)
{
    xmlNodePtr n = xmlNewChild(parent, NULL,
                               BAD_CAST(active ? "driver" : "format"), NULL);
    if (active) {
        xmlNewProp(n, BAD_CAST "name", BAD_CAST "qemu");
    }
    xml_prop(n, "type", l->format ? l->format : "raw");
    n = xmlNewChild(parent, NULL, BAD_CAST "source", NULL);
    xml_prop(n, "file", l->file);
    return n;
}

static xmlNodePtr disk_xml(const struct chain *c, const struct disk *d)
{
    xmlNodePtr disk = xmlNewNode(NULL, BAD_CAST "disk");
    xmlNodePtr parent = disk, n;
    struct job *j = ch_disk_job(c, d);

    xmlNewProp(disk, BAD_CAST "type", BAD_CAST "file");
    xmlNewProp(disk, BAD_CAST "device", BAD_CAST "disk");
    if (d->nlayers) {
        xml_source(disk, &d->layers[0], true);
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
        xml_source(n, &d->layers[i], false);
        parent = n;
    }
    if (ch_job_is_mirror(j)) {
        n = xmlNewChild(disk, NULL, BAD_CAST "mirror", NULL);
        xmlNewProp(n, BAD_CAST "type", BAD_CAST "file");
        xml_prop(n, "file", j->target_file);
        if (j->target_format) {
            xml_prop(n, "format", j->target_format);
        }
        xmlNewProp(n, BAD_CAST "job", BAD_CAST(j->active_commit
                                               ? "active-commit" : "copy"));
        xmlNewProp(n, BAD_CAST "ready", BAD_CAST ch_mirror_ready(j));
        if (j->target_format) {
            xmlNodePtr f = xmlNewChild(n, NULL, BAD_CAST "format", NULL);
            xml_prop(f, "type", j->target_format);
        }
        xmlNodePtr s = xmlNewChild(n, NULL, BAD_CAST "source", NULL);
        xml_prop(s, "file", j->target_file);
    }
    /* filters as what they are: not <backingStore>s, so the chain reads as
     * libvirt's does; the same facts as the JSON's "filters" */
    for (int i = 0; i < d->nfilters; i++) {
        char layer[16];
        snprintf(layer, sizeof(layer), "%d", d->filters[i].above);
        n = xmlNewChild(disk, NULL, BAD_CAST "filter", NULL);
        xml_prop(n, "driver", d->filters[i].driver);
        if (d->filters[i].node_name) {
            xml_prop(n, "node-name", d->filters[i].node_name);
        }
        xmlNewProp(n, BAD_CAST "layer", BAD_CAST layer);
    }
    n = xmlNewChild(disk, NULL, BAD_CAST "target", NULL);
    xml_prop(n, "dev", d->name);
    n = xmlNewChild(disk, NULL, BAD_CAST "alias", NULL);
    xml_prop(n, "name", d->qdev ? d->qdev : d->name);
    return disk;
}

char *chain_to_xml(const struct chain *c, const char *name)
{
    xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
    xmlBufferPtr buf = xmlBufferCreate();
    xmlNodePtr root;
    char *out;

    if (name) {
        struct disk *d = ch_find_disk(c, name);
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

/* ---- persistence --------------------------------------------------- */

json_object *chain_save(const struct chain *c)
{
    json_object *o = json_object_new_object();
    json_object *jobs = json_object_new_array();
    json_object *disks = chain_to_json(c, NULL);

    for (int i = 0; i < c->ndisks; i++) {
        if (c->disks[i]->unverified) {
            /* a job event's prediction QEMU has not confirmed: a restart
             * compares it with QEMU's chains, as every saved chain */
            jobj_add_bool(json_object_array_get_idx(disks, (size_t)i),
                          "unverified", true);
        }
    }
    json_object_object_add(o, "disks", disks);
    for (int i = 0; i < c->njobs; i++) {
        const struct job *j = c->jobs[i];
        json_object *s = ch_job_json(j);
        jobj_add_str(s, "disk", j->disk);
        jobj_add_str(s, "target-file", j->target_file);
        jobj_add_str(s, "target-format", j->target_format);
        jobj_add_str(s, "target-node", j->target_node);
        jobj_add_str(s, "mode", j->mode);
        jobj_add_str(s, "sync", j->sync);
        jobj_add_bool(s, "active-commit", j->active_commit);
        jobj_add_bool(s, "pivot-requested", j->pivot_requested);
        jobj_add_bool(s, "cancel-requested", j->cancel_requested);
        jobj_add_bool(s, "manual-finalize", j->manual_finalize);
        jobj_add_bool(s, "manual-dismiss", j->manual_dismiss);
        json_object_array_add(jobs, s);
    }
    json_object_object_add(o, "jobs", jobs);
    json_object_object_add(o, "blockdev-nodes",
                           json_object_get(c->blockdev_nodes));
    /* QEMU still calls the images the proxy handed over /dev/fdset/N */
    if (fdset_names_count()) {
        json_object *fdsets = json_object_new_array();
        for (int i = 0; i < fdset_names_count(); i++) {
            json_object *f = json_object_new_object();
            int64_t id;
            const char *path;
            fdset_names_at(i, &id, &path);
            json_object_object_add(f, "fdset-id", json_object_new_int64(id));
            jobj_add_str(f, "path", path);
            json_object_array_add(fdsets, f);
        }
        json_object_object_add(o, "fdset-names", fdsets);
    }
    return o;
}

void chain_load(struct chain *c, json_object *saved)
{
    json_object *fdsets = jobj_typed(saved, "fdset-names", json_type_array);

    /* before the first answer of QEMU's that names them */
    for (size_t i = 0; fdsets && i < json_object_array_length(fdsets); i++) {
        json_object *f = json_object_array_get_idx(fdsets, i);
        if (jobj_str(f, "path") && jobj_int(f, "fdset-id", -1) >= 0) {
            fdset_names_set(jobj_int(f, "fdset-id", -1), jobj_str(f, "path"));
        }
    }
    json_object_put(c->loaded);
    c->loaded = json_object_get(saved);
}

