/*
 * qemu-schema: reading QEMU's SchemaInfo for the arguments that name
 * places.
 */
#include "qemu-schema.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "util.h"

/* The member names QEMU's schema gives host files, sockets, hosts and
 * URIs (and programs it runs). */
static const char *const place_names[] = {
    "filename", "file", "path", "dir", "uri", "url", "host", "mem-path",
    "mountpoint", "config", "backing-file", "logfile", "snapshot-file",
    "new-image-file", "script", "downscript", "helper", "socket", "romfile",
    "protocol", NULL,
};

/* Commands whose "place" members name no host place: QOM paths, a
 * display protocol's name. */
static const char *const not_places[] = {
    "qom-get", "qom-list", "qom-set", "qom-list-properties",
    "x-query-virtio-status", "x-query-virtio-queue-status",
    "x-query-virtio-vhost-queue-status", "x-query-virtio-queue-element",
    "add_client", "set_password", "expire_password", "client_migrate_info",
    NULL,
};

struct command_place {
    char *command;
    char *argument;
};

struct qemu_schema {
    struct command_place *places;
    size_t nplaces;
};

static bool listed(const char *const *list, const char *name)
{
    for (; *list; list++) {
        if (!strcmp(*list, name)) {
            return true;
        }
    }
    return false;
}

/* Types by name: the schema's masked names are looked up many times. */
struct types {
    json_object *info;   /* the array */
    json_object *by_name;  /* name -> entry, borrowed references */
};

static json_object *type_named(const struct types *t, const char *name)
{
    json_object *e;
    return name && json_object_object_get_ex(t->by_name, name, &e) ? e
                                                                   : NULL;
}

/* The first member path below type that names a place (owned), or NULL.
 * seen: names already on the way down (the schema has recursive types). */
static char *place_in(const struct types *t, const char *type,
                      json_object *seen)
{
    json_object *e = type_named(t, type), *list;
    const char *meta;
    char *found = NULL;

    if (!e || json_object_object_get_ex(seen, type, NULL)) {
        return NULL;
    }
    json_object_object_add(seen, type, NULL);
    meta = jobj_str(e, "meta-type");
    if (!meta) {
        return NULL;
    }
    if (!strcmp(meta, "array")) {
        return place_in(t, jobj_str(e, "element-type"), seen);
    }
    if (!strcmp(meta, "alternate")
        && (list = jobj_typed(e, "members", json_type_array))) {
        for (size_t i = 0; i < json_object_array_length(list) && !found;
             i++) {
            found = place_in(t, jobj_str(json_object_array_get_idx(list, i),
                                         "type"), seen);
        }
        return found;
    }
    if (strcmp(meta, "object")) {
        return NULL;
    }
    if ((list = jobj_typed(e, "members", json_type_array))) {
        for (size_t i = 0; i < json_object_array_length(list) && !found;
             i++) {
            json_object *m = json_object_array_get_idx(list, i);
            const char *name = jobj_str(m, "name");
            const char *mtype = jobj_str(m, "type");
            const char *mmeta = jobj_str(type_named(t, mtype), "meta-type");
            char *below;
            if (!name) {
                continue;
            }
            if (listed(place_names, name) && mmeta
                && strcmp(mmeta, "enum")) {
                found = xstrdup(name);
            } else if ((below = place_in(t, mtype, seen))) {
                found = xasprintf("%s.%s", name, below);
                free(below);
            }
        }
    }
    if (!found && (list = jobj_typed(e, "variants", json_type_array))) {
        for (size_t i = 0; i < json_object_array_length(list) && !found;
             i++) {
            found = place_in(t, jobj_str(json_object_array_get_idx(list, i),
                                         "type"), seen);
        }
    }
    return found;
}

struct qemu_schema *qemu_schema_new(json_object *info)
{
    struct types t = { info, json_object_new_object() };
    struct qemu_schema *s;
    size_t n;

    if (!json_object_is_type(info, json_type_array)) {
        json_object_put(t.by_name);
        return NULL;
    }
    n = json_object_array_length(info);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(info, i);
        const char *name = jobj_str(e, "name");
        if (name) {
            json_object_object_add(t.by_name, name, json_object_get(e));
        }
    }
    s = xcalloc(1, sizeof(*s));
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(info, i);
        const char *meta = jobj_str(e, "meta-type");
        const char *name = jobj_str(e, "name");
        json_object *seen;
        char *arg;
        if (!meta || strcmp(meta, "command") || !name
            || listed(not_places, name)) {
            continue;
        }
        seen = json_object_new_object();
        arg = place_in(&t, jobj_str(e, "arg-type"), seen);
        json_object_put(seen);
        if (arg) {
            s->places = xrealloc(s->places,
                                 sizeof(*s->places) * (s->nplaces + 1));
            s->places[s->nplaces].command = xstrdup(name);
            s->places[s->nplaces].argument = arg;
            s->nplaces++;
        }
    }
    json_object_put(t.by_name);
    return s;
}

void qemu_schema_free(struct qemu_schema *s)
{
    if (!s) {
        return;
    }
    for (size_t i = 0; i < s->nplaces; i++) {
        free(s->places[i].command);
        free(s->places[i].argument);
    }
    free(s->places);
    free(s);
}

const char *qemu_schema_place_argument(const struct qemu_schema *s,
                                       const char *command)
{
    for (size_t i = 0; s && i < s->nplaces; i++) {
        if (!strcmp(s->places[i].command, command)) {
            return s->places[i].argument;
        }
    }
    return NULL;
}
