/*
 * chain: backing chains predicted from the traffic and corrected from
 * QEMU's own answers.
 *
 * The model at any moment is QEMU's answer to the last reconciliation with
 * the observations made after it applied on top.  That is consistent
 * because QEMU writes replies and events in the order it does things, and
 * the proxy reads them in that order: everything observed before the reply
 * to its own query-block happened before QEMU answered it.
 */
#include "chain.h"
#include "chain-model.h"
#include "chain-reconcile.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "qmp.h"
#include "upstream.h"
#include "util.h"

/* ---- reconciliation ------------------------------------------------ */

static void run_waiters(struct waiter *w, int n)
{
    for (int i = 0; i < n; i++) {
        w[i].fn(w[i].opaque);
    }
    free(w);
}

/* A reconciliation is over: wake who waited for it, and go again if a
 * change came meanwhile or someone waits for the next one. */
static void reconciliation_done(struct chain *c)
{
    struct waiter *w;
    int nw;

    c->reconciling = false;
    w = c->waiters;
    nw = c->nwaiters;
    c->waiters = c->next_waiters;
    c->nwaiters = c->nnext_waiters;
    c->next_waiters = NULL;
    c->nnext_waiters = 0;
    if (c->dirty) {
        c->dirty = false;
        ch_schedule(c);
    } else if (c->nwaiters) {
        ch_schedule(c);
    }
    run_waiters(w, nw);
}

struct query {
    struct chain *chain;
    unsigned generation;
    json_object **into;
};

static void on_query_reply(void *opaque, const struct upstream_reply *r)
{
    struct query *q = opaque;
    struct chain *c = q->chain;
    json_object **into = q->into;
    bool current = q->generation == c->generation;
    json_object *ret;

    free(q);
    if (!current) {
        return;  /* asked before QEMU went away */
    }
    if (r->lost) {
        c->reconciling = false;
        return;
    }
    if (into == &c->q_block) {
        c->seq_at_block = c->seq;
    } else if (into == &c->q_jobs) {
        c->seq_at_jobs = c->seq;
    }
    ret = upstream_reply_return(r);
    if (ret && !json_object_is_type(ret, into == &c->q_graph
                                         ? json_type_object
                                         : json_type_array)) {
        ret = NULL;  /* not the shape asked for: no answer */
    }
    if (!ret && into != &c->q_graph) {
        log_warn("QEMU refused a query the chain model needs: %.*s",
                 (int)r->len, r->raw);
    }
    json_object_put(*into);
    *into = json_object_get(ret);
    if (--c->pending == 0) {
        ch_reconciled(c);
        reconciliation_done(c);
    }
}

static void ask(struct chain *c, const char *command, bool flat,
                json_object **into)
{
    struct query *q = xcalloc(1, sizeof(*q));
    json_object *args = NULL, *cmd;

    q->chain = c;
    q->generation = c->generation;
    q->into = into;
    if (flat) {
        args = json_object_new_object();
        jobj_add_bool(args, "flat", true);
    }
    cmd = qmp_command(command, args);
    c->pending++;
    upstream_send_internal(c->up, cmd, on_query_reply, q);
    json_object_put(cmd);
}

/*
 * QEMU 7.2 crashes in bdrv_refresh_filename() when query-named-block-nodes
 * walks over the nodes a block job took out of the graph and still holds
 * (seen with block-stream between its end and its dismissal, reproduced on
 * QEMU alone).  A job can reach that point between the moment the proxy
 * asks and the moment QEMU answers, so while any job lives the proxy asks
 * only query-block and query-block-jobs, which walk the disks' own chains,
 * and keeps the node-names it knew; the reconciliation after the last job
 * is gone asks for everything again.
 */
static bool jobs_alive(const struct chain *c)
{
    return c->njobs > 0;
}

/* Ask QEMU for the truth, unless a question is already out (then ask
 * again when it is answered, since the change may postdate it). */
void ch_schedule(struct chain *c)
{
    if (c->lost) {
        return;
    }
    if (c->reconciling) {
        c->dirty = true;
        return;
    }
    c->reconciling = true;
    /* the answers complete each other; ch_reconciled() runs on the last */
    c->pending = 0;
    ask(c, "query-block", false, &c->q_block);
    ask(c, "query-block-jobs", false, &c->q_jobs);
    if (!jobs_alive(c)) {
        ask(c, "query-named-block-nodes", true, &c->q_nodes);
        /* only to name the disk of jobs started behind the proxy's back */
        ask(c, "x-debug-query-block-graph", false, &c->q_graph);
    }
}

/* QEMU answers in order: every event read before this reply happened
 * before QEMU wrote it, so the answer is the newest word on each job. */
