/*
 * progress: following one of the proxy's operations while its command
 * waits.  The command's own connection is busy (its later commands wait
 * behind it, as behind any QEMU command), so the progress comes from
 * the QMPROXY_OPERATION events on it and from query-block-jobs asked on
 * a second connection twice a second.  On a terminal each disk gets a
 * bar redrawn in place (percentage, rate, time left), as virsh blockjob
 * --wait --verbose does; otherwise a plain line when it moves.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonobj.h"
#include "util.h"

#define TICK_US 500000

struct bar {
    char *disk;
    char *job;
    char *state;
    int64_t offset, len;
    uint64_t last_us;       /* when offset was last seen to move */
    int64_t last_offset;
    double rate;            /* bytes/s, smoothed */
    int printed_pct;        /* plain mode: the last percentage printed */
    uint64_t printed_us;
};

struct follow {
    const struct ctl_op_wait *w;
    char *name;              /* the operation, once known */
    json_object *op;         /* its last announcement */
    struct bar *bars;
    int nbars;
    bool tty;
    int drawn;               /* terminal lines drawn last time */
};

static bool op_matches(struct follow *f, json_object *data)
{
    const char *name = jobj_str(data, "name");
    const char *type = jobj_str(data, "type");
    const char *state = jobj_str(data, "state");

    if (!name) {
        return false;
    }
    if (f->name) {
        return !strcmp(f->name, name);
    }
    /* a command that makes an operation: it is one that just started
     * (an older one of the same name may still announce changes) */
    if (f->w->type && (!state || strcmp(state, "running"))) {
        return false;
    }
    if (f->w->name) {
        return !strcmp(f->w->name, name);
    }
    /* the first operation of our type that starts after our command */
    return type && !strcmp(type, f->w->type);
}

static struct bar *bar_for(struct follow *f, const char *disk)
{
    for (int i = 0; i < f->nbars; i++) {
        if (!strcmp(f->bars[i].disk, disk)) {
            return &f->bars[i];
        }
    }
    f->bars = xrealloc(f->bars, sizeof(*f->bars) * (size_t)(f->nbars + 1));
    memset(&f->bars[f->nbars], 0, sizeof(*f->bars));
    f->bars[f->nbars].disk = xstrdup(disk);
    f->bars[f->nbars].printed_pct = -1;
    return &f->bars[f->nbars++];
}

static void bar_progress(struct bar *b, int64_t offset, int64_t len)
{
    uint64_t now = now_monotonic_us();

    if (b->last_us && offset > b->last_offset && now > b->last_us) {
        double r = (double)(offset - b->last_offset) * 1e6 /
                   (double)(now - b->last_us);
        b->rate = b->rate > 0 ? 0.7 * b->rate + 0.3 * r : r;
    }
    if (!b->last_us || offset != b->last_offset) {
        b->last_us = now;
        b->last_offset = offset;
    }
    b->offset = offset;
    b->len = len;
}

static void take_op(struct follow *f, json_object *data)
{
    json_object *disks = jobj_typed(data, "disks", json_type_array);

    if (!f->name) {
        f->name = xstrdup(jobj_str(data, "name"));
    }
    json_object_put(f->op);
    f->op = json_object_get(data);
    for (size_t i = 0; disks && i < json_object_array_length(disks); i++) {
        json_object *d = json_object_array_get_idx(disks, i);
        struct bar *b;
        if (!jobj_str(d, "disk")) {
            continue;
        }
        b = bar_for(f, jobj_str(d, "disk"));
        str_set(&b->job, jobj_str(d, "job"));
        str_set(&b->state, jobj_str(d, "state"));
        if (jobj_typed(d, "len", json_type_int)) {
            bar_progress(b, jobj_int(d, "offset", 0), jobj_int(d, "len", 0));
        }
    }
}

static void on_event(void *opaque, json_object *ev)
{
    struct follow *f = opaque;
    json_object *data = jobj_typed(ev, "data", json_type_object);
    const char *name = jobj_str(ev, "event");

    if (name && !strcmp(name, "QMPROXY_OPERATION") && data &&
        op_matches(f, data)) {
        take_op(f, data);
    }
}

static void poll_jobs(struct follow *f, struct ctl_client *watch)
{
    json_object *jobs;

    if (!watch || ctl_call(watch, "query-block-jobs", NULL, &jobs)
        != CTL_EXIT_OK) {
        return;
    }
    for (size_t i = 0; i < json_object_array_length(jobs); i++) {
        json_object *j = json_object_array_get_idx(jobs, i);
        const char *id = jobj_str(j, "device");
        for (int k = 0; id && k < f->nbars; k++) {
            if (f->bars[k].job && !strcmp(f->bars[k].job, id)) {
                bar_progress(&f->bars[k], jobj_int(j, "offset", 0),
                             jobj_int(j, "len", 0));
            }
        }
    }
    json_object_put(jobs);
}

