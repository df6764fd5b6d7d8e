/*
 * qmp: message kinds, request checks and QEMU-form replies.
 */
#include "qmp.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "qjson.h"
#include "util.h"

enum qmp_kind qmp_classify(const struct js_text *t)
{
    if (!t->is_object) {
        return QMP_UNKNOWN;
    }
    for (int i = 0; i < t->nmembers; i++) {
        const struct js_member *m = &t->members[i];
        if (js_member_key_is(t, m, "return")) {
            return QMP_RETURN;
        }
        if (js_member_key_is(t, m, "error")) {
            return QMP_ERROR;
        }
        if (js_member_key_is(t, m, "event")) {
            return QMP_EVENT;
        }
        if (js_member_key_is(t, m, "QMP")) {
            return QMP_GREETING;
        }
    }
    return QMP_UNKNOWN;
}

const char *qmp_kind_name(enum qmp_kind kind)
{
    switch (kind) {
    case QMP_GREETING: return "greeting";
    case QMP_RETURN: return "return";
    case QMP_ERROR: return "error";
    case QMP_EVENT: return "event";
    case QMP_UNKNOWN: break;
    }
    return "unknown";
}

char *qmp_check_request(json_object *value, bool is_value, bool allow_oob,
                        struct qmp_request *req)
{
    const char *exec_key = NULL;
    const char **keys;
    size_t n;
    char *error = NULL;

    memset(req, 0, sizeof(*req));
    if (!is_value || !json_object_is_type(value, json_type_object)) {
        return xstrdup("QMP input must be a JSON object");
    }
    req->has_id = json_object_object_get_ex(value, "id", &req->id);

    /* qmp_dispatch_check_obj() walks the QDict in its hash order */
    keys = qjson_qdict_keys(value, &n);
    for (size_t i = 0; i < n && !error; i++) {
        const char *name = keys[i];
        json_object *member = json_object_object_get(value, name);

        if (!strcmp(name, "execute")
            || (!strcmp(name, "exec-oob") && allow_oob)) {
            if (!json_object_is_type(member, json_type_string)) {
                error = xasprintf("QMP input member '%s' must be a string",
                                  name);
            } else if (exec_key) {
                error = xasprintf("QMP input member '%s' clashes with '%s'",
                                  name, exec_key);
            } else {
                exec_key = name;
            }
        } else if (!strcmp(name, "arguments")) {
            if (!json_object_is_type(member, json_type_object)) {
                error = xstrdup("QMP input member 'arguments' must be an "
                                "object");
            }
        } else if (strcmp(name, "id")) {
            error = xasprintf("QMP input member '%s' is unexpected", name);
        }
    }
    free(keys);
    if (error) {
        return error;
    }
    if (!exec_key) {
        return xstrdup("QMP input lacks member 'execute'");
    }
    req->oob = !strcmp(exec_key, "exec-oob");
    req->command = json_object_get_string(json_object_object_get(value,
                                                                 exec_key));
    req->args = json_object_object_get(value, "arguments");
    return NULL;
}

static char *finish(json_object *rsp, const struct qmp_request *req,
                    size_t *len)
{
    struct strbuf sb = STRBUF_INIT;

    if (req && req->has_id) {
        json_object_object_add(rsp, "id", json_object_get(req->id));
    }
    qjson_write(&sb, rsp);
    strbuf_adds(&sb, "\r\n");
    json_object_put(rsp);
    return strbuf_detach(&sb, len);
}

char *qmp_error_reply(const char *cls, const char *desc,
                      const struct qmp_request *req, size_t *len)
{
    json_object *rsp = json_object_new_object();
    json_object *err = json_object_new_object();

    json_object_object_add(err, "class", json_object_new_string(cls));
    json_object_object_add(err, "desc", json_object_new_string(desc));
    json_object_object_add(rsp, "error", err);
    return finish(rsp, req, len);
}

char *qmp_return_reply(json_object *ret, const struct qmp_request *req,
                       size_t *len)
{
    json_object *rsp = json_object_new_object();

    json_object_object_add(rsp, "return",
                           ret ? json_object_get(ret)
                               : json_object_new_object());
    return finish(rsp, req, len);
}

char *qmp_event_message(const char *name, json_object *data, size_t *len)
{
    json_object *ev = json_object_new_object();
    json_object *ts = json_object_new_object();
    struct timeval tv;

    gettimeofday(&tv, NULL);
    json_object_object_add(ts, "seconds", json_object_new_int64(tv.tv_sec));
    json_object_object_add(ts, "microseconds",
                           json_object_new_int64(tv.tv_usec));
    json_object_object_add(ev, "event", json_object_new_string(name));
    if (data) {
        json_object_object_add(ev, "data", json_object_get(data));
    }
    json_object_object_add(ev, "timestamp", ts);
    return finish(ev, NULL, len);
}

json_object *qmp_command(const char *name, json_object *args)
{
    json_object *cmd = json_object_new_object();

    json_object_object_add(cmd, "execute", json_object_new_string(name));
    if (args) {
        json_object_object_add(cmd, "arguments", args);
    }
    return cmd;
}
