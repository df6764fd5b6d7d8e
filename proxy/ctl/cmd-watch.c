/*
 * watch [--tap SOCKET] [--client N] [--command GLOB] [--event GLOB]
 *       [--errors] [--count N]
 * Follows qmproxy's --tap socket: one line per message, coloured on a
 * terminal: time, client, direction, the command (a reply names the
 * command it answers, with its latency) or the event.  --command,
 * --event and --errors each select a kind of line (together: any of
 * them), --client narrows to one client.  --json prints the tap's own
 * lines, filtered.
 */
#include "ctl.h"

#include <fnmatch.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "qjson.h"
#include "util.h"

struct filter {
    long client;          /* -1: every client */
    const char *command;  /* glob */
    const char *event;    /* glob */
    bool errors;
};

static bool wanted(const struct filter *f, const struct ctl_tap_msg *m)
{
    bool command = !strcmp(m->kind, "command") || !strcmp(m->kind, "reply");
    bool event = !strcmp(m->kind, "event");

    if (f->client >= 0 && m->client != f->client) {
        return false;
    }
    if (!f->command && !f->event && !f->errors) {
        return true;
    }
    if (f->command && command && m->command &&
        fnmatch(f->command, m->command, 0) == 0) {
        return true;
    }
    if (f->event && event && m->event && fnmatch(f->event, m->event, 0) == 0) {
        return true;
    }
    return f->errors && m->error_class;
}

static void print_latency(struct strbuf *sb, int64_t us)
{
    if (us < 0) {
        return;
    }
    if (us < 1000) {
        strbuf_addf(sb, "  %s%lld µs%s", ctl_color("\033[2m"), (long long)us,
                    ctl_color("\033[0m"));
    } else {
        strbuf_addf(sb, "  %s%.1f ms%s", ctl_color("\033[2m"), (double)us / 1000,
                    ctl_color("\033[0m"));
    }
}

/* The value abbreviated to fit a line. */
static void add_abbrev(struct strbuf *sb, json_object *v, size_t max)
{
    char *s = qjson_to_string(v);

    if (strlen(s) > max) {
        strbuf_add(sb, s, max - 3);
        strbuf_adds(sb, "...");
    } else {
        strbuf_adds(sb, s);
    }
    free(s);
}

void ctl_format_tap_line(struct strbuf *sb, const struct ctl_tap_msg *m);
void ctl_format_tap_line(struct strbuf *sb, const struct ctl_tap_msg *m)
{
    const char *t = m->time && strlen(m->time) >= 23 ? m->time + 11 : "";
    json_object *v;

    strbuf_addf(sb, "%s%.12s%s  ", ctl_color("\033[2m"), t, ctl_color("\033[0m"));
    if (m->client >= 0) {
        strbuf_addf(sb, "c%-3ld ", m->client);
    } else {
        strbuf_adds(sb, " *   ");
    }
    strbuf_adds(sb, m->in ? "→ " : "← ");
    if (!strcmp(m->kind, "command")) {
        strbuf_addf(sb, "%s%s%s", ctl_color("\033[1;36m"), m->command,
                    ctl_color("\033[0m"));
        if ((v = jobj_typed(m->msg, "arguments", json_type_object))) {
            strbuf_addc(sb, ' ');
            add_abbrev(sb, v, 80);
        }
    } else if (!strcmp(m->kind, "reply")) {
        strbuf_addf(sb, "%s", m->command ? m->command : "?");
        if (m->error_class) {
            strbuf_addf(sb, "  %serror %s: %s%s", ctl_color("\033[1;31m"),
                        m->error_class, m->error_desc, ctl_color("\033[0m"));
        } else {
            strbuf_addf(sb, "  %sok%s", ctl_color("\033[32m"), ctl_color("\033[0m"));
        }
        if (!strcmp(m->from, "qmproxy")) {
            strbuf_adds(sb, " (qmproxy)");
        }
        print_latency(sb, m->latency_us);
    } else if (!strcmp(m->kind, "event")) {
        strbuf_addf(sb, "%sevent %s%s", ctl_color("\033[33m"),
                    m->event ? m->event : "?", ctl_color("\033[0m"));
        if ((v = jobj_typed(m->msg, "data", json_type_object))) {
            strbuf_addc(sb, ' ');
            add_abbrev(sb, v, 80);
        }
    } else if (!strcmp(m->kind, "greeting")) {
        strbuf_adds(sb, "greeting");
    } else {
        strbuf_addf(sb, "%s ", m->kind);
        add_abbrev(sb, m->line, 100);
    }
}

static int exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "tap", required_argument, NULL, 't' },
        { "client", required_argument, NULL, 'c' },
        { "command", required_argument, NULL, 'C' },
        { "event", required_argument, NULL, 'e' },
        { "errors", no_argument, NULL, 'E' },
        { "count", required_argument, NULL, 'n' },
        { NULL, 0, NULL, 0 },
    };
    struct filter f = { .client = -1 };
    const char *tap = ctl_tap_socket();
    long count = -1;
    struct ctl_tap *t;
    int opt, rc;
    char *end;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "n:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            f.client = strtol(optarg[0] == 'c' ? optarg + 1 : optarg, &end, 10);
            if (*end || f.client < 0) {
                return ctl_usage(&ctl_watch_entry);
            }
            break;
        case 'C': f.command = optarg; break;
        case 'e': f.event = optarg; break;
        case 'E': f.errors = true; break;
        default:
            if (!ctl_tap_option(opt, &tap, &count)) {
                return ctl_usage(&ctl_watch_entry);
            }
        }
    }
    if (!(t = ctl_tap_open(&ctl_watch_entry, argc, tap, &rc))) {
        return rc;
    }
    for (;;) {
        struct ctl_tap_msg m;
        rc = ctl_tap_next(t, ctl_deadline(ctl_opt.timeout), &m);
        if (rc == CTL_EXIT_INTERRUPTED) {
            rc = CTL_EXIT_OK;
            break;
        }
        if (rc != CTL_EXIT_OK) {
            if (rc == CTL_EXIT_CONNECTION) {
                ctl_error("the tap closed (qmproxy ended, or cut off a slow "
                          "observer)");
            }
            break;
        }
        if (wanted(&f, &m)) {
            if (ctl_opt.json) {
                ctl_print_json(m.line, false);
            } else {
                struct strbuf sb = STRBUF_INIT;
                ctl_format_tap_line(&sb, &m);
                puts(sb.buf);
                fflush(stdout);
                strbuf_release(&sb);
            }
            if (count > 0 && --count == 0) {
                ctl_tap_msg_clear(&m);
                break;
            }
        }
        ctl_tap_msg_clear(&m);
    }
    ctl_tap_close(t);
    return rc;
}

const struct ctl_entry ctl_watch_entry = {
    .name = "watch",
    .usage = "[--tap SOCKET] [--client N] [--command GLOB] [--event GLOB] "
             "[--errors] [--count N]",
    .summary = "follow the traffic (qmproxy --tap), a line per message",
    .no_monitor = true,
    .exec = exec,
};
