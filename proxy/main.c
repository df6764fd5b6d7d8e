/*
 * qmproxy: the command line, the event loop, and the signals.  Everything
 * else lives in the modules; this file only wires them together.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"
#include "metrics-http.h"
#include "metrics.h"
#include "policy.h"
#include "router.h"
#include "sdlisten.h"
#include "service.h"
#include "session.h"
#include "tap.h"
#include "trafficlog.h"
#include "upstream.h"
#include "util.h"
#include "version.h"

struct options {
    char *upstream;
    char **listen;
    size_t nlisten;
    char **clients;
    size_t nclients;
    char **extras;       /* listener names whose clients see the extras */
    size_t nextras;
    char **pretty;       /* ... and those whose clients get pretty QMP */
    size_t npretty;
    char **taps;
    size_t ntaps;
    int socket_mode;
    char *traffic_log;
    bool reconnect;
    int connect_timeout_s;
    size_t max_message;
    char *state;
    char *policy;
    char *metrics;      /* --metrics ADDR, or NULL */
    int verbosity;
    bool log_priorities;
    int exec_fd;        /* --exec-upstream N, or -1 */
    char **exec_argv;   /* what follows it: the program serving --upstream */
};

struct qmproxy {
    struct event_base *base;
    struct trafficlog *tlog;
    struct router *router;
    struct upstream *up;
    struct listener **listeners;
    size_t nlisteners;
    struct tap **taps;
    size_t ntaps;
    struct metrics *metrics;
    struct metrics_http *metrics_http;
    struct service *service;   /* NULL unless run by a service manager */
    struct event *sigterm, *sigint, *sighup;
    int exit_status;
    const char *policy_path;
};

static void usage(FILE *out)
{
    fprintf(out,
"Usage: qmproxy --upstream unix:PATH|PATH|tcp:HOST:PORT\n"
"               --listen [NAME=]unix:PATH|tcp:HOST:PORT|fd:N|systemd  (repeatable)\n"
"               --client [NAME=]fd:N|stdio|unix:PATH|tcp:HOST:PORT\n"
"               [--extras NAME] [--pretty NAME]\n"
"               [--socket-mode 0600] [--traffic-log FILE|-]\n"
"               [--tap unix:PATH] [--reconnect] [--connect-timeout SECONDS]\n"
"               [--max-message BYTES] [--state FILE] [--policy FILE]\n"
"               [--metrics tcp:HOST:PORT|unix:PATH]\n"
"               [-v] [--log-priorities] [--version] [--help]\n"
"               [--exec-upstream N -- PROGRAM [ARGS...]]\n"
"       qmproxy --check-policy FILE\n"
"\n"
"A QMP proxy: management clients connect to the --listen sockets and talk\n"
"to the QEMU monitor at --upstream as if they were connected to it directly.\n"
"\n"
"  --upstream ADDR      QEMU's QMP socket (waited for up to --connect-timeout)\n"
"  --listen ADDR        where clients connect; fd:N adopts an inherited\n"
"                       listening socket (as libvirt passes one); systemd\n"
"                       the sockets of socket activation (LISTEN_FDS), named\n"
"                       for the policy by LISTEN_FDNAMES\n"
"  --client ADDR        a client given rather than accepted: fd:N an\n"
"                       already connected socket, stdio the standard input\n"
"                       and output, unix:/tcp: a client listening for the\n"
"                       monitor to connect (QEMU's client-mode chardev);\n"
"                       at least one --listen or --client is required\n"
"  --extras NAME        clients of listener (or client) NAME also get the\n"
"                       proxy's own events and commands in query-commands;\n"
"                       by default a client sees exactly what QEMU sends\n"
"                       (any client can ask: qmproxy-capabilities)\n"
"  --pretty NAME        clients of listener (or client) NAME get QMP as a\n"
"                       pretty-printing monitor writes it (-qmp-pretty)\n"
"  --socket-mode MODE   permissions of the Unix sockets created (octal,\n"
"                       default 0600)\n"
"  --traffic-log FILE   one JSON object per line for every message ('-':\n"
"                       standard output); SIGHUP reopens it\n"
"  --tap ADDR           live copy of the traffic log for observers\n"
"  --reconnect          when QEMU's monitor closes, keep listening and\n"
"                       reconnect when it is back (default: exit 0)\n"
"  --connect-timeout S  how long to wait for QEMU's socket (default 30)\n"
"  --max-message BYTES  largest message accepted from a client (default\n"
"                       and maximum 67108864, QEMU's own limit)\n"
"  --state FILE         keep the backing-chain model (and what only the\n"
"                       proxy knows) in FILE, so a restarted proxy picks up\n"
"                       where it left off\n"
"  --policy FILE        who may do what, where images may go, automatic\n"
"                       mirroring (XML, see policy/qmproxy.rng); SIGHUP\n"
"                       reloads it\n"
"  --check-policy FILE  validate a policy and exit (0: valid)\n"
"  --metrics ADDR       serve Prometheus metrics over HTTP (GET /metrics)\n"
"  --exec-upstream N -- PROGRAM [ARGS...]\n"
"                       create the --upstream unix:PATH socket, listening, as\n"
"                       descriptor N (replacing an fd:N listener there) and\n"
"                       execute PROGRAM (QEMU, told fd=N) in this process; the\n"
"                       proxy runs on in a child, connected at once, and ends\n"
"                       if PROGRAM cannot run or ends before accepting it\n"
"                       (--connect-timeout unused, --reconnect refused)\n"
"  -v                   more diagnostics on stderr (-vv: debug)\n"
"  --log-priorities     start diagnostics with syslog's <N> priority, as\n"
"                       journald reads them (automatic when standard error\n"
"                       is the journal: JOURNAL_STREAM)\n"
"\n"
"Under systemd (NOTIFY_SOCKET): READY=1 once QEMU's greeting is read and\n"
"clients are let in, STATUS= with clients and operations, WATCHDOG=1 every\n"
"half WATCHDOG_USEC, RELOADING=1/READY=1 around SIGHUP, STOPPING=1.\n");
}

