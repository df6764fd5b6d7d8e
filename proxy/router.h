/*
 * router: decides, for every well-formed command a client sends, whether
 * it goes to QEMU as it is, is answered by one of the proxy's own commands
 * or operations, or is refused; sends QEMU's replies back to their slots;
 * fans QEMU's events out to every negotiated client; and follows QEMU's
 * monitor coming and going (listeners accept only while it is there).
 */
#ifndef QMPROXY_ROUTER_H
#define QMPROXY_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

struct chain;
struct policy;
struct event_base;
struct listener;
struct router;
struct trafficlog;
struct upstream;

struct router_options {
    size_t max_message;   /* per-message token size cap */
    bool reconnect;       /* keep listening when QEMU goes away */
};

struct router *router_new(struct event_base *base, struct trafficlog *tl,
                          const struct router_options *opts);
void router_free(struct router *r);
/* The upstream is created with these callbacks and this router as opaque. */
extern const struct upstream_callbacks router_upstream_callbacks;
void router_set_upstream(struct router *r, struct upstream *up);
/* Keep the model in this state file (loaded now, saved on every change).
 * A file that is not a complete state is set aside (and said so), never
 * trusted: the proxy then starts from QEMU alone. */
void router_set_state(struct router *r, const char *path);
/* extras: enum session_extras for every client of this listener. */
void router_add_listener(struct router *r, struct listener *l,
                         unsigned extras);
struct address;
/* A client given rather than accepted (--client): attached when QEMU is
 * first ready.  NULL, with *error set, if it cannot be used. */
struct attach *router_add_client(struct router *r,
                                 const struct address *addr,
                                 unsigned extras, char **error);
/* Accept callback for listeners (opaque: the router). */
void router_accept(void *opaque, struct listener *l, int fd);

/* Called when the proxy should exit, with the exit status. */
void router_on_exit(struct router *r, void (*fn)(void *opaque, int status),
                    void *opaque);
/* SIGTERM/SIGINT: stop accepting, deliver what is queued, then exit 0. */
void router_shutdown(struct router *r);

/* An event of the proxy's own, in QEMU's form, to every negotiated client. */
void router_broadcast_event(struct router *r, const char *name,
                            json_object *data);
/* Something the proxy keeps changed: save the state. */
void router_save_state(struct router *r);
/* Use this policy (ownership taken; NULL: none), replacing the one in
 * force; operations already running are not disturbed. */
void router_set_policy(struct router *r, struct policy *p);
/* Who follows the proxy's life from outside (the service manager): told
 * when clients are let in (QEMU's greeting read, its disks known) or no
 * longer, and when the clients or the operations change.  One observer;
 * the hooks may be NULL. */
struct router_observer {
    void (*serving)(void *opaque, bool serving);
    void (*changed)(void *opaque);
};
void router_set_observer(struct router *r, const struct router_observer *o,
                         void *opaque);
struct router_status {
    bool serving;        /* clients are let in */
    bool exiting;        /* on the way out (SIGTERM, QEMU gone) */
    size_t clients;      /* connected now */
    size_t operations;   /* not ended */
};
void router_status(const struct router *r, struct router_status *st);

struct metrics;
/* Count into this registry (borrowed: it outlives the router) and
 * report the router's state to it at scrape time. */
void router_set_metrics(struct router *r, struct metrics *registry);
/* The chain model this router feeds (the unit tests read it). */
struct chain *router_chain(struct router *r);

#endif
