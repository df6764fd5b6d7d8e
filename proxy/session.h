/*
 * session: one management client.  It replays QEMU's greeting, answers
 * qmp_capabilities itself exactly as QEMU would, refuses malformed input
 * with QEMU's own errors, keeps one reply slot per message so the client
 * sees replies in the order it sent its commands, carries the file
 * descriptors the client passes, and stops reading a client that has too
 * much queued.  It hands each well-formed command to the router and never
 * talks to QEMU itself.
 */
#ifndef QMPROXY_SESSION_H
#define QMPROXY_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <json-c/json.h>

#include "conn.h"
#include "jsonstream.h"
#include "qmp.h"
#include "trafficlog.h"
#include "upstream.h"

struct session;
struct slot;
struct client_cmd;
struct event_base;

/* What a session asks of whoever created it (the router), given at
 * construction so the session never calls up. */
enum route_result { ROUTE_DONE, ROUTE_NEED_ROOM };

struct session_hooks {
    /* A well-formed command, in turn.  granted: the upstream's window
     * made room for it.  ROUTE_NEED_ROOM: queue it and wait for room. */
    enum route_result (*route)(void *opaque, struct session *s,
                               struct slot *slot, struct client_cmd *cmd,
                               bool granted);
    /* The client is gone (the session is freed later, from the loop). */
    void (*closed)(void *opaque, struct session *s);
};

/* Everything a session works with. */
struct session_env {
    struct event_base *base;
    struct upstream *up;          /* for the window and oob */
    struct trafficlog *tlog;      /* may be NULL */
    size_t max_message;
    const struct session_hooks *hooks;
    void *opaque;
    /* bytes from and to all clients (metrics), or NULL */
    double *bytes_in, *bytes_out;
};

/* A well-formed command from a client, everything the router needs. */
struct client_cmd {
    struct qmp_request req;    /* borrowed from value */
    json_object *value;        /* owned reference */
    const char *raw;           /* the exact bytes; owned when raw_owned */
    size_t len;
    char *raw_owned;
    bool has_id_member;
    struct js_member id_member;  /* where the id sits in raw */
    int fds[CONN_MAX_FDS];     /* owned until forwarded */
    int nfds;
};

enum slot_state {
    SLOT_QUEUED,   /* a command not yet handled */
    SLOT_WAITING,  /* handled; its reply is still to come */
    SLOT_READY,    /* the reply is here, waiting for earlier slots */
};

/* One reply owed to the client, in the order it sent its messages. */
struct slot {
    TAILQ_ENTRY(slot) link;
    struct session *session;
    enum slot_state state;
    bool barrier;                   /* later commands wait for this reply */
    bool oob;                       /* exec-oob: answered out of order */
    struct client_cmd cmd;          /* SLOT_QUEUED only */
    void *owner;                    /* who answers it: slot_claim() */
    void (*owner_gone)(void *owner, struct slot *slot);
    char *reply;                    /* SLOT_READY: owned bytes */
    size_t reply_len;
};

/*
 * What a client sees beyond QEMU's own conversation.  By default nothing:
 * the proxy is invisible (QEMU's greeting, replies, events and command
 * list, byte for byte).  A listener can grant these to all its clients
 * (--extras NAME), a client can ask for them (qmproxy-capabilities).
 */
enum session_extras {
    SESSION_EXTRA_EVENTS = 1 << 0,    /* QMPROXY_* events */
    SESSION_EXTRA_COMMANDS = 1 << 1,  /* qmproxy-* in query-commands */
    SESSION_EXTRAS_ALL = SESSION_EXTRA_EVENTS | SESSION_EXTRA_COMMANDS,
    /* not an extra but a form: everything sent as a pretty-printing
     * monitor (-qmp-pretty) would write it (--pretty NAME) */
    SESSION_PRETTY = 1 << 2,
};

/* rfd and wfd: the same socket, or standard input and output.  env is
 * borrowed and must outlive the session. */
struct session *session_new(const struct session_env *env, int rfd, int wfd,
                            unsigned id, const char *listener_name,
                            unsigned extras);
/* Start serving: send the greeting and read. */
void session_start(struct session *s, const char *greeting, size_t len,
                   bool oob_offered);
unsigned session_id(const struct session *s);
const char *session_listener(const struct session *s);
/* enum session_extras bits */
unsigned session_extras(const struct session *s);
void session_enable_extras(struct session *s, unsigned extras);

/*
 * The reply for a slot (CRLF included): written now if every earlier slot
 * is answered, else copied to wait its turn.  from/latency_us go to the
 * traffic log (latency < 0: none).
 */
void session_reply(struct session *s, struct slot *slot, const char *raw,
                   size_t len, enum tlog_from from, int64_t latency_us);
/*
 * A slot's owner: whoever will answer it (a forwarded command, one of the
 * proxy's own commands).  If the client leaves first, gone(owner, slot) is
 * called and the owner must forget the slot.  Answering (session_reply)
 * releases the owner; slot_release() does so without answering.
 */
void slot_claim(struct slot *slot, void *owner,
                void (*gone)(void *owner, struct slot *slot));
void slot_release(struct slot *slot);
struct session *slot_session(const struct slot *slot);

/* Make slot a barrier: later commands wait until it is answered. */
void session_set_barrier(struct session *s, struct slot *slot);
/* Send an event to a negotiated client (raw, CRLF included). */
void session_event(struct session *s, const char *raw, size_t len);
/* QEMU is gone: deliver what is queued, then close. */
void session_finish(struct session *s);

#endif
