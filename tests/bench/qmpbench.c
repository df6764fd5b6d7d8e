/*
 * qmpbench: QMP round-trip latency and pipelined throughput against several
 * endpoints of one QEMU, measured in one process so that the endpoints are
 * compared under the same conditions.  Round trips alternate between the
 * targets (one on each in turn), so drift in machine load touches them all
 * alike.  Prints one JSON object per target.
 *
 *   qmpbench --target direct=/path/qmp.sock --target proxy=/path/p.sock
 *            [--count 20000] [--command '{"execute": "query-version"}']
 *            [--pipeline DEPTH] [--seconds S] [--script FILE]
 *
 * --script times a whole sequence instead of one command: FILE holds one
 * command per line (for example what libvirt sent while starting a
 * domain, taken from a traffic log), sent one after the other, each after
 * the previous reply, as the client that sent them did; a "round trip" is
 * then the whole sequence, and --count how many times it is run on each
 * target (--warmup defaults to one run then).
 *
 * --seconds bounds a pipelined run in time: no command is sent after S
 * seconds, the ones in flight are awaited, and "commands" says how many
 * were done.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 8

struct target {
    const char *name;
    const char *path;
    int fd;
    char *buf;
    size_t len, cap;
    uint64_t *lat;
    size_t nlat;
    double throughput;
    size_t done;        /* pipelined: commands answered */
    double seconds;     /* pipelined: time spent */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "qmpbench: %s: %s\n", what, detail);
    exit(1);
}

/* Read one CRLF-terminated message; skip events. */
static void read_reply(struct target *t)
{
    for (;;) {
        char *end = t->len ? memmem(t->buf, t->len, "\r\n", 2) : NULL;
        if (end) {
            size_t n = (size_t)(end - t->buf) + 2;
            bool event = memmem(t->buf, n, "\"event\"", 7) != NULL
                && memmem(t->buf, n, "\"timestamp\"", 11) != NULL;
            memmove(t->buf, t->buf + n, t->len - n);
            t->len -= n;
            if (!event) {
                return;
            }
            continue;
        }
        if (t->cap - t->len < 65536) {
            t->cap = t->cap ? t->cap * 2 : 1 << 20;
            t->buf = realloc(t->buf, t->cap);
            if (!t->buf) {
                die("memory", "out of memory");
            }
        }
        ssize_t r = read(t->fd, t->buf + t->len, t->cap - t->len);
        if (r <= 0) {
            die(t->name, r ? strerror(errno) : "connection closed");
        }
        t->len += (size_t)r;
    }
}

static void send_all(struct target *t, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(t->fd, s, n);
        if (w <= 0) {
            die(t->name, strerror(errno));
        }
        s += w;
        n -= (size_t)w;
    }
}

static bool negotiate_oob;

static void connect_target(struct target *t)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    const char *caps = negotiate_oob
        ? "{\"execute\": \"qmp_capabilities\", \"arguments\": "
          "{\"enable\": [\"oob\"]}}"
        : "{\"execute\": \"qmp_capabilities\"}";

    t->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    strncpy(sa.sun_path, t->path, sizeof(sa.sun_path) - 1);
    if (connect(t->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        die(t->path, strerror(errno));
    }
    read_reply(t);  /* the greeting */
    send_all(t, caps, strlen(caps));
    read_reply(t);
}

/* The commands of a --script file, one per line; empty lines skipped. */
static char **read_script(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    char *line = NULL, **cmds = NULL;
    size_t cap = 0;
    ssize_t len;

    if (!f) {
        die(path, strerror(errno));
    }
    *n = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
            line[--len] = 0;
        }
        if (!len) {
            continue;
        }
        cmds = realloc(cmds, (*n + 1) * sizeof(*cmds));
        if (!cmds || !(cmds[*n] = strdup(line))) {
            die("memory", "out of memory");
        }
        (*n)++;
    }
    free(line);
    fclose(f);
    if (!*n) {
        die(path, "no commands in the script");
    }
    return cmds;
}

