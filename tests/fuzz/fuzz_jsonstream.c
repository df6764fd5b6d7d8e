/*
 * fuzz_jsonstream: QEMU's lexer, streamer and parser rules over a client's
 * byte stream (proxy/jsonstream.c), in both modes.
 *
 * Input: one byte of flags, four bytes seeding the chunk sizes, then the
 * stream.  The stream is read three times: whole, in chunks of random
 * sizes (through the zero-copy reserve/commit path and the copying feed,
 * with the callback stopping the stream now and then), and whole in the
 * other mode.  What is checked:
 *  - every text's bytes, members and value are consistent: member offsets
 *    inside the text, in order, keys that are the object's keys, value
 *    spans that read back as the member's value;
 *  - a value written the way QEMU writes it (qjson) reads back equal;
 *  - chunking changes nothing: the same texts, errors and values;
 *  - the two modes delimit the stream identically (only values mode can
 *    add a parse error to a text).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "fuzz_json.h"
#include "fuzz_text.h"
#include "jsonstream.h"
#include "log.h"
#include "qjson.h"
#include "util.h"

struct run {
    bool values;
    bool check_values;    /* the value checks (the chunked run is compared) */
    struct strbuf full;   /* everything emitted, for comparing runs */
    struct strbuf shape;  /* only where texts are, for comparing modes */
    uint32_t rng;
    bool may_stop;
    int stops;
};

/* jsonstream's keys are strings, in QEMU's two quotes. */
static void check_members(const struct js_text *t)
{
    fuzz_check_members(t);
    for (int i = 0; i < t->nmembers; i++) {
        char quote = t->raw[t->members[i].key_start];
        FUZZ_ASSERT(quote == '"' || quote == '\'');
    }
}

/* What jsonstream built for a text agrees with the text itself. */
static void check_value(const struct js_text *t)
{
    json_object *v = t->value;
    int i = 0;

    FUZZ_ASSERT(t->is_object == json_object_is_type(v, json_type_object));
    if (!t->is_object) {
        return;
    }
    int n = json_object_object_length(v);
    FUZZ_ASSERT(t->nmembers == (n < JSONSTREAM_MAX_MEMBERS
                                ? n : JSONSTREAM_MAX_MEMBERS));
    FUZZ_ASSERT(t->members_overflow == (n > JSONSTREAM_MAX_MEMBERS));
    json_object_object_foreach(v, key, member) {
        const struct js_member *m;
        struct fuzz_one_text span;

        if (i >= t->nmembers) {
            break;
        }
        m = &t->members[i++];
        FUZZ_ASSERT(js_member_key_is(t, m, key));
        FUZZ_ASSERT(js_text_member(t, key) == m);
        if (i > 4) {
            continue;  /* the first few are enough, and cheaper */
        }
        fuzz_read_one(t->raw + m->value_start, m->value_end - m->value_start,
                      &span);
        FUZZ_ASSERT(span.texts == 1 && span.ok);
        FUZZ_ASSERT(fuzz_json_equal(span.value, member, false));
        fuzz_one_text_release(&span);
    }
}

/* QEMU's writer's output (s, written from v) is QEMU's parser's input. */
static void check_round_trip(json_object *v, const char *s)
{
    struct fuzz_one_text back;

    if (fuzz_json_non_finite(v)) {
        return;  /* written as inf/nan: not JSON, by QEMU's own choice */
    }
    fuzz_read_one(s, strlen(s), &back);
    FUZZ_ASSERT(back.texts == 1 && back.ok);
    FUZZ_ASSERT(fuzz_json_equal(back.value, v, true));
    fuzz_one_text_release(&back);
}

