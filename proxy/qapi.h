/*
 * qapi: checks the arguments of the commands the proxy answers itself
 * against a small schema, and words every problem exactly as QEMU's QAPI
 * input visitor does ("Parameter 'x' is missing", "Invalid parameter type
 * for 'x', expected: integer", ...), so the proxy's commands feel like
 * QEMU's own.
 */
#ifndef QMPROXY_QAPI_H
#define QMPROXY_QAPI_H

#include <stdbool.h>
#include <json-c/json.h>

enum qapi_type {
    QAPI_STR,
    QAPI_INT,
    QAPI_BOOL,
    QAPI_ENUM,
    QAPI_LIST,
    QAPI_OBJECT,
    QAPI_ANY,
};

struct qapi_member {
    const char *name;          /* NULL ends a member table */
    enum qapi_type type;
    bool optional;
    const char *const *values;               /* QAPI_ENUM: NULL-ended */
    const struct qapi_member *members;       /* QAPI_OBJECT */
    const struct qapi_member *element;       /* QAPI_LIST: one member */
};

/*
 * Check args (NULL means {}) against members.  Returns NULL when valid,
 * else an owned GenericError desc.
 */
char *qapi_check(const struct qapi_member *members, json_object *args);

/* Typed getters for checked arguments; absent optional gives the default. */
const char *qapi_get_str(json_object *args, const char *name,
                         const char *dflt);
long long qapi_get_int(json_object *args, const char *name, long long dflt);
bool qapi_get_bool(json_object *args, const char *name, bool dflt);

#endif
