/*
 * shell: an interactive QMP shell (also qmproxyctl with no command on a
 * terminal).  libedit gives line editing, a history file
 * ($QMPROXYCTL_HISTORY, else ~/.qmproxyctl_history), and completion: the
 * first word from query-commands (the proxy's commands too, asked for
 * with qmproxy-capabilities), then argument names (KEY=) from
 * query-qmp-schema, or from the proxy's own command table for its
 * commands.  A line is exec's syntax: a JSON request, or NAME KEY=VALUE
 * ... (a value may hold spaces inside quotes or brackets).  Answers are
 * pretty-printed; events are shown as they arrive, above the prompt.
 * Ctrl-D or "exit" leaves.  With standard input not a terminal, lines
 * are read plainly and run one after another (a script).
 */
#include "ctl.h"

#include <editline/readline.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "jsonobj.h"
#include "qjson.h"
#include "util.h"

struct shell {
    struct ctl_client *c;
    json_object *commands;   /* array of names */
    json_object *schema;     /* command name -> array of argument names */
    bool tty;
    bool done;
    int rc;                  /* of the last command */
};

static struct shell sh;

/* ---- what the monitor offers, for completion ------------------------ */

static void load_commands(void)
{
    json_object *ret, *types = json_object_new_object();

    sh.commands = json_object_new_array();
    sh.schema = json_object_new_object();
    if (ctl_call(sh.c, "query-commands", NULL, &ret) == CTL_EXIT_OK) {
        for (size_t i = 0; i < json_object_array_length(ret); i++) {
            const char *n = jobj_str(json_object_array_get_idx(ret, i), "name");
            if (n) {
                json_object_array_add(sh.commands, json_object_new_string(n));
            }
        }
        json_object_put(ret);
    }
    if (ctl_call(sh.c, "query-qmp-schema", NULL, &ret) == CTL_EXIT_OK) {
        /* object types by name, then each command's argument type */
        for (size_t i = 0; i < json_object_array_length(ret); i++) {
            json_object *e = json_object_array_get_idx(ret, i);
            if (!strcmp(ctl_str(e, "meta-type"), "object")) {
                json_object_object_add(types, ctl_str(e, "name"),
                    json_object_get(jobj_typed(e, "members", json_type_array)));
            }
        }
        for (size_t i = 0; i < json_object_array_length(ret); i++) {
            json_object *e = json_object_array_get_idx(ret, i), *members;
            json_object *names = json_object_new_array();
            if (strcmp(ctl_str(e, "meta-type"), "command")) {
                json_object_put(names);
                continue;
            }
            if (json_object_object_get_ex(types, ctl_str(e, "arg-type"), &members)
                && members) {
                for (size_t k = 0; k < json_object_array_length(members); k++) {
                    const char *m = jobj_str(json_object_array_get_idx(members, k),
                                             "name");
                    if (m) {
                        json_object_array_add(names, json_object_new_string(m));
                    }
                }
            }
            json_object_object_add(sh.schema, ctl_str(e, "name"), names);
        }
        json_object_put(ret);
    }
    json_object_put(types);
    /* the proxy's commands are not in QEMU's schema: their own table */
    for (int i = 0; cmd_table[i]; i++) {
        json_object *names = json_object_new_array();
        for (const struct qapi_member *m = cmd_table[i]->args; m && m->name; m++) {
            json_object_array_add(names, json_object_new_string(m->name));
        }
        json_object_object_add(sh.schema, cmd_table[i]->name, names);
    }
}

/* ---- completion ----------------------------------------------------- */

static json_object *candidates;   /* of the completion under way */
static char *candidate_suffix;    /* appended to each: "=" for arguments */

