/*
 * jsonobj: typed access to the members of json-c objects.  A member that is
 * missing or of another type reads as absent, so a client's malformed
 * argument or a damaged state file cannot be mistaken for a value.
 */
#ifndef QMPROXY_JSONOBJ_H
#define QMPROXY_JSONOBJ_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

/* The string member key of o (borrowed), or NULL. */
static inline const char *jobj_str(json_object *o, const char *key)
{
    json_object *v;
    if (o && json_object_object_get_ex(o, key, &v)
        && json_object_is_type(v, json_type_string)) {
        return json_object_get_string(v);
    }
    return NULL;
}

static inline int64_t jobj_int(json_object *o, const char *key, int64_t dflt)
{
    json_object *v;
    if (o && json_object_object_get_ex(o, key, &v)
        && json_object_is_type(v, json_type_int)) {
        return json_object_get_int64(v);
    }
    return dflt;
}

static inline bool jobj_bool(json_object *o, const char *key, bool dflt)
{
    json_object *v;
    if (o && json_object_object_get_ex(o, key, &v)
        && json_object_is_type(v, json_type_boolean)) {
        return json_object_get_boolean(v);
    }
    return dflt;
}

/* Add key: value, leaving the member out when value is NULL. */
static inline void jobj_add_str(json_object *o, const char *key,
                                const char *value)
{
    if (value) {
        json_object_object_add(o, key, json_object_new_string(value));
    }
}

static inline void jobj_add_bool(json_object *o, const char *key, bool value)
{
    json_object_object_add(o, key, json_object_new_boolean(value));
}

#endif
