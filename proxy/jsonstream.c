/*
 * jsonstream: the front of QEMU's JSON rules over a byte stream.  It owns
 * the buffer (zero-copy reads, shifting, giving memory back) and the emit
 * callback; json-lexer turns the bytes into tokens, json-streamer (with the
 * json-parser it feeds) decides where texts end and what they mean, and
 * this file hands each text or error to the caller with its raw bytes.
 */
#include "jsonstream.h"

#include <stdlib.h>
#include <string.h>

#include "json-lexer.h"
#include "json-streamer.h"
#include "util.h"

struct jsonstream {
    jsonstream_emit_fn emit;
    void *opaque;
    bool stopped;

    char *buf;               /* owned */
    size_t cap, len;         /* bytes [0, len) are input */
    size_t scan;             /* next byte to lex */

    struct json_lexer lexer;
    struct json_streamer streamer;
};

static void emit(struct jsonstream *js, struct js_text *t)
{
    if (!js->emit(js->opaque, t)) {
        js->stopped = true;
    }
}

/* An error the streamer found; it ends the open text. */
static void emit_error(struct jsonstream *js)
{
    const struct json_streamer *st = &js->streamer;
    struct js_text t = { 0 };

    t.raw = js->buf + st->error_from;
    t.len = st->error_to - st->error_from;
    t.error = st->error;
    emit(js, &t);
}

static void emit_text(struct jsonstream *js)
{
    const struct json_streamer *st = &js->streamer;
    const struct json_parser *p = &st->parser;
    struct js_text t = { 0 };

    t.raw = js->buf + st->text_start;
    t.len = st->last_token_end - st->text_start;
    t.after = js->len - st->last_token_end;
    if (p->error) {
        t.error = p->error;
    } else {
        t.has_value = p->build_values;
        t.value = p->result;
        t.is_object = p->is_object;
        t.nmembers = p->nmembers;
        t.members_overflow = p->members_overflow;
        json_parser_members(p, st->text_start, t.members);
    }
    emit(js, &t);
    json_streamer_reset(&js->streamer);
}

/* Lex what is buffered, emitting texts, until it runs out or emit stops. */
static bool run(struct jsonstream *js)
{
    js->stopped = false;
    while (!js->stopped) {
        enum json_token_type type = json_lexer_next(
            &js->lexer, js->buf, js->len, &js->scan,
            json_streamer_ws_limit(&js->streamer));

        if (type == JSON_NONE) {
            return true;
        }
        switch (json_streamer_token(&js->streamer, js->buf, type,
                                    js->lexer.tok_start, js->scan)) {
        case JSON_STREAMER_MORE:
            break;
        case JSON_STREAMER_TEXT:
            emit_text(js);
            break;
        case JSON_STREAMER_ERROR:
            emit_error(js);
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
    json_streamer_shift(&js->streamer, by);
}

/* The earliest byte still needed: the open text, else the open token. */
static size_t first_needed(const struct jsonstream *js)
{
    if (json_streamer_in_text(&js->streamer)) {
        return js->streamer.text_start;
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
    return buf_room(&js->buf, &js->cap, js->len, min, avail);
}

/* Give back what one huge message needed as soon as little of it is
 * still needed, not at the next read (an idle client would keep it):
 * what is left moves to the front of a buffer of its own size.  After a
 * refused message what is left can be a token the client has opened and
 * not closed (QEMU waits for its end too). */
static void give_back(struct jsonstream *js)
{
    size_t keep = first_needed(js), cap = 4096;

    if (js->cap <= 256 * 1024 || js->len - keep > 64 * 1024) {
        return;
    }
    shift(js, keep);   /* every offset moves with it */
    if (!js->len) {
        free(js->buf);
        js->buf = NULL;
        js->cap = 0;
        return;
    }
    while (cap < js->len) {
        cap *= 2;
    }
    js->buf = xrealloc(js->buf, cap);
    js->cap = cap;
}

bool jsonstream_commit(struct jsonstream *js, size_t n)
{
    bool more;

    js->len += n;
    more = run(js);
    give_back(js);
    return more;
}

bool jsonstream_resume(struct jsonstream *js)
{
    bool more = run(js);

    give_back(js);
    return more;
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

    if (!max_size || max_size > JSONSTREAM_MAX_TOKEN_SIZE) {
        max_size = JSONSTREAM_MAX_TOKEN_SIZE;
    }
    js->emit = emit_fn;
    js->opaque = opaque;
    json_lexer_init(&js->lexer, max_size);
    json_streamer_init(&js->streamer, build_values, max_size);
    return js;
}

void jsonstream_free(struct jsonstream *js)
{
    if (!js) {
        return;
    }
    json_streamer_destroy(&js->streamer);
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