static char *generate(const char *text, int state)
{
    static size_t i;
    size_t n = candidates ? json_object_array_length(candidates) : 0;

    if (state == 0) {
        i = 0;
    }
    while (i < n) {
        const char *s = json_object_get_string(
            json_object_array_get_idx(candidates, i++));
        if (!strncmp(s, text, strlen(text))) {
            return xasprintf("%s%s", s, candidate_suffix);
        }
    }
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    const char *line = rl_line_buffer;
    size_t skip = strspn(line, " \t"), len;
    json_object *args;
    char *name;

    (void)end;
    rl_attempted_completion_over = 1;   /* never file names */
    if ((size_t)start <= skip) {
        candidates = sh.commands;
        free(candidate_suffix);
        candidate_suffix = xstrdup("");
        rl_completion_append_character = ' ';
        return rl_completion_matches(text, generate);
    }
    len = strcspn(line + skip, " \t");
    name = xstrndup(line + skip, len);
    if (!json_object_object_get_ex(sh.schema, name, &args) || strchr(text, '=')) {
        free(name);
        return NULL;
    }
    free(name);
    candidates = args;
    free(candidate_suffix);
    candidate_suffix = xstrdup("=");
    rl_completion_append_character = '\0';
    return rl_completion_matches(text, generate);
}

/* ---- lines ---------------------------------------------------------- */

