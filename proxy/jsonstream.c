/*
 * jsonstream: QEMU's JSON streamer and parser rules over a byte stream,
 * keeping raw bytes; the tokens come from json-lexer.  The parser
 * is incremental (it consumes tokens as they arrive instead of queueing
 * them) but reports the same first error QEMU's recursive descent would.
 */
#include "jsonstream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-lexer.h"
#include "json-parser.h"
#include "util.h"

struct jsonstream {
    size_t max_size;
    jsonstream_emit_fn emit;
    void *opaque;
    bool stopped;

    char *buf;               /* owned */
    size_t cap, len;         /* bytes [0, len) are input */
    size_t scan;             /* next byte to lex */

    struct json_lexer lexer;

    /* streamer (QEMU's JSONMessageParser) */
    int brace_count, bracket_count;
    size_t token_count, token_size;
    size_t text_start, last_token_end;

    struct json_parser parser;
};

/* ---- streamer ------------------------------------------------------- */

static void streamer_reset(struct jsonstream *js)
{
    js->brace_count = 0;
    js->bracket_count = 0;
    js->token_count = 0;
    js->token_size = 0;
    json_parser_reset(&js->parser);
}

static void emit(struct jsonstream *js, struct js_text *t)
{
    if (!js->emit(js->opaque, t)) {
        js->stopped = true;
    }
}

/* An error ends the current text (QEMU's out_emit with err set). */
static void emit_error(struct jsonstream *js, const char *desc, size_t from,
                       size_t to)
{
    struct js_text t = { 0 };

    if (js->token_count) {
        from = js->text_start;
    }
    t.raw = js->buf + from;
    t.len = to - from;
    t.error = desc;
    streamer_reset(js);
    emit(js, &t);
}

static void emit_text(struct jsonstream *js)
{
    struct json_parser *p = &js->parser;
    struct js_text t = { 0 };

    t.raw = js->buf + js->text_start;
    t.len = js->last_token_end - js->text_start;
    t.after = js->len - js->last_token_end;
    json_parser_end(p);
    if (p->error) {
        t.error = p->error;
    } else {
        t.has_value = p->build_values;
        t.value = p->result;
        t.is_object = p->is_object;
        t.nmembers = p->nmembers;
        t.members_overflow = p->members_overflow;
        json_parser_members(p, js->text_start, t.members);
    }
    emit(js, &t);
    streamer_reset(js);
}

/* QEMU's json_message_process_token(). */
static void process_token(struct jsonstream *js, enum json_token_type type,
                          size_t start, size_t end)
{
    size_t len = end - start;
    int prev_depth = js->brace_count + js->bracket_count;
    int depth;

    switch (type) {
    case JSON_LCURLY: js->brace_count++; break;
    case JSON_RCURLY: js->brace_count--; break;
    case JSON_LSQUARE: js->bracket_count++; break;
    case JSON_RSQUARE: js->bracket_count--; break;
    default: break;
    }

    if (js->token_size + len + 1 > js->max_size
        || (js->token_count && end - js->text_start > 2 * js->max_size)) {
        emit_error(js, "JSON token size limit exceeded", start, end);
        return;
    }
    if (js->token_count + 1 > JSONSTREAM_MAX_TOKEN_COUNT) {
        emit_error(js, "JSON token count limit exceeded", start, end);
        return;
    }
    if (js->bracket_count + js->brace_count > JSONSTREAM_MAX_NESTING) {
        emit_error(js, "JSON nesting depth limit exceeded", start, end);
        return;
    }

    depth = js->brace_count + js->bracket_count;
    json_parser_token(&js->parser, type, js->buf, start, end,
                      js->token_count == 0, prev_depth, depth);
    if (js->token_count == 0) {
        js->text_start = start;
    }
    js->token_count++;
    js->token_size += len;
    js->last_token_end = end;

    if ((js->brace_count > 0 || js->bracket_count > 0)
        && js->brace_count >= 0 && js->bracket_count >= 0) {
        return;
    }
    emit_text(js);
}

/* ---- tokens --------------------------------------------------------- */

/* A byte QEMU's lexer refuses: QEMU's streamer reports it. */
static void stray(struct jsonstream *js, size_t start, size_t end)
{
    /* QEMU prints the token as a C string: it stops at a NUL byte. */
    size_t n = strnlen(js->buf + start, end - start);
    char *desc = xasprintf("JSON parse error, stray '%.*s'", (int)n,
                           js->buf + start);

    emit_error(js, desc, start, end);
    free(desc);
}

