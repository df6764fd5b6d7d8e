/*
 * qjson: QEMU's JSON writer over json-c values.
 */
#include "qjson.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonstream.h"

#define QDICT_BUCKET_MAX 512

/* qobject/qdict.c's tdb_hash(). */
unsigned qjson_qdict_bucket(const char *key)
{
    unsigned value, i;

    for (value = 0x238F13AFu * (unsigned)strlen(key), i = 0; key[i]; i++) {
        value = value + ((unsigned)((const unsigned char *)key)[i]
                         << (i * 5 % 24));
    }
    return (1103515243u * value + 12345u) % QDICT_BUCKET_MAX;
}

void qjson_write_string(struct strbuf *sb, const char *s, size_t len)
{
    size_t i = 0;

    strbuf_addc(sb, '"');
    while (i < len) {
        size_t used;
        int cp;

        if (s[i] == 0) {
            /* QEMU strings never hold a raw NUL; json-c's may. */
            strbuf_adds(sb, "\\u0000");
            i++;
            continue;
        }
        cp = mod_utf8_codepoint(s + i, len - i, &used);
        i += used ? used : 1;
        switch (cp) {
        case '"': strbuf_adds(sb, "\\\""); break;
        case '\\': strbuf_adds(sb, "\\\\"); break;
        case '\b': strbuf_adds(sb, "\\b"); break;
        case '\f': strbuf_adds(sb, "\\f"); break;
        case '\n': strbuf_adds(sb, "\\n"); break;
        case '\r': strbuf_adds(sb, "\\r"); break;
        case '\t': strbuf_adds(sb, "\\t"); break;
        default:
            if (cp < 0) {
                cp = 0xFFFD;  /* replacement character, as QEMU */
            }
            if (cp > 0xFFFF) {
                strbuf_addf(sb, "\\u%04X\\u%04X",
                            0xD800 + ((cp - 0x10000) >> 10),
                            0xDC00 + ((cp - 0x10000) & 0x3FF));
            } else if (cp < 0x20 || cp >= 0x7F) {
                strbuf_addf(sb, "\\u%04X", cp);
            } else {
                strbuf_addc(sb, (char)cp);
            }
        }
    }
    strbuf_addc(sb, '"');
}

struct member {
    const char *key;
    json_object *value;
    unsigned bucket;
    int index;
};

static int member_cmp(const void *a, const void *b)
{
    const struct member *x = a, *y = b;

    if (x->bucket != y->bucket) {
        return x->bucket < y->bucket ? -1 : 1;
    }
    /* QLIST_INSERT_HEAD: the later insertion comes first */
    return y->index - x->index;
}

static void qdict_order(json_object *obj, struct member *m)
{
    int i = 0;

    json_object_object_foreach(obj, key, val) {
        m[i].key = key;
        m[i].value = val;
        m[i].bucket = qjson_qdict_bucket(key);
        m[i].index = i;
        i++;
    }
    qsort(m, (size_t)i, sizeof(*m), member_cmp);
}

const char **qjson_qdict_keys(json_object *obj, size_t *n)
{
    size_t len = (size_t)json_object_object_length(obj);
    struct member *m = xmalloc(sizeof(*m) * (len ? len : 1));
    const char **keys = xmalloc(sizeof(*keys) * (len ? len : 1));

    qdict_order(obj, m);
    for (size_t i = 0; i < len; i++) {
        keys[i] = m[i].key;
    }
    free(m);
    *n = len;
    return keys;
}

static void write_object(struct strbuf *sb, json_object *obj)
{
    int n = json_object_object_length(obj), i;
    struct member stack_members[16];
    struct member *m = n <= 16 ? stack_members
                               : xmalloc(sizeof(*m) * (size_t)n);

    qdict_order(obj, m);
    strbuf_addc(sb, '{');
    for (i = 0; i < n; i++) {
        if (i) {
            strbuf_adds(sb, ", ");
        }
        qjson_write_string(sb, m[i].key, strlen(m[i].key));
        strbuf_adds(sb, ": ");
        qjson_write(sb, m[i].value);
    }
    strbuf_addc(sb, '}');
    if (m != stack_members) {
        free(m);
    }
}

void qjson_write(struct strbuf *sb, json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        strbuf_adds(sb, "null");
        break;
    case json_type_boolean:
        strbuf_adds(sb, json_object_get_boolean(v) ? "true" : "false");
        break;
    case json_type_int: {
        int64_t i = json_object_get_int64(v);
        if (i == INT64_MAX && json_object_get_uint64(v) > INT64_MAX) {
            strbuf_addf(sb, "%" PRIu64, json_object_get_uint64(v));
        } else {
            strbuf_addf(sb, "%" PRId64, i);
        }
        break;
    }
    case json_type_double:
        strbuf_addf(sb, "%.17g", json_object_get_double(v));
        break;
    case json_type_string:
        qjson_write_string(sb, json_object_get_string(v),
                           (size_t)json_object_get_string_len(v));
        break;
    case json_type_array: {
        size_t n = json_object_array_length(v);
        strbuf_addc(sb, '[');
        for (size_t i = 0; i < n; i++) {
            if (i) {
                strbuf_adds(sb, ", ");
            }
            qjson_write(sb, json_object_array_get_idx(v, i));
        }
        strbuf_addc(sb, ']');
        break;
    }
    case json_type_object:
        write_object(sb, v);
        break;
    }
}

char *qjson_to_string(json_object *v)
{
    struct strbuf sb = STRBUF_INIT;
    qjson_write(&sb, v);
    return strbuf_detach(&sb, NULL);
}

static bool is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool qjson_has_non_finite(const char *raw, size_t len)
{
    bool in_string = false;

    if (!memmem(raw, len, "inf", 3) && !memmem(raw, len, "nan", 3)) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = raw[i];
        if (in_string) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (is_word_char(c)) {
            size_t n = 0;
            while (i + n < len && is_word_char(raw[i + n])) {
                n++;
            }
            if (!(n == 4 && !memcmp(raw + i, "true", 4))
                && !(n == 5 && !memcmp(raw + i, "false", 5))
                && !(n == 4 && !memcmp(raw + i, "null", 4))
                && !(n >= 1 && (raw[i] == 'e' || raw[i] == 'E'))) {
                return true;
            }
            i += n - 1;
        }
    }
    return false;
}

/* ---- reading ------------------------------------------------------- */

/* One tokener per thread, kept and reset: json_tokener_new_ex() allocates
 * and clears a parse stack as deep as QEMU's nesting limit (some 40 KB),
 * and a new one for every reply of QEMU's cost more than the reply's
 * parsing.  Freed when its thread ends. */
static pthread_key_t tokener_key;
static pthread_once_t tokener_key_once = PTHREAD_ONCE_INIT;

static void tokener_release(void *tok)
{
    json_tokener_free(tok);
}

static void tokener_key_create(void)
{
    if (pthread_key_create(&tokener_key, tokener_release) != 0) {
        abort();
    }
}

json_object *qjson_parse(const char *raw, size_t len)
{
    json_tokener *tok;

    pthread_once(&tokener_key_once, tokener_key_create);
    tok = pthread_getspecific(tokener_key);
    if (!tok) {
        tok = json_tokener_new_ex(JSONSTREAM_MAX_NESTING);
        pthread_setspecific(tokener_key, tok);
    } else {
        json_tokener_reset(tok);
    }
    return json_tokener_parse_ex(tok, raw, (int)len);
}