/* Words separated by blanks; quotes and brackets keep blanks inside. */
static int split_words(const char *line, char ***out)
{
    char **words = NULL;
    int n = 0;
    const char *p = line;

    for (;;) {
        struct strbuf w = STRBUF_INIT;
        int depth = 0;
        char quote = 0;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (!*p) {
            break;
        }
        for (; *p && (quote || depth || (*p != ' ' && *p != '\t')); p++) {
            if (quote) {
                if (*p == '\\' && p[1]) {
                    strbuf_addc(&w, *p++);
                } else if (*p == quote) {
                    quote = 0;
                    if (depth == 0) {
                        continue;   /* a bare word's quotes go */
                    }
                }
                strbuf_addc(&w, *p);
                continue;
            }
            if (*p == '"' || *p == '\'') {
                quote = *p;
                if (depth == 0) {
                    continue;
                }
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if ((*p == '}' || *p == ']') && depth > 0) {
                depth--;
            }
            strbuf_addc(&w, *p);
        }
        words = xrealloc(words, sizeof(*words) * (size_t)(n + 2));
        words[n++] = w.buf ? strbuf_detach(&w, NULL) : xstrdup("");
    }
    if (words) {
        words[n] = NULL;
    }
    *out = words;
    return n;
}

static void show_event(void *opaque, json_object *ev)
{
    json_object *data = jobj_typed(ev, "data", json_type_object);
    json_object *ts = jobj_typed(ev, "timestamp", json_type_object);
    struct strbuf sb = STRBUF_INIT;
    char *d = data ? qjson_to_string(data) : NULL;

    (void)opaque;
    if (ctl_opt.json) {
        char *s = qjson_to_string(ev);
        strbuf_adds(&sb, s);
        free(s);
    } else {
        strbuf_addf(&sb, "%sevent%s %s[%lld.%06lld]%s %s%s%s", ctl_color("\033[33m"),
                    ctl_color("\033[0m"), ctl_color("\033[2m"),
                    (long long)jobj_int(ts, "seconds", 0),
                    (long long)jobj_int(ts, "microseconds", 0),
                    ctl_color("\033[0m"), ctl_str(ev, "event"), d ? " " : "",
                    d ? d : "");
    }
    free(d);
    if (sh.tty) {
        /* above the prompt, which is then drawn again */
        printf("\r\033[K%s\n", sb.buf);
        fflush(stdout);
    } else {
        printf("%s\n", sb.buf);
    }
    strbuf_release(&sb);
}

static void show_reply(json_object *reply)
{
    json_object *ret, *err;

    if (json_object_object_get_ex(reply, "return", &ret)) {
        sh.rc = CTL_EXIT_OK;
        if (json_object_is_type(ret, json_type_string) && !ctl_opt.json) {
            fputs(json_object_get_string(ret), stdout);
            size_t n = json_object_get_string_len(ret);
            if (n && json_object_get_string(ret)[n - 1] != '\n') {
                putchar('\n');
            }
        } else {
            ctl_print_json(ret, !ctl_opt.json);
        }
    } else if ((err = jobj_typed(reply, "error", json_type_object))) {
        sh.rc = CTL_EXIT_QMP_ERROR;
        if (ctl_opt.json) {
            ctl_print_json(reply, false);
        } else {
            printf("%serror%s %s: %s\n", ctl_color("\033[1;31m"),
                   ctl_color("\033[0m"), ctl_str(err, "class"),
                   ctl_str(err, "desc"));
        }
    } else {
        ctl_print_json(reply, !ctl_opt.json);
    }
    fflush(stdout);
}

static void run_line(const char *line)
{
    const char *p = line + strspn(line, " \t");
    json_object *reply = NULL;
    bool sent;
    int rc;

    if (!*p || *p == '#') {
        return;
    }
    if (!strcmp(p, "exit")) {
        sh.done = true;
        return;
    }
    if (*p == '{') {
        char *err;
        json_object *req = ctl_parse_json(p, &err);
        if (err || !json_object_is_type(req, json_type_object)) {
            printf("not a QMP request: %s\n", err ? err : "not an object");
            free(err);
            json_object_put(req);
            sh.rc = CTL_EXIT_USAGE;
            return;
        }
        json_object_put(req);
        sent = ctl_send_raw(sh.c, p, strlen(p));
    } else {
        char **words;
        int n = split_words(p, &words);
        json_object *args = ctl_simple_args(n - 1, words + 1);
        if (!args) {
            sh.rc = CTL_EXIT_USAGE;
            for (int i = 0; i < n; i++) {
                free(words[i]);
            }
            free(words);
            return;
        }
        if (json_object_object_length(args) == 0) {
            json_object_put(args);
            args = NULL;
        }
        sent = ctl_send(sh.c, words[0], args);
        for (int i = 0; i < n; i++) {
            free(words[i]);
        }
        free(words);
    }
    if (!sent) {
        sh.rc = CTL_EXIT_CONNECTION;
        sh.done = true;
        return;
    }
    rc = ctl_wait_reply(sh.c, ctl_deadline(ctl_opt.timeout), show_event, NULL,
                        &reply);
    if (rc == CTL_EXIT_OK) {
        show_reply(reply);
        json_object_put(reply);
        return;
    }
    sh.rc = rc;
    if (rc == CTL_EXIT_INTERRUPTED || rc == CTL_EXIT_TIMEOUT) {
        /* QMP has no cancel: the answer will come; this connection is
         * out of step, so leave rather than show it against a later one */
        ctl_error("%s waiting for the answer; leaving the shell",
                  rc == CTL_EXIT_TIMEOUT ? "timed out" : "interrupted");
    } else {
        ctl_error("the monitor closed the connection");
    }
    sh.done = true;
}

/* ---- the loops ------------------------------------------------------ */

static char *history_path(void)
{
    const char *h = getenv("QMPROXYCTL_HISTORY");

    if (h) {
        return xstrdup(h);
    }
    h = getenv("HOME");
    return h ? xasprintf("%s/.qmproxyctl_history", h) : NULL;
}

/* Whatever the monitor sent unasked (events) is shown at once. */
static bool drain_events(void)
{
    json_object *m;
    bool any = false;
    int rc;

    while ((rc = ctl_read(sh.c, now_monotonic_us() + 1, &m)) == CTL_EXIT_OK) {
        if (json_object_object_get_ex(m, "event", NULL)) {
            show_event(NULL, m);
        } else {
            show_reply(m);   /* cannot happen: nothing is outstanding */
        }
        json_object_put(m);
        any = true;
    }
    if (rc == CTL_EXIT_CONNECTION) {
        sh.done = true;
    }
    return any;
}

/*
 * libedit reads each key through here: while it waits for one, the
 * monitor's events are printed above the prompt, which is then redrawn
 * with the line as typed so far.
 */
static int getc_or_event(FILE *f)
{
    for (;;) {
        struct pollfd p[2] = {
            { .fd = fileno(f), .events = POLLIN },
            { .fd = ctl_client_fd(sh.c), .events = POLLIN },
        };
        unsigned char ch;
        ssize_t n;

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR && ctl_interrupted) {
                /* Ctrl-C at the prompt: drop the line */
                ctl_interrupted = 0;
                printf("^C\n");
                rl_forced_update_display();
                return 'U' & 0x1f;   /* Ctrl-U: libedit kills the line */
            }
            continue;
        }
        if (p[1].revents) {
            if (drain_events()) {
                rl_forced_update_display();
            }
            if (sh.done) {
                printf("\n");
                ctl_error("the monitor closed the connection");
                sh.rc = CTL_EXIT_CONNECTION;
                return EOF;
            }
        }
        if (p[0].revents) {
            n = read(fileno(f), &ch, 1);
            if (n == 1) {
                return ch;
            }
            if (n == 0 || errno != EINTR) {
                return EOF;
            }
        }
    }
}