static void push(char ***list, size_t *n, const char *s)
{
    *list = xrealloc(*list, sizeof(**list) * (*n + 1));
    (*list)[(*n)++] = xstrdup(s);
}

static bool parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_UPSTREAM = 256, OPT_LISTEN, OPT_MODE, OPT_TLOG, OPT_TAP,
           OPT_RECONNECT, OPT_TIMEOUT, OPT_MAXMSG, OPT_STATE, OPT_POLICY,
           OPT_CHECK_POLICY, OPT_EXEC_UPSTREAM, OPT_VERSION, OPT_HELP,
           OPT_CLIENT, OPT_EXTRAS, OPT_PRETTY, OPT_LOG_PRIORITIES,
           OPT_METRICS };
    static const struct option longopts[] = {
        { "upstream", required_argument, NULL, OPT_UPSTREAM },
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "client", required_argument, NULL, OPT_CLIENT },
        { "extras", required_argument, NULL, OPT_EXTRAS },
        { "pretty", required_argument, NULL, OPT_PRETTY },
        { "socket-mode", required_argument, NULL, OPT_MODE },
        { "traffic-log", required_argument, NULL, OPT_TLOG },
        { "tap", required_argument, NULL, OPT_TAP },
        { "reconnect", no_argument, NULL, OPT_RECONNECT },
        { "connect-timeout", required_argument, NULL, OPT_TIMEOUT },
        { "max-message", required_argument, NULL, OPT_MAXMSG },
        { "state", required_argument, NULL, OPT_STATE },
        { "policy", required_argument, NULL, OPT_POLICY },
        { "metrics", required_argument, NULL, OPT_METRICS },
        { "check-policy", required_argument, NULL, OPT_CHECK_POLICY },
        { "exec-upstream", required_argument, NULL, OPT_EXEC_UPSTREAM },
        { "log-priorities", no_argument, NULL, OPT_LOG_PRIORITIES },
        { "version", no_argument, NULL, OPT_VERSION },
        { "help", no_argument, NULL, OPT_HELP },
        { NULL, 0, NULL, 0 },
    };
    int c;
    char *end;

    o->socket_mode = 0600;
    o->connect_timeout_s = 30;
    o->exec_fd = -1;
    o->max_message = JSONSTREAM_MAX_TOKEN_SIZE;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_UPSTREAM:
            free(o->upstream);
            o->upstream = xstrdup(optarg);
            break;
        case OPT_LISTEN:
            push(&o->listen, &o->nlisten, optarg);
            break;
        case OPT_CLIENT:
            push(&o->clients, &o->nclients, optarg);
            break;
        case OPT_EXTRAS:
            push(&o->extras, &o->nextras, optarg);
            break;
        case OPT_PRETTY:
            push(&o->pretty, &o->npretty, optarg);
            break;
        case OPT_TAP:
            push(&o->taps, &o->ntaps, optarg);
            break;
        case OPT_MODE:
            errno = 0;
            o->socket_mode = (int)strtol(optarg, &end, 8);
            if (errno || *end || o->socket_mode < 0
                || o->socket_mode > 07777) {
                log_startup("--socket-mode wants an octal mode "
                        "such as 0600, not '%s'\n", optarg);
                return false;
            }
            break;
        case OPT_TLOG:
            free(o->traffic_log);
            o->traffic_log = xstrdup(optarg);
            break;
        case OPT_RECONNECT:
            o->reconnect = true;
            break;
        case OPT_TIMEOUT:
            errno = 0;
            o->connect_timeout_s = (int)strtol(optarg, &end, 10);
            if (errno || *end || o->connect_timeout_s < 0) {
                log_startup("--connect-timeout wants a number "
                        "of seconds, not '%s'\n", optarg);
                return false;
            }
            break;
        case OPT_MAXMSG:
            errno = 0;
            o->max_message = strtoull(optarg, &end, 10);
            if (errno || *end || o->max_message < 1024
                || o->max_message > JSONSTREAM_MAX_TOKEN_SIZE) {
                log_startup("--max-message wants a byte count "
                        "between 1024 and %zu, not '%s'\n",
                        (size_t)JSONSTREAM_MAX_TOKEN_SIZE, optarg);
                return false;
            }
            break;
        case OPT_EXEC_UPSTREAM: {
            errno = 0;
            long n = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || n < 3 || n > 65535) {
                log_startup("--exec-upstream wants a descriptor "
                        "number of 3 or more, not '%s'\n", optarg);
                return false;
            }
            o->exec_fd = (int)n;
            break;
        }
        case OPT_STATE:
            free(o->state);
            o->state = xstrdup(optarg);
            break;
        case OPT_POLICY:
            free(o->policy);
            o->policy = xstrdup(optarg);
            break;
        case OPT_METRICS:
            free(o->metrics);
            o->metrics = xstrdup(optarg);
            break;
        case OPT_CHECK_POLICY: {
            char *errors = NULL;
            struct policy *p = policy_load(optarg, &errors);
            if (!p) {
                fprintf(stderr, "%s", errors);
                free(errors);
                exit(1);
            }
            printf("%s: a valid qmproxy policy\n", optarg);
            policy_free(p);
            exit(0);
        }
        case 'v':
            o->verbosity++;
            break;
        case OPT_LOG_PRIORITIES:
            o->log_priorities = true;
            break;
        case OPT_VERSION:
            printf("qmproxy %s\n", QMPROXY_VERSION);
            exit(0);
        case 'h':
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return false;
        }
    }
    if (o->exec_fd >= 0) {
        if (optind >= argc) {
            log_startup("--exec-upstream wants the program to "
                    "run after '--'\n");
            return false;
        }
        if (o->reconnect) {
            log_startup("--reconnect cannot be used with "
                    "--exec-upstream (nobody would make the socket again)\n");
            return false;
        }
        o->exec_argv = argv + optind;
    } else if (optind < argc) {
        log_startup("unexpected argument '%s'\n", argv[optind]);
        return false;
    }
    if (!o->upstream) {
        log_startup("--upstream is required (QEMU's QMP "
                "socket, e.g. --upstream unix:/run/qemu/vm1.qmp)\n");
        return false;
    }
    if (!o->nlisten && !o->nclients) {
        log_startup("at least one --listen is required (where "
                "clients connect, e.g. --listen unix:/run/qmproxy/vm1.sock)"
                ", or a --client\n");
        return false;
    }
    for (size_t i = 0; i < o->nclients; i++) {
        if (o->traffic_log && !strcmp(o->traffic_log, "-")
            && strstr(o->clients[i], "stdio")) {
            log_startup("--client stdio and --traffic-log - "
                    "would share standard output; log to a file\n");
            return false;
        }
    }
    return true;
}

