/*
 * qapi: argument checking worded like QEMU's qobject-input-visitor.c.
 */
#include "qapi.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "qjson.h"
#include "util.h"

static char *check_object(const struct qapi_member *members,
                          json_object *obj, const char *prefix);

static char *full_name(const char *prefix, const char *name)
{
    return prefix[0] ? xasprintf("%s.%s", prefix, name) : xstrdup(name);
}

static char *type_error(const char *name, const char *expected)
{
    return xasprintf("Invalid parameter type for '%s', expected: %s", name,
                     expected);
}

static char *check_value(const struct qapi_member *m, json_object *v,
                         const char *name, bool list_element)
{
    switch (m->type) {
    case QAPI_ANY:
        return NULL;
    case QAPI_STR:
        return json_object_is_type(v, json_type_string)
            ? NULL : type_error(name, "string");
    case QAPI_BOOL:
        return json_object_is_type(v, json_type_boolean)
            ? NULL : type_error(name, "boolean");
    case QAPI_INT:
        if (!json_object_is_type(v, json_type_int)
            || (json_object_get_int64(v) == INT64_MAX
                && json_object_get_uint64(v) > INT64_MAX)) {
            return type_error(name, "integer");
        }
        return NULL;
    case QAPI_ENUM: {
        const char *s;
        if (!json_object_is_type(v, json_type_string)) {
            return type_error(name, "string");
        }
        s = json_object_get_string(v);
        for (const char *const *p = m->values; *p; p++) {
            if (!strcmp(*p, s)) {
                return NULL;
            }
        }
        /* QEMU 7.2 names a list element 'null' in this one message */
        return xasprintf("Parameter '%s' does not accept value '%s'",
                         list_element ? "null" : name, s);
    }
    case QAPI_LIST: {
        size_t n;
        if (!json_object_is_type(v, json_type_array)) {
            return type_error(name, "array");
        }
        n = json_object_array_length(v);
        for (size_t i = 0; i < n; i++) {
            char *elem = xasprintf("%s[%zu]", name, i);
            char *err = check_value(m->element,
                                    json_object_array_get_idx(v, i), elem,
                                    true);
            free(elem);
            if (err) {
                return err;
            }
        }
        return NULL;
    }
    case QAPI_OBJECT:
        if (!json_object_is_type(v, json_type_object)) {
            return type_error(name, "object");
        }
        return check_object(m->members, v, name);
    }
    return NULL;
}

static char *check_object(const struct qapi_member *members,
                          json_object *obj, const char *prefix)
{
    const char **keys;
    size_t n;
    char *err = NULL;

    for (const struct qapi_member *m = members; m && m->name; m++) {
        json_object *v;
        char *name = full_name(prefix, m->name);
        if (!obj || !json_object_object_get_ex(obj, m->name, &v)) {
            if (!m->optional) {
                err = xasprintf("Parameter '%s' is missing", name);
            }
        } else {
            err = check_value(m, v, name, false);
        }
        free(name);
        if (err) {
            return err;
        }
    }
    if (!obj) {
        return NULL;
    }
    keys = qjson_qdict_keys(obj, &n);
    for (size_t i = 0; i < n && !err; i++) {
        const struct qapi_member *m = members;
        while (m && m->name && strcmp(m->name, keys[i])) {
            m++;
        }
        if (!m || !m->name) {
            char *name = full_name(prefix, keys[i]);
            err = xasprintf("Parameter '%s' is unexpected", name);
            free(name);
        }
    }
    free(keys);
    return err;
}

char *qapi_check(const struct qapi_member *members, json_object *args)
{
    return check_object(members, args, "");
}

const char *qapi_get_str(json_object *args, const char *name,
                         const char *dflt)
{
    const char *s = jobj_str(args, name);
    return s ? s : dflt;
}

long long qapi_get_int(json_object *args, const char *name, long long dflt)
{
    return jobj_int(args, name, dflt);
}

bool qapi_get_bool(json_object *args, const char *name, bool dflt)
{
    return jobj_bool(args, name, dflt);
}
