/*
 * json-parser: QEMU 7.2's JSON parser (qobject/json-parser.c), fed one
 * token at a time.  QEMU queues a text's tokens and descends them
 * recursively; this parser consumes them as they arrive (a stack of open
 * containers) but reports the same first error, in the same words.
 */
#include "json-parser.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct json_frame {
    enum json_parse_state state;
    json_object *container;  /* owned until handed to the parent */
    char *key;               /* owned: the key waiting for its value */
};

void json_parser_init(struct json_parser *p, bool build_values)
{
    *p = (struct json_parser){ .build_values = build_values,
                               .top_state = PS_TOP };
}

void json_parser_reset(struct json_parser *p)
{
    for (int i = 0; i < p->depth; i++) {
        json_object_put(p->stack[i].container);
        free(p->stack[i].key);
    }
    p->depth = 0;
    json_object_put(p->result);
    p->result = NULL;
    free(p->error);
    p->error = NULL;
    p->top_state = PS_TOP;
    p->nmembers = 0;
    p->members_overflow = false;
}

/* QEMU's parse_error(): "JSON parse error, " + at most 1023 bytes. */
static void parse_error(struct json_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void parse_error(struct json_parser *p, const char *fmt, ...)
{
    char message[1024];
    va_list ap;

    if (p->error) {
        return;  /* the first error wins, as in QEMU */
    }
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    p->error = xasprintf("JSON parse error, %s", message);
}

static int cvt4hex(const char *s, size_t avail)
{
    int cp = 0;

    for (int i = 0; i < 4; i++) {
        char c = (size_t)i < avail ? s[i] : 0;
        cp <<= 4;
        if (c >= '0' && c <= '9') {
            cp |= c - '0';
        } else if (c >= 'a' && c <= 'f') {
            cp |= 10 + c - 'a';
        } else if (c >= 'A' && c <= 'F') {
            cp |= 10 + c - 'A';
        } else {
            return -1;
        }
    }
    return cp;
}

/* QEMU's parse_string(). */
json_object *json_parser_decode_string(const char *tok, size_t len,
                                       char **error)
{
    struct strbuf out = STRBUF_INIT;
    char quote = tok[0];
    size_t i = 1;
    char utf8[5];

    while (i < len && tok[i] != quote) {
        if (tok[i] == '\\') {
            size_t beg = i++;
            char c = i < len ? tok[i++] : 0;
            int cp, n;

            switch (c) {
            case '"': strbuf_addc(&out, '"'); break;
            case '\'': strbuf_addc(&out, '\''); break;
            case '\\': strbuf_addc(&out, '\\'); break;
            case '/': strbuf_addc(&out, '/'); break;
            case 'b': strbuf_addc(&out, '\b'); break;
            case 'f': strbuf_addc(&out, '\f'); break;
            case 'n': strbuf_addc(&out, '\n'); break;
            case 'r': strbuf_addc(&out, '\r'); break;
            case 't': strbuf_addc(&out, '\t'); break;
            case 'u':
                cp = cvt4hex(tok + i, len - i);
                i += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < len
                    && tok[i] == '\\' && tok[i + 1] == 'u') {
                    int trailing = i + 2 <= len ? cvt4hex(tok + i + 2,
                                                          len - i - 2) : -1;
                    cp = 0x10000 + ((cp & 0x3FF) << 10);
                    if (trailing >= 0xDC00 && trailing <= 0xDFFF) {
                        cp |= trailing & 0x3FF;
                        i += 6;
                    } else {
                        cp = -1;
                    }
                }
                n = mod_utf8_encode(utf8, cp);
                if (n < 0) {
                    /* QEMU prints ptr - beg bytes of a NUL-ended token */
                    size_t shown = i - beg;
                    if (beg + shown > len) {
                        shown = len - beg;
                    }
                    *error = xasprintf("JSON parse error, %.*s is not a "
                                       "valid Unicode character", (int)shown,
                                       tok + beg);
                    strbuf_release(&out);
                    return NULL;
                }
                strbuf_add(&out, utf8, (size_t)n);
                break;
            default:
                *error = xstrdup("JSON parse error, invalid escape "
                                 "sequence in string");
                strbuf_release(&out);
                return NULL;
            }
        } else {
            size_t used;
            int cp = mod_utf8_codepoint(tok + i, len - i, &used);
            int n;

            if (cp < 0) {
                *error = xstrdup("JSON parse error, invalid UTF-8 "
                                 "sequence in string");
                strbuf_release(&out);
                return NULL;
            }
            i += used;
            n = mod_utf8_encode(utf8, cp);
            strbuf_add(&out, utf8, (size_t)n);
        }
    }
    json_object *s = json_object_new_string_len(out.buf ? out.buf : "",
                                                (int)out.len);
    strbuf_release(&out);
    return s;
}

