/*
 * qmp: the QMP protocol as QEMU 7.2 speaks it: what kind of message a text
 * is, the checks QEMU applies to a request before dispatching it
 * (qapi/qmp-dispatch.c), and replies, errors and events built in QEMU's
 * exact form, one line ending in CRLF.
 */
#ifndef QMPROXY_QMP_H
#define QMPROXY_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#include "jsonstream.h"

#define QMP_GENERIC_ERROR "GenericError"
#define QMP_COMMAND_NOT_FOUND "CommandNotFound"

enum qmp_kind {
    QMP_UNKNOWN,
    QMP_GREETING,
    QMP_RETURN,
    QMP_ERROR,
    QMP_EVENT,
};

/* Classify a message from QEMU by its top-level members. */
enum qmp_kind qmp_classify(const struct js_text *t);
const char *qmp_kind_name(enum qmp_kind kind);

/* A client's request once it passed QEMU's shape checks. */
struct qmp_request {
    const char *command;  /* borrowed from the request object */
    bool oob;             /* exec-oob rather than execute */
    json_object *args;    /* borrowed; NULL when absent */
    bool has_id;
    json_object *id;      /* borrowed; NULL with has_id is JSON null */
};

/*
 * QEMU's qmp_dispatch() checks, in QEMU's order.  Returns NULL when value is
 * a well-formed request, else the GenericError desc QEMU would give (owned);
 * req->has_id/id are set whenever value is an object, so the error can
 * carry the id as QEMU's does.
 */
char *qmp_check_request(json_object *value, bool is_value, bool allow_oob,
                        struct qmp_request *req);

/* Owned strings, CRLF-terminated; *len excludes nothing. */
char *qmp_error_reply(const char *cls, const char *desc,
                      const struct qmp_request *req, size_t *len);
char *qmp_return_reply(json_object *ret, const struct qmp_request *req,
                       size_t *len);
/* {"execute": name, "arguments": args}; takes args (NULL: none). */
json_object *qmp_command(const char *name, json_object *args);
/* An event in QEMU's form with the current time; data may be NULL. */
char *qmp_event_message(const char *name, json_object *data, size_t *len);

#endif
