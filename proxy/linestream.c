/*
 * linestream: QEMU's messages, a line each, with their top-level members.
 */
#include "linestream.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* A buffer that grew past this for one large message is given back once
 * it is consumed (query-qmp-schema is about 200 KB). */
#define KEEP_CAPACITY (1u << 20)

struct linestream {
    jsonstream_emit_fn emit;
    void *opaque;
    char *buf;
    size_t cap, len;   /* [0, len) holds input */
    size_t start;      /* the first byte not yet emitted */
    size_t scan;       /* where the search for '\n' goes on */
};

struct linestream *linestream_new(jsonstream_emit_fn emit, void *opaque)
{
    struct linestream *ls = xcalloc(1, sizeof(*ls));

    ls->emit = emit;
    ls->opaque = opaque;
    return ls;
}

void linestream_free(struct linestream *ls)
{
    if (ls) {
        free(ls->buf);
        free(ls);
    }
}

char *linestream_reserve(struct linestream *ls, size_t min, size_t *avail)
{
    if (ls->start > 0) {
        /* what was emitted goes; a partial line moves to the front */
        memmove(ls->buf, ls->buf + ls->start, ls->len - ls->start);
        ls->len -= ls->start;
        ls->scan -= ls->start;
        ls->start = 0;
    }
    if (ls->cap > KEEP_CAPACITY && ls->len + min <= KEEP_CAPACITY / 2) {
        ls->cap = KEEP_CAPACITY / 2;
        ls->buf = xrealloc(ls->buf, ls->cap);
    }
    return buf_room(&ls->buf, &ls->cap, ls->len, min, avail);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The end of a string token starting at i (its quote), or len. */
static size_t skip_string(const char *s, size_t i, size_t len)
{
    char quote = s[i++];

    while (i < len && s[i] != quote) {
        i += s[i] == '\\' ? 2 : 1;
    }
    return i < len ? i + 1 : len;
}

/* The end of the value starting at i: a string, a nested container
 * (strings inside skipped), or a bare word up to , } ] or space. */
static size_t skip_value(const char *s, size_t i, size_t len)
{
    int depth = 0;

    if (s[i] == '"' || s[i] == '\'') {
        return skip_string(s, i, len);
    }
    if (s[i] != '{' && s[i] != '[') {
        while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']'
               && !is_space(s[i])) {
            i++;
        }
        return i;
    }
    while (i < len) {
        char c = s[i];
        if (c == '"' || c == '\'') {
            i = skip_string(s, i, len);
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            return i + 1;
        }
        i++;
    }
    return len;
}

static size_t skip_space(const char *s, size_t i, size_t len)
{
    while (i < len && is_space(s[i])) {
        i++;
    }
    return i;
}

void linestream_scan_members(struct js_text *t)
{
    const char *s = t->raw;
    size_t len = t->len, i = skip_space(s, 0, len);

    t->nmembers = 0;
    t->members_overflow = false;
    t->is_object = i < len && s[i] == '{';
    if (!t->is_object) {
        return;
    }
    i++;
    for (;;) {
        struct js_member m;

        i = skip_space(s, i, len);
        if (i >= len || (s[i] != '"' && s[i] != '\'')) {
            return;  /* '}' or something a lenient scan does not follow */
        }
        m.key_start = i;
        m.key_end = i = skip_string(s, i, len);
        i = skip_space(s, i, len);
        if (i >= len || s[i] != ':') {
            return;
        }
        i = skip_space(s, i + 1, len);
        if (i >= len) {
            return;
        }
        m.value_start = i;
        m.value_end = i = skip_value(s, i, len);
        if (t->nmembers < JSONSTREAM_MAX_MEMBERS) {
            t->members[t->nmembers++] = m;
        } else {
            t->members_overflow = true;
        }
        i = skip_space(s, i, len);
        if (i >= len || s[i] != ',') {
            return;
        }
        i++;
    }
}

bool linestream_commit(struct linestream *ls, size_t n)
{
    ls->len += n;
    for (;;) {
        char *nl = memchr(ls->buf + ls->scan, '\n', ls->len - ls->scan);
        size_t first, last, end;
        struct js_text t;

        if (!nl) {
            ls->scan = ls->len;
            return true;
        }
        end = (size_t)(nl - ls->buf) + 1;
        first = ls->start;
        last = end;
        while (first < last && is_space(ls->buf[first])) {
            first++;
        }
        while (last > first && is_space(ls->buf[last - 1])) {
            last--;
        }
        ls->start = ls->scan = end;
        if (first == last) {
            continue;  /* QEMU sends no blank lines; nothing to route */
        }
        memset(&t, 0, sizeof(t));
        t.raw = ls->buf + first;
        t.len = last - first;
        t.after = ls->len - last;
        linestream_scan_members(&t);
        if (!ls->emit(ls->opaque, &t)) {
            return false;
        }
    }
}