/* QEMU's parse_literal() for numbers: int64, else uint64, else double. */
static json_object *parse_number(const char *tok, size_t len, bool is_float)
{
    char small[64];
    char *s = len < sizeof(small) ? small : xmalloc(len + 1);
    json_object *v;

    memcpy(s, tok, len);
    s[len] = 0;
    if (!is_float) {
        char *end;
        errno = 0;
        long long i = strtoll(s, &end, 10);
        if (errno == 0) {
            v = json_object_new_int64(i);
            goto out;
        }
        if (s[0] != '-') {
            errno = 0;
            unsigned long long u = strtoull(s, &end, 10);
            if (errno == 0) {
                v = json_object_new_uint64(u);
                goto out;
            }
        }
    }
    v = json_object_new_double(strtod(s, NULL));
out:
    if (s != small) {
        free(s);
    }
    return v;
}

static void push_frame(struct json_parser *p, enum json_parse_state state,
                       json_object *container)
{
    if (p->depth == p->stack_cap) {
        p->stack_cap = p->stack_cap ? p->stack_cap * 2 : 16;
        p->stack = xrealloc(p->stack, sizeof(*p->stack) * p->stack_cap);
    }
    p->stack[p->depth++] = (struct json_frame){ state, container, NULL };
}

/* A complete value: hand it to whatever encloses it.  Takes ownership. */
static void value_done(struct json_parser *p, json_object *v)
{
    struct json_frame *f;

    if (p->depth == 0) {
        p->result = v;
        p->top_state = PS_DONE;
        return;
    }
    f = &p->stack[p->depth - 1];
    switch (f->state) {
    case PS_ARR_FIRST:
    case PS_ARR_VALUE:
        json_object_array_add(f->container, v);
        f->state = PS_ARR_SEP;
        break;
    case PS_OBJ_FIRST:
    case PS_OBJ_KEY:
        if (!json_object_is_type(v, json_type_string)) {
            json_object_put(v);
            parse_error(p, "key is not a string in object");
            return;
        }
        f->key = xstrdup(json_object_get_string(v));
        json_object_put(v);
        f->state = PS_OBJ_COLON;
        break;
    case PS_OBJ_VALUE:
        if (json_object_object_get_ex(f->container, f->key, NULL)) {
            json_object_put(v);
            parse_error(p, "duplicate key");
            return;
        }
        json_object_object_add(f->container, f->key, v);
        free(f->key);
        f->key = NULL;
        f->state = PS_OBJ_SEP;
        break;
    default:
        abort();
    }
}

static void close_container(struct json_parser *p)
{
    json_object *c = p->stack[p->depth - 1].container;

    free(p->stack[p->depth - 1].key);
    p->depth--;
    value_done(p, c);
}