static void format_bar(struct strbuf *sb, const struct bar *b, bool tty)
{
    char rate[32], left[32], done[32], total[32];
    double pct = b->len > 0 ? 100.0 * (double)b->offset / (double)b->len : 0;

    strbuf_addf(sb, "%-10s ", b->disk);
    if (tty) {
        int width = 30, fill = (int)(pct * width / 100.0 + 0.5);
        strbuf_addc(sb, '[');
        for (int i = 0; i < width; i++) {
            strbuf_adds(sb, i < fill ? "#" : (i == fill ? ">" : "."));
        }
        strbuf_adds(sb, "] ");
    }
    if (b->len <= 0) {
        strbuf_addf(sb, "%s", b->state ? b->state : "starting");
        return;
    }
    strbuf_addf(sb, "%3.0f%%  %s of %s", pct,
                ctl_human_size(done, sizeof(done), (double)b->offset),
                ctl_human_size(total, sizeof(total), (double)b->len));
    if (b->rate > 0) {
        strbuf_addf(sb, "  %s/s  %s left",
                    ctl_human_size(rate, sizeof(rate), b->rate),
                    ctl_human_duration(left, sizeof(left),
                                       (double)(b->len - b->offset) / b->rate));
    }
    if (b->state) {
        strbuf_addf(sb, "  %s", b->state);
    }
}

static void draw(struct follow *f, bool last)
{
    if (!f->w->show_progress || f->nbars == 0) {
        return;
    }
    if (f->tty) {
        struct strbuf sb = STRBUF_INIT;
        if (f->drawn) {
            strbuf_addf(&sb, "\033[%dA", f->drawn);
        }
        for (int i = 0; i < f->nbars; i++) {
            strbuf_adds(&sb, "\r\033[K");
            format_bar(&sb, &f->bars[i], true);
            strbuf_addc(&sb, '\n');
        }
        f->drawn = f->nbars;
        fputs(sb.buf, stderr);
        fflush(stderr);
        strbuf_release(&sb);
        return;
    }
    for (int i = 0; i < f->nbars; i++) {
        struct bar *b = &f->bars[i];
        int pct = b->len > 0 ? (int)(100 * b->offset / b->len) : -1;
        uint64_t now = now_monotonic_us();
        if (pct == b->printed_pct ||
            (!last && pct != 100 && now - b->printed_us < 1000000)) {
            continue;
        }
        struct strbuf sb = STRBUF_INIT;
        format_bar(&sb, b, false);
        fprintf(stderr, "%s\n", sb.buf);
        strbuf_release(&sb);
        b->printed_pct = pct;
        b->printed_us = now;
    }
    fflush(stderr);
}

static void follow_free(struct follow *f)
{
    for (int i = 0; i < f->nbars; i++) {
        free(f->bars[i].disk);
        free(f->bars[i].job);
        free(f->bars[i].state);
    }
    free(f->bars);
    free(f->name);
    json_object_put(f->op);
}

/* The outcome, on stdout: the return value with --json, else a summary. */
static void print_outcome(json_object *ret, struct follow *f)
{
    json_object *op = ret && jobj_str(ret, "name") ? ret : f->op;
    json_object *disks;

    if (ctl_opt.json) {
        if (ret) {
            ctl_print_json(ret, false);
        } else {
            puts("{}");
        }
        return;
    }
    if (!op) {
        return;
    }
    printf("operation %s: %s\n", ctl_str(op, "name"), ctl_str(op, "state"));
    disks = jobj_typed(op, "disks", json_type_array);
    for (size_t i = 0; disks && i < json_object_array_length(disks); i++) {
        json_object *d = json_object_array_get_idx(disks, i);
        printf("  %s: %s", ctl_str(d, "disk"), ctl_str(d, "state"));
        if (jobj_str(d, "mirror-file")) {
            printf(", copy %s", ctl_str(d, "mirror-file"));
        }
        if (jobj_str(d, "error")) {
            printf(" (%s)", ctl_str(d, "error"));
        }
        putchar('\n');
    }
}

static bool op_final_failed(json_object *op)
{
    const char *s = jobj_str(op, "state");
    return s && (!strcmp(s, "failed") || !strcmp(s, "aborted"));
}

/*
 * Ask for an abort on a connection of its own (ours waits): a snapshot
 * is undone by qmproxy-snapshot-abort; a block copy's jobs are cancelled
 * (the source stays as it was, the operation ends failed).
 */
static int abort_op(struct follow *f)
{
    struct ctl_client *a;
    json_object *ret;
    int rc;

    if (!(a = ctl_connect(false, &rc))) {
        return rc;
    }
    if (!strcmp(ctl_str(f->op, "type"), "block-copy")) {
        for (int i = 0; i < f->nbars; i++) {
            json_object *args = json_object_new_object();
            if (!f->bars[i].job) {
                json_object_put(args);
                continue;
            }
            jobj_add_str(args, "device", f->bars[i].job);
            jobj_add_bool(args, "force", true);
            rc = ctl_call(a, "block-job-cancel", args, &ret);
            json_object_put(ret);
        }
    } else {
        json_object *args = json_object_new_object();
        jobj_add_str(args, "name", f->name);
        rc = ctl_call(a, "qmproxy-snapshot-abort", args, &ret);
        json_object_put(ret);
    }
    ctl_client_free(a);
    return rc;
}

