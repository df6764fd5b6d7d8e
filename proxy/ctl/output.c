/*
 * output: what qmproxyctl writes: errors in one form on stderr, values as
 * JSON, sizes and durations in human units, colours only on a terminal.
 */
#include "ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "jsonstream.h"
#include "qjson.h"
#include "util.h"

const char *ctl_str(json_object *o, const char *key)
{
    const char *s = jobj_str(o, key);
    return s ? s : "";
}

void ctl_error(const char *fmt, ...)
{
    va_list ap;

    fputs("qmproxyctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void ctl_print_error_reply(json_object *reply)
{
    json_object *e;

    if (json_object_object_get_ex(reply, "error", &e)) {
        const char *cls = jobj_str(e, "class");
        const char *desc = jobj_str(e, "desc");
        ctl_error("%s: %s", cls ? cls : "error", desc ? desc : "(no desc)");
    } else if (jobj_str(reply, "malformed")) {
        ctl_error("the monitor answered something that is not JSON: %s",
                  jobj_str(reply, "malformed"));
    } else {
        ctl_error("unexpected answer: %s", json_object_to_json_string(reply));
    }
}

void ctl_print_json(json_object *value, bool pretty)
{
    if (pretty) {
        puts(json_object_to_json_string_ext(value, JSON_C_TO_STRING_PRETTY
                                            | JSON_C_TO_STRING_SPACED
                                            | JSON_C_TO_STRING_NOSLASHESCAPE));
    } else {
        char *s = qjson_to_string(value);
        puts(s);
        free(s);
    }
    fflush(stdout);
}

const char *ctl_human_size(char *buf, size_t size, double bytes)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB",
                                         "PiB" };
    int u = 0;

    while (bytes >= 1024 && u < 5) {
        bytes /= 1024;
        u++;
    }
    if (u == 0) {
        snprintf(buf, size, "%.0f %s", bytes, units[u]);
    } else {
        /* 1 GiB, 1.5 GiB, 64 MiB: a decimal only when it says something */
        snprintf(buf, size, bytes < 10 && bytes != (double)(int64_t)bytes
                 ? "%.1f %s" : "%.0f %s", bytes, units[u]);
    }
    return buf;
}

const char *ctl_human_duration(char *buf, size_t size, double s)
{
    if (s < 0 || s > 359999) {
        snprintf(buf, size, "--:--");
    } else if (s >= 3600) {
        snprintf(buf, size, "%d:%02d:%02d", (int)s / 3600,
                 (int)s / 60 % 60, (int)s % 60);
    } else {
        snprintf(buf, size, "%d:%02d", (int)s / 60, (int)s % 60);
    }
    return buf;
}

const char *ctl_color(const char *code)
{
    return ctl_opt.color ? code : "";
}

struct parsed {
    json_object *value;
    char *error;
    int count;
};

static bool on_text(void *opaque, const struct js_text *t)
{
    struct parsed *p = opaque;

    if (++p->count > 1) {
        if (!p->error) {
            p->error = xstrdup("more than one JSON value");
        }
        return true;
    }
    if (t->error) {
        p->error = xstrdup(t->error);
    } else if (t->has_value) {
        p->value = json_object_get(t->value);
    }
    return true;
}

json_object *ctl_parse_json(const char *text, char **error)
{
    struct parsed p = { NULL, NULL, 0 };
    struct jsonstream *js = jsonstream_new(true, JSONSTREAM_MAX_TOKEN_SIZE,
                                           on_text, &p);

    jsonstream_feed(js, text, strlen(text));
    /* a scalar at the very end is only delimited by what follows it */
    jsonstream_feed(js, "\n", 1);
    if (!p.error && jsonstream_buffered(js) > 0) {
        p.error = xstrdup("incomplete JSON");
    }
    jsonstream_free(js);
    if (!p.error && p.count == 0) {
        p.error = xstrdup("no JSON value");
    }
    if (p.error) {
        json_object_put(p.value);
        *error = p.error;
        return NULL;
    }
    *error = NULL;
    /* JSON null: a json-c NULL, given back as such with no error */
    return p.value;
}

char *ctl_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    struct strbuf sb = STRBUF_INIT;
    char chunk[65536];
    size_t n;

    if (!f) {
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        strbuf_add(&sb, chunk, n);
    }
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        strbuf_release(&sb);
        errno = e;
        return NULL;
    }
    fclose(f);
    if (!sb.buf) {
        strbuf_adds(&sb, "");
    }
    return strbuf_detach(&sb, NULL);
}
