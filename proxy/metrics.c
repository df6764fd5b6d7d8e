/*
 * metrics: the registry and Prometheus' text exposition format.
 */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define HASH_BUCKETS 256
#define MAX_LABELS 4

enum metric_type { METRIC_COUNTER, METRIC_HISTOGRAM };

struct series_entry {
    struct metric_series s;       /* first: handed out as the series */
    struct series_entry *next;    /* in insertion order */
    struct series_entry *chain;   /* in its hash bucket */
    uint32_t hash;
    char *values[MAX_LABELS];
    char *labels_text;            /* a="x",b="y": written in every scrape */
    size_t labels_len;
};

struct metric {
    struct metric *next;
    enum metric_type type;
    char *name, *help;
    char *labels[MAX_LABELS];
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    char **bound_texts;           /* le="..." of each bound */
    struct series_entry *first, *last;
    struct series_entry *table[HASH_BUCKETS];
    size_t nseries;
};

struct collector {
    metrics_collect_fn fn;
    void *opaque;
};

struct metrics {
    struct metric *first, *last;
    struct collector *collectors;
    size_t ncollectors;
};

struct metrics_out {
    struct strbuf sb;
};

struct metrics *metrics_new(void)
{
    return xcalloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
    if (!m) {
        return;
    }
    for (struct metric *f = m->first, *fn; f; f = fn) {
        fn = f->next;
        for (struct series_entry *e = f->first, *en; e; e = en) {
            en = e->next;
            for (size_t i = 0; i < f->nlabels; i++) {
                free(e->values[i]);
            }
            free(e->labels_text);
            free(e->s.buckets);
            free(e);
        }
        for (size_t i = 0; i < f->nlabels; i++) {
            free(f->labels[i]);
        }
        for (size_t i = 0; i < f->nbounds; i++) {
            free(f->bound_texts[i]);
        }
        free(f->bound_texts);
        free(f->bounds);
        free(f->name);
        free(f->help);
        free(f);
    }
    free(m->collectors);
    free(m);
}

static struct metric *add_family(struct metrics *m, enum metric_type type,
                                 const char *name, const char *help,
                                 const char *labels)
{
    struct metric *f = xcalloc(1, sizeof(*f));

    f->type = type;
    f->name = xstrdup(name);
    f->help = xstrdup(help);
    while (labels && *labels && f->nlabels < MAX_LABELS) {
        size_t n = strcspn(labels, ",");
        f->labels[f->nlabels] = xcalloc(1, n + 1);
        memcpy(f->labels[f->nlabels++], labels, n);
        labels += n + (labels[n] == ',');
    }
    if (m->last) {
        m->last->next = f;
    } else {
        m->first = f;
    }
    m->last = f;
    return f;
}

struct metric *metrics_counter(struct metrics *m, const char *name,
                               const char *help, const char *labels)
{
    return add_family(m, METRIC_COUNTER, name, help, labels);
}

struct metric *metrics_histogram(struct metrics *m, const char *name,
                                 const char *help, const char *labels,
                                 const double *bounds, size_t nbounds)
{
    struct metric *f = add_family(m, METRIC_HISTOGRAM, name, help, labels);

    f->bounds = xcalloc(nbounds, sizeof(*f->bounds));
    memcpy(f->bounds, bounds, nbounds * sizeof(*bounds));
    f->nbounds = nbounds;
    f->bound_texts = xcalloc(nbounds, sizeof(*f->bound_texts));
    for (size_t i = 0; i < nbounds; i++) {
        f->bound_texts[i] = xasprintf("%g", bounds[i]);
    }
    return f;
}

static void add_label_value(struct strbuf *sb, const char *v);

static uint32_t hash_values(const struct metric *f, const char *const *values)
{
    uint32_t h = 2166136261u;  /* FNV-1a */

    for (size_t i = 0; i < f->nlabels; i++) {
        for (const char *p = values[i]; *p; p++) {
            h = (h ^ (unsigned char)*p) * 16777619u;
        }
        h = (h ^ 0x1f) * 16777619u;
    }
    return h;
}

