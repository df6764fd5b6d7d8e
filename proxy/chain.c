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

/*
 * The block graph's fingerprint: FNV-1a over the text of QEMU's "return"
 * (no parsing; the graph's node ids are numbered in walk order, so the
 * same graph gives the same text).  0: no usable answer.
 */
static uint64_t graph_fingerprint(const struct upstream_reply *r)
{
    const struct js_member *m;
    size_t end;
    uint64_t h;

    if (r->lost || r->kind != QMP_RETURN || !r->text
        || !(m = js_text_member(r->text, "return"))) {
        return 0;
    }
    end = m->value_end < r->text->len ? m->value_end + 1 : r->text->len;
    h = end > m->value_start
        ? fnv1a(FNV1A_START, r->text->raw + m->value_start,
                end - m->value_start)
        : FNV1A_START;
    return h ? h : 1;
}

struct query {
    struct chain *chain;
    unsigned generation;
    json_object **into;
};

static bool jobs_alive(const struct chain *c);
static void ask(struct chain *c, const char *command, bool flat,
                json_object **into);

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
    } else if (into == &c->q_graph) {
        c->graph_print = graph_fingerprint(r);
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
    if (--c->pending > 0) {
        return;
    }
    if (!c->nodes_asked
        && ((!jobs_alive(c) && c->q_jobs
             && json_object_array_length(c->q_jobs) == 0) || !c->seeded)
        && ch_needs_node_names(c)) {
        /* the second step, only when QEMU's answer has layers the model
         * cannot name: the node-wide query is the costliest of all.  At
         * seeding it is asked even while a job runs (jobs found then are
         * not at their end, as a rule), since nothing else names them. */
        c->nodes_asked = true;
        ask(c, "query-named-block-nodes", true, &c->q_nodes);
        return;
    }
    ch_reconciled(c);
    if (c->graph_known) {
        ch_sizes_record(c);
    }
    reconciliation_done(c);
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
 * asks and the moment QEMU answers, so while any job lives (one the model
 * knows, or one an event named before the reply that started it) the
 * proxy never asks it, and keeps the node-names it knew.
 */
static bool jobs_alive(const struct chain *c)
{
    return c->njobs > 0 || json_object_object_length(c->early) > 0;
}

/*
 * Ask QEMU for the truth, unless a question is already out (then ask
 * again when it is answered, since the change may postdate it).
 *
 * What is asked is what the model cannot know otherwise, and no more:
 * query-block (the disks' chains) and query-block-jobs always;
 * x-debug-query-block-graph when no job runs (its fingerprint is the
 * freshness check of chain_refresh) or when an event named a job the
 * proxy did not see start (the graph names its disk); and
 * query-named-block-nodes, the costliest (every node's image info), only
 * as a second step when QEMU's answer has a layer the model cannot name
 * (see on_query_reply).  A job's READY or status events ask nothing.
 */
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
    c->nodes_asked = false;
    c->graph_print = 0;  /* known again only if the graph is asked */
    ask(c, "query-block", false, &c->q_block);
    ask(c, "query-block-jobs", false, &c->q_jobs);
    if (!jobs_alive(c) || json_object_object_length(c->early) > 0) {
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
static void settle_step(struct chain *c, void (*done)(void *opaque),
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

/*
 * Freshness: is the model still QEMU's truth?  A change made through the
 * proxy is followed and asked about, but QEMU may have other monitors (a
 * second -qmp, HMP, another process), and what they do passes nobody's
 * eyes but QEMU's: QEMU sends no event for a snapshot, a blockdev-add, a
 * reopen.  So before answering from the model the proxy asks QEMU for its
 * block graph (x-debug-query-block-graph: node names and edges only, no
 * image headers or file sizes - a third to a half of what query-block
 * costs) and compares its fingerprint with the one taken at the last
 * reconciliation; only when they differ does it reconcile in full.
 * The graph shows no sizes, and QEMU has no query cheaper than query-block
 * that does, so the sizes the image files give themselves (a qcow2
 * header's size, a raw file's length: what block_resize rewrites before
 * QEMU answers it) are compared the same way.
 */
struct fresh_check {
    struct chain *chain;
    unsigned generation;
    bool progress;        /* chain_refresh (a query) or chain_settle */
    bool graph_same;      /* the graph as at the last reconciliation */
    void (*done)(void *opaque);
    void *opaque;
};

/* The check ends: answered, or handed on to what it needs. */
static void fresh_check_end(struct fresh_check *f, bool sizes_same,
                            bool sizes_unknown)
{
    struct chain *c = f->chain;
    void (*done)(void *) = f->done;
    void *done_opaque = f->opaque;
    bool current = f->generation == c->generation;
    bool graph_same = f->graph_same;
    bool progress = f->progress;

    free(f);
    if (!current || c->lost) {
        done(done_opaque);
    } else if (c->reconciling || c->dirty || c->njobs) {
        /* something passed meanwhile: wait for QEMU's answer to it */
        (progress ? chain_refresh : settle_step)(c, done, done_opaque);
    } else if (graph_same && ch_predictions_hold(c) && sizes_same) {
        if (sizes_unknown) {
            log_debug("the chains are answered as the block graph shows "
                      "them; a resize through another monitor may not be "
                      "seen (image sizes unknown)");
        }
        done(done_opaque);
    } else if (ch_unverified(c)) {
        /* a job event's prediction to check: QEMU's answer says whether
         * it was right (a wrong one is warned about) */
        log_debug("checking the chains predicted from job events with QEMU");
        chain_after_reconcile(c, done, done_opaque);
    } else {
        log_info("%s changed behind the proxy's back (another monitor?): "
                 "asking QEMU for the chains again",
                 graph_same ? "an image's size" : "the block graph");
        ch_nothing_predicted(c);
        chain_after_reconcile(c, done, done_opaque);
    }
}

/* The sizes are back (on the loop), or did not come in time: unknown is
 * no change, so the answer rests on the graph alone (chain-sizes.c logs
 * it); the chain may have moved meanwhile, which fresh_check_end sees. */
static void on_sizes_compared(void *opaque, enum ch_sizes_verdict v)
{
    struct fresh_check *f = opaque;

    if (v == CH_SIZES_DROPPED) {
        free(f);  /* the chain is being freed */
        return;
    }
    fresh_check_end(f, v != CH_SIZES_CHANGED, v == CH_SIZES_UNKNOWN);
}

static void on_graph_check(void *opaque, const struct upstream_reply *r)
{
    struct fresh_check *f = opaque;
    struct chain *c = f->chain;
    uint64_t print = graph_fingerprint(r);

    f->graph_same = print && print == c->graph_print && c->graph_known;
    if (f->generation == c->generation && !c->lost && !c->reconciling
        && !c->dirty && !c->njobs && f->graph_same) {
        /* only the sizes can say otherwise: they are read off the loop
         * (a file on a network file system may wait for its server) */
        ch_sizes_compare(c, on_sizes_compared, f);
        return;
    }
    fresh_check_end(f, false, false);
}

static void check_graph(struct chain *c, bool progress,
                        void (*done)(void *opaque), void *opaque)
{
    struct fresh_check *f = xcalloc(1, sizeof(*f));
    json_object *cmd = qmp_command("x-debug-query-block-graph", NULL);

    *f = (struct fresh_check){ c, c->generation, progress, false, done,
                               opaque };
    upstream_send_internal(c->up, cmd, on_graph_check, f);
    json_object_put(cmd);
}

/* A query answers with QEMU's truth: wait for a reconciliation under
 * way, ask QEMU afresh while a job runs (its progress moves), and
 * otherwise check that nothing changed behind the proxy's back. */
void chain_refresh(struct chain *c, void (*done)(void *opaque), void *opaque)
{
    if (c->lost) {
        done(opaque);
        return;
    }
    if (!c->reconciling && !c->dirty && c->njobs == 0) {
        check_graph(c, true, done, opaque);
        return;
    }
    if (c->reconciling && !c->dirty && c->njobs == 0 && !ch_unverified(c)) {
        add_waiter(&c->waiters, &c->nwaiters, done, opaque);
        return;
    }
    /* a job runs (its progress moves), or a prediction made after the
     * questions under way were asked: an answer asked from now on */
    chain_after_reconcile(c, done, opaque);
}

/* A job QEMU just ended and will dismiss by itself: its last word
 * (JOB_STATUS_CHANGE to null) is on its way. */
static bool job_being_dismissed(const struct chain *c)
{
    for (int i = 0; i < c->njobs; i++) {
        if (same(c->jobs[i]->status, "concluded")
            && !c->jobs[i]->manual_dismiss) {
            return true;
        }
    }
    return false;
}

/*
 * An operation starts from QEMU's truth: a reconciliation under way or
 * due is waited for, and with no job running the block graph is checked
 * as for a query.  A job event's prediction is never acted on unchecked:
 * with no job running the graph check confirms it or asks again; with a
 * job running (no fingerprint then) QEMU is asked - one question for the
 * operation, not one for each event.
 */
static void settle_step(struct chain *c, void (*done)(void *opaque),
                        void *opaque)
{
    if (c->lost) {
        done(opaque);
    } else if (job_being_dismissed(c)
               || (ch_unverified(c)
                   && (c->njobs > 0 || c->reconciling || c->dirty))) {
        /* QEMU has ended the job: only an answer asked from now on shows
         * what it left (a reconciliation under way may have been answered
         * before it ended), so settled is after one that starts now, or
         * right after the one under way */
        bool under_way = c->reconciling;

        ch_schedule(c);
        if (under_way) {
            add_waiter(&c->next_waiters, &c->nnext_waiters, done, opaque);
        } else {
            add_waiter(&c->waiters, &c->nwaiters, done, opaque);
        }
    } else if (!c->reconciling && !c->dirty) {
        if (c->njobs == 0) {
            check_graph(c, false, done, opaque);
        } else {
            done(opaque);
        }
    } else if (c->dirty) {
        add_waiter(&c->next_waiters, &c->nnext_waiters, done, opaque);
    } else {
        add_waiter(&c->waiters, &c->nwaiters, done, opaque);
    }
}

/* An operation waiting to settle, and how often it was sent round again. */
struct settling {
    struct chain *chain;
    unsigned generation;
    int rounds;
    void (*done)(void *opaque);
    void *opaque;
};

/*
 * Settled - unless a job event's prediction came while QEMU was being
 * asked (the model keeps it over QEMU's older answer, unverified): then
 * once more, asked from now on.  Each round means a new event; after a
 * few the operation goes on, as it would have before predictions.
 */
static void settled(void *opaque)
{
    struct settling *w = opaque;
    struct chain *c = w->chain;

    if (!c->lost && w->generation == c->generation && ch_unverified(c)
        && w->rounds++ < 4) {
        settle_step(c, settled, w);
        return;
    }
    w->done(w->opaque);
    free(w);
}

void chain_settle(struct chain *c, void (*done)(void *opaque), void *opaque)
{
    struct settling *w = xcalloc(1, sizeof(*w));

    *w = (struct settling){ c, c->generation, 0, done, opaque };
    settle_step(c, settled, w);
}

void chain_seed(struct chain *c, void (*done)(void *opaque), void *opaque)
{
    c->lost = false;
    c->generation++;
    c->reconciling = false;
    c->dirty = false;
    /* commands sent to an earlier QEMU are not coming back */
    c->commands_in_flight = 0;
    c->stranger_job = false;
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

struct chain *chain_new(struct event_base *base, struct upstream *up,
                        const struct chain_hooks *hooks, void *opaque)
{
    struct chain *c = xcalloc(1, sizeof(*c));

    c->base = base;
    c->up = up;
    c->hooks = hooks;
    c->opaque = opaque;
    c->blockdev_nodes = json_object_new_object();
    c->early = json_object_new_object();
    c->lost = true;
    return c;
}

/* At exit nobody is woken (the operations that waited are gone already),
 * but what chain_settle allocated for its waiters is freed. */
static void drop_waiters(struct waiter *w, int n)
{
    for (int i = 0; i < n; i++) {
        if (w[i].fn == settled) {
            free(w[i].opaque);
        }
    }
    free(w);
}

void chain_free(struct chain *c)
{
    if (!c) {
        return;
    }
    ch_sizes_stop(c);
    for (int i = 0; i < c->ndisks; i++) {
        ch_disk_free(c->disks[i]);
    }
    free(c->disks);
    for (int i = 0; i < c->njobs; i++) {
        ch_job_free(c->jobs[i]);
    }
    free(c->jobs);
    drop_waiters(c->waiters, c->nwaiters);
    drop_waiters(c->next_waiters, c->nnext_waiters);
    drop_waiters(c->progress_waiters, c->nprogress_waiters);
    json_object_put(c->blockdev_nodes);
    json_object_put(c->early);
    json_object_put(c->q_block);
    json_object_put(c->q_nodes);
    json_object_put(c->q_jobs);
    json_object_put(c->q_graph);
    json_object_put(c->loaded);
    free(c);
}

