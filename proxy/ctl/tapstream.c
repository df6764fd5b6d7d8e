/*
 * tapstream: the proxy's --tap socket read as a sequence of messages,
 * each reply matched to the command it answers (a client's replies come
 * in the order of its commands, as QMP answers in order), with its
 * latency: QEMU's latency_us when the line has it, else the time between
 * the two lines (a reply of the proxy's own).  Shared by watch and top.
 */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonobj.h"
#include "util.h"

struct pending {
    char *command;
    int64_t t_us;
};

struct client_fifo {
    long client;
    struct pending *q;
    size_t head, n, cap;
};

struct ctl_tap {
    struct ctl_client *lines;
    struct client_fifo *fifos;
    size_t nfifos;
};

const char *ctl_tap_socket(void)
{
    const char *s = getenv("QMPROXY_TAP");
    return s ? s : ctl_opt.socket;
}

bool ctl_tap_option(int opt, const char **tap, long *count)
{
    char *end;

    switch (opt) {
    case 't':
        *tap = optarg;
        return true;
    case 'n':
        *count = strtol(optarg, &end, 10);
        return !*end && *count > 0;
    default:
        return false;
    }
}

struct ctl_tap *ctl_tap_open(const struct ctl_entry *e, int argc,
                             const char *spec, int *exit_code)
{
    struct ctl_tap *t;
    struct ctl_client *c;

    if (optind != argc) {
        *exit_code = ctl_usage(e);
        return NULL;
    }
    if (!spec) {
        ctl_error("which tap? give --tap SOCKET (qmproxy --tap) or set "
                  "QMPROXY_TAP");
        *exit_code = CTL_EXIT_USAGE;
        return NULL;
    }
    if (!(c = ctl_open_lines(spec, exit_code))) {
        return NULL;
    }
    t = xcalloc(1, sizeof(*t));
    t->lines = c;
    return t;
}

void ctl_tap_close(struct ctl_tap *t)
{
    if (!t) {
        return;
    }
    for (size_t i = 0; i < t->nfifos; i++) {
        struct client_fifo *f = &t->fifos[i];
        for (size_t k = 0; k < f->n; k++) {
            free(f->q[(f->head + k) % f->cap].command);
        }
        free(f->q);
    }
    free(t->fifos);
    ctl_client_free(t->lines);
    free(t);
}

static struct client_fifo *fifo_of(struct ctl_tap *t, long client)
{
    for (size_t i = 0; i < t->nfifos; i++) {
        if (t->fifos[i].client == client) {
            return &t->fifos[i];
        }
    }
    t->fifos = xrealloc(t->fifos, sizeof(*t->fifos) * (t->nfifos + 1));
    memset(&t->fifos[t->nfifos], 0, sizeof(*t->fifos));
    t->fifos[t->nfifos].client = client;
    return &t->fifos[t->nfifos++];
}

static void fifo_push(struct client_fifo *f, const char *command, int64_t t)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        struct pending *q = xcalloc(cap, sizeof(*q));
        for (size_t k = 0; k < f->n; k++) {
            q[k] = f->q[(f->head + k) % f->cap];
        }
        free(f->q);
        f->q = q;
        f->head = 0;
        f->cap = cap;
    }
    f->q[(f->head + f->n) % f->cap] = (struct pending){ xstrdup(command), t };
    f->n++;
}

static bool fifo_pop(struct client_fifo *f, struct pending *out)
{
    if (f->n == 0) {
        return false;
    }
    *out = f->q[f->head];
    f->head = (f->head + 1) % f->cap;
    f->n--;
    return true;
}

/* "2026-11-25T19:09:48.528699Z" -> microseconds since the epoch. */
static int64_t parse_time(const char *s)
{
    struct tm tm;
    const char *rest;
    int64_t us = 0, scale = 100000;

    memset(&tm, 0, sizeof(tm));
    if (!s || !(rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))) {
        return 0;
    }
    if (*rest == '.') {
        for (rest++; *rest >= '0' && *rest <= '9'; rest++) {
            us += (*rest - '0') * scale;
            scale /= 10;
        }
    }
    return (int64_t)timegm(&tm) * 1000000 + us;
}

void ctl_tap_msg_clear(struct ctl_tap_msg *m)
{
    json_object_put(m->line);
    free(m->command);
    memset(m, 0, sizeof(*m));
}

int ctl_tap_next(struct ctl_tap *t, uint64_t deadline, struct ctl_tap_msg *m)
{
    json_object *line;
    int rc;

    memset(m, 0, sizeof(*m));
    rc = ctl_read(t->lines, deadline, &line);
    if (rc != CTL_EXIT_OK) {
        return rc;
    }
    m->line = line;
    m->time = ctl_str(line, "time");
    m->t_us = parse_time(m->time);
    m->in = !strcmp(ctl_str(line, "dir"), "in");
    m->client = jobj_typed(line, "client", json_type_int)
        ? (long)jobj_int(line, "client", 0) : -1;
    m->from = ctl_str(line, "from");
    m->kind = ctl_str(line, "kind");
    m->msg = jobj_typed(line, "msg", json_type_object);
    m->latency_us = jobj_int(line, "latency_us", -1);
    if (jobj_str(line, "note")) {
        m->kind = "note";
    }
    if (!strcmp(m->kind, "command")) {
        const char *name = jobj_str(m->msg, "execute");
        if (!name) {
            name = jobj_str(m->msg, "exec-oob");
        }
        m->command = xstrdup(name ? name : "(malformed)");
        fifo_push(fifo_of(t, m->client), m->command, m->t_us);
    } else if (!strcmp(m->kind, "reply")) {
        struct pending p;
        json_object *err = jobj_typed(m->msg, "error", json_type_object);
        if (fifo_pop(fifo_of(t, m->client), &p)) {
            m->command = p.command;
            if (m->latency_us < 0 && m->t_us && p.t_us) {
                m->latency_us = m->t_us - p.t_us;
            }
        }
        if (err) {
            m->error_class = ctl_str(err, "class");
            m->error_desc = ctl_str(err, "desc");
        }
    } else if (!strcmp(m->kind, "event")) {
        m->event = ctl_str(m->msg, "event");
    }
    return CTL_EXIT_OK;
}
