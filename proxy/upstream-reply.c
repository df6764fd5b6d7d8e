/*
 * upstream-reply: what a reply of QEMU's says, parsed only when asked.
 */
#include "upstream.h"

#include "qjson.h"

json_object *upstream_reply_value(const struct upstream_reply *r)
{
    if (r->lost || !r->value_cache) {
        return NULL;
    }
    if (!*r->value_cache) {
        *r->value_cache = qjson_parse(r->raw, r->len);
    }
    return *r->value_cache;
}

json_object *upstream_reply_return(const struct upstream_reply *r)
{
    json_object *v = upstream_reply_value(r), *ret;

    if (r->kind != QMP_RETURN || !v
        || !json_object_object_get_ex(v, "return", &ret)) {
        return NULL;
    }
    return ret;
}

const char *upstream_reply_error_class(const struct upstream_reply *r)
{
    json_object *v, *err, *cls;

    v = upstream_reply_value(r);
    if (r->lost || r->kind != QMP_ERROR || !v
        || !json_object_object_get_ex(v, "error", &err)
        || !json_object_object_get_ex(err, "class", &cls)) {
        return QMP_GENERIC_ERROR;
    }
    return json_object_get_string(cls);
}

const char *upstream_reply_error_desc(const struct upstream_reply *r)
{
    json_object *v, *err, *desc;

    if (r->lost) {
        return "QEMU closed its monitor before answering";
    }
    v = upstream_reply_value(r);
    if (r->kind != QMP_ERROR || !v
        || !json_object_object_get_ex(v, "error", &err)
        || !json_object_object_get_ex(err, "desc", &desc)) {
        return NULL;
    }
    return json_object_get_string(desc);
}
