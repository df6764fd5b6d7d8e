/*
 * Unit tests for the operations engine (proxy/ops/): its step machines
 * and state tables, driven by real conversations recorded through qmproxy
 * against QEMU 7.2 (tests/data/ops/, see its README) and played again on
 * the rig with the test as QEMU, so every command the engine sends is
 * checked against what it sent to a real QEMU, and a failure can be put
 * at an exact point of a real conversation.
 */
#include <check.h>

#include "check_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "replay.h"
#include "rig.h"
#include "util.h"

/* The recordings name their images under this fixed folder; the engine
 * checks that a new image's folder exists and that nothing is there. */
#define ROOT "/tmp/qmpops"

struct t {
    struct rig rig;
    struct replay *rp;
};

static void fresh_folders(void)
{
    ck_assert_int_eq(system("rm -rf " ROOT " && mkdir -p " ROOT "/src "
                            ROOT "/dest"), 0);
}

static void start(struct t *t, const char *recording)
{
    fresh_folders();
    rig_init(&t->rig, 0);
    t->rp = replay_load(recording);
    replay_start(t->rp, &t->rig);
}

static void stop(struct t *t)
{
    replay_free(t->rp);        /* the client leaves ... */
    rig_spin(&t->rig, 20);     /* ... and the proxy sees it go */
    rig_down(&t->rig);
}

/* QEMU's last recorded answer to the proxy's x-debug-query-block-graph
 * (owned): the graph as the end of the recording left it. */
static char *last_graph(struct t *t)
{
    int asked = -1;
    char *text = NULL;

    for (int i = 0; replay_entry(t->rp, i); i++) {
        json_object *e = replay_entry(t->rp, i), *msg;
        if (!json_object_object_get_ex(e, "msg", &msg)) {
            continue;
        }
        if (jobj_int(e, "client", -1) == 0 && jobj_str(msg, "execute")
            && !strcmp(jobj_str(msg, "execute"),
                       "x-debug-query-block-graph")) {
            asked = i;
        } else if (asked >= 0 && jobj_int(e, "client", -1) == 0
                   && json_object_object_get_ex(msg, "return", NULL)) {
            /* QEMU answers in order: the first answer after the last
             * graph question that is an object is the graph */
            json_object *ret = NULL;
            json_object_object_get_ex(msg, "return", &ret);
            if (json_object_is_type(ret, json_type_object)
                && json_object_object_get_ex(ret, "nodes", NULL)) {
                free(text);
                text = replay_msg_text(t->rp, i);
                asked = -1;
            }
        }
    }
    ck_assert_msg(text != NULL, "no block graph in the recording");
    return text;
}

/* Send a command as the client; its reply (owned).  An operation first
 * checks that the model is QEMU's truth (chain_settle): QEMU answers
 * that block-graph question with the graph the recording ended with. */
static json_object *ask(struct t *t, const char *cmd)
{
    json_object *sent;
    char *graph;

    rig_send(replay_client(t->rp), cmd);
    sent = replay_proxy_sends(t->rp);
    ck_assert_str_eq(jobj_str(sent, "execute"), "x-debug-query-block-graph");
    json_object_put(sent);
    graph = last_graph(t);
    replay_qemu_writes(t->rp, graph);
    free(graph);
    return replay_client_gets(t->rp);
}

static void expect_refused(struct t *t, const char *cmd, const char *words)
{
    json_object *reply = ask(t, cmd);
    const char *desc = jobj_str(jobj_typed(reply, "error", json_type_object),
                                "desc");
    ck_assert_msg(desc && strstr(desc, words), "%s: %s", cmd,
                  json_object_to_json_string(reply));
    json_object_put(reply);
}

