/*
 * jsonstream: QEMU's JSON lexer, streamer and parser rules over a byte
 * stream, keeping raw bytes.  The state names follow QEMU's
 * qobject/json-lexer.c so the two can be compared line by line; the parser
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

#include "util.h"

enum lex_state {
    LX_START,
    LX_RECOVERY,
    LX_DQ_STRING,
    LX_DQ_STRING_ESCAPE,
    LX_SQ_STRING,
    LX_SQ_STRING_ESCAPE,
    LX_ZERO,
    LX_EXP_DIGITS,
    LX_EXP_SIGN,
    LX_EXP_E,
    LX_MANTISSA,
    LX_MANTISSA_DIGITS,
    LX_DIGITS,
    LX_SIGN,
    LX_KEYWORD,
};

enum token_type {
    TK_LCURLY,
    TK_RCURLY,
    TK_LSQUARE,
    TK_RSQUARE,
    TK_COLON,
    TK_COMMA,
    TK_INTEGER,
    TK_FLOAT,
    TK_KEYWORD,
    TK_STRING,
};

/* Parser states: what the innermost open container expects next. */
enum parse_state {
    PS_TOP,        /* the text's value */
    PS_DONE,       /* the text's value is complete */
    PS_ARR_FIRST,  /* after '[': a value or ']' */
    PS_ARR_VALUE,  /* after ',': a value */
    PS_ARR_SEP,    /* after a value: ',' or ']' */
    PS_OBJ_FIRST,  /* after '{': a key or '}' */
    PS_OBJ_KEY,    /* after ',': a key */
    PS_OBJ_COLON,  /* after a key: ':' */
    PS_OBJ_VALUE,  /* after ':': a value */
    PS_OBJ_SEP,    /* after a value: ',' or '}' */
};

/* Where the top-level member scanner is (for js_text.members). */
enum span_state { SP_KEY, SP_COLON, SP_VALUE, SP_IN_VALUE, SP_AFTER };

struct frame {
    enum parse_state state;
    json_object *container;  /* owned until handed to the parent */
    char *key;               /* owned: the key waiting for its value */
};

struct jsonstream {
    bool build_values;
    size_t max_size;
    jsonstream_emit_fn emit;
    void *opaque;
    bool stopped;

    char *buf;               /* owned */
    size_t cap, len;         /* bytes [0, len) are input */
    size_t scan;             /* next byte to lex */

    /* lexer */
    enum lex_state state;
    size_t tok_start;

    /* streamer (QEMU's JSONMessageParser) */
    int brace_count, bracket_count;
    size_t token_count, token_size;
    size_t text_start, last_token_end;

    /* top-level member spans */
    bool top_is_object;
    enum span_state span;
    int nmembers;
    bool members_overflow;
    struct js_member members[JSONSTREAM_MAX_MEMBERS];

    /* parser */
    enum parse_state top_state;
    json_object *result;     /* owned */
    struct frame *stack;     /* owned */
    int depth, stack_cap;
    char *error;             /* owned: the first parse error */
};

static bool in_token(enum lex_state s)
{
    return s != LX_START && s != LX_RECOVERY;
}

/* ---- parser -------------------------------------------------------- */

static void parser_reset(struct jsonstream *js)
{
    for (int i = 0; i < js->depth; i++) {
        json_object_put(js->stack[i].container);
        free(js->stack[i].key);
    }
    js->depth = 0;
    json_object_put(js->result);
    js->result = NULL;
    free(js->error);
    js->error = NULL;
    js->top_state = PS_TOP;
}

