/*
 * trafficlog: JSON Lines of every message, through a bounded ring that a
 * writer thread drains to the file.
 *
 * The event loop's whole share of a message is to take the time and copy a
 * small fixed header and the message's bytes into the ring (or count the
 * line lost when the ring is full).  Everything else happens on the writer
 * thread: formatting the line (time, names, newlines folded), deciding
 * whether a client's text is standard JSON (and re-encoding it when it is
 * not), and writing.  The writer is woken once when the ring stops being
 * empty; it writes at once if its last write is FLUSH_INTERVAL_MS old,
 * else lingers until then collecting more lines, and writes them with one
 * write(2).  The loop wakes it early only when the ring passes
 * KICK_FRACTION of its size, a line is lost, or someone flushes, reopens
 * or stops.  So a steady stream of messages costs at most
 * 1000 / FLUSH_INTERVAL_MS wake-ups a second, not one per message; a lone
 * line is written at once, and none waits more than FLUSH_INTERVAL_MS
 * (plus the write).
 *
 * Taps are on the loop: when an observer is connected the line is
 * formatted there too (the same code), and handed to tap.c, which batches.
 */
#include "trafficlog.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "qjson.h"
#include "tap.h"
#include "util.h"

#define LOST_WARN_INTERVAL_US (10u * 1000u * 1000u)
/* The writer writes at most this often: the longest a line waits. */
#define FLUSH_INTERVAL_MS 5
/* The loop wakes a lingering writer once the ring is this full (1/8). */
#define KICK_FRACTION 8
/* Formatted lines are written in chunks of about this much. */
#define WRITE_CHUNK (256u * 1024u)
/* A formatting buffer bigger than this is given back after use; so are
 * the ring's pages after a drain this big (a huge message went through). */
#define KEEP_BUFFER (1u << 20)

enum {
    REC_MALFORMED = 1,  /* the bytes are not JSON: logged as a string */
    REC_BROADCAST = 2,  /* an event to every client: no "client" */
    REC_LINE = 4,       /* the bytes are a whole line, formatted already */
    REC_REOPEN = 8,     /* no bytes: reopen the file here (SIGHUP) */
};

/* What the loop puts in the ring in front of a message's bytes. */
struct rec {
    int64_t time_us;      /* CLOCK_REALTIME */
    int64_t latency_us;   /* < 0: none */
    const char *kind;     /* a string literal */
    uint32_t len;         /* bytes that follow */
    uint32_t client;
    int32_t nfds;
    uint8_t dir, from, flags;
};

/* The date and time of one second, formatted once for all its lines. */
struct timecache {
    int64_t sec;
    char text[24];        /* "2026-11-25T18:26:26" */
};

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
    bool asleep;             /* the writer waits for a first line */
    bool lingering;          /* the writer waits for more lines, bounded */
    int flushers;            /* trafficlog_flush() callers waiting */
    bool reopen, stop;
    bool hurry;              /* a reopen is in the ring: do not linger */
    bool stuck;              /* the writer did not finish in time */
    uint64_t dropped;        /* lines lost, under mu */
    uint64_t dropped_noted;  /* lines lost already written as a note */
    uint64_t last_warn_us;
    struct tap **taps;
    size_t ntaps;
    struct strbuf line;      /* the loop's line, for taps and notes */
    struct timecache loop_time;
};

/* ---- formatting (either thread) ------------------------------------ */

