/*
 * fuzz_upstream: QEMU's side of the chain model without a socket.
 *
 * The chain model talks to QEMU through one function,
 * upstream_send_internal(); the targets that include this header are
 * linked with -Wl,--wrap=upstream_send_internal, so the model's questions
 * land in a FIFO here and the target answers them, in order as QEMU does,
 * with lines of its choosing (delivered the way upstream-queue.c delivers a
 * reply: QEMU's bytes, their members, a lazily parsed value) or as lost.
 * The router's side is here too: chain hooks that check what they are
 * given.  Include it in one file of a target only.
 */
#ifndef QMPROXY_FUZZ_UPSTREAM_H
#define QMPROXY_FUZZ_UPSTREAM_H

#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "chain.h"
#include "linestream.h"
#include "qjson.h"
#include "qmp.h"
#include "upstream.h"
#include "util.h"

struct fake_query {
    char *command;
    upstream_reply_fn fn;
    void *opaque;
};

static struct fake_query *fake_queries;
static int fake_nqueries, fake_cap;

struct upstream_request *__wrap_upstream_send_internal(
    struct upstream *up, json_object *cmd, upstream_reply_fn fn,
    void *opaque);

struct upstream_request *__wrap_upstream_send_internal(
    struct upstream *up, json_object *cmd, upstream_reply_fn fn,
    void *opaque)
{
    json_object *ex;

    (void)up;
    if (fake_nqueries == fake_cap) {
        fake_cap = fake_cap ? fake_cap * 2 : 16;
        fake_queries = xrealloc(fake_queries,
                                sizeof(*fake_queries) * (size_t)fake_cap);
    }
    json_object_object_get_ex(cmd, "execute", &ex);
    fake_queries[fake_nqueries++] = (struct fake_query){
        xstrdup(json_object_get_string(ex)), fn, opaque };
    return NULL;
}

static struct fake_query fake_pop(void)
{
    struct fake_query q = fake_queries[0];

    memmove(fake_queries, fake_queries + 1,
            sizeof(*fake_queries) * (size_t)--fake_nqueries);
    return q;
}

/* Answer the oldest question with this line of QEMU's; false if none. */
static bool fake_answer(const char *line, size_t len)
{
    struct fake_query q;
    struct js_text t;
    json_object *cache = NULL;
    enum qmp_kind kind;

    if (!fake_nqueries) {
        return false;
    }
    q = fake_pop();
    memset(&t, 0, sizeof(t));
    t.raw = line;
    t.len = len;
    linestream_scan_members(&t);
    kind = qmp_classify(&t);
    struct upstream_reply r = {
        /* upstream-queue.c hands on whatever answers the head, as its kind */
        .kind = kind, .raw = line, .len = len, .text = &t,
        .value_cache = &cache,
    };
    if (q.fn) {
        q.fn(q.opaque, &r);
    }
    json_object_put(cache);
    free(q.command);
    return true;
}

/* The oldest question's answer is lost (QEMU went away). */
static bool fake_lose(void)
{
    struct fake_query q;
    struct upstream_reply r = { .lost = true };

    if (!fake_nqueries) {
        return false;
    }
    q = fake_pop();
    if (q.fn) {
        q.fn(q.opaque, &r);
    }
    free(q.command);
    return true;
}

static void fake_lose_all(void)
{
    while (fake_lose()) {
    }
}

/* The command of the oldest question, or NULL. */
static const char *fake_head(void)
{
    return fake_nqueries ? fake_queries[0].command : NULL;
}

/* ---- the router's side: the model's hooks, checked ----------------- */

/* An event of the model's (or of an operation's): named, and its data
 * can be written. */
static void fake_event(void *opaque, const char *name, json_object *data)
{
    (void)opaque;
    FUZZ_ASSERT(name && *name);
    free(qjson_to_string(data));
}

static void fake_changed(void *opaque)
{
    (void)opaque;
}

static void fake_new_overlay(void *opaque, const char *disk,
                             const char *overlay, const char *below,
                             const char *below_format, long long size)
{
    (void)opaque;
    (void)below;
    (void)below_format;
    (void)size;
    FUZZ_ASSERT(disk && overlay);
}

static const struct chain_hooks fake_chain_hooks = {
    .emit_event = fake_event,
    .changed = fake_changed,
    .new_overlay = fake_new_overlay,
};

#endif
