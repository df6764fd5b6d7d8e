/*
 * upstream-internal: what the two files of the upstream module share and
 * nobody else sees.  upstream.c owns the connection (connecting, the
 * greeting, negotiation, QEMU going away) and calls down into
 * upstream-queue.c, which owns the requests (the in-band FIFO and its
 * window, exec-oob by id, the proxy's own queries, a command holding
 * descriptors) and routes each reply to its request.
 */
#ifndef QMPROXY_UPSTREAM_INTERNAL_H
#define QMPROXY_UPSTREAM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "address.h"
#include "conn.h"
#include "trafficlog.h"
#include "upstream.h"

struct event;
struct linestream;

struct upstream_request {
    TAILQ_ENTRY(upstream_request) link;
    upstream_reply_fn fn;
    void *opaque;
    uint64_t written_us;
    bool internal;
    char *command;       /* owned: the proxy's own command's name */
    size_t sent_len;     /* the command's bytes, for the metrics */
    char *oob_id;        /* owned: the proxy's id, as JSON text */
    char *client_id;     /* owned: the id QEMU would echo; NULL: none */
    char *queued;        /* owned: bytes not written yet (the proxy's
                          * command waiting for room, or the held one) */
    size_t queued_len;
    int fds[CONN_MAX_FDS];  /* owned while held: they go with queued */
    int nfds;
};

TAILQ_HEAD(request_list, upstream_request);

enum upstream_state {
    UP_IDLE,
    UP_CONNECTING,
    UP_GREETING,
    UP_NEGOTIATING,
    UP_READY,
    UP_CLOSED,
};

struct upstream {
    struct event_base *base;
    struct address addr;
    char *display;
    const struct upstream_callbacks *cb;
    void *opaque;
    struct trafficlog *tlog;

    enum upstream_state state;
    int connecting_fd;
    struct event *connect_ev, *retry_timer, *greeting_timer, *reap_ev;
    uint64_t deadline_us;
    bool forever;
    char *last_error;
    char *close_reason;      /* set while we close it: why, for on_closed */

    struct conn *conn;
    struct linestream *lines;
    struct conn *dead_conn;        /* freed once no callback is running */
    struct linestream *dead_lines;

    char *greeting;
    size_t greeting_len;
    bool oob_offered;
    int qemu_version;      /* major * 100 + minor, from the greeting */

    struct request_list fifo;      /* in-band, written, in order */
    struct request_list oob;       /* exec-oob, written, by id */
    struct request_list internal;  /* the proxy's own, waiting for room */
    struct request_list doomed;    /* asked while QEMU was away: fail them
                                    * from the loop, never inline */
    struct event *doom_ev;
    TAILQ_HEAD(, upstream_waiter) waiters;
    unsigned inflight;
    /* A client's command with descriptors, in the FIFO but not written:
     * QEMU's chardev (shared by every client) would hand them to whichever
     * getfd it dispatches next, and QEMU reads on while earlier commands
     * wait to be dispatched.  So it goes up once QEMU has answered every
     * earlier one, and nothing in-band goes up meanwhile. */
    struct upstream_request *held;
    unsigned oob_counter;
    unsigned oob_tag;
    bool pumping;
    unsigned client_turns;         /* clients served since our last query */
    bool quiesced;                 /* QEMU is going: hold our queries */
    uint64_t quiesced_at_us;
    struct event *quiesce_timer;
    double *bytes_in, *bytes_out;  /* metrics: counted on every conn */
};

/* upstream-queue.c */

void upstream_queue_init(struct upstream *up);
void upstream_queue_free(struct upstream *up);
/* QEMU went away: every request gets a lost reply, waiters are dropped. */
void upstream_queue_fail_all(struct upstream *up);
/* A reply (or a message of no known kind) to whoever asked for it. */
void upstream_route_reply(struct upstream *up, enum qmp_kind kind,
                          const char *raw, size_t len,
                          const struct js_text *t);
/* Hand free room in the window out (clients and the proxy's queries). */
void upstream_pump(struct upstream *up);
/* qmp_capabilities: written at once, ahead of everything, before the
 * connection is ready. */
void upstream_send_negotiation(struct upstream *up, const char *cmd,
                               upstream_reply_fn fn, void *opaque);
/* The proxy's own exchanges with QEMU, to the traffic log. */
void upstream_log(struct upstream *up, enum tlog_dir dir,
                  enum tlog_from from, const char *kind, const char *raw,
                  size_t len, int64_t latency);

#endif
