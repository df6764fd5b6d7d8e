/*
 * top [--tap SOCKET] [--interval S] [-n COUNT]
 * A live table from qmproxy's --tap socket, redrawn in place once per
 * interval: commands per second, latency percentiles per command and per
 * client, errors, events, and the proxy's operations (from its
 * QMPROXY_OPERATION events, which the tap records).  Not on a terminal,
 * or with -n, each refresh is printed after the last (batch mode, as
 * top -b); -n stops after COUNT refreshes; --json prints each refresh
 * as one line of JSON.  Ctrl-C ends it.
 */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonobj.h"
#include "util.h"

#define SAMPLES 1024   /* latencies kept per row: the most recent */

struct row {
    char *name;
    long commands, errors, window;   /* window: commands this interval */
    int64_t lat[SAMPLES];
    long nlat;                       /* total seen; lat[] is a ring */
};

struct table {
    struct row *rows;
    size_t n;
};

struct op_row {
    char *name, *type, *state, *progress;
};

struct stats {
    struct table commands, clients, events;
    struct op_row *ops;
    size_t nops;
    long total, errors, window, nevents;
};

static struct row *row_of(struct table *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++) {
        if (!strcmp(t->rows[i].name, name)) {
            return &t->rows[i];
        }
    }
    t->rows = xrealloc(t->rows, sizeof(*t->rows) * (t->n + 1));
    memset(&t->rows[t->n], 0, sizeof(*t->rows));
    t->rows[t->n].name = xstrdup(name);
    return &t->rows[t->n++];
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->rows[i].name);
    }
    free(t->rows);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Percentiles p (0..100) of a row's kept latencies; -1: none. */
static void percentiles(const struct row *r, const int *p, int np, int64_t *out)
{
    long n = r->nlat < SAMPLES ? r->nlat : SAMPLES;
    int64_t *s;

    if (n == 0) {
        for (int i = 0; i < np; i++) {
            out[i] = -1;
        }
        return;
    }
    s = xmalloc(sizeof(*s) * (size_t)n);
    memcpy(s, r->lat, sizeof(*s) * (size_t)n);
    qsort(s, (size_t)n, sizeof(*s), cmp_i64);
    for (int i = 0; i < np; i++) {
        long k = (long)((double)p[i] / 100.0 * (double)(n - 1) + 0.5);
        out[i] = s[k];
    }
    free(s);
}

static void add_latency(struct row *r, int64_t us)
{
    if (us >= 0) {
        r->lat[r->nlat % SAMPLES] = us;
        r->nlat++;
    }
}

static void take_op(struct stats *st, json_object *data)
{
    const char *name = jobj_str(data, "name");
    json_object *disks = jobj_typed(data, "disks", json_type_array);
    struct strbuf sb = STRBUF_INIT;
    struct op_row *o = NULL;

    if (!name) {
        return;
    }
    for (size_t i = 0; i < st->nops; i++) {
        if (!strcmp(st->ops[i].name, name)) {
            o = &st->ops[i];
        }
    }
    if (!o) {
        st->ops = xrealloc(st->ops, sizeof(*st->ops) * (st->nops + 1));
        o = &st->ops[st->nops++];
        memset(o, 0, sizeof(*o));
        o->name = xstrdup(name);
    }
    str_set(&o->type, jobj_str(data, "type"));
    str_set(&o->state, jobj_str(data, "state"));
    for (size_t k = 0; disks && k < json_object_array_length(disks); k++) {
        json_object *d = json_object_array_get_idx(disks, k);
        int64_t len = jobj_int(d, "len", 0);
        strbuf_addf(&sb, "%s%s %s", k ? ", " : "", ctl_str(d, "disk"),
                    ctl_str(d, "state"));
        if (len > 0) {
            strbuf_addf(&sb, " %.0f%%",
                        100.0 * (double)jobj_int(d, "offset", 0) / (double)len);
        }
    }
    free(o->progress);
    o->progress = sb.buf ? strbuf_detach(&sb, NULL) : xstrdup("");
}

static void account(struct stats *st, const struct ctl_tap_msg *m)
{
    char client[32];

    snprintf(client, sizeof(client), "c%ld", m->client);
    if (!strcmp(m->kind, "command")) {
        st->total++;
        st->window++;
        row_of(&st->commands, m->command)->window++;
        row_of(&st->clients, client)->window++;
    } else if (!strcmp(m->kind, "reply") && m->command) {
        struct row *c = row_of(&st->commands, m->command);
        struct row *k = row_of(&st->clients, client);
        c->commands++;
        k->commands++;
        add_latency(c, m->latency_us);
        add_latency(k, m->latency_us);
        if (m->error_class) {
            c->errors++;
            k->errors++;
            st->errors++;
        }
    } else if (!strcmp(m->kind, "event") && m->event) {
        st->nevents++;
        row_of(&st->events, m->event)->commands++;
        if (!strcmp(m->event, "QMPROXY_OPERATION")) {
            take_op(st, jobj_typed(m->msg, "data", json_type_object));
        }
    }
}