/*
 * --listen systemd: the sockets systemd passed (socket activation), each
 * becoming a --listen NAME=fd:N with its LISTEN_FDNAMES name, in place.
 */
static bool take_systemd_listeners(struct options *o)
{
    for (size_t i = 0; i < o->nlisten; i++) {
        struct sdlisten_socket *socks;
        char *error = NULL;
        size_t n;

        if (strcmp(o->listen[i], "systemd")) {
            continue;
        }
        socks = sdlisten_take(&n, &error);
        if (!socks) {
            log_startup("--listen systemd: %s\n", error);
            free(error);
            return false;
        }
        free(o->listen[i]);
        o->listen = xrealloc(o->listen,
                             sizeof(*o->listen) * (o->nlisten + n - 1));
        memmove(&o->listen[i + n], &o->listen[i + 1],
                sizeof(*o->listen) * (o->nlisten - i - 1));
        for (size_t k = 0; k < n; k++) {
            o->listen[i + k] = xasprintf("%s=fd:%d", socks[k].name,
                                         socks[k].fd);
        }
        o->nlisten += n - 1;
        i += n - 1;
        sdlisten_free(socks, n);
    }
    return true;
}

/* The fd:N of the --listen and --client options (their syntax is
 * checked later); *stdio when a client is standard input and output. */
