/*
 * qmp-pretty: QEMU's pretty layout of a compact message.
 */
#include "qmp-pretty.h"

#include <stdbool.h>
#include <string.h>

#include "util.h"

#define MAX_DEPTH 1100   /* QEMU nests at most 1024 */

struct writer {
    struct strbuf out;
    unsigned depth;
    bool need_comma;
    const char *in;
    size_t pos, len;
};

/* A line break and the indentation of the current depth, CRLF as the
 * monitor writes every newline. */
static void newline(struct writer *w)
{
    strbuf_adds(&w->out, "\r\n");
    for (unsigned i = 0; i < w->depth; i++) {
        strbuf_adds(&w->out, "    ");
    }
}

/* Before a value (and its member name): a comma and a new line after
 * the previous one, or a new line for the first inside a container. */
static void before_value(struct writer *w)
{
    if (w->need_comma) {
        strbuf_addc(&w->out, ',');
        newline(w);
    } else {
        if (w->out.len) {
            newline(w);
        }
        w->need_comma = true;
    }
}

static void skip_space(struct writer *w)
{
    while (w->pos < w->len && strchr(" \t\r\n", w->in[w->pos])) {
        w->pos++;
    }
}

/* One token's text: a string (escapes kept), or a bare word or number
 * (QEMU writes inf and nan bare too), copied as it is. */
static void copy_token(struct writer *w)
{
    size_t start = w->pos;

    if (w->in[w->pos] == '"') {
        w->pos++;
        while (w->pos < w->len && w->in[w->pos] != '"') {
            w->pos += w->in[w->pos] == '\\' ? 2 : 1;
        }
        w->pos++;
    } else {
        while (w->pos < w->len && !strchr(",:]} \t\r\n", w->in[w->pos])) {
            w->pos++;
        }
    }
    if (w->pos > w->len) {
        w->pos = w->len;
    }
    strbuf_add(&w->out, w->in + start, w->pos - start);
}

static void value(struct writer *w);

/* A container's members or elements, up to its closing bracket. */
static void container(struct writer *w, char close, bool object)
{
    strbuf_addc(&w->out, object ? '{' : '[');
    w->pos++;
    w->depth++;
    w->need_comma = false;
    for (;;) {
        skip_space(w);
        if (w->pos >= w->len || w->in[w->pos] == close) {
            break;
        }
        if (w->in[w->pos] == ',') {
            w->pos++;
            continue;
        }
        if (object) {
            before_value(w);
            copy_token(w);            /* the member's name */
            skip_space(w);
            if (w->pos < w->len && w->in[w->pos] == ':') {
                w->pos++;
            }
            strbuf_adds(&w->out, ": ");
            value(w);
            w->need_comma = true;
        } else {
            before_value(w);
            value(w);
            w->need_comma = true;
        }
    }
    w->pos++;
    w->depth--;
    w->need_comma = true;
    newline(w);
    strbuf_addc(&w->out, close);
}

/* The value at pos, its comma and line already written. */
static void value(struct writer *w)
{
    skip_space(w);
    if (w->pos >= w->len) {
        return;
    }
    if (w->depth < MAX_DEPTH && (w->in[w->pos] == '{'
                                 || w->in[w->pos] == '[')) {
        container(w, w->in[w->pos] == '{' ? '}' : ']',
                  w->in[w->pos] == '{');
    } else {
        copy_token(w);
    }
}

char *qmp_pretty(const char *compact, size_t len, size_t *out_len)
{
    struct writer w = { STRBUF_INIT, 0, false, compact, 0, len };

    value(&w);
    strbuf_adds(&w.out, "\r\n");
    return strbuf_detach(&w.out, out_len);
}
