/*
 * jsonstream: splits a byte stream into JSON texts exactly the way QEMU's
 * QMP monitor does (its lexer, streamer and parser), and keeps the raw bytes
 * of every text next to what it means.
 *
 * Why exactness matters: qmproxy forwards a client's command to QEMU as the
 * very bytes the client sent.  If the proxy and QEMU disagreed on where one
 * text ends, or on whether a text is an error, QEMU would answer a different
 * number of times than the proxy expects and every later reply would go to
 * the wrong client.  So this module reproduces QEMU's rules: the same tokens,
 * the same recovery after garbage, the same limits (64 MiB of tokens, 2 Mi
 * tokens, nesting 1024) and the same error texts.
 *
 * Two modes:
 *  - with values (client side): every text is parsed into a json-c object
 *    with QEMU's semantics (integers as int64, then uint64, then double;
 *    modified UTF-8; duplicate keys refused), or an error is reported;
 *  - without values (QEMU side): texts are only delimited and their
 *    top-level members located; callers parse lazily with json_tokener.
 */
#ifndef QMPROXY_JSONSTREAM_H
#define QMPROXY_JSONSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#define JSONSTREAM_MAX_TOKEN_SIZE ((size_t)64 << 20)  /* QEMU's MAX_TOKEN_SIZE */
#define JSONSTREAM_MAX_TOKEN_COUNT ((size_t)2 << 20)  /* QEMU's MAX_TOKEN_COUNT */
#define JSONSTREAM_MAX_NESTING 1024                   /* QEMU's MAX_NESTING */
#define JSONSTREAM_MAX_MEMBERS 16

/* Where one member of a top-level object sits in the raw text. */
struct js_member {
    size_t key_start, key_end;      /* the key token, quotes included */
    size_t value_start, value_end;  /* first byte to last byte of the value */
};

struct js_text {
    const char *raw;     /* borrowed: the text, first token to last token */
    size_t len;
    size_t after;        /* bytes already buffered after the text */
    const char *error;   /* non-NULL: QEMU's error for this input, no value */
    bool has_value;      /* a value was built (with-values mode only) */
    json_object *value;  /* borrowed; NULL is JSON null when has_value */
    bool is_object;      /* the text is a {...} */
    /* Top-level members of an object, in text order, offsets into raw. */
    int nmembers;
    bool members_overflow;  /* more than JSONSTREAM_MAX_MEMBERS */
    struct js_member members[JSONSTREAM_MAX_MEMBERS];
};

/*
 * Called once per text or error, in stream order.  Return false to stop
 * feeding (the caller is going away); the rest of the input stays buffered.
 */
typedef bool (*jsonstream_emit_fn)(void *opaque, const struct js_text *text);

struct jsonstream;

/* max_size: the token-size limit (QEMU's is 64 MiB; smaller is allowed). */
struct jsonstream *jsonstream_new(bool build_values, size_t max_size,
                                  jsonstream_emit_fn emit, void *opaque);
void jsonstream_free(struct jsonstream *js);

/* Zero-copy feeding: get room for at least min bytes, read into it, commit. */
char *jsonstream_reserve(struct jsonstream *js, size_t min, size_t *avail);
bool jsonstream_commit(struct jsonstream *js, size_t n);
/* Copying variant, for tests and small inputs. */
bool jsonstream_feed(struct jsonstream *js, const char *buf, size_t len);
/* Resume after an emit callback returned false. */
bool jsonstream_resume(struct jsonstream *js);

/* Bytes held: the partial text plus unparsed input. */
size_t jsonstream_buffered(const struct jsonstream *js);

/* Compare a member's key with a plain (unescaped) name. */
bool js_member_key_is(const struct js_text *t, const struct js_member *m,
                      const char *name);
/* Find a top-level member by plain key name; NULL if absent. */
const struct js_member *js_text_member(const struct js_text *t,
                                       const char *name);

#endif