static struct series_entry *lookup(const struct metric *f,
                                   const char *const *values, uint32_t h)
{
    for (struct series_entry *e = f->table[h % HASH_BUCKETS]; e;
         e = e->chain) {
        size_t i;
        if (e->hash != h) {
            continue;
        }
        for (i = 0; i < f->nlabels && !strcmp(e->values[i], values[i]); i++) {
        }
        if (i == f->nlabels) {
            return e;
        }
    }
    return NULL;
}

struct metric_series *metric_find(struct metric *f,
                                  const char *const *values)
{
    struct series_entry *e = lookup(f, values, hash_values(f, values));
    return e ? &e->s : NULL;
}

struct metric_series *metric_series(struct metric *f,
                                    const char *const *values)
{
    static const char *const others[MAX_LABELS] = {
        METRICS_OTHER, METRICS_OTHER, METRICS_OTHER, METRICS_OTHER,
    };
    uint32_t h = hash_values(f, values);
    struct series_entry *e = lookup(f, values, h);

    if (e) {
        return &e->s;
    }
    if (f->nseries >= METRICS_MAX_SERIES) {
        /* the cap: one more series for all that comes past it */
        values = others;
        h = hash_values(f, values);
        if ((e = lookup(f, values, h))) {
            return &e->s;
        }
    }
    e = xcalloc(1, sizeof(*e));
    e->hash = h;
    {
        struct strbuf sb = STRBUF_INIT;
        for (size_t i = 0; i < f->nlabels; i++) {
            e->values[i] = xstrdup(values[i]);
            strbuf_addf(&sb, "%s%s=\"", i ? "," : "", f->labels[i]);
            add_label_value(&sb, values[i]);
            strbuf_addc(&sb, '"');
        }
        e->labels_text = strbuf_detach(&sb, &e->labels_len);
    }
    if (f->type == METRIC_HISTOGRAM) {
        e->s.buckets = xcalloc(f->nbounds + 1, sizeof(*e->s.buckets));
    }
    e->chain = f->table[h % HASH_BUCKETS];
    f->table[h % HASH_BUCKETS] = e;
    if (f->last) {
        f->last->next = e;
    } else {
        f->first = e;
    }
    f->last = e;
    f->nseries++;
    return &e->s;
}

struct metric_series *metric_single(struct metric *f)
{
    return metric_series(f, NULL);
}

void metric_observe(struct metric *f, struct metric_series *s, double v)
{
    size_t i = 0;

    while (i < f->nbounds && v > f->bounds[i]) {
        i++;
    }
    s->buckets[i]++;
    s->sum += v;
    s->count++;
}

void metrics_add_collector(struct metrics *m, metrics_collect_fn fn,
                           void *opaque)
{
    m->collectors = xrealloc(m->collectors,
                             sizeof(*m->collectors) * (m->ncollectors + 1));
    m->collectors[m->ncollectors++] = (struct collector){ fn, opaque };
}

/* ---- the text format ----------------------------------------------- */

/* Prometheus' float syntax: integers without a fraction, +Inf/NaN. */
static void add_value(struct strbuf *sb, double v)
{
    if (isnan(v)) {
        strbuf_adds(sb, "NaN");
    } else if (isinf(v)) {
        strbuf_adds(sb, v > 0 ? "+Inf" : "-Inf");
    } else if (v == (double)(int64_t)v && fabs(v) < 9.007199254740992e15) {
        /* most values are counts: without printf, which a scrape would
         * otherwise spend most of its time in */
        char digits[24], *p = digits + sizeof(digits);
        uint64_t n = v < 0 ? (uint64_t)-(int64_t)v : (uint64_t)v;
        do {
            *--p = (char)('0' + n % 10);
            n /= 10;
        } while (n);
        if (v < 0) {
            *--p = '-';
        }
        strbuf_add(sb, p, (size_t)(digits + sizeof(digits) - p));
    } else {
        /* the shortest of these that reads back as the same double */
        char text[32];
        snprintf(text, sizeof(text), "%.15g", v);
        if (strtod(text, NULL) != v) {
            snprintf(text, sizeof(text), "%.17g", v);
        }
        strbuf_adds(sb, text);
    }
}

