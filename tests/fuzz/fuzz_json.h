/*
 * fuzz_json: comparing json-c values, and reading one text with
 * jsonstream, for the targets that check what jsonstream built.
 */
#ifndef QMPROXY_FUZZ_JSON_H
#define QMPROXY_FUZZ_JSON_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <json-c/json.h>

#include "fuzz_common.h"
#include "jsonstream.h"
#include "qjson.h"

/*
 * Equal values.  With loose_numbers an integer and a double are equal when
 * their values are (QEMU writes the double 100.0 as 100, which reads back
 * as an integer; -0.0 as -0, which reads back as 0).
 */
static inline bool fuzz_json_equal(json_object *a, json_object *b,
                                   bool loose_numbers)
{
    json_type ta = json_object_get_type(a), tb = json_object_get_type(b);

    if (loose_numbers && ta != tb
        && (ta == json_type_int || ta == json_type_double)
        && (tb == json_type_int || tb == json_type_double)) {
        return json_object_get_double(a) == json_object_get_double(b);
    }
    if (ta != tb) {
        return false;
    }
    switch (ta) {
    case json_type_null:
        return true;
    case json_type_boolean:
        return json_object_get_boolean(a) == json_object_get_boolean(b);
    case json_type_int:
        return json_object_get_int64(a) == json_object_get_int64(b)
            && json_object_get_uint64(a) == json_object_get_uint64(b);
    case json_type_double: {
        double x = json_object_get_double(a), y = json_object_get_double(b);
        return x == y || (isnan(x) && isnan(y));
    }
    case json_type_string:
        return json_object_get_string_len(a) == json_object_get_string_len(b)
            && !memcmp(json_object_get_string(a), json_object_get_string(b),
                       (size_t)json_object_get_string_len(a));
    case json_type_array: {
        size_t n = json_object_array_length(a);
        if (n != json_object_array_length(b)) {
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            if (!fuzz_json_equal(json_object_array_get_idx(a, i),
                                 json_object_array_get_idx(b, i),
                                 loose_numbers)) {
                return false;
            }
        }
        return true;
    }
    case json_type_object: {
        if (json_object_object_length(a) != json_object_object_length(b)) {
            return false;
        }
        json_object_object_foreach(a, key, va) {
            json_object *vb;
            if (!json_object_object_get_ex(b, key, &vb)
                || !fuzz_json_equal(va, vb, loose_numbers)) {
                return false;
            }
        }
        return true;
    }
    }
    return false;
}

/* Does v hold a non-finite double anywhere (QEMU writes them as inf/nan,
 * which is not JSON)? */
static inline bool fuzz_json_non_finite(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_double:
        return !isfinite(json_object_get_double(v));
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            if (fuzz_json_non_finite(json_object_array_get_idx(v, i))) {
                return true;
            }
        }
        return false;
    case json_type_object: {
        json_object_object_foreach(v, key, m) {
            (void)key;
            if (fuzz_json_non_finite(m)) {
                return true;
            }
        }
        return false;
    }
    default:
        return false;
    }
}

/* One strict tokener for the whole run, reset per text: a new one
 * allocates and clears a parse stack as deep as QEMU's nesting limit,
 * which for short texts cost more than everything the targets check. */
static json_tokener *fuzz_strict_tokener;

/* Parse what the proxy wrote with json-c's strict tokener; NULL when it
 * is not exactly one JSON text. */
static inline json_object *fuzz_strict_parse(const char *s, size_t len)
{
    json_object *v;

    if (!fuzz_strict_tokener) {
        fuzz_strict_tokener = json_tokener_new_ex(JSONSTREAM_MAX_NESTING + 8);
        json_tokener_set_flags(fuzz_strict_tokener, JSON_TOKENER_STRICT);
    }
    json_tokener_reset(fuzz_strict_tokener);
    v = json_tokener_parse_ex(fuzz_strict_tokener, s, (int)len);
    if (json_tokener_get_error(fuzz_strict_tokener) != json_tokener_success
        || json_tokener_get_parse_end(fuzz_strict_tokener) != len) {
        json_object_put(v);
        v = NULL;
    }
    return v;
}

/* One text read by jsonstream in values mode. */
struct fuzz_one_text {
    int texts;          /* how many texts and errors were emitted */
    bool ok;            /* the first was a value */
    json_object *value; /* its value (owned) */
    char *error;        /* or its error (owned) */
};

static inline bool fuzz_one_text_emit(void *opaque, const struct js_text *t)
{
    struct fuzz_one_text *r = opaque;

    if (r->texts++ == 0) {
        if (t->error) {
            r->error = strdup(t->error);
        } else {
            r->ok = true;
            r->value = json_object_get(t->value);
        }
    }
    return true;
}

/* Read data (plus a newline, so a trailing number or keyword ends). */
static inline void fuzz_read_one(const char *data, size_t len,
                                 struct fuzz_one_text *r)
{
    struct jsonstream *js = jsonstream_new(true, 0, fuzz_one_text_emit, r);

    memset(r, 0, sizeof(*r));
    jsonstream_feed(js, data, len);
    jsonstream_feed(js, "\n", 1);
    jsonstream_free(js);
}

static inline void fuzz_one_text_release(struct fuzz_one_text *r)
{
    json_object_put(r->value);
    free(r->error);
}

/*
 * What the daemon writes of a value it made (an export, a saved state)
 * is one JSON text, as a client's standard parser reads it (json-c's
 * strict tokener, outside the instrumented code: reading it back with
 * jsonstream was a quarter of fuzz_statefile's time, and the proxy's
 * writer against its reader is fuzz_jsonstream's round trip).
 */
static inline void fuzz_check_written(json_object *v)
{
    char *s = qjson_to_string(v);
    size_t len = strlen(s);
    json_object *back;

    if (!fuzz_json_non_finite(v)) {
        back = fuzz_strict_parse(s, len);
        if (!back) {
            fprintf(stderr, "not JSON: %s\n", s);
            FUZZ_ASSERT(!"the daemon wrote a value that is not JSON");
        }
        json_object_put(back);
    }
    free(s);
}

#endif
