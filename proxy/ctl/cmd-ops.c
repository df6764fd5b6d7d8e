/*
 * ops [NAME] [--follow]: the proxy's operations, a table; --follow then
 * prints every change as it happens (QMPROXY_OPERATION), until Ctrl-C,
 * --timeout, or NAME's operation ending (exit 0 pivoted or ready... 5
 * failed or aborted).
 */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jsonobj.h"
#include "util.h"

static bool is_final(const char *state)
{
    return state && (!strcmp(state, "pivoted") || !strcmp(state, "aborted") ||
                     !strcmp(state, "failed"));
}

static void disk_summary(struct strbuf *sb, json_object *d)
{
    int64_t off = jobj_int(d, "offset", 0), len = jobj_int(d, "len", 0);

    strbuf_addf(sb, "%s %s", ctl_str(d, "disk"), ctl_str(d, "state"));
    if (jobj_typed(d, "len", json_type_int) && len > 0) {
        strbuf_addf(sb, " %.0f%%", 100.0 * (double)off / (double)len);
    }
    if (jobj_int(d, "lag-bytes", 0) > 0) {
        /* a ready copy trailing its disk (a replica on another host) */
        json_object *secs = jobj_typed(d, "lag-seconds", json_type_double);
        strbuf_addf(sb, " lag %.1f MiB",
                    (double)jobj_int(d, "lag-bytes", 0) / (1 << 20));
        if (secs) {
            strbuf_addf(sb, " for %.1f s", json_object_get_double(secs));
        }
    }
    if (*ctl_str(d, "error")) {
        strbuf_addf(sb, " (%s)", ctl_str(d, "error"));
    }
}

static const char *state_color(const char *state)
{
    if (!state) {
        return "";
    }
    if (!strcmp(state, "failed") || !strcmp(state, "aborted")) {
        return ctl_color("\033[31m");
    }
    if (!strcmp(state, "ready") || !strcmp(state, "pivoted")) {
        return ctl_color("\033[32m");
    }
    return ctl_color("\033[33m");
}

static void print_table(json_object *ops)
{
    size_t n = json_object_array_length(ops);

    if (n == 0) {
        printf("no operations\n");
        return;
    }
    printf("%-20s %-16s %-10s %-28s %s\n", "NAME", "TYPE", "STATE",
           "STARTED", "DISKS");
    for (size_t i = 0; i < n; i++) {
        json_object *op = json_object_array_get_idx(ops, i);
        json_object *disks = jobj_typed(op, "disks", json_type_array);
        struct strbuf sb = STRBUF_INIT;
        const char *state = ctl_str(op, "state");
        for (size_t k = 0; disks && k < json_object_array_length(disks); k++) {
            if (k) {
                strbuf_adds(&sb, ", ");
            }
            disk_summary(&sb, json_object_array_get_idx(disks, k));
        }
        printf("%-20s %-16s %s%-10s%s %-28s %s\n", ctl_str(op, "name"),
               ctl_str(op, "type"), state_color(state), state,
               ctl_color("\033[0m"), *ctl_str(op, "started-at") ?
               ctl_str(op, "started-at") : "", sb.buf ? sb.buf : "");
        if (*ctl_str(op, "error")) {
            printf("%20s error: %s\n", "", ctl_str(op, "error"));
        }
        strbuf_release(&sb);
    }
}

static void print_change(json_object *op)
{
    json_object *disks = jobj_typed(op, "disks", json_type_array);
    struct strbuf sb = STRBUF_INIT;
    char when[40];
    const char *state = ctl_str(op, "state");

    if (ctl_opt.json) {
        ctl_print_json(op, false);
        return;
    }
    format_rfc3339_us(when, sizeof(when));
    for (size_t k = 0; disks && k < json_object_array_length(disks); k++) {
        strbuf_adds(&sb, k ? ", " : "");
        disk_summary(&sb, json_object_array_get_idx(disks, k));
    }
    printf("%s %s (%s): %s%s%s  %s\n", when, ctl_str(op, "name"),
           ctl_str(op, "type"), state_color(state), state,
           ctl_color("\033[0m"), sb.buf ? sb.buf : "");
    if (*ctl_str(op, "error")) {
        printf("    error: %s\n", ctl_str(op, "error"));
    }
    fflush(stdout);
    strbuf_release(&sb);
}

static int follow(struct ctl_client *c, const char *name, json_object *ops)
{
    uint64_t deadline = ctl_deadline(ctl_opt.timeout);

    if (name && json_object_array_length(ops) == 1) {
        const char *s = jobj_str(json_object_array_get_idx(ops, 0), "state");
        if (is_final(s)) {
            return strcmp(s, "pivoted") ? CTL_EXIT_OP_FAILED : CTL_EXIT_OK;
        }
    }
    for (;;) {
        json_object *m, *data;
        const char *ev, *state;
        int rc = ctl_read(c, deadline, &m);
        if (rc == CTL_EXIT_INTERRUPTED) {
            return CTL_EXIT_OK;
        }
        if (rc != CTL_EXIT_OK) {
            if (rc == CTL_EXIT_CONNECTION) {
                ctl_error("the monitor closed the connection");
            }
            return rc;
        }
        ev = ctl_str(m, "event");
        data = jobj_typed(m, "data", json_type_object);
        if (!ev || strcmp(ev, "QMPROXY_OPERATION") || !data ||
            (name && (!*ctl_str(data, "name") ||
                      strcmp(ctl_str(data, "name"), name)))) {
            json_object_put(m);
            continue;
        }
        print_change(data);
        state = ctl_str(data, "state");
        if (name && is_final(state)) {
            rc = strcmp(state, "pivoted") ? CTL_EXIT_OP_FAILED : CTL_EXIT_OK;
            json_object_put(m);
            return rc;
        }
        json_object_put(m);
    }
}

static int exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "follow", no_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    bool follow_on = false;
    const char *name;
    struct ctl_client *c;
    json_object *args = NULL, *ops;
    int opt, rc;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "f", longopts, NULL)) != -1) {
        if (opt != 'f') {
            return ctl_usage(&ctl_ops_entry);
        }
        follow_on = true;
    }
    if (argc - optind > 1) {
        return ctl_usage(&ctl_ops_entry);
    }
    name = optind < argc ? argv[optind] : NULL;
    if (!(c = ctl_connect(follow_on, &rc))) {
        return rc;
    }
    if (name) {
        args = json_object_new_object();
        jobj_add_str(args, "name", name);
    }
    rc = ctl_call(c, "qmproxy-query-operations", args, &ops);
    if (rc == CTL_EXIT_OK) {
        if (name && json_object_array_length(ops) == 0) {
            ctl_error("no operation named '%s'", name);
            rc = CTL_EXIT_QMP_ERROR;
        } else if (follow_on) {
            for (size_t i = 0; i < json_object_array_length(ops); i++) {
                print_change(json_object_array_get_idx(ops, i));
            }
            rc = follow(c, name, ops);
        } else if (ctl_opt.json) {
            ctl_print_json(ops, false);
        } else {
            print_table(ops);
        }
        json_object_put(ops);
    }
    ctl_client_free(c);
    return rc;
}

const struct ctl_entry ctl_ops_entry = {
    .name = "ops",
    .usage = "[NAME] [--follow]",
    .summary = "the proxy's operations; --follow prints each change",
    .exec = exec,
};