static int wait_reply(struct ctl_client *c, const struct ctl_op_wait *w,
                      bool until_started)
{
    struct follow f = { .w = w, .tty = isatty(STDERR_FILENO) };
    struct ctl_client *watch = NULL;
    uint64_t deadline = ctl_deadline(ctl_opt.timeout);
    json_object *reply = NULL, *ret;
    int rc;

    if (w->show_progress && !until_started) {
        int ignored;
        watch = ctl_connect(false, &ignored);   /* no bars without it */
    }
    for (;;) {
        uint64_t tick = now_monotonic_us() + TICK_US;
        if (deadline && deadline < tick) {
            tick = deadline;
        }
        rc = ctl_wait_reply(c, tick, on_event, &f, &reply);
        if (rc == CTL_EXIT_OK) {
            break;
        }
        if (until_started && f.name) {
            /* the operation exists: leave it to run */
            if (ctl_opt.json) {
                ctl_print_json(f.op, false);
            } else {
                printf("operation %s started (%s)\n", f.name,
                       ctl_str(f.op, "state"));
            }
            rc = CTL_EXIT_OK;
            goto out;
        }
        if (rc == CTL_EXIT_TIMEOUT) {
            if (deadline && now_monotonic_us() >= deadline) {
                draw(&f, true);
                ctl_error("--timeout passed%s%s%s", f.name ?
                          "; the operation " : "", f.name ? f.name : "",
                          f.name ? " goes on" : "");
                goto out;
            }
            poll_jobs(&f, watch);
            draw(&f, false);
            continue;
        }
        if (rc == CTL_EXIT_INTERRUPTED) {
            draw(&f, true);
            if (w->abort_on_interrupt && f.name) {
                fprintf(stderr, "qmproxyctl: interrupted: aborting %s\n",
                        f.name);
                ctl_interrupted = 0;
                rc = abort_op(&f);
                rc = rc == CTL_EXIT_OK ? CTL_EXIT_ABORTED : rc;
            } else {
                ctl_error("interrupted%s%s%s", f.name ? "; operation " : "",
                          f.name ? f.name : "", f.name ?
                          " is left running (qmproxyctl ops to follow it)" : "");
            }
            goto out;
        }
        ctl_error("the monitor closed the connection");
        goto out;
    }
    /* the command answered */
    if (json_object_object_get_ex(reply, "return", &ret)) {
        if (ret && jobj_str(ret, "name") && jobj_typed(ret, "disks", json_type_array)) {
            take_op(&f, ret);
        }
        poll_jobs(&f, watch);
        draw(&f, true);
        print_outcome(ret, &f);
        rc = CTL_EXIT_OK;
    } else {
        draw(&f, true);
        ctl_print_error_reply(reply);
        /* refused up front, or failed once started */
        rc = f.name ? CTL_EXIT_OP_FAILED : CTL_EXIT_QMP_ERROR;
        if (f.op && !op_final_failed(f.op) && !ctl_opt.json) {
            print_outcome(NULL, &f);
        }
    }
out:
    json_object_put(reply);
    ctl_client_free(watch);
    follow_free(&f);
    return rc;
}

int ctl_wait_operation(struct ctl_client *c, const struct ctl_op_wait *w)
{
    return wait_reply(c, w, false);
}

int ctl_start_operation(struct ctl_client *c, const struct ctl_op_wait *w)
{
    return wait_reply(c, w, true);
}

int ctl_run_operation(const char *command, json_object *args,
                      const struct ctl_op_wait *w, bool wait)
{
    struct ctl_client *c;
    int rc;

    if (!(c = ctl_connect(true, &rc))) {
        json_object_put(args);
        return rc;
    }
    if (!ctl_client_is_proxy(c)) {
        ctl_error("%s is one of qmproxy's commands; %s is QEMU's own "
                  "monitor", command, ctl_opt.socket);
        json_object_put(args);
        ctl_client_free(c);
        return CTL_EXIT_QMP_ERROR;
    }
    if (!ctl_send(c, command, args)) {
        ctl_client_free(c);
        return CTL_EXIT_CONNECTION;
    }
    rc = wait ? ctl_wait_operation(c, w) : ctl_start_operation(c, w);
    ctl_client_free(c);
    return rc;
}

bool ctl_add_speed(json_object *obj, const char *arg)
{
    int64_t speed;

    if (!ctl_parse_size(arg, &speed)) {
        ctl_error("--speed %s: bytes per second (64M, 1G...)", arg);
        return false;
    }
    json_object_object_add(obj, "speed", json_object_new_int64(speed));
    return true;
}

bool ctl_parse_size(const char *s, int64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    double mult = 1;

    if (end == s || v < 0) {
        return false;
    }
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i') {
        end++;
    }
    if (*end == 'B' || *end == 'b') {
        end++;
    }
    if (*end) {
        return false;
    }
    *out = (int64_t)(v * mult);
    return true;
}
