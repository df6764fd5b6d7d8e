/*
 * replica-watch: a replica on another host through a link that fails.
 *
 * The replica's mirror runs with on-target-error=stop: when the NBD
 * connection breaks (a reset, the daemon restarted) QEMU's mirror marks
 * the region it could not write dirty again and pauses; its dirty bitmap
 * keeps tracking the guest's writes meanwhile.  The watch resumes it on a
 * backoff timer, so once the link is back the mirror copies only what is
 * dirty: what changed while it was down.  A link that drops packets
 * (no reset) stalls the connection instead, with nothing to resume: TCP
 * delivers when the link returns and the mirror carries on, again with
 * only the dirty regions left.
 *
 * Either way the outage is bounded: a copy paused on errors, or with
 * bytes to copy and no progress, for longer than the rule's outage budget
 * is given up: a hung connection is cut first (yank of the copy's NBD
 * node: QEMU 7.2's NBD client has no timeout of its own and a force
 * cancel waits for its requests), then the job is cancelled, and the
 * operation fails with the reason.  The guest keeps running on its own
 * image throughout (a background mirror never makes it wait for the copy).
 *
 * While watched, the lag (bytes not yet copied, seconds since in sync)
 * is announced as QMPROXY_REPLICA_LAG, on a change of state and at most
 * once a second.
 */
#ifndef QMPROXY_REPLICA_WATCH_H
#define QMPROXY_REPLICA_WATCH_H

#include <stdbool.h>
#include <stdint.h>

struct cmd_env;
struct op;
struct replica_watch;

struct replica_budget {
    int outage_budget_ms;   /* how long the link may stay down */
    int backoff_ms;         /* first wait before resuming, doubling */
    int max_backoff_ms;
};

/* Watch disk 0 of op (its copy started) until replica_watch_free().
 * adopted: a copy an earlier run of the proxy started (the events that
 * said it paused on errors were missed: QEMU is asked). */
struct replica_watch *replica_watch_new(const struct cmd_env *env,
                                        struct op *op,
                                        const struct replica_budget *b,
                                        bool adopted);
void replica_watch_free(struct replica_watch *w);
/* Why the watch gave the copy up (NULL: it did not). */
const char *replica_watch_gave_up(const struct replica_watch *w);

#endif