static size_t proxy_fds(const struct options *o, int *fds, bool *stdio)
{
    size_t n = 0;

    *stdio = false;
    for (size_t i = 0; i < o->nlisten + o->nclients; i++) {
        const char *spec = i < o->nlisten ? o->listen[i]
                                          : o->clients[i - o->nlisten];
        struct address addr;
        char *error = address_parse(spec, ADDRESS_ALLOW_NAME
                                    | ADDRESS_ALLOW_FD | ADDRESS_ALLOW_STDIO,
                                    &addr);
        if (!error) {
            if (addr.kind == ADDR_FD) {
                fds[n++] = addr.fd;
            }
            *stdio |= addr.kind == ADDR_STDIO;
            address_clear(&addr);
        }
        free(error);
    }
    return n;
}

static int cmp_int(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b)
           - (*(const int *)a < *(const int *)b);
}

/* Close every descriptor from 3 up except those in keep[]. */
static void close_fds_except(int *keep, size_t n)
{
    unsigned first = 3;

    qsort(keep, n, sizeof(*keep), cmp_int);
    for (size_t i = 0; i < n; i++) {
        if (keep[i] >= (int)first) {
            if (keep[i] > (int)first) {
                close_range(first, (unsigned)keep[i] - 1, 0);
            }
            first = (unsigned)keep[i] + 1;
        }
    }
    close_range(first, ~0U, 0);
}

/*
 * --exec-upstream N -- PROGRAM: QEMU's monitor socket is made here,
 * listening, before QEMU runs.  This process becomes QEMU (so a pid the
 * caller recorded, libvirt's, is QEMU's) with the socket as descriptor N;
 * the proxy goes on in a child whose connection waits in the socket's
 * backlog until QEMU accepts it: nothing polls for a socket QEMU has yet
 * to create.  Only QEMU holds the listening socket, so if QEMU cannot be
 * executed or ends before accepting, the kernel resets the waiting
 * connection and the proxy (which then does not retry) ends at once.
 * Returns in the child only.
 */
