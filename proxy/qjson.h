/*
 * qjson: json-c values written the way QEMU writes QObjects
 * (qobject/json-writer.c): ", " and ": " separators, non-ASCII as \uXXXX,
 * integers as int64/uint64, doubles as %.17g, and object members in the
 * order QEMU's QDict hash table yields them.  Anything the proxy says on
 * the QMP wire goes through here, so a client cannot tell it from QEMU.
 */
#ifndef QMPROXY_QJSON_H
#define QMPROXY_QJSON_H

#include <json-c/json.h>

#include "util.h"

void qjson_write(struct strbuf *sb, json_object *value);
void qjson_write_string(struct strbuf *sb, const char *s, size_t len);
/* Owned result, NUL-terminated. */
char *qjson_to_string(json_object *value);
/*
 * The keys of obj in the order QEMU iterates a QDict built from the same
 * text (bucket order; later insertions first within a bucket).  Returns an
 * owned array of n borrowed key pointers.
 */
const char **qjson_qdict_keys(json_object *obj, size_t *n);
/* QEMU's QDict bucket for a key (tdb_hash % 512), exposed for tests. */
unsigned qjson_qdict_bucket(const char *key);

/*
 * Does this text of QEMU's hold a bare word JSON does not have?  QEMU
 * writes non-finite doubles as inf, -inf, nan (an id of 1e999 comes back
 * as -inf); such a message is not JSON.  Cheap: a byte search first.
 */
bool qjson_has_non_finite(const char *raw, size_t len);

/*
 * One JSON text (json-c's lenient reading, nested as deep as QEMU allows,
 * JSONSTREAM_MAX_NESTING); an owned value, or NULL when the bytes are not
 * one complete text.  Any thread.
 */
json_object *qjson_parse(const char *raw, size_t len);

#endif
