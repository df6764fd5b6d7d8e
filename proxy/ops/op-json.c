/*
 * op-json: operations as clients see them (qmproxy-query-operations,
 * QMPROXY_OPERATION) and as the state file keeps them.
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>

#include "op-internal.h"
#include "jsonobj.h"
#include "util.h"

static json_object *disk_json(const struct op_disk *d, bool internal)
{
    json_object *o = json_object_new_object();

    jobj_add_str(o, "disk", d->disk);
    jobj_add_str(o, "state", op_disk_state_name(d->state));
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

    for (int i = 0; i < op_reg.nops; i++) {
        if (!name || !strcmp(op_reg.ops[i]->name, name)) {
            json_object_array_add(a, op_to_json(op_reg.ops[i]));
        }
    }
    return a;
}

json_object *ops_save(void)
{
    json_object *a = json_object_new_array();

    for (int i = 0; i < op_reg.nops; i++) {
        json_object_array_add(a, op_json(op_reg.ops[i], true));
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
        if (op->seq >= op_reg.next_seq) {
            op_reg.next_seq = op->seq + 1;
        }
        str_set(&op->started_at, jobj_str(s, "started-at"));
        str_set(&op->error, jobj_str(s, "error"));
        str_set(&op->rule, jobj_str(s, "rule"));
        op_state_from_name(state, &op->state);
        if (!json_object_object_get_ex(s, "disks", &disks)) {
            continue;
        }
        for (size_t k = 0; k < json_object_array_length(disks); k++) {
            json_object *ds = json_object_array_get_idx(disks, k);
            struct op_disk *d = op_add_disk(op, jobj_str(ds, "disk")
                                                ? jobj_str(ds, "disk") : "?");
            op_disk_state_from_name(jobj_str(ds, "state"), &d->state);
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
