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

/* Member key of o when it has type t (borrowed), else NULL. */
static inline json_object *jobj_typed(json_object *o, const char *key,
                                      json_type t)
{
    json_object *v;
    return o && json_object_object_get_ex(o, key, &v)
        && json_object_is_type(v, t) ? v : NULL;
}

/* The string member key of o (borrowed), or NULL. */
static inline const char *jobj_str(json_object *o, const char *key)
{
    json_object *v = jobj_typed(o, key, json_type_string);
    return v ? json_object_get_string(v) : NULL;
}

static inline int64_t jobj_int(json_object *o, const char *key, int64_t dflt)
{
    json_object *v = jobj_typed(o, key, json_type_int);
    return v ? json_object_get_int64(v) : dflt;
}

static inline bool jobj_bool(json_object *o, const char *key, bool dflt)
{
    json_object *v = jobj_typed(o, key, json_type_boolean);
    return v ? json_object_get_boolean(v) : dflt;
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
