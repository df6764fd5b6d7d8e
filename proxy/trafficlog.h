/*
 * trafficlog: a JSON Lines record of every QMP message in either direction
 * (time, direction, client, message, latency), written to a file by a
 * writer thread so that a slow disk never stalls the event loop (a full
 * buffer loses lines, counted and reported), and copied live to tap
 * observers.  Recording copies the message; the writer formats and writes
 * it within a few milliseconds (see docs/DESIGN.md, "The traffic log").
 */
#ifndef QMPROXY_TRAFFICLOG_H
#define QMPROXY_TRAFFICLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct trafficlog;
struct tap;

enum tlog_dir {
    TLOG_IN,   /* a client's message to the proxy or QEMU */
    TLOG_OUT,  /* a message to a client */
};

enum tlog_from { TLOG_FROM_CLIENT, TLOG_FROM_QEMU, TLOG_FROM_PROXY };

struct tlog_entry {
    enum tlog_dir dir;
    enum tlog_from from;
    /* "command", "reply", "event", "greeting"...: a string literal, as
     * the writer thread formats the line later */
    const char *kind;
    unsigned client;          /* 0: qmproxy's own conversation with QEMU */
    bool broadcast;           /* an event to every client: no client */
    const char *raw;          /* the message bytes */
    size_t len;
    bool malformed;           /* raw is not JSON: logged as a string */
    int nfds;                 /* file descriptors that came with it */
    int64_t latency_us;       /* < 0: none */
};

/* path: a file, "-" for stdout, or NULL for no file (taps only). */
struct trafficlog *trafficlog_new(struct event_base *base, const char *path,
                                  size_t buffer_bytes, char **error);
void trafficlog_free(struct trafficlog *tl);
/* Anyone listening?  Callers skip the work when not. */
bool trafficlog_active(const struct trafficlog *tl);
void trafficlog_record(struct trafficlog *tl, const struct tlog_entry *e);
/* A free-form note from the proxy ({"note": ...}), e.g. lost lines. */
void trafficlog_note(struct trafficlog *tl, const char *what,
                     const char *detail);
/* SIGHUP: reopen the file (log rotation). */
void trafficlog_reopen(struct trafficlog *tl);
uint64_t trafficlog_dropped(const struct trafficlog *tl);
/* Wait (at most timeout_ms) for the writer to write what is buffered;
 * false if it could not (a log nobody reads).  Exit path only. */
bool trafficlog_flush(struct trafficlog *tl, int timeout_ms);

/* Taps: observers that receive every line live. */
void trafficlog_add_tap(struct trafficlog *tl, struct tap *tap);

#endif