static void interactive(void)
{
    char *hist = history_path();
    json_object *g = jobj_typed(ctl_client_greeting(sh.c), "QMP",
                                json_type_object);
    json_object *v = jobj_typed(jobj_typed(g, "version", json_type_object),
                                "qemu", json_type_object);

    printf("Connected to %s: QEMU %lld.%lld.%lld%s\n"
           "Commands complete with Tab; Ctrl-D leaves.\n", ctl_opt.socket,
           (long long)jobj_int(v, "major", 0), (long long)jobj_int(v, "minor", 0),
           (long long)jobj_int(v, "micro", 0),
           ctl_client_is_proxy(sh.c) ? " through qmproxy" : "");
    rl_readline_name = "qmproxyctl";
    rl_attempted_completion_function = complete;
    rl_getc_function = getc_or_event;
    stifle_history(1000);
    if (hist) {
        read_history(hist);
    }
    while (!sh.done) {
        char *line = readline("(QEMU) ");
        if (!line) {
            putchar('\n');
            break;
        }
        if (*line) {
            add_history(line);
        }
        run_line(line);
        free(line);
    }
    if (hist) {
        write_history(hist);
        free(hist);
    }
}

static void script(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    while (!sh.done && (n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') {
            line[n - 1] = '\0';
        }
        drain_events();
        run_line(line);
    }
    free(line);
}

static int exec(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        return ctl_usage(&ctl_shell_entry);
    }
    memset(&sh, 0, sizeof(sh));
    if (!(sh.c = ctl_connect(true, &sh.rc))) {
        return sh.rc;
    }
    sh.tty = isatty(STDIN_FILENO);
    if (ctl_client_is_proxy(sh.c)) {
        json_object *args = json_object_new_object(), *ret;
        json_object *en = json_object_new_array();
        json_object_array_add(en, json_object_new_string("events"));
        json_object_array_add(en, json_object_new_string("commands"));
        json_object_object_add(args, "enable", en);
        if (ctl_call(sh.c, "qmproxy-capabilities", args, &ret) == CTL_EXIT_OK) {
            json_object_put(ret);
        }
    }
    if (sh.tty) {
        load_commands();
        interactive();
    } else {
        script();
    }
    json_object_put(sh.commands);
    json_object_put(sh.schema);
    free(candidate_suffix);
    ctl_client_free(sh.c);
    return sh.rc;
}

const struct ctl_entry ctl_shell_entry = {
    .name = "shell",
    .usage = "",
    .summary = "an interactive QMP shell: completion, history, events as "
               "they come",
    .exec = exec,
};