static int by_commands(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    return (y->commands > x->commands) - (y->commands < x->commands);
}

static const char *lat(char *buf, size_t size, int64_t us)
{
    if (us < 0) {
        snprintf(buf, size, "-");
    } else if (us < 10000) {
        snprintf(buf, size, "%.2f", (double)us / 1000);
    } else {
        snprintf(buf, size, "%.0f", (double)us / 1000);
    }
    return buf;
}

static void print_rows(struct strbuf *sb, const char *title, struct table *t,
                       double secs, int max)
{
    static const int p[] = { 50, 90, 99 };

    if (t->n) {
        qsort(t->rows, t->n, sizeof(*t->rows), by_commands);
    }
    strbuf_addf(sb, "%s%-28s %8s %7s %6s %8s %8s %8s%s\n", ctl_color("\033[7m"),
                title, "count", "/s", "errors", "p50 ms", "p90 ms", "p99 ms",
                ctl_color("\033[0m"));
    for (size_t i = 0; i < t->n && (int)i < max; i++) {
        struct row *r = &t->rows[i];
        int64_t v[3];
        char a[16], b[16], c[16];
        percentiles(r, p, 3, v);
        strbuf_addf(sb, "%-28.28s %8ld %7.1f %s%6ld%s %8s %8s %8s\n", r->name,
                    r->commands, (double)r->window / secs,
                    r->errors ? ctl_color("\033[31m") : "", r->errors,
                    r->errors ? ctl_color("\033[0m") : "",
                    lat(a, sizeof(a), v[0]), lat(b, sizeof(b), v[1]),
                    lat(c, sizeof(c), v[2]));
    }
    if (t->n == 0) {
        strbuf_adds(sb, "(none yet)\n");
    }
}

static json_object *rows_json(struct table *t, double secs)
{
    static const int p[] = { 50, 90, 99 };
    json_object *a = json_object_new_array();

    for (size_t i = 0; i < t->n; i++) {
        struct row *r = &t->rows[i];
        json_object *o = json_object_new_object();
        int64_t v[3];
        percentiles(r, p, 3, v);
        jobj_add_str(o, "name", r->name);
        json_object_object_add(o, "count", json_object_new_int64(r->commands));
        json_object_object_add(o, "per-second",
                               json_object_new_double((double)r->window / secs));
        json_object_object_add(o, "errors", json_object_new_int64(r->errors));
        for (int k = 0; k < 3; k++) {
            char key[16];
            snprintf(key, sizeof(key), "p%d-us", p[k]);
            if (v[k] >= 0) {
                json_object_object_add(o, key, json_object_new_int64(v[k]));
            }
        }
        json_object_array_add(a, o);
    }
    return a;
}

/* --json: a refresh as one line of JSON. */
static void draw_json(struct stats *st, double secs)
{
    json_object *o = json_object_new_object();
    json_object *events = json_object_new_object();
    json_object *ops = json_object_new_array();

    json_object_object_add(o, "commands", json_object_new_int64(st->total));
    json_object_object_add(o, "per-second",
                           json_object_new_double((double)st->window / secs));
    json_object_object_add(o, "errors", json_object_new_int64(st->errors));
    json_object_object_add(o, "by-command", rows_json(&st->commands, secs));
    json_object_object_add(o, "by-client", rows_json(&st->clients, secs));
    for (size_t i = 0; i < st->events.n; i++) {
        json_object_object_add(events, st->events.rows[i].name,
                               json_object_new_int64(st->events.rows[i].commands));
    }
    json_object_object_add(o, "events", events);
    for (size_t i = 0; i < st->nops; i++) {
        json_object *op = json_object_new_object();
        jobj_add_str(op, "name", st->ops[i].name);
        jobj_add_str(op, "type", st->ops[i].type);
        jobj_add_str(op, "state", st->ops[i].state);
        jobj_add_str(op, "disks", st->ops[i].progress);
        json_object_array_add(ops, op);
    }
    json_object_object_add(o, "operations", ops);
    ctl_print_json(o, false);
    json_object_put(o);
}