static void exec_upstream(const struct options *o)
{
    struct address addr;
    char *error = NULL;
    int *keep = xcalloc(o->nlisten + o->nclients + 1, sizeof(*keep));
    bool stdio;
    size_t nkeep = proxy_fds(o, keep, &stdio);
    int fd, flags;
    pid_t pid;

    if ((error = address_parse(o->upstream, 0, &addr))) {
        log_startup("--upstream %s\n", error);
        exit(1);
    }
    if (addr.kind != ADDR_UNIX) {
        log_startup("--exec-upstream needs a unix: --upstream, "
                "not %s\n", o->upstream);
        exit(1);
    }
    fd = listener_unix_socket(addr.path, o->socket_mode, &error);
    if (fd < 0) {
        log_startup("--exec-upstream: %s\n", error);
        exit(1);
    }
    address_clear(&addr);
    pid = fork();
    if (pid < 0) {
        log_startup("fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        /* the proxy: standard output and error (the domain's log) and the
         * listeners, nothing else the caller gave QEMU (tap devices, a
         * restore stream, pipes whose end someone waits for), and not
         * QEMU's listening socket */
        int null = stdio ? -1 : open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 0);
            close(null);
        }
        close_fds_except(keep, nkeep);
        free(keep);
        return;
    }
    /* QEMU: the listeners and clients are the proxy's alone */
    for (size_t i = 0; i < nkeep; i++) {
        if (keep[i] != o->exec_fd && keep[i] != fd) {
            close(keep[i]);
        }
    }
    free(keep);
    if (fd != o->exec_fd) {
        if (dup2(fd, o->exec_fd) < 0) {
            log_startup("dup2 to %d: %s\n", o->exec_fd,
                    strerror(errno));
            _exit(1);
        }
        close(fd);
    }
    /* as a caller would pass it: inherited, and blocking */
    fcntl(o->exec_fd, F_SETFD, 0);
    flags = fcntl(o->exec_fd, F_GETFL);
    if (flags >= 0) {
        fcntl(o->exec_fd, F_SETFL, flags & ~O_NONBLOCK);
    }
    execvp(o->exec_argv[0], o->exec_argv);
    log_startup("cannot execute %s: %s\n", o->exec_argv[0],
            strerror(errno));
    _exit(127);
}

