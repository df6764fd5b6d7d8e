/*
 * qmproxyctl [-s SOCKET] [--json] [--timeout S] COMMAND [ARGS]
 *
 * The command table and what every command shares: the socket, --json,
 * --timeout (accepted anywhere on the line, before or after the
 * command), exit codes, usage.
 */
#include "ctl.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "version.h"

struct ctl_options ctl_opt;
volatile sig_atomic_t ctl_interrupted;

const struct ctl_entry *const ctl_table[] = {
    &ctl_exec_entry,
    &ctl_chain_entry,
    &ctl_snapshot_mirror_entry,
    &ctl_snapshot_mirror_xml_entry,
    &ctl_block_copy_entry,
    &ctl_migrate_entry,
    &ctl_reopen_entry,
    &ctl_snapshot_reopen_entry,
    &ctl_abort_entry,
    &ctl_ops_entry,
    &ctl_policy_entry,
    &ctl_watch_entry,
    &ctl_top_entry,
    &ctl_shell_entry,
    NULL,
};

const struct ctl_entry *ctl_find(const char *name)
{
    for (int i = 0; ctl_table[i]; i++) {
        if (!strcmp(ctl_table[i]->name, name)) {
            return ctl_table[i];
        }
    }
    return NULL;
}

int ctl_usage(const struct ctl_entry *e)
{
    fprintf(stderr, "usage: qmproxyctl [-s SOCKET] [--json] [--timeout S] "
            "%s %s\n", e->name, e->usage);
    return CTL_EXIT_USAGE;
}

static void help(FILE *f)
{
    fprintf(f, "usage: qmproxyctl [-s SOCKET] [--json] [--timeout S] "
            "COMMAND [ARGS]\n\n"
            "  -s SOCKET     the monitor: unix:PATH, PATH or tcp:HOST:PORT\n"
            "                (default: $QMPROXY_SOCKET)\n"
            "  --json        machine-readable output (one JSON value)\n"
            "  --timeout S   give up after S seconds (exit 4)\n\n"
            "commands:\n");
    for (int i = 0; ctl_table[i]; i++) {
        fprintf(f, "  %-20s %s\n", ctl_table[i]->name, ctl_table[i]->summary);
    }
    fprintf(f, "\nexit status: 0 ok, 1 QMP error, 2 usage, 3 connection, "
            "4 timeout,\n5 operation failed, 6 interrupted (operation left "
            "running), 7 interrupted and aborted\n");
}

static void on_signal(int sig)
{
    (void)sig;
    ctl_interrupted = 1;
}

/* Take the common options out of argv wherever they are, up to "--". */
static int common_options(int *argc, char **argv)
{
    int out = 1;

    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (i < *argc) {
                argv[out++] = argv[i++];
            }
            break;
        }
        if (!strcmp(a, "--json")) {
            ctl_opt.json = true;
        } else if (!strcmp(a, "--timeout") || !strncmp(a, "--timeout=", 10)) {
            const char *v = a[9] == '=' ? a + 10 : (i + 1 < *argc ? argv[++i] : NULL);
            char *end;
            if (!v || (ctl_opt.timeout = strtod(v, &end), *end) ||
                ctl_opt.timeout <= 0) {
                fprintf(stderr, "qmproxyctl: --timeout wants a number of "
                        "seconds > 0\n");
                return CTL_EXIT_USAGE;
            }
        } else if ((!strcmp(a, "-s") || !strcmp(a, "--socket")) && out == 1) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "qmproxyctl: -s wants a socket\n");
                return CTL_EXIT_USAGE;
            }
            ctl_opt.socket = argv[++i];
        } else if (!strncmp(a, "--socket=", 9) && out == 1) {
            ctl_opt.socket = a + 9;
        } else {
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    argv[out] = NULL;
    return CTL_EXIT_OK;
}

int main(int argc, char **argv)
{
    const struct ctl_entry *e;
    struct sigaction sa;
    int rc;

    ctl_opt.socket = getenv("QMPROXY_SOCKET");
    rc = common_options(&argc, argv);
    if (rc != CTL_EXIT_OK) {
        return rc;
    }
    ctl_opt.color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    if (argc < 2 && ctl_opt.socket && isatty(STDIN_FILENO) &&
        isatty(STDOUT_FILENO)) {
        /* no command on a terminal: the shell */
        static char shell[] = "shell";
        static char *shell_argv[] = { NULL, shell, NULL };
        shell_argv[0] = argv[0];
        argv = shell_argv;
        argc = 2;
    }
    if (argc < 2) {
        help(stderr);
        return CTL_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        help(stdout);
        return CTL_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("qmproxyctl %s\n", QMPROXY_VERSION);
        return CTL_EXIT_OK;
    }
    e = ctl_find(argv[1]);
    if (!e) {
        fprintf(stderr, "qmproxyctl: unknown command '%s' "
                "(qmproxyctl --help lists them)\n", argv[1]);
        return CTL_EXIT_USAGE;
    }
    if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
        printf("usage: qmproxyctl %s %s\n  %s\n", e->name, e->usage,
               e->summary);
        return CTL_EXIT_OK;
    }
    if (!ctl_opt.socket && !e->no_monitor) {
        fprintf(stderr, "qmproxyctl: which monitor? give -s SOCKET or set "
                "QMPROXY_SOCKET\n");
        return CTL_EXIT_USAGE;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;   /* no SA_RESTART: poll() returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return e->exec(argc - 1, argv + 1);
}