/* A label value: backslash, double quote and newline escaped. */
static void add_label_value(struct strbuf *sb, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"') {
            strbuf_addc(sb, '\\');
            strbuf_addc(sb, *v);
        } else if (*v == '\n') {
            strbuf_adds(sb, "\\n");
        } else {
            strbuf_addc(sb, *v);
        }
    }
}

/* HELP text: backslash and newline escaped. */
static void add_help(struct strbuf *sb, const char *name, const char *help,
                     const char *type)
{
    strbuf_addf(sb, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\') {
            strbuf_adds(sb, "\\\\");
        } else if (*p == '\n') {
            strbuf_adds(sb, "\\n");
        } else {
            strbuf_addc(sb, *p);
        }
    }
    strbuf_addf(sb, "\n# TYPE %s %s\n", name, type);
}

/* name{labels[,le="bound"]} value */
static void add_sample(struct strbuf *sb, const struct metric *f,
                       const struct series_entry *e, const char *suffix,
                       const char *le, double value)
{
    bool any = f->nlabels || le;

    strbuf_adds(sb, f->name);
    strbuf_adds(sb, suffix);
    if (any) {
        strbuf_addc(sb, '{');
    }
    strbuf_add(sb, e->labels_text, e->labels_len);
    if (le) {
        strbuf_adds(sb, f->nlabels ? ",le=\"" : "le=\"");
        strbuf_adds(sb, le);
        strbuf_addc(sb, '"');
    }
    strbuf_adds(sb, any ? "} " : " ");
    add_value(sb, value);
    strbuf_addc(sb, '\n');
}

static void add_family_text(struct strbuf *sb, const struct metric *f)
{
    add_help(sb, f->name, f->help,
             f->type == METRIC_COUNTER ? "counter" : "histogram");
    for (const struct series_entry *e = f->first; e; e = e->next) {
        uint64_t cumulative = 0;
        if (f->type == METRIC_COUNTER) {
            add_sample(sb, f, e, "", NULL, e->s.value);
            continue;
        }
        for (size_t i = 0; i < f->nbounds; i++) {
            cumulative += e->s.buckets[i];
            add_sample(sb, f, e, "_bucket", f->bound_texts[i],
                       (double)cumulative);
        }
        add_sample(sb, f, e, "_bucket", "+Inf", (double)e->s.count);
        add_sample(sb, f, e, "_sum", NULL, e->s.sum);
        add_sample(sb, f, e, "_count", NULL, (double)e->s.count);
    }
}

void metrics_out_family(struct metrics_out *out, const char *name,
                        const char *help, const char *type)
{
    add_help(&out->sb, name, help, type);
}

void metrics_out_sample(struct metrics_out *out, double value,
                        const char *name, ...)
{
    va_list ap;
    const char *label;
    bool any = false;

    strbuf_adds(&out->sb, name);
    va_start(ap, name);
    while ((label = va_arg(ap, const char *))) {
        const char *v = va_arg(ap, const char *);
        strbuf_addf(&out->sb, "%s%s=\"", any ? "," : "{", label);
        add_label_value(&out->sb, v ? v : "");
        strbuf_addc(&out->sb, '"');
        any = true;
    }
    va_end(ap);
    strbuf_adds(&out->sb, any ? "} " : " ");
    add_value(&out->sb, value);
    strbuf_addc(&out->sb, '\n');
}

char *metrics_format(struct metrics *m, size_t *len)
{
    struct metrics_out out = { STRBUF_INIT };

    for (const struct metric *f = m->first; f; f = f->next) {
        add_family_text(&out.sb, f);
    }
    for (size_t i = 0; i < m->ncollectors; i++) {
        m->collectors[i].fn(m->collectors[i].opaque, &out);
    }
    return strbuf_detach(&out.sb, len);
}
