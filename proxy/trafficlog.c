/*
 * trafficlog: JSON Lines of every message, through a bounded buffer that a
 * writer thread drains to the file.  The event loop only ever copies a
 * line into memory; when the buffer is full the line is counted as lost.
 */
#include "trafficlog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "qjson.h"
#include "tap.h"
#include "util.h"

#define LOST_WARN_INTERVAL_US (10u * 1000u * 1000u)

struct trafficlog {
    char *path;              /* owned; NULL: no file */
    int fd;                  /* the writer thread's */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t wake, idle;
    char *ring;              /* owned, cap bytes */
    size_t cap, head, used;
    bool writing;            /* the writer holds a chunk outside the lock */
    bool reopen, stop;
    bool stuck;              /* the writer did not finish in time */
    uint64_t dropped;        /* lines lost, under mu */
    uint64_t dropped_noted;  /* lines lost already written as a note */
    uint64_t last_warn_us;
    struct tap **taps;
    size_t ntaps;
    struct strbuf line;      /* the line being formatted */
};

/* ---- the writer thread --------------------------------------------- */

static int open_log(const char *path)
{
    if (!strcmp(path, "-")) {
        return dup(STDOUT_FILENO);
    }
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

static void write_note_locked(struct trafficlog *tl)
{
    char when[40], note[160];
    uint64_t lost = tl->dropped - tl->dropped_noted;
    int n;

    format_rfc3339_us(when, sizeof(when));
    n = snprintf(note, sizeof(note),
                 "{\"time\": \"%s\", \"note\": \"lost\", \"lines\": %llu, "
                 "\"total\": %llu}\n", when, (unsigned long long)lost,
                 (unsigned long long)tl->dropped);
    tl->dropped_noted = tl->dropped;
    pthread_mutex_unlock(&tl->mu);
    if (tl->fd >= 0) {
        write_all(tl->fd, note, (size_t)n);
    }
    pthread_mutex_lock(&tl->mu);
}

static void *writer(void *arg)
{
    struct trafficlog *tl = arg;

    pthread_mutex_lock(&tl->mu);
    for (;;) {
        while (!tl->used && !tl->reopen && !tl->stop
               && tl->dropped == tl->dropped_noted) {
            pthread_cond_broadcast(&tl->idle);
            pthread_cond_wait(&tl->wake, &tl->mu);
        }
        if (tl->reopen) {
            int fd;
            tl->reopen = false;
            pthread_mutex_unlock(&tl->mu);
            fd = open_log(tl->path);
            if (fd >= 0) {
                if (tl->fd >= 0) {
                    close(tl->fd);
                }
                tl->fd = fd;
            }
            pthread_mutex_lock(&tl->mu);
            continue;
        }
        if (tl->used) {
            size_t chunk = tl->used;
            if (tl->head + chunk > tl->cap) {
                chunk = tl->cap - tl->head;
            }
            const char *p = tl->ring + tl->head;
            tl->writing = true;
            pthread_mutex_unlock(&tl->mu);
            if (tl->fd >= 0) {
                write_all(tl->fd, p, chunk);
            }
            pthread_mutex_lock(&tl->mu);
            tl->writing = false;
            tl->head = (tl->head + chunk) % tl->cap;
            tl->used -= chunk;
            continue;
        }
        if (tl->dropped != tl->dropped_noted) {
            write_note_locked(tl);
            continue;
        }
        if (tl->stop) {
            break;
        }
    }
    pthread_cond_broadcast(&tl->idle);
    pthread_mutex_unlock(&tl->mu);
    return NULL;
}

/* Copy a line into the ring, or count it lost.  Never blocks for I/O. */
static void enqueue(struct trafficlog *tl, const char *line, size_t len)
{
    bool lost = false;
    uint64_t dropped = 0;

    pthread_mutex_lock(&tl->mu);
    if (tl->cap - tl->used < len) {
        tl->dropped++;
        dropped = tl->dropped;
        lost = true;
    } else {
        size_t tail = (tl->head + tl->used) % tl->cap;
        size_t first = len;
        if (tail + first > tl->cap) {
            first = tl->cap - tail;
        }
        memcpy(tl->ring + tail, line, first);
        memcpy(tl->ring, line + first, len - first);
        tl->used += len;
        pthread_cond_signal(&tl->wake);
    }
    pthread_mutex_unlock(&tl->mu);
    if (lost) {
        uint64_t now = now_monotonic_us();
        if (now - tl->last_warn_us > LOST_WARN_INTERVAL_US) {
            tl->last_warn_us = now;
            log_warn("the traffic log cannot keep up; %llu line(s) lost so "
                     "far", (unsigned long long)dropped);
        }
    }
}

/* ---- formatting ---------------------------------------------------- */

/* JSON text QEMU or a client wrote, on one line: newlines and tabs
 * between tokens become spaces (strings cannot contain raw ones). */
static void add_raw_json(struct strbuf *sb, const char *raw, size_t len)
{
    while (len && (raw[len - 1] == '\n' || raw[len - 1] == '\r'
                   || raw[len - 1] == ' ' || raw[len - 1] == '\t')) {
        len--;
    }
    size_t start = sb->len;
    strbuf_add(sb, raw, len);
    for (size_t i = start; i < sb->len; i++) {
        char c = sb->buf[i];
        if (c == '\n' || c == '\r' || c == '\t') {
            sb->buf[i] = ' ';
        }
    }
}

/* Is raw standard JSON as written?  QEMU's extensions (single quotes,
 * \' escapes, "\xC0\x80") are not; such a message is logged re-encoded. */
static bool is_standard_json(const char *raw, size_t len)
{
    return !memchr(raw, '\'', len) && !memchr(raw, 0xC0, len);
}

static void add_message(struct strbuf *sb, const struct tlog_entry *e)
{
    /* QEMU's inf and nan are not JSON: keep the line JSON, as a string */
    if (e->malformed || (e->from != TLOG_FROM_CLIENT
                         && qjson_has_non_finite(e->raw, e->len))) {
        size_t len = e->len;
        while (len && (e->raw[len - 1] == '\n' || e->raw[len - 1] == '\r')) {
            len--;
        }
        strbuf_adds(sb, "\"msg\": ");
        qjson_write_string(sb, e->raw, len);
        strbuf_adds(sb, ", \"malformed\": true");
        return;
    }
    strbuf_adds(sb, "\"msg\": ");
    if (e->from != TLOG_FROM_CLIENT || is_standard_json(e->raw, e->len)) {
        add_raw_json(sb, e->raw, e->len);
        return;
    }
    json_tokener *tok = json_tokener_new_ex(1024);
    json_object *v = json_tokener_parse_ex(tok, e->raw, (int)e->len);
    json_tokener_free(tok);
    if (v) {
        strbuf_adds(sb, json_object_to_json_string_ext(
                            v, JSON_C_TO_STRING_SPACED
                               | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(v);
    } else {
        qjson_write_string(sb, e->raw, e->len);
    }
}

static void emit_line(struct trafficlog *tl, struct strbuf *sb)
{
    if (tl->path) {
        enqueue(tl, sb->buf, sb->len);
    }
    for (size_t i = 0; i < tl->ntaps; i++) {
        tap_broadcast(tl->taps[i], sb->buf, sb->len);
    }
}

void trafficlog_record(struct trafficlog *tl, const struct tlog_entry *e)
{
    static const char *const from_names[] = { "client", "qemu", "qmproxy" };
    struct strbuf *sb = &tl->line;
    char when[40];

    if (!trafficlog_active(tl)) {
        return;
    }
    sb->len = 0;
    format_rfc3339_us(when, sizeof(when));
    strbuf_addf(sb, "{\"time\": \"%s\", \"dir\": \"%s\", ", when,
                e->dir == TLOG_IN ? "in" : "out");
    if (!e->broadcast) {
        strbuf_addf(sb, "\"client\": %u, ", e->client);
    }
    strbuf_addf(sb, "\"from\": \"%s\", \"kind\": \"%s\", ",
                from_names[e->from], e->kind);
    if (e->latency_us >= 0) {
        strbuf_addf(sb, "\"latency_us\": %lld, ", (long long)e->latency_us);
    }
    if (e->nfds > 0) {
        strbuf_addf(sb, "\"fds\": %d, ", e->nfds);
    }
    add_message(sb, e);
    strbuf_adds(sb, "}\n");
    emit_line(tl, sb);
}

void trafficlog_note(struct trafficlog *tl, const char *what,
                     const char *detail)
{
    struct strbuf *sb = &tl->line;
    char when[40];

    if (!trafficlog_active(tl)) {
        return;
    }
    sb->len = 0;
    format_rfc3339_us(when, sizeof(when));
    strbuf_addf(sb, "{\"time\": \"%s\", \"note\": ", when);
    qjson_write_string(sb, what, strlen(what));
    if (detail) {
        strbuf_adds(sb, ", \"detail\": ");
        qjson_write_string(sb, detail, strlen(detail));
    }
    strbuf_adds(sb, "}\n");
    emit_line(tl, sb);
}

/* ---- life ---------------------------------------------------------- */

struct trafficlog *trafficlog_new(struct event_base *base, const char *path,
                                  size_t buffer_bytes, char **error)
{
    struct trafficlog *tl = xcalloc(1, sizeof(*tl));
    (void)base;

    tl->fd = -1;
    pthread_mutex_init(&tl->mu, NULL);
    pthread_cond_init(&tl->wake, NULL);
    pthread_cond_init(&tl->idle, NULL);
    if (path) {
        tl->fd = open_log(path);
        if (tl->fd < 0) {
            *error = xasprintf("cannot open traffic log %s: %s", path,
                               strerror(errno));
            trafficlog_free(tl);
            return NULL;
        }
        tl->path = xstrdup(path);
        tl->cap = buffer_bytes ? buffer_bytes : (4u << 20);
        tl->ring = xmalloc(tl->cap);
        if (pthread_create(&tl->thread, NULL, writer, tl)) {
            *error = xstrdup("cannot start the traffic log writer thread");
            trafficlog_free(tl);
            return NULL;
        }
        tl->thread_started = true;
    }
    return tl;
}

bool trafficlog_active(const struct trafficlog *tl)
{
    if (!tl) {
        return false;
    }
    if (tl->path) {
        return true;
    }
    for (size_t i = 0; i < tl->ntaps; i++) {
        if (tap_observers(tl->taps[i])) {
            return true;
        }
    }
    return false;
}

void trafficlog_reopen(struct trafficlog *tl)
{
    if (!tl || !tl->path || !strcmp(tl->path, "-")) {
        return;
    }
    pthread_mutex_lock(&tl->mu);
    tl->reopen = true;
    pthread_cond_signal(&tl->wake);
    pthread_mutex_unlock(&tl->mu);
}

uint64_t trafficlog_dropped(const struct trafficlog *tl)
{
    uint64_t n;
    pthread_mutex_lock((pthread_mutex_t *)&tl->mu);
    n = tl->dropped;
    pthread_mutex_unlock((pthread_mutex_t *)&tl->mu);
    return n;
}

bool trafficlog_flush(struct trafficlog *tl, int timeout_ms)
{
    struct timespec deadline;
    bool done = true;

    if (!tl || !tl->thread_started) {
        return true;
    }
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&tl->mu);
    while (tl->used || tl->writing || tl->dropped != tl->dropped_noted) {
        pthread_cond_signal(&tl->wake);
        if (pthread_cond_timedwait(&tl->idle, &tl->mu, &deadline)) {
            done = false;
            break;
        }
    }
    pthread_mutex_unlock(&tl->mu);
    if (!done) {
        tl->stuck = true;
        log_warn("the traffic log could not be written out in %d ms; %zu "
                 "bytes of it are lost", timeout_ms, tl->used);
    }
    return done;
}

void trafficlog_add_tap(struct trafficlog *tl, struct tap *tap)
{
    tl->taps = xrealloc(tl->taps, sizeof(*tl->taps) * (tl->ntaps + 1));
    tl->taps[tl->ntaps++] = tap;
}

void trafficlog_free(struct trafficlog *tl)
{
    if (!tl) {
        return;
    }
    if (tl->thread_started) {
        pthread_mutex_lock(&tl->mu);
        tl->stop = true;
        pthread_cond_signal(&tl->wake);
        pthread_mutex_unlock(&tl->mu);
        if (tl->stuck) {
            /* blocked in write(2) for good: leave it to process exit */
            pthread_detach(tl->thread);
            return;
        }
        pthread_join(tl->thread, NULL);
    }
    if (tl->fd >= 0) {
        close(tl->fd);
    }
    pthread_mutex_destroy(&tl->mu);
    pthread_cond_destroy(&tl->wake);
    pthread_cond_destroy(&tl->idle);
    free(tl->ring);
    free(tl->path);
    free(tl->taps);
    strbuf_release(&tl->line);
    free(tl);
}
