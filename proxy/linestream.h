/*
 * linestream: QEMU's side of the monitor, one message per line.
 *
 * QEMU writes every QMP message on one line ending in CRLF, and escapes
 * every control character inside strings, so a line is a message whatever
 * it holds.  That matters because QEMU does not always write JSON: it
 * accepts 1e999 as an id and echoes it as `inf`.  Held to the rules of
 * QEMU's *input* lexer (jsonstream), such a reply splits into several
 * errors and the in-order routing of every later reply loses step.  Here
 * the line is the unit: its top-level members are located by a lenient
 * scan (strings, nesting, nothing else), so routing can classify it, and
 * its bytes go to the client as QEMU wrote them.
 *
 * The same zero-copy feeding as jsonstream (reserve, read into it, commit)
 * and the same js_text handed to the callback (error is always NULL).
 */
#ifndef QMPROXY_LINESTREAM_H
#define QMPROXY_LINESTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "jsonstream.h"

struct linestream;

struct linestream *linestream_new(jsonstream_emit_fn emit, void *opaque);
void linestream_free(struct linestream *ls);
char *linestream_reserve(struct linestream *ls, size_t min, size_t *avail);
/* Returns false when the callback stopped the feeding. */
bool linestream_commit(struct linestream *ls, size_t n);

/* Locate the top-level members of one message (for tests, and anyone
 * holding a line): fills t->is_object, members, nmembers. */
void linestream_scan_members(struct js_text *t);

#endif