static void on_progress_reply(void *opaque, const struct upstream_reply *r)
{
    struct query *q = opaque;
    struct chain *c = q->chain;
    bool current = q->generation == c->generation;
    json_object *jobs = upstream_reply_return(r);
    struct waiter *w;
    int n;

    free(q);
    if (!current) {
        return;  /* asked before QEMU went away: its waiters were woken */
    }
    for (size_t k = 0; jobs && json_object_is_type(jobs, json_type_array)
                       && k < json_object_array_length(jobs); k++) {
        json_object *job = json_object_array_get_idx(jobs, k);
        struct job *j = ch_find_job(c, jobj_str(job, "device"));
        if (j) {
            ch_job_progress(j, job);
        }
    }
    w = c->progress_waiters;
    n = c->nprogress_waiters;
    c->progress_waiters = NULL;
    c->nprogress_waiters = 0;
    run_waiters(w, n);
}

static void add_waiter(struct waiter **list, int *n, void (*fn)(void *),
                       void *opaque);

void chain_refresh_progress(struct chain *c, void (*done)(void *opaque),
                            void *opaque)
{
    struct query *q;
    json_object *cmd;

    if (c->lost || c->njobs == 0) {
        done(opaque);
        return;
    }
    add_waiter(&c->progress_waiters, &c->nprogress_waiters, done, opaque);
    if (c->nprogress_waiters > 1) {
        return;  /* asked already: the same answer will do */
    }
    q = xcalloc(1, sizeof(*q));
    q->chain = c;
    q->generation = c->generation;
    cmd = qmp_command("query-block-jobs", NULL);
    upstream_send_internal(c->up, cmd, on_progress_reply, q);
    json_object_put(cmd);
}

void chain_reconcile(struct chain *c)
{
    ch_schedule(c);
}

static void add_waiter(struct waiter **list, int *n, void (*fn)(void *),
                       void *opaque)
{
    *list = xrealloc(*list, sizeof(**list) * (size_t)(*n + 1));
    (*list)[(*n)++] = (struct waiter){ fn, opaque };
}

void chain_after_reconcile(struct chain *c, void (*done)(void *opaque),
                           void *opaque)
{
    if (c->lost) {
        done(opaque);
        return;
    }
    if (c->reconciling) {
        /* the one running may have been asked before the caller's change */
        add_waiter(&c->next_waiters, &c->nnext_waiters, done, opaque);
        c->dirty = true;
    } else {
        add_waiter(&c->waiters, &c->nwaiters, done, opaque);
        ch_schedule(c);
    }
}

void chain_settle(struct chain *c, void (*done)(void *opaque), void *opaque)
{
    if (c->lost || (!c->reconciling && !c->dirty)) {
        done(opaque);
    } else if (c->dirty) {
        add_waiter(&c->next_waiters, &c->nnext_waiters, done, opaque);
    } else {
        add_waiter(&c->waiters, &c->nwaiters, done, opaque);
    }
}

/* A query answers with QEMU's truth: wait for a reconciliation under
 * way, and ask QEMU afresh while a job runs (its progress moves). */
void chain_refresh(struct chain *c, void (*done)(void *opaque), void *opaque)
{
    if (c->lost || (!c->reconciling && !c->dirty && c->njobs == 0)) {
        done(opaque);
        return;
    }
    if (c->reconciling && !c->dirty && c->njobs == 0) {
        add_waiter(&c->waiters, &c->nwaiters, done, opaque);
        return;
    }
    chain_after_reconcile(c, done, opaque);
}

void chain_seed(struct chain *c, void (*done)(void *opaque), void *opaque)
{
    c->lost = false;
    c->generation++;
    c->reconciling = false;
    c->dirty = false;
    chain_after_reconcile(c, done, opaque);
}

void chain_upstream_lost(struct chain *c)
{
    struct waiter *w = c->waiters, *nw = c->next_waiters;
    struct waiter *pw = c->progress_waiters;
    int n = c->nwaiters, nn = c->nnext_waiters, pn = c->nprogress_waiters;

    c->lost = true;
    c->generation++;
    c->reconciling = false;
    c->dirty = false;
    c->waiters = c->next_waiters = c->progress_waiters = NULL;
    c->nwaiters = c->nnext_waiters = c->nprogress_waiters = 0;
    run_waiters(w, n);
    run_waiters(nw, nn);
    run_waiters(pw, pn);
}

/* ---- life ---------------------------------------------------------- */

struct chain *chain_new(struct upstream *up, const struct chain_hooks *hooks,
                        void *opaque)
{
    struct chain *c = xcalloc(1, sizeof(*c));

    c->up = up;
    c->hooks = hooks;
    c->opaque = opaque;
    c->blockdev_nodes = json_object_new_object();
    c->early = json_object_new_object();
    c->lost = true;
    return c;
}

void chain_free(struct chain *c)
{
    if (!c) {
        return;
    }
    for (int i = 0; i < c->ndisks; i++) {
        ch_disk_free(c->disks[i]);
    }
    free(c->disks);
    for (int i = 0; i < c->njobs; i++) {
        ch_job_free(c->jobs[i]);
    }
    free(c->jobs);
    free(c->waiters);
    free(c->next_waiters);
    free(c->progress_waiters);
    json_object_put(c->blockdev_nodes);
    json_object_put(c->early);
    json_object_put(c->q_block);
    json_object_put(c->q_nodes);
    json_object_put(c->q_jobs);
    json_object_put(c->q_graph);
    json_object_put(c->loaded);
    free(c);
}