static int64_t now_realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void add_u64(struct strbuf *sb, uint64_t v)
{
    char digits[24];
    size_t n = sizeof(digits);

    do {
        digits[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    strbuf_add(sb, digits + n, sizeof(digits) - n);
}

/* "2026-11-25T18:26:26.705124Z", as format_rfc3339_us() writes it. */
static void add_time(struct strbuf *sb, struct timecache *tc, int64_t us)
{
    int64_t sec = us / 1000000;
    unsigned frac = (unsigned)(us % 1000000);
    char tail[9];

    if (sec != tc->sec || !tc->text[0]) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(tc->text, sizeof(tc->text), "%Y-%m-%dT%H:%M:%S", &tm);
        tc->sec = sec;
    }
    strbuf_adds(sb, tc->text);
    tail[0] = '.';
    for (int i = 6; i >= 1; i--) {
        tail[i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    tail[7] = 'Z';
    strbuf_add(sb, tail, 8);
}

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

static void add_message(struct strbuf *sb, const struct rec *r,
                        const char *raw)
{
    size_t len = r->len;

    strbuf_adds(sb, "\"msg\": ");
    /* QEMU's inf and nan are not JSON: keep the line JSON, as a string
     * (decided here, on the writer's thread) */
    if ((r->flags & REC_MALFORMED)
        || (r->from != TLOG_FROM_CLIENT && qjson_has_non_finite(raw, len))) {
        while (len && (raw[len - 1] == '\n' || raw[len - 1] == '\r')) {
            len--;
        }
        qjson_write_string(sb, raw, len);
        strbuf_adds(sb, ", \"malformed\": true");
        return;
    }
    if (r->from != TLOG_FROM_CLIENT || is_standard_json(raw, len)) {
        add_raw_json(sb, raw, len);
        return;
    }
    json_object *v = qjson_parse(raw, len);
    if (v) {
        strbuf_adds(sb, json_object_to_json_string_ext(
                            v, JSON_C_TO_STRING_SPACED
                               | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(v);
    } else {
        qjson_write_string(sb, raw, len);
    }
}

/* One line, exactly as the log has always written it. */
static void format_line(struct strbuf *sb, struct timecache *tc,
                        const struct rec *r, const char *raw)
{
    static const char *const from_names[] = { "client", "qemu", "qmproxy" };

    if (r->flags & REC_LINE) {
        strbuf_add(sb, raw, r->len);
        return;
    }
    strbuf_adds(sb, "{\"time\": \"");
    add_time(sb, tc, r->time_us);
    strbuf_adds(sb, r->dir == TLOG_IN ? "\", \"dir\": \"in\", "
                                      : "\", \"dir\": \"out\", ");
    if (!(r->flags & REC_BROADCAST)) {
        strbuf_adds(sb, "\"client\": ");
        add_u64(sb, r->client);
        strbuf_adds(sb, ", ");
    }
    strbuf_adds(sb, "\"from\": \"");
    strbuf_adds(sb, from_names[r->from]);
    strbuf_adds(sb, "\", \"kind\": \"");
    strbuf_adds(sb, r->kind);
    strbuf_adds(sb, "\", ");
    if (r->latency_us >= 0) {
        strbuf_adds(sb, "\"latency_us\": ");
        add_u64(sb, (uint64_t)r->latency_us);
        strbuf_adds(sb, ", ");
    }
    if (r->nfds > 0) {
        strbuf_adds(sb, "\"fds\": ");
        add_u64(sb, (uint64_t)r->nfds);
        strbuf_adds(sb, ", ");
    }
    add_message(sb, r, raw);
    strbuf_adds(sb, "}\n");
}

static void strbuf_trim(struct strbuf *sb)
{
    if (sb->cap > KEEP_BUFFER) {
        strbuf_release(sb);
    }
    sb->len = 0;
}

/* ---- the ring ------------------------------------------------------ */

static void ring_put(struct trafficlog *tl, size_t at, const void *data,
                     size_t len)
{
    size_t first = len;

    at %= tl->cap;
    if (at + first > tl->cap) {
        first = tl->cap - at;
    }
    memcpy(tl->ring + at, data, first);
    memcpy(tl->ring, (const char *)data + first, len - first);
}

/* The bytes at [at, at+len) of the ring: in place when they do not wrap,
 * else copied into scratch. */
static const char *ring_get(struct trafficlog *tl, size_t at, size_t len,
                            struct strbuf *scratch)
{
    at %= tl->cap;
    if (at + len <= tl->cap) {
        return tl->ring + at;
    }
    scratch->len = 0;
    strbuf_add(scratch, tl->ring + at, tl->cap - at);
    strbuf_add(scratch, tl->ring, len - (tl->cap - at));
    return scratch->buf;
}

/* ---- the writer thread --------------------------------------------- */

static int open_log(const char *path)
{
    if (!strcmp(path, "-")) {
        return dup(STDOUT_FILENO);
    }
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

static void reopen_log(struct trafficlog *tl)
{
    int fd = open_log(tl->path);

    if (fd >= 0) {
        if (tl->fd >= 0) {
            close(tl->fd);
        }
        tl->fd = fd;
    }
}

static void write_out(struct trafficlog *tl, struct strbuf *out)
{
    if (out->len && tl->fd >= 0) {
        write_all(tl->fd, out->buf, out->len);
    }
    out->len = 0;
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

/* Format and write the n bytes of records at the ring's head.  The loop
 * only ever appends after them, so they are read without the lock. */
static void drain(struct trafficlog *tl, size_t head, size_t n,
                  struct strbuf *out, struct strbuf *scratch,
                  struct timecache *tc)
{
    size_t at = head, end = head + n;

    while (at < end) {
        struct rec r;
        memcpy(&r, ring_get(tl, at, sizeof(r), scratch), sizeof(r));
        at += sizeof(r);
        if (r.flags & REC_REOPEN) {
            write_out(tl, out);
            reopen_log(tl);
            continue;
        }
        format_line(out, tc, &r, ring_get(tl, at, r.len, scratch));
        at += r.len;
        if (out->len >= WRITE_CHUNK) {
            write_out(tl, out);
        }
    }
    write_out(tl, out);
    strbuf_trim(out);
    strbuf_trim(scratch);
}

/* The pages of [head, head+n) go back to the system: after a huge message
 * the ring does not keep it resident.  The loop never touches these bytes
 * until the writer has moved the head past them. */
static void release_pages(struct trafficlog *tl, size_t head, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    if (n < KEEP_BUFFER) {
        return;
    }
    head %= tl->cap;
    while (n) {
        size_t run = head + n > tl->cap ? tl->cap - head : n;
        size_t from = (head + page - 1) / page * page;
        size_t to = (head + run) / page * page;
        if (to > from) {
            madvise(tl->ring + from, to - from, MADV_DONTNEED);
        }
        n -= run;
        head = 0;
    }
}

static bool writer_hurried(const struct trafficlog *tl)
{
    return tl->stop || tl->reopen || tl->hurry || tl->flushers
        || tl->used >= tl->cap / KICK_FRACTION
        || tl->dropped != tl->dropped_noted;
}

static void timespec_add_ms(struct timespec *ts, int ms)
{
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *writer(void *arg)
{
    struct trafficlog *tl = arg;
    struct strbuf out = STRBUF_INIT, scratch = STRBUF_INIT;
    struct timecache tc = { 0 };
    struct timespec last_write = { 0, 0 };

    pthread_mutex_lock(&tl->mu);
    for (;;) {
        if (!tl->used && !tl->reopen && !tl->stop
            && tl->dropped == tl->dropped_noted) {
            /* nothing to do: sleep until the loop's next line */
            pthread_cond_broadcast(&tl->idle);
            tl->asleep = true;
            pthread_cond_wait(&tl->wake, &tl->mu);
            tl->asleep = false;
            continue;
        }
        if (tl->used && !writer_hurried(tl)) {
            /* at most one write per FLUSH_INTERVAL_MS: let more lines
             * come until then (a line after a quiet spell goes at once) */
            struct timespec deadline = last_write;
            timespec_add_ms(&deadline, FLUSH_INTERVAL_MS);
            tl->lingering = true;
            while (!writer_hurried(tl)) {
                if (pthread_cond_timedwait(&tl->wake, &tl->mu, &deadline)
                    == ETIMEDOUT) {
                    break;
                }
                tl->lingering = true;  /* a kick cleared it */
            }
            tl->lingering = false;
        }
        if (tl->used) {
            size_t head = tl->head, n = tl->used;
            tl->writing = true;
            tl->hurry = false;
            pthread_mutex_unlock(&tl->mu);
            drain(tl, head, n, &out, &scratch, &tc);
            release_pages(tl, head, n);
            clock_gettime(CLOCK_MONOTONIC, &last_write);
            pthread_mutex_lock(&tl->mu);
            tl->writing = false;
            tl->head = (tl->head + n) % tl->cap;
            tl->used -= n;
            continue;
        }
        if (tl->reopen) {
            /* a reopen that did not fit in the ring */
            tl->reopen = false;
            pthread_mutex_unlock(&tl->mu);
            reopen_log(tl);
            pthread_mutex_lock(&tl->mu);
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
    strbuf_release(&out);
    strbuf_release(&scratch);
    return NULL;
}

/* Wake the writer if it waits for this (under mu).  Clearing the flags
 * here makes the next line's check skip the futex call. */
static void kick_locked(struct trafficlog *tl)
{
    if (tl->asleep || (tl->lingering && writer_hurried(tl))) {
        tl->asleep = tl->lingering = false;
        pthread_cond_signal(&tl->wake);
    }
}

/* Copy a record into the ring, or count it lost.  Never blocks for I/O:
 * the writer holds the lock only to move the ring's indices. */
static bool enqueue(struct trafficlog *tl, const struct rec *r,
                    const char *data)
{
    size_t len = sizeof(*r) + r->len;
    bool lost = false;
    uint64_t dropped = 0;

    pthread_mutex_lock(&tl->mu);
    if (tl->cap - tl->used < len) {
        tl->dropped++;
        dropped = tl->dropped;
        lost = true;
    } else {
        size_t tail = tl->head + tl->used;
        ring_put(tl, tail, r, sizeof(*r));
        ring_put(tl, tail + sizeof(*r), data, r->len);
        tl->used += len;
    }
    kick_locked(tl);
    pthread_mutex_unlock(&tl->mu);
    if (lost) {
        uint64_t now = now_monotonic_us();
        if (now - tl->last_warn_us > LOST_WARN_INTERVAL_US) {
            tl->last_warn_us = now;
            log_warn("the traffic log cannot keep up; %llu line(s) lost so "
                     "far", (unsigned long long)dropped);
        }
    }
    return !lost;
}

static bool tapped(const struct trafficlog *tl)
{
    for (size_t i = 0; i < tl->ntaps; i++) {
        if (tap_observers(tl->taps[i])) {
            return true;
        }
    }
    return false;
}

static void to_taps(struct trafficlog *tl, const struct strbuf *sb)
{
    for (size_t i = 0; i < tl->ntaps; i++) {
        tap_broadcast(tl->taps[i], sb->buf, sb->len);
    }
}

void trafficlog_record(struct trafficlog *tl, const struct tlog_entry *e)
{
    struct rec r;

    if (!trafficlog_active(tl)) {
        return;
    }
    memset(&r, 0, sizeof(r));
    r.time_us = now_realtime_us();
    r.latency_us = e->latency_us;
    r.kind = e->kind;
    r.client = e->client;
    r.nfds = e->nfds;
    r.dir = (uint8_t)e->dir;
    r.from = (uint8_t)e->from;
    r.flags = (uint8_t)((e->malformed ? REC_MALFORMED : 0)
                        | (e->broadcast ? REC_BROADCAST : 0));
    if (e->len > UINT32_MAX - sizeof(r)) {
        r.len = UINT32_MAX;  /* cannot fit: counted lost below */
    } else {
        r.len = (uint32_t)e->len;
    }
    if (tl->path) {
        enqueue(tl, &r, e->raw);
    }
    if (tapped(tl)) {
        tl->line.len = 0;
        format_line(&tl->line, &tl->loop_time, &r, e->raw);
        to_taps(tl, &tl->line);
        strbuf_trim(&tl->line);
    }
}

void trafficlog_note(struct trafficlog *tl, const char *what,
                     const char *detail)
{
    struct strbuf *sb = &tl->line;

    if (!trafficlog_active(tl)) {
        return;
    }
    sb->len = 0;
    strbuf_adds(sb, "{\"time\": \"");
    add_time(sb, &tl->loop_time, now_realtime_us());
    strbuf_adds(sb, "\", \"note\": ");
    qjson_write_string(sb, what, strlen(what));
    if (detail) {
        strbuf_adds(sb, ", \"detail\": ");
        qjson_write_string(sb, detail, strlen(detail));
    }
    strbuf_adds(sb, "}\n");
    if (tl->path && sb->len <= UINT32_MAX) {
        struct rec r = { .flags = REC_LINE, .len = (uint32_t)sb->len };
        enqueue(tl, &r, sb->buf);
    }
    to_taps(tl, sb);
    strbuf_trim(sb);
}

/* ---- life ---------------------------------------------------------- */

struct trafficlog *trafficlog_new(struct event_base *base, const char *path,
                                  size_t buffer_bytes, char **error)
{
    struct trafficlog *tl = xcalloc(1, sizeof(*tl));
    pthread_condattr_t attr;
    (void)base;

    tl->fd = -1;
    pthread_mutex_init(&tl->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&tl->wake, &attr);
    pthread_condattr_destroy(&attr);
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
        /* mapped, so that its pages can be given back (release_pages) */
        tl->ring = mmap(NULL, tl->cap, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (tl->ring == MAP_FAILED) {
            tl->ring = NULL;
            *error = xstrdup("cannot map the traffic log's buffer");
            trafficlog_free(tl);
            return NULL;
        }
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
    return tl->path || tapped(tl);
}

void trafficlog_reopen(struct trafficlog *tl)
{
    if (!tl || !tl->path || !strcmp(tl->path, "-")) {
        return;
    }
    /* in line with the records: what came before goes to the old file */
    struct rec r = { .flags = REC_REOPEN };
    pthread_mutex_lock(&tl->mu);
    if (tl->cap - tl->used >= sizeof(r)) {
        ring_put(tl, tl->head + tl->used, &r, sizeof(r));
        tl->used += sizeof(r);
    } else {
        tl->reopen = true;
    }
    tl->hurry = true;
    kick_locked(tl);
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
    tl->flushers++;
    while (tl->used || tl->writing || tl->reopen
           || tl->dropped != tl->dropped_noted) {
        kick_locked(tl);
        if (pthread_cond_timedwait(&tl->idle, &tl->mu, &deadline)) {
            done = false;
            break;
        }
    }
    tl->flushers--;
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
        kick_locked(tl);
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
    if (tl->ring) {
        munmap(tl->ring, tl->cap);
    }
    free(tl->path);
    free(tl->taps);
    strbuf_release(&tl->line);
    free(tl);
}
