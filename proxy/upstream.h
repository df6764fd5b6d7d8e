/*
 * upstream: the one connection to QEMU's QMP monitor.  It connects (with a
 * bounded retry), reads the greeting, negotiates capabilities (oob when
 * offered), and then carries commands: in-band ones in a FIFO, because
 * QEMU answers them strictly in order, and out-of-band ones under an id of
 * its own that it swaps back on the way down.  It decides nothing about
 * what to forward; it only owns the wire and who each reply belongs to.
 * upstream.c is the connection, upstream-queue.c the requests and their
 * replies, upstream-reply.c what a reply says.
 */
#ifndef QMPROXY_UPSTREAM_H
#define QMPROXY_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <json-c/json.h>

#include "jsonstream.h"
#include "qmp.h"

struct event_base;
struct address;
struct trafficlog;
struct upstream;
struct upstream_request;

struct upstream_reply {
    bool lost;                 /* QEMU went away before answering */
    enum qmp_kind kind;        /* QMP_RETURN or QMP_ERROR */
    const char *raw;           /* QEMU's bytes, CRLF included */
    size_t len;
    const struct js_text *text;
    uint64_t latency_us;       /* since the command was written */
    json_object **value_cache; /* private: see upstream_reply_value */
};

/* The reply parsed (depth 1024), cached; NULL when lost or unparsable.
 * Borrowed: valid during the callback, json_object_get() to keep it. */
json_object *upstream_reply_value(const struct upstream_reply *r);
/* The "return" member of a successful reply, borrowed; NULL otherwise. */
json_object *upstream_reply_return(const struct upstream_reply *r);
/* The error class of a failed reply ("GenericError"...), borrowed. */
const char *upstream_reply_error_class(const struct upstream_reply *r);
/* The error desc of a failed reply, borrowed; NULL otherwise. */
const char *upstream_reply_error_desc(const struct upstream_reply *r);

typedef void (*upstream_reply_fn)(void *opaque,
                                  const struct upstream_reply *reply);

struct upstream_callbacks {
    void (*ready)(void *opaque);              /* negotiated */
    void (*lost)(void *opaque, const char *why);
    void (*gave_up)(void *opaque, const char *why);  /* never connected */
    void (*event)(void *opaque, const char *raw, size_t len,
                  const struct js_text *text);
    /* QEMU answered a command (optional, for the metrics): own tells the
     * proxy's own from a client's; command is the own command's name
     * (NULL for a client's: the caller knows it); the bytes both ways. */
    void (*answered)(void *opaque, bool own, const char *command,
                     size_t sent, size_t received);
};

/* Someone waiting for room in the in-band window. */
struct upstream_waiter {
    TAILQ_ENTRY(upstream_waiter) link;
    bool queued;
    void (*fn)(void *opaque);
    void *opaque;
};

struct upstream *upstream_new(struct event_base *base,
                              const struct address *addr,
                              const struct upstream_callbacks *cb,
                              void *opaque, struct trafficlog *tlog);
void upstream_free(struct upstream *up);
/* Connect, retrying every interval until timeout_ms (<0: forever). */
void upstream_connect(struct upstream *up, int timeout_ms);
bool upstream_is_ready(const struct upstream *up);
/* Where the connection stands ("connecting", "ready"...), and every such
 * name (NULL-terminated), for the metrics. */
const char *upstream_state_name(const struct upstream *up);
const char *const *upstream_state_names(void);
/* Add the bytes read from QEMU to *in, those written to *out. */
void upstream_count_bytes(struct upstream *up, double *in, double *out);
const char *upstream_greeting(const struct upstream *up, size_t *len);
bool upstream_oob_offered(const struct upstream *up);
/* The QEMU version the greeting reported ("QMP": {"version": {"qemu":
 * {"major", "minor"}}}), as major * 100 + minor (702, 1000); 0 before a
 * greeting or when it names none.  What depends on the version asks this. */
int upstream_qemu_version(const struct upstream *up);
/* The addresses given, for messages. */
const char *upstream_display(const struct upstream *up);

/* The in-band window: how many commands QEMU holds at once from us. */
bool upstream_has_room(const struct upstream *up);
void upstream_wait_room(struct upstream *up, struct upstream_waiter *w);
void upstream_cancel_wait(struct upstream *up, struct upstream_waiter *w);
/* Commands in flight and queued, for diagnostics and tests. */
unsigned upstream_inflight(const struct upstream *up);

/*
 * Send a client's command as its exact bytes, fds attached (ownership
 * passes).  In-band: the caller made sure there is room.  For exec-oob,
 * id is the client's id member (NULL if none): it is swapped for the
 * proxy's own, and the reply handed to fn carries echo_id instead (the id
 * as QEMU would have written it; NULL: the reply gets no id, as QEMU's).
 * When QEMU is not there, the descriptors are closed and fn gets a lost
 * reply, from the loop (never inside this call).  An in-band command with
 * descriptors is held until QEMU has answered every earlier one.
 */
struct upstream_request *upstream_send(struct upstream *up, const char *data,
                                       size_t len, const int *fds, int nfds,
                                       bool oob, const struct js_member *id,
                                       const char *echo_id,
                                       upstream_reply_fn fn, void *opaque);
/* The proxy's own command: sent at once when there is room, else it
 * takes every few places in the window among clients' waiting commands.
 * When QEMU is not there, fn gets a lost reply, from the loop (never
 * inside this call). */
struct upstream_request *upstream_send_internal(struct upstream *up,
                                                json_object *cmd,
                                                upstream_reply_fn fn,
                                                void *opaque);
/* The same with descriptors (ownership passes), as add-fd takes them:
 * like a client's, held until QEMU has answered every earlier command, so
 * that nobody else's getfd or add-fd takes them; closed if QEMU is not
 * there. */
struct upstream_request *upstream_send_internal_fds(struct upstream *up,
                                                    json_object *cmd,
                                                    const int *fds, int nfds,
                                                    upstream_reply_fn fn,
                                                    void *opaque);
/*
 * QEMU is shutting down (a client's `quit` went up, or QEMU sent
 * SHUTDOWN): hold the proxy's own queries, so none of them meets the
 * closing socket.  They go on once QEMU answers a later command (it kept
 * running: -no-shutdown) or after two seconds; if QEMU closes, they fail
 * as lost.
 */
void upstream_quiesce(struct upstream *up);

#endif
