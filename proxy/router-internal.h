/*
 * router-internal: the router's state, shared by router.c and
 * router-metrics.c (which reads it at scrape time) and nobody else.
 */
#ifndef QMPROXY_ROUTER_INTERNAL_H
#define QMPROXY_ROUTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmd.h"
#include "location.h"
#include "router.h"
#include "session.h"

struct router_metrics;

struct router {
    struct event_base *base;
    struct trafficlog *tlog;
    struct router_options opts;
    struct session_env session_env;  /* what sessions get */
    struct cmd_env cmd_env;          /* what commands and operations get */
    struct upstream *up;
    struct listener **listeners;
    unsigned *listener_extras;      /* enum session_extras, per listener */
    size_t nlisteners;
    struct attach **attaches;       /* --client: given, not accepted */
    unsigned *attach_extras;
    size_t nattaches;
    struct session **sessions;
    size_t nsessions, cap_sessions;
    unsigned next_client;
    bool exiting;
    int exit_status;
    struct event *exit_check, *exit_deadline;
    void (*on_exit)(void *opaque, int status);
    void *exit_opaque;
    struct chain *chain;
    struct statefile *state;
    struct policy *policy;
    struct qemu_schema *schema;   /* read only under a path policy */
    bool schema_asked;
    struct location_lookup locations;
    bool serving;
    const struct router_observer *observer;
    void *observer_opaque;
    struct router_metrics *metrics;  /* NULL without --metrics */
};

/* router-metrics.c: what the router counts (each a no-op without
 * --metrics) */
void router_metrics_free(struct router_metrics *m);
void router_metrics_command(struct router *r, const char *command,
                            const char *outcome, int64_t latency_us);
void router_metrics_event(struct router *r, const char *name);
/* QEMU answered a command: the proxy's own (by name) or a client's. */
void router_metrics_answered(struct router *r, bool own, const char *command,
                             size_t sent, size_t received);
void router_metrics_refusal(struct router *r, const char *listener,
                            const char *command);
void router_metrics_ready(struct router *r);
/* The upstream was given: count its bytes. */
void router_metrics_upstream(struct router *r);

#endif