START_TEST(test_snapshot_mirror_then_reopen)
{
    struct t t;

    start(&t, "mirror-reopen");
    /* every command the engine sends, and both replies, as recorded:
     * the transaction, two drive-mirror with auto-finalize off, both
     * copies ready, then block-job-complete of each to PENDING and only
     * then job-finalize of each (all or nothing) */
    ck_assert_int_eq(replay_until(t.rp, NULL, NULL), -1);
    /* the verb table: a pivoted operation can be neither reopened nor
     * aborted again; QEMU hears nothing of it but the freshness check */
    expect_refused(&t, "{\"execute\": \"qmproxy-snapshot-abort\", "
                       "\"arguments\": {\"name\": \"move\"}}",
                   "operation move is pivoted; only a snapshot whose copies "
                   "are running or ready can be aborted");
    expect_refused(&t, "{\"execute\": \"qmproxy-snapshot-reopen\", "
                       "\"arguments\": {\"name\": \"move\", "
                       "\"target\": \"source\"}}",
                   "operation move is pivoted; its disks can be reopened "
                   "only when every copy is ready");
    expect_refused(&t, "{\"execute\": \"qmproxy-snapshot-abort\", "
                       "\"arguments\": {\"name\": \"nosuch\"}}",
                   "No operation named 'nosuch'");
    rig_spin(&t.rig, 20);
    {
        char *sent = rig_drain(t.rig.qemu);
        ck_assert_str_eq(sent, "");
        free(sent);
    }
    stop(&t);
}
END_TEST

START_TEST(test_snapshot_mirror_then_abort)
{
    struct t t;

    start(&t, "mirror-abort");
    /* the abort: copies cancelled, each overlay folded back by an active
     * commit (base-node: the old top), that commit completed */
    ck_assert_int_eq(replay_until(t.rp, NULL, NULL), -1);
    stop(&t);
}
END_TEST

static bool proxy_sends(json_object *e, void *command)
{
    json_object *msg;
    return jobj_int(e, "client", -1) == 0 && jobj_str(e, "from")
        && !strcmp(jobj_str(e, "from"), "qmproxy")
        && json_object_object_get_ex(e, "msg", &msg)
        && jobj_str(msg, "execute")
        && !strcmp(jobj_str(msg, "execute"), command);
}

/*
 * QEMU refuses the snapshot transaction: the operation fails before any
 * disk is touched, says so, and starts no copy.
 */
START_TEST(test_refused_snapshot_touches_nothing)
{
    struct t t;
    json_object *sent, *reply;
    const char *desc;
    char *rest;

    start(&t, "mirror-reopen");
    ck_assert_int_ge(replay_until(t.rp, proxy_sends, "transaction"), 0);
    sent = replay_proxy_sends(t.rp);
    ck_assert_str_eq(jobj_str(sent, "execute"), "transaction");
    json_object_put(sent);
    replay_qemu_writes(t.rp, "{\"error\": {\"class\": \"GenericError\", "
                             "\"desc\": \"Could not create file: No space "
                             "left on device\"}}");
    reply = replay_client_gets(t.rp);
    desc = jobj_str(jobj_typed(reply, "error", json_type_object), "desc");
    ck_assert_msg(desc && strstr(desc, "the snapshot transaction was "
                                       "refused, so no disk was touched")
                  && strstr(desc, "No space left on device")
                  && strstr(desc, "disk0: untouched")
                  && strstr(desc, "disk1: untouched"),
                  "%s", json_object_to_json_string(reply));
    json_object_put(reply);
    rig_spin(&t.rig, 50);
    rest = rig_drain(t.rig.qemu);
    ck_assert_msg(!strstr(rest, "drive-mirror") && !strstr(rest, "block-"),
                  "after a refused snapshot the proxy sent: %s", rest);
    free(rest);
    stop(&t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("operations");
    TCase *tc = tcase_create("replayed");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_snapshot_mirror_then_reopen);
    tcase_add_test(tc, test_snapshot_mirror_then_abort);
    tcase_add_test(tc, test_refused_snapshot_touches_nothing);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