/* One round trip: the command, or the whole script in order. */
static void round_trip(struct target *t, char **cmds, size_t ncmds)
{
    for (size_t i = 0; i < ncmds; i++) {
        send_all(t, cmds[i], strlen(cmds[i]));
        read_reply(t);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile(uint64_t *v, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "target", required_argument, NULL, 't' },
        { "count", required_argument, NULL, 'n' },
        { "command", required_argument, NULL, 'c' },
        { "pipeline", required_argument, NULL, 'p' },
        { "warmup", required_argument, NULL, 'w' },
        { "oob", no_argument, NULL, 'o' },
        { "seconds", required_argument, NULL, 's' },
        { "script", required_argument, NULL, 'S' },
        { NULL, 0, NULL, 0 },
    };
    struct target targets[MAX_TARGETS];
    int ntargets = 0, c;
    size_t count = 20000, warmup = 200, pipeline = 0, ncmds = 1;
    bool warmup_given = false;
    double seconds = 0;
    char *command = "{\"execute\": \"query-version\"}";
    char **cmds = &command;

    memset(targets, 0, sizeof(targets));
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': {
            char *eq = strchr(optarg, '=');
            if (!eq || ntargets == MAX_TARGETS) {
                die("--target", "wants NAME=PATH");
            }
            *eq = 0;
            targets[ntargets].name = optarg;
            targets[ntargets].path = eq + 1;
            ntargets++;
            break;
        }
        case 'n': count = strtoull(optarg, NULL, 10); break;
        case 'c': command = optarg; break;
        case 'p': pipeline = strtoull(optarg, NULL, 10); break;
        case 'w':
            warmup = strtoull(optarg, NULL, 10);
            warmup_given = true;
            break;
        case 'o': negotiate_oob = true; break;
        case 's': seconds = strtod(optarg, NULL); break;
        case 'S': cmds = read_script(optarg, &ncmds); break;
        default: die("usage", "see the comment at the top of qmpbench.c");
        }
    }
    if (!ntargets || !count) {
        die("usage", "at least one --target and a --count");
    }
    if (ncmds > 1 && pipeline) {
        die("--script", "times a sequence one command at a time: "
            "no --pipeline");
    }
    if (ncmds > 1 && !warmup_given) {
        warmup = 1;
    }
    size_t clen = strlen(command);
    for (int i = 0; i < ntargets; i++) {
        connect_target(&targets[i]);
        targets[i].lat = calloc(count, sizeof(uint64_t));
        for (size_t k = 0; k < warmup; k++) {
            round_trip(&targets[i], cmds, ncmds);
        }
    }

    if (!pipeline) {
        for (size_t k = 0; k < count; k++) {
            for (int i = 0; i < ntargets; i++) {
                struct target *t = &targets[(k + (size_t)i) % (size_t)ntargets];
                uint64_t t0 = now_ns();
                round_trip(t, cmds, ncmds);
                t->lat[t->nlat++] = now_ns() - t0;
            }
        }
    } else {
        /* keep DEPTH commands in flight; rounds alternate the targets */
        size_t rounds = 5, per_round = count / rounds;
        uint64_t end = seconds > 0
            ? now_ns() + (uint64_t)(seconds * 1e9) : UINT64_MAX;
        for (size_t r = 0; r < rounds; r++) {
            for (int i = 0; i < ntargets; i++) {
                struct target *t = &targets[(r + (size_t)i) % (size_t)ntargets];
                size_t sent = 0, done = 0, limit = per_round;
                uint64_t t0 = now_ns();
                while (done < limit) {
                    while (sent < limit && sent - done < pipeline) {
                        send_all(t, command, clen);
                        sent++;
                    }
                    read_reply(t);
                    done++;
                    if ((done & 255) == 0 && now_ns() > end) {
                        limit = sent;  /* out of time: await what is sent */
                    }
                }
                t->done += done;
                t->seconds += (double)(now_ns() - t0) / 1e9;
            }
        }
        for (int i = 0; i < ntargets; i++) {
            targets[i].throughput = (double)targets[i].done
                / targets[i].seconds;
        }
    }

    for (int i = 0; i < ntargets; i++) {
        struct target *t = &targets[i];
        if (pipeline) {
            printf("{\"target\": \"%s\", \"pipeline\": %zu, \"commands\": %zu, "
                   "\"per_second\": %.0f, \"seconds\": %.3f}\n", t->name,
                   pipeline, t->done, t->throughput, t->seconds);
            continue;
        }
        qsort(t->lat, t->nlat, sizeof(uint64_t), cmp_u64);
        double sum = 0;
        for (size_t k = 0; k < t->nlat; k++) {
            sum += (double)t->lat[k];
        }
        printf("{\"target\": \"%s\", \"count\": %zu, \"median_us\": %.1f, "
               "\"p99_us\": %.1f, \"mean_us\": %.1f, \"max_us\": %.1f}\n",
               t->name, t->nlat, percentile(t->lat, t->nlat, 0.5),
               percentile(t->lat, t->nlat, 0.99),
               sum / (double)t->nlat / 1000.0,
               (double)t->lat[t->nlat - 1] / 1000.0);
    }
    return 0;
}
