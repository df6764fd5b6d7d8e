/*
 * qemu-schema: which of QEMU's commands could name a place outside QEMU,
 * read from the QEMU that is there (query-qmp-schema), so a command the
 * proxy's tables do not know (a newer QEMU's, say) is still seen for what
 * it is.  A command can name a place when an argument, at any depth and
 * through every variant, is a member with a name QEMU gives places
 * (filename, path, uri, host, ...).  The policy refuses such a command
 * under a path policy unless the proxy knows how to check it.
 */
#ifndef QMPROXY_QEMU_SCHEMA_H
#define QMPROXY_QEMU_SCHEMA_H

#include <json-c/json.h>

struct qemu_schema;

/* From the "return" of query-qmp-schema (borrowed).  NULL if it is not a
 * schema. */
struct qemu_schema *qemu_schema_new(json_object *schema_info);
void qemu_schema_free(struct qemu_schema *s);
/* The argument through which command can name a place ("addr.data.path"),
 * borrowed; NULL when it cannot (or is unknown). */
const char *qemu_schema_place_argument(const struct qemu_schema *s,
                                       const char *command);

#endif
