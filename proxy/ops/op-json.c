/*
 * op-json: operations as clients see them (qmproxy-query-operations,
 * QMPROXY_OPERATION) and as the state file keeps them.
 */
#include "op.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "op-internal.h"
#include "jsonobj.h"
#include "util.h"

/*
 * A disk's members, in the order clients see them: one table for what is
 * shown, what is saved and what is loaded, so the three cannot drift.
 */
enum field_type { FIELD_STR, FIELD_INT, FIELD_BOOL };

static const struct disk_field {
    const char *key;
    enum field_type type;
    size_t offset;
    bool internal;   /* only in the state file */
    bool with_job;   /* only while the disk has a job */
} disk_fields[] = {
#define F(key, type, member, internal, with_job) \
    { key, type, offsetof(struct op_disk, member), internal, with_job }
    F("snapshot-file", FIELD_STR, snapshot_file, false, false),
    F("mirror-file", FIELD_STR, mirror_file, false, false),
    F("format", FIELD_STR, format, false, false),
    F("mirror-format", FIELD_STR, mirror_format, false, false),
    F("job", FIELD_STR, job, false, false),
    F("offset", FIELD_INT, offset, false, true),
    F("len", FIELD_INT, len, false, true),
    F("job-status", FIELD_STR, job_status, false, false),
    F("error", FIELD_STR, job_error, false, false),
    F("note", FIELD_STR, note, false, false),
    F("mode", FIELD_STR, mode, true, false),
    F("sync", FIELD_STR, sync, true, false),
    F("copy-mode", FIELD_STR, copy_mode, false, false),
    F("on-target-error", FIELD_STR, on_target_error, true, false),
    F("target-node", FIELD_STR, target_node, true, false),
    F("speed", FIELD_INT, speed, true, false),
    F("old-top-file", FIELD_STR, old_top_file, true, false),
    F("old-top-node", FIELD_STR, old_top_node, true, false),
    F("new-top-node", FIELD_STR, new_top_node, true, false),
    F("own-job", FIELD_BOOL, own_job, true, false),
    F("manual-finalize", FIELD_BOOL, manual_finalize, true, false),
    F("ready", FIELD_BOOL, ready, true, false),
    /* the proxy's fd sets of the images it handed over: to remove them
     * when a restarted proxy ends the operation */
    F("copy-fdset", FIELD_INT, copy_image.fdset, true, false),
    F("snapshot-fdset", FIELD_INT, snapshot_image.fdset, true, false),
#undef F
};

#define FIELD(d, f, T) ((T *)((char *)(d) + (f)->offset))

static json_object *disk_json(const struct op_disk *d, bool internal)
{
    json_object *o = json_object_new_object();

    jobj_add_str(o, "disk", d->disk);
    jobj_add_str(o, "state", op_disk_state_name(d->state));
    for (size_t i = 0; i < sizeof(disk_fields) / sizeof(*disk_fields); i++) {
        const struct disk_field *f = &disk_fields[i];
        if ((f->internal && !internal) || (f->with_job && !d->job)) {
            continue;
        }
        switch (f->type) {
        case FIELD_STR:
            jobj_add_str(o, f->key, *FIELD(d, f, char *const));
            break;
        case FIELD_INT:
            json_object_object_add(o, f->key, json_object_new_int64(
                                       *FIELD(d, f, const int64_t)));
            break;
        case FIELD_BOOL:
            jobj_add_bool(o, f->key, *FIELD(d, f, const bool));
            break;
        }
    }
    if (!internal && d->lag_known) {
        /* a ready copy: what it trails by (not saved: a restarted proxy
         * asks QEMU again) */
        double seconds;
        json_object_object_add(o, "lag-bytes",
                               json_object_new_int64(d->lag_bytes));
        if (op_disk_lag_seconds(d, &seconds)) {
            json_object_object_add(o, "lag-seconds",
                                   json_object_new_double(seconds));
        }
    }
    return o;
}

static void disk_load(struct op_disk *d, json_object *saved)
{
    op_disk_state_from_name(jobj_str(saved, "state"), &d->state);
    for (size_t i = 0; i < sizeof(disk_fields) / sizeof(*disk_fields); i++) {
        const struct disk_field *f = &disk_fields[i];
        switch (f->type) {
        case FIELD_STR:
            str_set(FIELD(d, f, char *), jobj_str(saved, f->key));
            break;
        case FIELD_INT:
            /* absent: as op_add_disk left it */
            *FIELD(d, f, int64_t) = jobj_int(saved, f->key,
                                             *FIELD(d, f, int64_t));
            break;
        case FIELD_BOOL:
            *FIELD(d, f, bool) = jobj_bool(saved, f->key, false);
            break;
        }
    }
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
        if (op->priv_save) {
            json_object_object_add(o, "own", op->priv_save(op));
        } else if (op->loaded_priv) {   /* not taken over yet */
            json_object_object_add(o, "own",
                                   json_object_get(op->loaded_priv));
        }
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
        op->loaded_priv = json_object_get(jobj_typed(s, "own",
                                                     json_type_object));
        disks = jobj_typed(s, "disks", json_type_array);
        if (!disks) {
            continue;  /* a damaged file: an operation without disks */
        }
        for (size_t k = 0; k < json_object_array_length(disks); k++) {
            json_object *ds = json_object_array_get_idx(disks, k);
            struct op_disk *d = op_add_disk(op, jobj_str(ds, "disk")
                                                ? jobj_str(ds, "disk") : "?");
            disk_load(d, ds);
        }
    }
}