static bool run(struct jsonstream *js)
{
    js->stopped = false;
    while (!js->stopped) {
        size_t ws_limit = js->token_count ? js->text_start + 2 * js->max_size
                                          : SIZE_MAX;
        enum json_token_type type = json_lexer_next(&js->lexer, js->buf,
                                                    js->len, &js->scan,
                                                    ws_limit);
        size_t start = js->lexer.tok_start;

        switch (type) {
        case JSON_NONE:
            return true;
        case JSON_ERROR:
            stray(js, start, js->scan);
            break;
        case JSON_TOO_LONG:
        case JSON_WS_LIMIT:
            /*
             * QEMU's lexer gives up on a single token longer than the
             * limit; whitespace inside a text is bounded like tokens are.
             */
            emit_error(js, "JSON token size limit exceeded", start, js->scan);
            break;
        default:
            process_token(js, type, start, js->scan);
            break;
        }
    }
    return false;
}

/* ---- buffer --------------------------------------------------------- */

static void shift(struct jsonstream *js, size_t by)
{
    memmove(js->buf, js->buf + by, js->len - by);
    js->len -= by;
    js->scan -= by;
    json_lexer_shift(&js->lexer, by);
    js->text_start = js->text_start >= by ? js->text_start - by : 0;
    js->last_token_end = js->last_token_end >= by
        ? js->last_token_end - by : 0;
    json_parser_shift(&js->parser, by);
}

/* The earliest byte still needed: the open text, else the open token. */
static size_t first_needed(const struct jsonstream *js)
{
    if (js->token_count) {
        return js->text_start;
    }
    if (json_lexer_in_token(&js->lexer)) {
        return js->lexer.tok_start;
    }
    return js->scan;
}

char *jsonstream_reserve(struct jsonstream *js, size_t min, size_t *avail)
{
    size_t keep = first_needed(js);

    if (keep > 0 && (js->cap - js->len < min || keep == js->len)) {
        shift(js, keep);
    }
    if (js->cap - js->len < min) {
        size_t cap = js->cap ? js->cap : 4096;
        while (cap - js->len < min) {
            cap *= 2;
        }
        js->buf = xrealloc(js->buf, cap);
        js->cap = cap;
    } else if (js->len == 0 && js->cap > 256 * 1024 && min <= 65536) {
        /* give back what one huge message needed */
        free(js->buf);
        js->cap = 65536;
        js->buf = xmalloc(js->cap);
    }
    *avail = js->cap - js->len;
    return js->buf + js->len;
}

bool jsonstream_commit(struct jsonstream *js, size_t n)
{
    js->len += n;
    return run(js);
}

bool jsonstream_resume(struct jsonstream *js)
{
    return run(js);
}

bool jsonstream_feed(struct jsonstream *js, const char *buf, size_t len)
{
    size_t avail;
    char *p = jsonstream_reserve(js, len ? len : 1, &avail);

    memcpy(p, buf, len);
    return jsonstream_commit(js, len);
}

size_t jsonstream_buffered(const struct jsonstream *js)
{
    return js->len - first_needed(js);
}

struct jsonstream *jsonstream_new(bool build_values, size_t max_size,
                                  jsonstream_emit_fn emit_fn, void *opaque)
{
    struct jsonstream *js = xcalloc(1, sizeof(*js));

    js->max_size = max_size && max_size < JSONSTREAM_MAX_TOKEN_SIZE
        ? max_size : JSONSTREAM_MAX_TOKEN_SIZE;
    js->emit = emit_fn;
    js->opaque = opaque;
    json_lexer_init(&js->lexer, js->max_size);
    json_parser_init(&js->parser, build_values);
    return js;
}

void jsonstream_free(struct jsonstream *js)
{
    if (!js) {
        return;
    }
    json_parser_destroy(&js->parser);
    free(js->buf);
    free(js);
}

/* ---- members -------------------------------------------------------- */

bool js_member_key_is(const struct js_text *t, const struct js_member *m,
                      const char *name)
{
    size_t n = strlen(name);
    const char *k = t->raw + m->key_start;
    size_t klen = m->key_end - m->key_start;
    char *error = NULL;
    json_object *decoded;
    bool same;

    if (!memchr(k, '\\', klen)) {
        return klen == n + 2 && !memcmp(k + 1, name, n);
    }
    /* a client may spell a key with escapes; compare what it means */
    decoded = json_parser_decode_string(k, klen, &error);
    same = decoded && (size_t)json_object_get_string_len(decoded) == n
        && !memcmp(json_object_get_string(decoded), name, n);
    json_object_put(decoded);
    free(error);
    return same;
}

const struct js_member *js_text_member(const struct js_text *t,
                                       const char *name)
{
    for (int i = 0; i < t->nmembers; i++) {
        if (js_member_key_is(t, &t->members[i], name)) {
            return &t->members[i];
        }
    }
    return NULL;
}