static void parse_token(struct json_parser *p, enum json_token_type type,
                        const char *tok, size_t len)
{
    enum json_parse_state state;

    if (p->error) {
        return;
    }
    state = p->depth ? p->stack[p->depth - 1].state : p->top_state;

    switch (state) {
    case PS_ARR_SEP:
        if (type == JSON_COMMA) {
            p->stack[p->depth - 1].state = PS_ARR_VALUE;
        } else if (type == JSON_RSQUARE) {
            close_container(p);
        } else {
            parse_error(p, "expected separator in list");
        }
        return;
    case PS_OBJ_COLON:
        if (type == JSON_COLON) {
            p->stack[p->depth - 1].state = PS_OBJ_VALUE;
        } else {
            parse_error(p, "missing : in object pair");
        }
        return;
    case PS_OBJ_SEP:
        if (type == JSON_COMMA) {
            p->stack[p->depth - 1].state = PS_OBJ_KEY;
        } else if (type == JSON_RCURLY) {
            close_container(p);
        } else {
            parse_error(p, "expected separator in dict");
        }
        return;
    case PS_DONE:
        /* cannot happen: a complete value ends the text */
        parse_error(p, "expecting value");
        return;
    default:
        break;
    }

    /* A value is expected (possibly an empty container's end). */
    if (state == PS_ARR_FIRST && type == JSON_RSQUARE) {
        close_container(p);
        return;
    }
    if (state == PS_OBJ_FIRST && type == JSON_RCURLY) {
        close_container(p);
        return;
    }
    switch (type) {
    case JSON_LCURLY:
        push_frame(p, PS_OBJ_FIRST, json_object_new_object());
        break;
    case JSON_LSQUARE:
        push_frame(p, PS_ARR_FIRST, json_object_new_array());
        break;
    case JSON_STRING: {
        char *error = NULL;
        json_object *s = json_parser_decode_string(tok, len, &error);
        if (s) {
            value_done(p, s);
        } else {
            p->error = error;
        }
        break;
    }
    case JSON_INTEGER:
    case JSON_FLOAT:
        value_done(p, parse_number(tok, len, type == JSON_FLOAT));
        break;
    case JSON_KEYWORD:
        if (len == 4 && !memcmp(tok, "true", 4)) {
            value_done(p, json_object_new_boolean(1));
        } else if (len == 5 && !memcmp(tok, "false", 5)) {
            value_done(p, json_object_new_boolean(0));
        } else if (len == 4 && !memcmp(tok, "null", 4)) {
            value_done(p, NULL);
        } else {
            parse_error(p, "invalid keyword '%.*s'", (int)len, tok);
        }
        break;
    default:
        parse_error(p, "expecting value");
        break;
    }
}

/* Track the members of a top-level object, by nesting depth alone. */
static void track_members(struct json_parser *p, enum json_token_type type,
                          bool first, int prev_depth, int depth, size_t start,
                          size_t end)
{
    struct js_member *m = p->nmembers
        ? &p->members[p->nmembers - 1] : NULL;

    if (first) {
        p->is_object = type == JSON_LCURLY;
        p->span = SP_KEY;
        return;
    }
    if (!p->is_object) {
        return;
    }
    if (prev_depth != 1) {
        if (p->span == SP_IN_VALUE && depth == 1 && m) {
            m->value_end = end;
            p->span = SP_AFTER;
        }
        return;
    }
    switch (p->span) {
    case SP_KEY:
        if (type == JSON_STRING) {
            if (p->nmembers == JSONSTREAM_MAX_MEMBERS) {
                p->members_overflow = true;
                p->span = SP_COLON;
                return;
            }
            m = &p->members[p->nmembers++];
            m->key_start = start;
            m->key_end = end;
            m->value_start = m->value_end = end;
            p->span = SP_COLON;
        }
        break;
    case SP_COLON:
        if (type == JSON_COLON) {
            p->span = SP_VALUE;
        }
        break;
    case SP_VALUE:
        if (m && !p->members_overflow) {
            m->value_start = start;
            m->value_end = end;
        }
        p->span = depth == 1 ? SP_AFTER : SP_IN_VALUE;
        break;
    case SP_IN_VALUE:
        break;
    case SP_AFTER:
        if (type == JSON_COMMA) {
            p->span = SP_KEY;
        }
        break;
    }
}

void json_parser_token(struct json_parser *p, enum json_token_type type,
                       const char *buf, size_t start, size_t end, bool first,
                       int prev_depth, int depth)
{
    track_members(p, type, first, prev_depth, depth, start, end);
    if (p->build_values) {
        parse_token(p, type, buf + start, end - start);
    }
}

void json_parser_end(struct json_parser *p)
{
    if (p->build_values && p->top_state != PS_DONE) {
        parse_error(p, "premature EOI");
    }
}

/* Members at offsets `by` lower (dst may be src). */
static void members_rebased(struct js_member *dst, const struct js_member *src,
                            int n, size_t by)
{
    for (int i = 0; i < n; i++) {
        dst[i].key_start = src[i].key_start - by;
        dst[i].key_end = src[i].key_end - by;
        dst[i].value_start = src[i].value_start - by;
        dst[i].value_end = src[i].value_end - by;
    }
}

void json_parser_shift(struct json_parser *p, size_t by)
{
    members_rebased(p->members, p->members, p->nmembers, by);
}

void json_parser_members(const struct json_parser *p, size_t base,
                         struct js_member *out)
{
    members_rebased(out, p->members, p->nmembers, base);
}

void json_parser_destroy(struct json_parser *p)
{
    json_parser_reset(p);
    free(p->stack);
}