static void draw(struct stats *st, double secs, bool in_place, const char *tap)
{
    struct strbuf sb = STRBUF_INIT;
    char when[40];

    if (ctl_opt.json) {
        draw_json(st, secs);
        goto reset;
    }
    format_rfc3339_us(when, sizeof(when));
    if (in_place) {
        strbuf_adds(&sb, "\033[H\033[2J");
    } else {
        strbuf_adds(&sb, "\n");
    }
    strbuf_addf(&sb, "qmproxyctl top  %s  %.19s\n"
                "commands %ld (%.1f/s)  errors %ld  events %ld  operations %zu\n\n",
                tap, when, st->total, (double)st->window / secs, st->errors,
                st->nevents, st->nops);
    print_rows(&sb, "COMMAND", &st->commands, secs, 12);
    strbuf_addc(&sb, '\n');
    print_rows(&sb, "CLIENT", &st->clients, secs, 8);
    strbuf_addf(&sb, "\n%s%-28s %8s%s\n", ctl_color("\033[7m"), "EVENT", "count",
                ctl_color("\033[0m"));
    if (st->events.n) {
        qsort(st->events.rows, st->events.n, sizeof(*st->events.rows),
              by_commands);
    }
    for (size_t i = 0; i < st->events.n && i < 8; i++) {
        strbuf_addf(&sb, "%-28.28s %8ld\n", st->events.rows[i].name,
                    st->events.rows[i].commands);
    }
    if (st->nops) {
        strbuf_addf(&sb, "\n%s%-20s %-16s %-10s %-30s%s\n", ctl_color("\033[7m"),
                    "OPERATION", "TYPE", "STATE", "DISKS", ctl_color("\033[0m"));
        for (size_t i = 0; i < st->nops; i++) {
            strbuf_addf(&sb, "%-20s %-16s %-10s %s\n", st->ops[i].name,
                        st->ops[i].type ? st->ops[i].type : "",
                        st->ops[i].state ? st->ops[i].state : "",
                        st->ops[i].progress);
        }
    }
    fputs(sb.buf, stdout);
    fflush(stdout);
    strbuf_release(&sb);
reset:
    /* the rates are per interval */
    st->window = 0;
    for (size_t i = 0; i < st->commands.n; i++) {
        st->commands.rows[i].window = 0;
    }
    for (size_t i = 0; i < st->clients.n; i++) {
        st->clients.rows[i].window = 0;
    }
}

static int exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "tap", required_argument, NULL, 't' },
        { "interval", required_argument, NULL, 'i' },
        { NULL, 0, NULL, 0 },
    };
    const char *tap = ctl_tap_socket();
    double interval = 1.0;
    long count = -1;
    struct stats st = { 0 };
    struct ctl_tap *t;
    uint64_t next, last;
    bool in_place;
    int opt, rc;
    char *end;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "n:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'i':
            interval = strtod(optarg, &end);
            if (*end || interval < 0.1) {
                return ctl_usage(&ctl_top_entry);
            }
            break;
        default:
            if (!ctl_tap_option(opt, &tap, &count)) {
                return ctl_usage(&ctl_top_entry);
            }
        }
    }
    if (!(t = ctl_tap_open(&ctl_top_entry, argc, tap, &rc))) {
        return rc;
    }
    in_place = isatty(STDOUT_FILENO) && count < 0 && !ctl_opt.json;
    if (in_place) {
        fputs("\033[?25l", stdout);   /* no cursor while redrawing */
    }
    last = now_monotonic_us();
    next = last + (uint64_t)(interval * 1e6);
    for (;;) {
        struct ctl_tap_msg m;
        rc = ctl_tap_next(t, next, &m);
        if (rc == CTL_EXIT_OK) {
            account(&st, &m);
            ctl_tap_msg_clear(&m);
            if (now_monotonic_us() < next) {
                continue;
            }
        } else if (rc != CTL_EXIT_TIMEOUT) {
            if (rc == CTL_EXIT_INTERRUPTED) {
                rc = CTL_EXIT_OK;
            } else if (rc == CTL_EXIT_CONNECTION) {
                ctl_error("the tap closed");
            }
            break;
        }
        uint64_t now = now_monotonic_us();
        draw(&st, (double)(now - last) / 1e6, in_place, tap);
        last = now;
        next = now + (uint64_t)(interval * 1e6);
        if (count > 0 && --count == 0) {
            rc = CTL_EXIT_OK;
            break;
        }
    }
    if (in_place) {
        fputs("\033[?25h", stdout);
        fflush(stdout);
    }
    ctl_tap_close(t);
    table_free(&st.commands);
    table_free(&st.clients);
    table_free(&st.events);
    for (size_t i = 0; i < st.nops; i++) {
        free(st.ops[i].name);
        free(st.ops[i].type);
        free(st.ops[i].state);
        free(st.ops[i].progress);
    }
    free(st.ops);
    return rc;
}

const struct ctl_entry ctl_top_entry = {
    .name = "top",
    .usage = "[--tap SOCKET] [--interval S] [-n COUNT]",
    .summary = "a live table of the traffic: rates, latency percentiles, "
               "errors, events, operations",
    .no_monitor = true,
    .exec = exec,
};