static void on_exit_requested(void *opaque, int status)
{
    struct qmproxy *q = opaque;
    service_stopping(q->service);
    q->exit_status = status;
    event_base_loopexit(q->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct qmproxy *q = arg;
    (void)what;

    if (sig == SIGHUP) {
        const char *outcome = "traffic log reopened";
        service_reloading(q->service);
        log_info("SIGHUP: reopening the traffic log");
        trafficlog_reopen(q->tlog);
        if (q->policy_path) {
            char *errors = NULL;
            struct policy *p = policy_load(q->policy_path, &errors);
            if (!p) {
                /* the old policy stays in force */
                log_error("SIGHUP: the new policy is refused, the one in "
                          "force stays:\n%s", errors);
                trafficlog_note(q->tlog, "policy-refused", errors);
                free(errors);
                outcome = "the new policy was refused, the old one stays";
            } else {
                log_warn("SIGHUP: policy %s reloaded", q->policy_path);
                trafficlog_note(q->tlog, "policy-reloaded", q->policy_path);
                router_set_policy(q->router, p);
                outcome = "policy reloaded";
            }
        }
        service_reloaded(q->service, outcome);
        return;
    }
    service_stopping(q->service);
    router_shutdown(q->router);
}

/* enum session_extras for the clients of the listener or client name. */
static unsigned extras_for(const struct options *o, const char *name)
{
    unsigned extras = 0;

    for (size_t i = 0; i < o->nextras; i++) {
        if (!strcmp(o->extras[i], name)) {
            extras |= SESSION_EXTRAS_ALL;
        }
    }
    for (size_t i = 0; i < o->npretty; i++) {
        if (!strcmp(o->pretty[i], name)) {
            extras |= SESSION_PRETTY;
        }
    }
    return extras;
}

static bool setup(struct qmproxy *q, const struct options *o)
{
    struct router_options ro = {
        .max_message = o->max_message,
        .reconnect = o->reconnect,
    };
    struct address addr;
    char *error = NULL;

    q->tlog = trafficlog_new(q->base, o->traffic_log, 0, &error);
    if (!q->tlog) {
        log_startup("%s\n", error);
        free(error);
        return false;
    }
    q->router = router_new(q->base, q->tlog, &ro);
    router_on_exit(q->router, on_exit_requested, q);

    if ((error = address_parse(o->upstream, 0, &addr))) {
        log_startup("--upstream %s\n", error);
        free(error);
        return false;
    }
    q->up = upstream_new(q->base, &addr, &router_upstream_callbacks,
                         q->router, q->tlog);
    address_clear(&addr);
    q->service = service_new(q->base, q->router, o->upstream, &error);
    if (error) {
        log_startup("%s\n", error);
        free(error);
        return false;
    }
    router_set_upstream(q->router, q->up);
    if (o->policy) {
        struct policy *p = policy_load(o->policy, &error);
        if (!p) {
            log_startup("--policy %s is not valid:\n%s",
                    o->policy, error);
            free(error);
            return false;
        }
        router_set_policy(q->router, p);
        q->policy_path = o->policy;
    }
    if (o->state) {
        router_set_state(q->router, o->state);
    }
    if (o->metrics) {
        q->metrics = metrics_new();
        router_set_metrics(q->router, q->metrics);
        q->metrics_http = metrics_http_new(q->base, o->metrics, o->socket_mode,
                                           q->metrics, &error);
        if (!q->metrics_http) {
            log_startup("--metrics %s: %s\n", o->metrics, error);
            free(error);
            return false;
        }
    }

    /* the taps before the listeners: once a client's socket exists, so
     * does every observer's (a script may wait for the one, then use both) */
    for (size_t i = 0; i < o->ntaps; i++) {
        struct tap *t;
        if ((error = address_parse(o->taps[i], 0, &addr))) {
            log_startup("--tap %s\n", error);
            free(error);
            return false;
        }
        t = tap_new(q->base, &addr, o->socket_mode, &error);
        address_clear(&addr);
        if (!t) {
            log_startup("--tap %s: %s\n", o->taps[i], error);
            free(error);
            return false;
        }
        q->taps = xrealloc(q->taps, sizeof(*q->taps) * (q->ntaps + 1));
        q->taps[q->ntaps++] = t;
        trafficlog_add_tap(q->tlog, t);
    }

    /* listeners exist before QEMU is reached; they accept once it is */
    for (size_t i = 0; i < o->nlisten; i++) {
        struct listener *l;
        if ((error = address_parse(o->listen[i], ADDRESS_ALLOW_NAME
                                   | ADDRESS_ALLOW_FD, &addr))) {
            log_startup("--listen %s\n", error);
            free(error);
            return false;
        }
        l = listener_new(q->base, &addr, o->socket_mode, router_accept,
                         q->router, &error);
        address_clear(&addr);
        if (!l) {
            log_startup("--listen %s: %s\n", o->listen[i],
                    error);
            free(error);
            return false;
        }
        q->listeners = xrealloc(q->listeners,
                                sizeof(*q->listeners) * (q->nlisteners + 1));
        q->listeners[q->nlisteners++] = l;
        router_add_listener(q->router, l, extras_for(o, listener_name(l)));
    }
    for (size_t i = 0; i < o->nclients; i++) {
        unsigned extras;
        if ((error = address_parse(o->clients[i], ADDRESS_ALLOW_NAME
                                   | ADDRESS_ALLOW_FD | ADDRESS_ALLOW_STDIO,
                                   &addr))) {
            log_startup("--client %s\n", error);
            free(error);
            return false;
        }
        extras = extras_for(o, addr.name);
        if (!router_add_client(q->router, &addr, extras, &error)) {
            log_startup("--client %s: %s\n", o->clients[i],
                    error);
            free(error);
            address_clear(&addr);
            return false;
        }
        address_clear(&addr);
    }

    q->sigterm = evsignal_new(q->base, SIGTERM, on_signal, q);
    q->sigint = evsignal_new(q->base, SIGINT, on_signal, q);
    q->sighup = evsignal_new(q->base, SIGHUP, on_signal, q);
    evsignal_add(q->sigterm, NULL);
    evsignal_add(q->sigint, NULL);
    evsignal_add(q->sighup, NULL);
    return true;
}

static void teardown(struct qmproxy *q)
{
    /* no scrape may read the router while it goes */
    metrics_http_free(q->metrics_http);
    for (size_t i = 0; i < q->nlisteners; i++) {
        listener_free(q->listeners[i]);
    }
    free(q->listeners);
    service_free(q->service);
    upstream_free(q->up);
    router_free(q->router);
    metrics_free(q->metrics);
    trafficlog_flush(q->tlog, 5000);
    trafficlog_free(q->tlog);
    for (size_t i = 0; i < q->ntaps; i++) {
        tap_free(q->taps[i]);
    }
    free(q->taps);
    /* Last: freeing them gives the signals back their default action, and
     * a SIGTERM must not kill the process while it writes out the traffic
     * log (up to 5 s); until then libevent's handler only notes it. */
    if (q->sigterm) {
        event_free(q->sigterm);
        event_free(q->sigint);
        event_free(q->sighup);
    }
    if (q->base) {
        event_base_free(q->base);
    }
}

static void free_options(struct options *o)
{
    free(o->upstream);
    for (size_t i = 0; i < o->nlisten; i++) {
        free(o->listen[i]);
    }
    free(o->listen);
    for (size_t i = 0; i < o->nclients; i++) {
        free(o->clients[i]);
    }
    free(o->clients);
    for (size_t i = 0; i < o->nextras; i++) {
        free(o->extras[i]);
    }
    free(o->extras);
    for (size_t i = 0; i < o->npretty; i++) {
        free(o->pretty[i]);
    }
    free(o->pretty);
    for (size_t i = 0; i < o->ntaps; i++) {
        free(o->taps[i]);
    }
    free(o->taps);
    free(o->traffic_log);
    free(o->state);
    free(o->policy);
    free(o->metrics);
}

int main(int argc, char **argv)
{
    struct options o = { 0 };
    struct qmproxy q = { 0 };
    int status;

    /* complaints about the command line reach the journal as errors too */
    log_set_priority_prefix(log_stderr_is_journal());
    if (!parse_options(argc, argv, &o)) {
        free_options(&o);
        return 2;
    }
    if (!take_systemd_listeners(&o)) {
        free_options(&o);
        return 1;
    }
    if (o.exec_fd >= 0) {
        exec_upstream(&o);
        /* connect once: the connection is in QEMU's backlog already, or
         * QEMU is gone */
        o.connect_timeout_s = 0;
    }
    log_set_level(o.verbosity >= 2 ? LOG_DEBUG
                  : o.verbosity == 1 ? LOG_INFO : LOG_WARN);
    log_set_priority_prefix(o.log_priorities || log_stderr_is_journal());
    signal(SIGPIPE, SIG_IGN);
    /* Blocks of 1 MiB and more (a huge message, its copies) are mapped on
     * their own, so freeing them gives the memory back; a fixed threshold
     * also stops glibc raising it after such a free and then keeping the
     * next big blocks in a heap it cannot shrink. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    q.base = event_base_new();
    if (!q.base) {
        log_startup("cannot create the event loop\n");
        return 1;
    }
    if (!setup(&q, &o)) {
        teardown(&q);
        free_options(&o);
        return 1;
    }
    upstream_connect(q.up, o.connect_timeout_s * 1000);
    event_base_dispatch(q.base);
    status = q.exit_status;
    teardown(&q);
    free_options(&o);
    return status;
}