/* QEMU's parse_error(): "JSON parse error, " + at most 1023 bytes. */
static void parse_error(struct jsonstream *js, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void parse_error(struct jsonstream *js, const char *fmt, ...)
{
    char message[1024];
    va_list ap;

    if (js->error) {
        return;  /* the first error wins, as in QEMU */
    }
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    js->error = xasprintf("JSON parse error, %s", message);
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

/*
 * Decode a string token (quotes included) the way QEMU's parse_string()
 * does.  Returns NULL and sets *error (owned by the caller) on bad input.
 */
static json_object *decode_string(const char *tok, size_t len, char **error)
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

static void push_frame(struct jsonstream *js, enum parse_state state,
                       json_object *container)
{
    if (js->depth == js->stack_cap) {
        js->stack_cap = js->stack_cap ? js->stack_cap * 2 : 16;
        js->stack = xrealloc(js->stack, sizeof(*js->stack) * js->stack_cap);
    }
    js->stack[js->depth++] = (struct frame){ state, container, NULL };
}

/* A complete value: hand it to whatever encloses it.  Takes ownership. */
static void value_done(struct jsonstream *js, json_object *v)
{
    struct frame *f;

    if (js->depth == 0) {
        js->result = v;
        js->top_state = PS_DONE;
        return;
    }
    f = &js->stack[js->depth - 1];
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
            parse_error(js, "key is not a string in object");
            return;
        }
        f->key = xstrdup(json_object_get_string(v));
        json_object_put(v);
        f->state = PS_OBJ_COLON;
        break;
    case PS_OBJ_VALUE:
        if (json_object_object_get_ex(f->container, f->key, NULL)) {
            json_object_put(v);
            parse_error(js, "duplicate key");
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

static void close_container(struct jsonstream *js)
{
    json_object *c = js->stack[js->depth - 1].container;

    free(js->stack[js->depth - 1].key);
    js->depth--;
    value_done(js, c);
}

static void parse_token(struct jsonstream *js, enum token_type type,
                        const char *tok, size_t len)
{
    enum parse_state state;

    if (js->error) {
        return;
    }
    state = js->depth ? js->stack[js->depth - 1].state : js->top_state;

    switch (state) {
    case PS_ARR_SEP:
        if (type == TK_COMMA) {
            js->stack[js->depth - 1].state = PS_ARR_VALUE;
        } else if (type == TK_RSQUARE) {
            close_container(js);
        } else {
            parse_error(js, "expected separator in list");
        }
        return;
    case PS_OBJ_COLON:
        if (type == TK_COLON) {
            js->stack[js->depth - 1].state = PS_OBJ_VALUE;
        } else {
            parse_error(js, "missing : in object pair");
        }
        return;
    case PS_OBJ_SEP:
        if (type == TK_COMMA) {
            js->stack[js->depth - 1].state = PS_OBJ_KEY;
        } else if (type == TK_RCURLY) {
            close_container(js);
        } else {
            parse_error(js, "expected separator in dict");
        }
        return;
    case PS_DONE:
        /* cannot happen: a complete value ends the text */
        parse_error(js, "expecting value");
        return;
    default:
        break;
    }

    /* A value is expected (possibly an empty container's end). */
    if (state == PS_ARR_FIRST && type == TK_RSQUARE) {
        close_container(js);
        return;
    }
    if (state == PS_OBJ_FIRST && type == TK_RCURLY) {
        close_container(js);
        return;
    }
    switch (type) {
    case TK_LCURLY:
        push_frame(js, PS_OBJ_FIRST, json_object_new_object());
        break;
    case TK_LSQUARE:
        push_frame(js, PS_ARR_FIRST, json_object_new_array());
        break;
    case TK_STRING: {
        char *error = NULL;
        json_object *s = decode_string(tok, len, &error);
        if (s) {
            value_done(js, s);
        } else {
            js->error = error;
        }
        break;
    }
    case TK_INTEGER:
    case TK_FLOAT:
        value_done(js, parse_number(tok, len, type == TK_FLOAT));
        break;
    case TK_KEYWORD:
        if (len == 4 && !memcmp(tok, "true", 4)) {
            value_done(js, json_object_new_boolean(1));
        } else if (len == 5 && !memcmp(tok, "false", 5)) {
            value_done(js, json_object_new_boolean(0));
        } else if (len == 4 && !memcmp(tok, "null", 4)) {
            value_done(js, NULL);
        } else {
            parse_error(js, "invalid keyword '%.*s'", (int)len, tok);
        }
        break;
    default:
        parse_error(js, "expecting value");
        break;
    }
}

/* ---- streamer ------------------------------------------------------- */

static void streamer_reset(struct jsonstream *js)
{
    js->brace_count = 0;
    js->bracket_count = 0;
    js->token_count = 0;
    js->token_size = 0;
    js->nmembers = 0;
    js->members_overflow = false;
    parser_reset(js);
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
    struct js_text t = { 0 };
    const char *error = NULL;

    t.raw = js->buf + js->text_start;
    t.len = js->last_token_end - js->text_start;
    t.after = js->len - js->last_token_end;
    if (js->build_values) {
        if (js->error) {
            error = js->error;
        } else if (js->top_state != PS_DONE) {
            parse_error(js, "premature EOI");
            error = js->error;
        }
    }
    if (error) {
        t.error = error;
    } else {
        t.has_value = js->build_values;
        t.value = js->result;
        t.is_object = js->top_is_object;
        t.nmembers = js->nmembers;
        t.members_overflow = js->members_overflow;
        for (int i = 0; i < js->nmembers; i++) {
            t.members[i] = js->members[i];
            t.members[i].key_start -= js->text_start;
            t.members[i].key_end -= js->text_start;
            t.members[i].value_start -= js->text_start;
            t.members[i].value_end -= js->text_start;
        }
    }
    emit(js, &t);
    streamer_reset(js);
}

/* Track the members of a top-level object, by nesting depth alone. */
static void track_members(struct jsonstream *js, enum token_type type,
                          int prev_depth, int depth, size_t start, size_t end)
{
    struct js_member *m = js->nmembers
        ? &js->members[js->nmembers - 1] : NULL;

    if (js->token_count == 0) {
        js->top_is_object = type == TK_LCURLY;
        js->span = SP_KEY;
        return;
    }
    if (!js->top_is_object) {
        return;
    }
    if (prev_depth != 1) {
        if (js->span == SP_IN_VALUE && depth == 1 && m) {
            m->value_end = end;
            js->span = SP_AFTER;
        }
        return;
    }
    switch (js->span) {
    case SP_KEY:
        if (type == TK_STRING) {
            if (js->nmembers == JSONSTREAM_MAX_MEMBERS) {
                js->members_overflow = true;
                js->span = SP_COLON;
                return;
            }
            m = &js->members[js->nmembers++];
            m->key_start = start;
            m->key_end = end;
            m->value_start = m->value_end = end;
            js->span = SP_COLON;
        }
        break;
    case SP_COLON:
        if (type == TK_COLON) {
            js->span = SP_VALUE;
        }
        break;
    case SP_VALUE:
        if (m && !js->members_overflow) {
            m->value_start = start;
            m->value_end = end;
        }
        js->span = depth == 1 ? SP_AFTER : SP_IN_VALUE;
        break;
    case SP_IN_VALUE:
        break;
    case SP_AFTER:
        if (type == TK_COMMA) {
            js->span = SP_KEY;
        }
        break;
    }
}

/* QEMU's json_message_process_token(). */
static void process_token(struct jsonstream *js, enum token_type type,
                          size_t start, size_t end)
{
    size_t len = end - start;
    int prev_depth = js->brace_count + js->bracket_count;
    int depth;

    switch (type) {
    case TK_LCURLY: js->brace_count++; break;
    case TK_RCURLY: js->brace_count--; break;
    case TK_LSQUARE: js->bracket_count++; break;
    case TK_RSQUARE: js->bracket_count--; break;
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
    track_members(js, type, prev_depth, depth, start, end);
    if (js->token_count == 0) {
        js->text_start = start;
    }
    js->token_count++;
    js->token_size += len;
    js->last_token_end = end;
    if (js->build_values) {
        parse_token(js, type, js->buf + start, len);
    }

    if ((js->brace_count > 0 || js->bracket_count > 0)
        && js->brace_count >= 0 && js->bracket_count >= 0) {
        return;
    }
    emit_text(js);
}

/* ---- lexer ---------------------------------------------------------- */

/* A byte QEMU's lexer refuses: error token, then skip to a sync point. */
static void lex_error(struct jsonstream *js)
{
    size_t start = js->tok_start, end = js->scan;  /* includes the byte */
    /* QEMU prints the token as a C string: it stops at a NUL byte. */
    size_t n = strnlen(js->buf + start, end - start);
    char *desc = xasprintf("JSON parse error, stray '%.*s'", (int)n,
                           js->buf + start);

    js->state = LX_RECOVERY;
    emit_error(js, desc, start, end);
    free(desc);
}

static void lex_token(struct jsonstream *js, enum token_type type)
{
    js->state = LX_START;
    process_token(js, type, js->tok_start, js->scan);
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void lex_start(struct jsonstream *js, unsigned char c)
{
    js->tok_start = js->scan;
    js->scan++;
    switch (c) {
    case '"': js->state = LX_DQ_STRING; return;
    case '\'': js->state = LX_SQ_STRING; return;
    case '0': js->state = LX_ZERO; return;
    case '-': js->state = LX_SIGN; return;
    case '{': lex_token(js, TK_LCURLY); return;
    case '}': lex_token(js, TK_RCURLY); return;
    case '[': lex_token(js, TK_LSQUARE); return;
    case ']': lex_token(js, TK_RSQUARE); return;
    case ',': lex_token(js, TK_COMMA); return;
    case ':': lex_token(js, TK_COLON); return;
    default: break;
    }
    if (c >= '1' && c <= '9') {
        js->state = LX_DIGITS;
    } else if (c >= 'a' && c <= 'z') {
        js->state = LX_KEYWORD;
    } else {
        lex_error(js);
    }
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/*
 * One step of QEMU's lexer table.  A terminal reached by lookahead
 * ends the token without consuming c; it is looked at again in LX_START.
 */
static void lex_step(struct jsonstream *js, unsigned char c)
{
    switch (js->state) {
    case LX_START:
        if (is_ws(c)) {
            js->scan++;
        } else {
            lex_start(js, c);
        }
        return;
    case LX_RECOVERY:
        if ((c < 0x20 && c != '\t') || c >= 0xFE || c == '[' || c == ']'
            || c == '{' || c == '}' || c == ':' || c == ',') {
            js->state = LX_START;
        } else {
            js->scan++;
        }
        return;
    case LX_DQ_STRING:
    case LX_SQ_STRING: {
        const unsigned char *p = (const unsigned char *)js->buf + js->scan;
        const unsigned char *end = (const unsigned char *)js->buf + js->len;
        unsigned char quote = js->state == LX_DQ_STRING ? '"' : '\'';

        /* the fast path: plain string content */
        while (p < end && *p >= 0x20 && *p <= 0xFD && *p != '\\'
               && *p != quote) {
            p++;
        }
        js->scan = (size_t)((const char *)p - js->buf);
        if (p == end) {
            return;
        }
        c = *p;
        js->scan++;
        if (c == quote) {
            lex_token(js, TK_STRING);
        } else if (c == '\\') {
            js->state = js->state == LX_DQ_STRING ? LX_DQ_STRING_ESCAPE
                                                  : LX_SQ_STRING_ESCAPE;
        } else {
            lex_error(js);
        }
        return;
    }
    case LX_DQ_STRING_ESCAPE:
    case LX_SQ_STRING_ESCAPE:
        js->scan++;
        if (c >= 0x20 && c <= 0xFD) {
            js->state = js->state == LX_DQ_STRING_ESCAPE ? LX_DQ_STRING
                                                         : LX_SQ_STRING;
        } else {
            lex_error(js);
        }
        return;
    case LX_ZERO:
        if (is_digit(c)) {
            js->scan++;
            lex_error(js);
        } else if (c == '.') {
            js->scan++;
            js->state = LX_MANTISSA;
        } else {
            lex_token(js, TK_INTEGER);
        }
        return;
    case LX_DIGITS:
        if (is_digit(c)) {
            js->scan++;
        } else if (c == 'e' || c == 'E') {
            js->scan++;
            js->state = LX_EXP_E;
        } else if (c == '.') {
            js->scan++;
            js->state = LX_MANTISSA;
        } else {
            lex_token(js, TK_INTEGER);
        }
        return;
    case LX_SIGN:
        js->scan++;
        if (c == '0') {
            js->state = LX_ZERO;
        } else if (c >= '1' && c <= '9') {
            js->state = LX_DIGITS;
        } else {
            lex_error(js);
        }
        return;
    case LX_MANTISSA:
        js->scan++;
        if (is_digit(c)) {
            js->state = LX_MANTISSA_DIGITS;
        } else {
            lex_error(js);
        }
        return;
    case LX_MANTISSA_DIGITS:
        if (is_digit(c)) {
            js->scan++;
        } else if (c == 'e' || c == 'E') {
            js->scan++;
            js->state = LX_EXP_E;
        } else {
            lex_token(js, TK_FLOAT);
        }
        return;
    case LX_EXP_E:
        js->scan++;
        if (c == '-' || c == '+') {
            js->state = LX_EXP_SIGN;
        } else if (is_digit(c)) {
            js->state = LX_EXP_DIGITS;
        } else {
            lex_error(js);
        }
        return;
    case LX_EXP_SIGN:
        js->scan++;
        if (is_digit(c)) {
            js->state = LX_EXP_DIGITS;
        } else {
            lex_error(js);
        }
        return;
    case LX_EXP_DIGITS:
        if (is_digit(c)) {
            js->scan++;
        } else {
            lex_token(js, TK_FLOAT);
        }
        return;
    case LX_KEYWORD:
        if (c >= 'a' && c <= 'z') {
            js->scan++;
        } else {
            lex_token(js, TK_KEYWORD);
        }
        return;
    }
}

static bool run(struct jsonstream *js)
{
    js->stopped = false;
    while (js->scan < js->len && !js->stopped) {
        lex_step(js, (unsigned char)js->buf[js->scan]);
        /*
         * QEMU's lexer gives up on a single token longer than the limit:
         * the streamer reports it and lexing restarts mid-token.
         */
        if (in_token(js->state) && js->scan - js->tok_start > js->max_size) {
            js->state = LX_START;
            emit_error(js, "JSON token size limit exceeded", js->tok_start,
                       js->scan);
        } else if (js->state == LX_START && js->token_count
                   && js->scan - js->text_start > 2 * js->max_size) {
            /* whitespace inside a text: bounded like tokens are */
            emit_error(js, "JSON token size limit exceeded", js->text_start,
                       js->scan);
        }
    }
    return !js->stopped;
}

/* ---- buffer --------------------------------------------------------- */

static void shift(struct jsonstream *js, size_t by)
{
    memmove(js->buf, js->buf + by, js->len - by);
    js->len -= by;
    js->scan -= by;
    js->tok_start = js->tok_start >= by ? js->tok_start - by : 0;
    js->text_start = js->text_start >= by ? js->text_start - by : 0;
    js->last_token_end = js->last_token_end >= by
        ? js->last_token_end - by : 0;
    for (int i = 0; i < js->nmembers; i++) {
        js->members[i].key_start -= by;
        js->members[i].key_end -= by;
        js->members[i].value_start -= by;
        js->members[i].value_end -= by;
    }
}

/* The earliest byte still needed: the open text, else the open token. */
static size_t first_needed(const struct jsonstream *js)
{
    if (js->token_count) {
        return js->text_start;
    }
    if (in_token(js->state)) {
        return js->tok_start;
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
    }
    *avail = js->cap - js->len;
    return js->buf + js->len;
}

/* Give back what one huge message needed as soon as nothing of it is
 * left, not at the next read (an idle client would keep it). */
static void give_back(struct jsonstream *js)
{
    if (js->cap > 256 * 1024 && first_needed(js) == js->len) {
        free(js->buf);
        js->buf = NULL;
        js->cap = js->len = js->scan = 0;
        js->tok_start = js->text_start = js->last_token_end = 0;
    }
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

    js->build_values = build_values;
    js->max_size = max_size && max_size < JSONSTREAM_MAX_TOKEN_SIZE
        ? max_size : JSONSTREAM_MAX_TOKEN_SIZE;
    js->emit = emit_fn;
    js->opaque = opaque;
    js->state = LX_START;
    js->top_state = PS_TOP;
    return js;
}

void jsonstream_free(struct jsonstream *js)
{
    if (!js) {
        return;
    }
    parser_reset(js);
    free(js->stack);
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
    decoded = decode_string(k, klen, &error);
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