static bool on_text(void *opaque, const struct js_text *t)
{
    struct run *r = opaque;

    FUZZ_ASSERT(t->raw != NULL || t->len == 0);
    fuzz_touch_text(t);
    fuzz_log_num(&r->shape, t->len);
    strbuf_add(&r->shape, t->raw, t->len);
    fuzz_log_num(&r->full, t->len);
    strbuf_add(&r->full, t->raw, t->len);
    if (t->error) {
        FUZZ_ASSERT(!t->has_value);
        strbuf_addc(&r->full, 'E');
        strbuf_add(&r->full, t->error, strlen(t->error) + 1);
    } else {
        FUZZ_ASSERT(t->has_value == r->values);
        check_members(t);
        strbuf_addc(&r->full, 'T');
        fuzz_log_num(&r->full, (size_t)t->is_object);
        fuzz_log_num(&r->full, (size_t)t->nmembers);
        fuzz_log_num(&r->full, (size_t)t->members_overflow);
        fuzz_log_members(&r->full, t);
        if (t->has_value) {
            char *s = qjson_to_string(t->value);
            strbuf_add(&r->full, s, strlen(s) + 1);
            if (r->check_values) {
                check_value(t);
                check_round_trip(t->value, s);
            }
            free(s);
        }
        strbuf_addc(&r->full, '\n');
    }
    if (r->may_stop && fuzz_rand(&r->rng) % 8 == 0) {
        r->stops++;
        return false;
    }
    return true;
}

static void run_whole(struct run *r, size_t max_size, const uint8_t *data,
                      size_t len)
{
    struct jsonstream *js = jsonstream_new(r->values, max_size, on_text, r);

    jsonstream_feed(js, (const char *)data, len);
    fuzz_log_num(&r->full, jsonstream_buffered(js));
    jsonstream_free(js);
}

static void run_chunked(struct run *r, size_t max_size, const uint8_t *data,
                        size_t len)
{
    struct jsonstream *js = jsonstream_new(r->values, max_size, on_text, r);
    size_t off = 0;

    while (off < len) {
        size_t n = fuzz_chunk(&r->rng, len - off), avail;
        if (fuzz_rand(&r->rng) % 2) {
            char *p = jsonstream_reserve(js, n, &avail);
            FUZZ_ASSERT(avail >= n);
            memcpy(p, data + off, n);
            if (!jsonstream_commit(js, n)) {
                while (!jsonstream_resume(js)) {
                }
            }
        } else if (!jsonstream_feed(js, (const char *)data + off, n)) {
            while (!jsonstream_resume(js)) {
            }
        }
        off += n;
    }
    fuzz_log_num(&r->full, jsonstream_buffered(js));
    jsonstream_free(js);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = { data, size };
    uint8_t flags = fuzz_u8(&in);
    uint32_t seed = fuzz_u32(&in);
    bool values = flags & 1;
    /* a small token-size limit reaches the limit paths with small inputs */
    size_t max_size = flags & 2 ? 16 + (flags >> 2) * 4 : 0;
    /* The chunked run's log (bytes, members, the value as written) must
     * equal the whole run's, so the value checks, which depend on nothing
     * else, are made on the whole run's texts only. */
    struct run whole = { .values = values, .check_values = true };
    struct run chunked = { .values = values, .rng = seed, .may_stop = true };
    struct run other = { .values = !values, .check_values = true };

    run_whole(&whole, max_size, in.p, in.n);
    run_chunked(&chunked, max_size, in.p, in.n);
    FUZZ_ASSERT(whole.full.len == chunked.full.len);
    FUZZ_ASSERT(!whole.full.len
                || !memcmp(whole.full.buf, chunked.full.buf, whole.full.len));
    run_whole(&other, max_size, in.p, in.n);
    FUZZ_ASSERT(whole.shape.len == other.shape.len);
    FUZZ_ASSERT(!whole.shape.len
                || !memcmp(whole.shape.buf, other.shape.buf,
                           whole.shape.len));
    strbuf_release(&whole.full);
    strbuf_release(&whole.shape);
    strbuf_release(&chunked.full);
    strbuf_release(&chunked.shape);
    strbuf_release(&other.full);
    strbuf_release(&other.shape);
    return 0;
}
