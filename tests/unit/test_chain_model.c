/*
 * The backing-chain model (chain.h) driven through the real router and
 * upstream, with a scripted QEMU peer that answers what a real QEMU 7.2
 * answered (tests/data/chain/, recorded by record.py there).  The
 * test decides when each reply and event reaches the proxy, which is how
 * the model's ordering rules can be tested at all.
 *
 * The model is read with chain_to_json() (and qmproxy-query-chain, the
 * same through the router), before QEMU's answers (the prediction) and
 * after them (the reconciliation); what the proxy asks QEMU is read on
 * QEMU's side of the socket.
 */
#include <check.h>

#include "check_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "fixture.h"
#include "log.h"
#include "rig.h"
#include "router.h"
#include "session.h"
#include "util.h"

/* the client negotiates oob (several commands in QEMU's hands at once) */
static bool client_oob;

/* What the proxy asks when no job lives: the block graph too (its
 * fingerprint), and the node-names as a second step only when QEMU's
 * answer has a layer the model cannot name (ASK_ALL); while a job lives
 * never the node-names (QEMU 7.2 crashes on query-named-block-nodes
 * around a block-stream's end). */
#define ASK_KNOWN "query-block query-block-jobs x-debug-query-block-graph"
#define ASK_ALL ASK_KNOWN " query-named-block-nodes"
#define ASK_JOBS "query-block query-block-jobs"

struct t {
    struct rig r;
    struct fixture *fx;
    int c;                /* a client that takes the proxy's events */
    char *prefix;         /* the folder of the recorded images */
    char *client_got;     /* what the client has been sent so far */
    FILE *log;            /* the proxy's stderr */
    long log_read;
    int stderr_fd;        /* the real one, for sanitizers' reports */
    char **pending;       /* the proxy's questions QEMU has not answered */
    int npending;
};

/* The loop's turns for what is under way, the image size reads on their
 * thread included (bounded: 5 s at most). */
static void spin(struct t *t)
{
    rig_spin(&t->r, 3);
    for (int i = 0; i < 5000 && !chain_sizes_idle(router_chain(t->r.router));
         i++) {
        rig_spin(&t->r, 1);
    }
}

/* The proxy's diagnostics go to a file the test reads, until stop(). */
static void capture_log(struct t *t)
{
    fflush(stderr);
    t->stderr_fd = dup(STDERR_FILENO);
    ck_assert_int_ge(t->stderr_fd, 0);
    t->log = tmpfile();
    ck_assert_ptr_nonnull(t->log);
    ck_assert_int_ge(dup2(fileno(t->log), STDERR_FILENO), 0);
    setvbuf(stderr, NULL, _IONBF, 0);
    log_set_level(LOG_DEBUG);
}

/* The log lines written since last asked. */
static char *log_since(struct t *t)
{
    struct strbuf sb = STRBUF_INIT;
    char buf[4096];
    size_t n;

    fflush(stderr);
    fseek(t->log, t->log_read, SEEK_SET);
    while ((n = fread(buf, 1, sizeof(buf), t->log)) > 0) {
        strbuf_add(&sb, buf, n);
    }
    t->log_read = ftell(t->log);
    return strbuf_detach(&sb, NULL);
}

/* Has the proxy logged a line at this level containing text (since last
 * asked)?  level: "warning", "debug", ... */
static bool logged(const char *log, const char *level, const char *text)
{
    char *tag = xasprintf(" qmproxy %s: ", level);
    bool found = false;

    for (const char *l = log; l && *l && !found;) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        char *line = xstrndup(l, len);
        found = strstr(line, tag) && strstr(line, text);
        free(line);
        l = end ? end + 1 : NULL;
    }
    free(tag);
    return found;
}

static void expect_no_warning(struct t *t)
{
    char *log = log_since(t);
    ck_assert_msg(!strstr(log, " warning: "), "%s", log);
    free(log);
}

/* Forget the log so far (the warning of the "behind" step, say). */
static void forget_log(struct t *t)
{
    free(log_since(t));
}

static void client_take(struct t *t)
{
    char *got = rig_drain(t->c);
    char *all = xasprintf("%s%s", t->client_got, got);
    free(t->client_got);
    free(got);
    t->client_got = all;
}

/* What the client got since last asked. */
static char *client_since(struct t *t)
{
    char *s;
    client_take(t);
    s = t->client_got;
    t->client_got = xstrdup("");
    return s;
}

/*
 * The proxy's questions to QEMU since last looked, added to those not yet
 * answered; returns the names of all unanswered ones, in order.  Only
 * questions may be there: a client's command reaching QEMU here would be
 * a test going wrong.
 */
static char *asked(struct t *t)
{
    char *sent, *p;

    spin(t);
    sent = rig_drain(t->r.qemu);
    p = sent;
    while (*p) {
        json_tokener *tok = json_tokener_new();
        json_object *cmd = json_tokener_parse_ex(tok, p, (int)strlen(p));
        const char *name;

        ck_assert_msg(cmd != NULL, "not a command: %s", p);
        p += json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        name = json_object_get_string(json_object_object_get(cmd,
                                                             "execute"));
        ck_assert_msg(!json_object_object_get_ex(cmd, "id", NULL),
                      "a client's command among the proxy's: %s",
                      json_object_to_json_string(cmd));
        t->pending = xrealloc(t->pending, sizeof(*t->pending)
                              * (size_t)(t->npending + 1));
        t->pending[t->npending++] = xstrdup(name);
        json_object_put(cmd);
    }
    free(sent);
    struct strbuf names = STRBUF_INIT;
    for (int i = 0; i < t->npending; i++) {
        strbuf_addf(&names, "%s%s", i ? " " : "", t->pending[i]);
    }
    return strbuf_detach(&names, NULL);
}

/* QEMU answers the first n unanswered questions as it did after step. */
static void reply(struct t *t, const char *step, int n)
{
    ck_assert_int_le(n, t->npending);
    for (int i = 0; i < n; i++) {
        char *label = xasprintf("%s/%s", step, t->pending[i]);
        char *text = fixture_reply(t->fx, label, false);
        rig_send(t->r.qemu, text);
        free(text);
        free(label);
        free(t->pending[i]);
    }
    memmove(t->pending, t->pending + n, sizeof(*t->pending)
            * (size_t)(t->npending - n));
    t->npending -= n;
    spin(t);
}

/* The proxy's questions, answered as QEMU answered them after step,
 * and those it asks once they are answered (the node-names' second
 * step); returns their names in order ("" when it asked nothing). */
static char *answer(struct t *t, const char *step)
{
    char *names = asked(t);
    reply(t, step, t->npending);
    for (int round = 0; round < 4; round++) {
        char *more = asked(t);
        if (strcmp(more, "query-named-block-nodes")) {
            free(more);  /* no second step (a new reconciliation, maybe) */
            break;
        }
        char *both = xasprintf("%s%s%s", names, names[0] ? " " : "", more);
        free(names);
        free(more);
        names = both;
        reply(t, step, t->npending);
    }
    return names;
}

static void expect_asked(struct t *t, const char *step, const char *names)
{
    char *asked = answer(t, step);
    ck_assert_str_eq(asked, names);
    free(asked);
}

/* The proxy has nothing in QEMU's hands. */
static void expect_quiet(struct t *t)
{
    expect_asked(t, "-", "");
}

/* A client sends the recorded command of step; QEMU gets it as it is and
 * answers as it did (the events it wrote before its reply, then the
 * reply); the client gets the reply. */
static void play(struct t *t, const char *step)
{
    const char *cmd = fixture_command(t->fx, step);
    char *up, *answered, *reply;

    rig_send(t->c, cmd);
    spin(t);
    up = rig_drain(t->r.qemu);
    ck_assert_str_eq(up, cmd);
    free(up);
    answered = fixture_answer(t->fx, step);
    rig_send(t->r.qemu, answered);
    free(answered);
    spin(t);
    client_take(t);
    reply = fixture_reply(t->fx, step, true);
    ck_assert_msg(strstr(t->client_got, reply), "%s not in %s", reply,
                  t->client_got);
    free(reply);
}

/* QEMU writes the events it wrote after its reply to step. */
static void events_after(struct t *t, const char *step)
{
    char *ev = fixture_events_after(t->fx, step);
    rig_send(t->r.qemu, ev);
    free(ev);
    spin(t);
}

static void event(struct t *t, const char *step, const char *name,
                  const char *job, const char *status)
{
    char *ev = fixture_event(t->fx, step, name, job, status);
    rig_send(t->r.qemu, ev);
    free(ev);
    spin(t);
}

/* Every question the proxy asks, answered from answers_from, until it
 * asks no more. */
static void answer_all(struct t *t, const char *answers_from)
{
    for (int round = 0; round < 8; round++) {
        char *names = answer(t, answers_from);
        bool more = names[0] != 0;
        free(names);
        if (!more) {
            return;
        }
    }
    ck_abort_msg("the proxy kept asking");
}

static void nothing(void *opaque)
{
    *(bool *)opaque = true;
}

/* Someone needs the answer (qmproxy-query-chain does this): the model is
 * checked with QEMU, whose answers are those recorded after answers_from;
 * returns the names of the questions asked for it. */
static char *verify(struct t *t, const char *answers_from)
{
    bool done = false;
    struct strbuf all = STRBUF_INIT;

    chain_refresh(router_chain(t->r.router), nothing, &done);
    for (int round = 0; round < 8 && !done; round++) {
        char *names = answer(t, answers_from);
        strbuf_addf(&all, "%s%s", all.len && names[0] ? " " : "", names);
        free(names);
    }
    ck_assert_msg(done, "the check never ended");
    return strbuf_detach(&all, NULL);
}

/* A step as a client would run it, QEMU's later events included, the
 * proxy's questions answered from answers_from, and then the model
 * checked as a client asking for it would have it checked (a job event
 * asks nothing by itself). */
static void run(struct t *t, const char *step, const char *answers_from)
{
    play(t, step);
    events_after(t, step);
    answer_all(t, answers_from);
    free(verify(t, answers_from));
}

/* The steps of none.qmp in order, each with the step whose recorded
 * answers QEMU gives to the proxy's questions after it. */
static const char *const none_steps[][2] = {
    { "snap", "snap" }, { "txn", "txn" }, { "behind", "behind" },
    { "mirror", "mirror" }, { "speed", "ready" }, { "complete", "complete" },
    { "mirror2", "mirror2" }, { "cancel", "cancel" }, { "commit", "commit" },
    { NULL, NULL },
};

/* Run the steps of none.qmp before step, as a client would. */
static void run_until(struct t *t, const char *step)
{
    for (int i = 0; none_steps[i][0] && strcmp(none_steps[i][0], step); i++) {
        run(t, none_steps[i][0], none_steps[i][1]);
    }
}

static struct chain *chain(struct t *t)
{
    return router_chain(t->r.router);
}

static void replace_all(char **s, const char *what, const char *with)
{
    struct strbuf sb = STRBUF_INIT;
    const char *p = *s, *at;

    while ((at = strstr(p, what))) {
        strbuf_add(&sb, p, (size_t)(at - p));
        strbuf_adds(&sb, with);
        p = at + strlen(what);
    }
    strbuf_adds(&sb, p);
    free(*s);
    *s = strbuf_detach(&sb, NULL);
}

/* A model as JSON, without the clock's part (started-at) and with the
 * images' folder left out, for comparing. */
static char *plain(struct t *t, json_object *disks)
{
    char *s;

    for (size_t i = 0; i < json_object_array_length(disks); i++) {
        json_object *job;
        if (json_object_object_get_ex(json_object_array_get_idx(disks, i),
                                      "job", &job)) {
            json_object_object_del(job, "started-at");
        }
    }
    s = xstrdup(json_object_to_json_string_ext(
                    disks, JSON_C_TO_STRING_PLAIN
                           | JSON_C_TO_STRING_NOSLASHESCAPE));
    replace_all(&s, t->prefix, "");
    return s;
}

/* The model of one disk as chain_to_json() has it. */
static char *model(struct t *t, const char *disk)
{
    json_object *a = json_object_new_array();
    char *s;

    json_object_array_add(a, chain_to_json(chain(t), disk));
    s = plain(t, a);
    json_object_put(a);
    return s;
}

#define ck_model(t, disk, want)                 \
    do {                                        \
        char *got_ = model(t, disk);            \
        ck_assert_str_eq(got_, want);           \
        free(got_);                             \
    } while (0)

/* The proxy starts (with a saved model, when given) in front of the
 * QEMU of the recording, in the state it had after step. */
static void start_at(struct t *t, const char *shape, json_object *saved,
                     const char *step)
{
    char *file = xasprintf("%s.qmp", shape), *greeting;

    memset(t, 0, sizeof(*t));
    capture_log(t);
    t->fx = fixture_load(file);
    t->prefix = xasprintf("/tmp/qmpc/%s/", shape);
    t->client_got = xstrdup("");
    free(file);
    rig_init(&t->r, SESSION_EXTRAS_ALL);
    if (saved) {
        chain_load(chain(t), saved);
    }
    greeting = fixture_greeting(t->fx);
    rig_connect(&t->r, greeting);
    free(greeting);
    /* the node-names only when a disk of that QEMU has backing layers */
    char *names = answer(t, step);
    ck_assert_msg(!strcmp(names, ASK_KNOWN) || !strcmp(names, ASK_ALL),
                  "seeding asked %s", names);
    free(names);
    t->c = rig_client_caps(&t->r, client_oob);
}

static void start(struct t *t, const char *shape)
{
    start_at(t, shape, NULL, "seed");
}

static void stop(struct t *t)
{
    close(t->c);
    rig_spin(&t->r, 2);
    rig_down(&t->r);
    fixture_free(t->fx);
    free(t->prefix);
    free(t->client_got);
    for (int i = 0; i < t->npending; i++) {
        free(t->pending[i]);
    }
    free(t->pending);
    fflush(stderr);
    dup2(t->stderr_fd, STDERR_FILENO);
    close(t->stderr_fd);
    fclose(t->log);
}

/* ---- the model's JSON, piece by piece ----------------------------- */

#define RW "false"
#define RO "true"
#define SIZE ",\"virtual-size\":67108864"
#define N(name) ",\"node-name\":\"" name "\""
#define LAYER(file, node, ro, size) \
    "{\"file\":\"" file "\",\"format\":\"qcow2\"" node ",\"read-only\":" \
    ro size "}"
/* -M none: the device names the disk */
#define DISK(dev, top, layers, rest) \
    "[{\"disk\":\"" dev "\",\"device\":\"" dev "\"" top ",\"chain\":[" \
    layers "]" rest "}]"
/* -M q35 with -blockdev: the qdev id does */
#define QDISK(top, layers, rest) \
    "[{\"disk\":\"disk0\",\"device\":\"\",\"qdev\":" \
    "\"/machine/peripheral/disk0/virtio-backend\"" top ",\"chain\":[" \
    layers "]" rest "}]"
#define MIRROR(file, job, type, status, ready, off, len) \
    ",\"mirror\":{\"file\":\"" file "\",\"format\":\"qcow2\",\"job\":\"" \
    job "\",\"type\":\"" type "\",\"status\":\"" status "\",\"ready\":\"" \
    ready "\",\"offset\":" off ",\"len\":" len "}"
#define JOB(id, type, status, off, len, ready) \
    ",\"job\":{\"id\":\"" id "\",\"type\":\"" type "\",\"status\":\"" \
    status "\",\"offset\":" off ",\"len\":" len ",\"ready\":" ready \
    ",\"started-by\":1}"
#define M32 "33554432"

/* none.qmp: the node-names QEMU gave the -drive images */
#define BASE0 LAYER("disk0.qcow2", N("#block197"), RO, SIZE)
#define BASE1 LAYER("disk1.qcow2", N("#block310"), RO, SIZE)
#define S01 LAYER("d0-s1.qcow2", N("d0s1"), RO, SIZE)
#define S02 LAYER("d0-s2.qcow2", N("d0s2"), RW, SIZE)
#define S11 LAYER("d1-s1.qcow2", N("d1s1"), RO, SIZE)
/* disk0 once snap, txn and behind are done, and a copy m0 of it */
#define DISK0 DISK("disk0", N("d0s2"), S02 "," S01 "," BASE0, "")
#define DISK0_M0(status, ready, off, len, jready) \
    DISK("disk0", N("d0s2"), S02 "," S01 "," BASE0, \
         MIRROR("d0-m.qcow2", "m0", "copy", status, ready, off, len) \
         JOB("m0", "mirror", status, off, len, jready))
/* disk0 pivoted to that copy */
#define PIVOTED(node) DISK("disk0", node, \
    LAYER("d0-m.qcow2", node, RW, SIZE) "," S01 "," BASE0, "")

/* ---- prediction ---------------------------------------------------- */

/* blockdev-snapshot-sync by device: the new layer on top, before QEMU
 * says anything, then QEMU's answer agrees. */
START_TEST(test_snapshot_sync_device)
{
    struct t t;
    const char *snap = DISK("disk0", N("d0s1"),
                            LAYER("d0-s1.qcow2", N("d0s1"), RW, SIZE) ","
                            BASE0, "");
    char *got;

    start(&t, "none");
    ck_model(&t, "disk0", DISK("disk0", N("#block197"),
                               LAYER("disk0.qcow2", N("#block197"), RW,
                                     SIZE), ""));
    play(&t, "snap");
    /* the overlay is as large as what it covers */
    ck_model(&t, "disk0", snap);
    expect_asked(&t, "snap", ASK_KNOWN);
    ck_model(&t, "disk0", snap);
    expect_no_warning(&t);
    /* announced once, with QEMU's truth */
    got = client_since(&t);
    ck_assert_ptr_nonnull(strstr(got, "\"event\": \"QMPROXY_CHAIN_CHANGED\", "
        "\"data\": {\"disk\": \"disk0\", \"chain\": [{\"node-name\": "
        "\"d0s1\", \"virtual-size\": 67108864, \"format\": \"qcow2\", "
        "\"read-only\": false, \"file\": \"/tmp/qmpc/none/d0-s1.qcow2\"}, "
        "{\"node-name\": \"#block197\", \"virtual-size\": 67108864, "
        "\"format\": \"qcow2\", "
        "\"read-only\": true, \"file\": \"/tmp/qmpc/none/disk0.qcow2\"}]}}"));
    ck_assert_ptr_null(strstr(strstr(got, "QMPROXY_CHAIN_CHANGED") + 1,
                              "QMPROXY_CHAIN_CHANGED"));
    free(got);
    expect_quiet(&t);
    stop(&t);
}
END_TEST

/* A transaction of two snapshots: both disks predicted. */
START_TEST(test_transaction)
{
    struct t t;
    const char *disk1 = DISK("disk1", N("d1s1"),
                             LAYER("d1-s1.qcow2", N("d1s1"), RW, SIZE) ","
                             BASE1, "");
    char *xml;

    start(&t, "none");
    run(&t, "snap", "snap");
    play(&t, "txn");
    ck_model(&t, "disk0", DISK0);
    ck_model(&t, "disk1", disk1);
    expect_asked(&t, "txn", ASK_KNOWN);
    ck_model(&t, "disk0", DISK0);
    ck_model(&t, "disk1", disk1);
    /* the same as libvirt's <disk> */
    xml = chain_to_xml(chain(&t), "disk1");
    ck_assert_str_eq(xml,
        "<disk type=\"file\" device=\"disk\">\n"
        "  <driver name=\"qemu\" type=\"qcow2\"/>\n"
        "  <source file=\"/tmp/qmpc/none/d1-s1.qcow2\"/>\n"
        "  <backingStore type=\"file\" index=\"1\">\n"
        "    <format type=\"qcow2\"/>\n"
        "    <source file=\"/tmp/qmpc/none/disk1.qcow2\"/>\n"
        "    <backingStore/>\n"
        "  </backingStore>\n"
        "  <target dev=\"disk1\"/>\n"
        "  <alias name=\"disk1\"/>\n"
        "</disk>");
    free(xml);
    stop(&t);
}
END_TEST

/* blockdev-snapshot-sync by node-name, on a -blockdev disk that has no
 * device name. */
START_TEST(test_snapshot_sync_node_name)
{
    struct t t;
    const char *snap = QDISK(N("qs1"), LAYER("q-s1.qcow2", N("qs1"), RW, SIZE)
                             "," LAYER("disk0.qcow2", N("fmt0"), RO, SIZE),
                             "");

    start(&t, "q35");
    ck_model(&t, "fmt0", QDISK(N("fmt0"), LAYER("disk0.qcow2", N("fmt0"), RW,
                                                SIZE), ""));
    play(&t, "snap");
    ck_model(&t, "disk0", snap);
    expect_asked(&t, "snap", ASK_KNOWN);
    ck_model(&t, "disk0", snap);
    stop(&t);
}
END_TEST

#define Q_S1 LAYER("q-s1.qcow2", N("qs1"), RO, SIZE)
#define Q_BASE LAYER("disk0.qcow2", N("fmt0"), RO, SIZE)
#define Q_SNAP2 QDISK(N("qs2"), LAYER("q-s2.qcow2", N("qs2"), RW, SIZE) "," \
                      Q_S1 "," Q_BASE, "")

/* libvirt's way: the overlay's nodes added (the format node names its
 * file node), then blockdev-snapshot; then blockdev-mirror onto nodes
 * added the same way, and its pivot. */
START_TEST(test_blockdev_add_snapshot_mirror)
{
    struct t t;
    char *q;

    start(&t, "q35");
    run(&t, "snap", "snap");
    play(&t, "add-file");
    expect_quiet(&t);  /* a node on its own changes no chain */
    play(&t, "add-fmt");
    expect_quiet(&t);
    play(&t, "bsnap");
    ck_model(&t, "disk0", Q_SNAP2);
    expect_asked(&t, "bsnap", ASK_KNOWN);
    ck_model(&t, "disk0", Q_SNAP2);

    play(&t, "add-mfile");
    play(&t, "add-mfmt");
    play(&t, "bmirror");
    ck_model(&t, "disk0", QDISK(N("qs2"),
        LAYER("q-s2.qcow2", N("qs2"), RW, SIZE) "," Q_S1 "," Q_BASE,
        MIRROR("q-m.qcow2", "bm0", "copy", "running", "no", "0", "0")
        JOB("bm0", "mirror", "running", "0", "0", "false")));
    events_after(&t, "bmirror");
    expect_quiet(&t);  /* a job's start asks nothing: a prediction */
    play(&t, "bcomplete");
    expect_quiet(&t);
    events_after(&t, "bcomplete");
    /* a full copy: the disk is the copy alone */
    ck_model(&t, "disk0", QDISK("", LAYER("q-m.qcow2", "", RW, SIZE), ""));
    /* nor its end: the prediction is checked when someone asks */
    expect_quiet(&t);
    q = verify(&t, "bcomplete");
    ck_assert_str_eq(q, "x-debug-query-block-graph " ASK_KNOWN);
    free(q);
    ck_model(&t, "disk0", QDISK(N("qm"), LAYER("q-m.qcow2", N("qm"), RW, SIZE),
                                ""));
    expect_no_warning(&t);
    stop(&t);
}
END_TEST

/* drive-mirror starts a job; while it lives the proxy never asks
 * query-named-block-nodes (QEMU 7.2's crash) and keeps the node-names
 * it knew; block-job-complete then BLOCK_JOB_COMPLETED is a pivot; the
 * reconciliation after the last job asks everything again. */
START_TEST(test_mirror_pivot)
{
    struct t t;
    char *q, *got;

    start(&t, "none");
    run_until(&t, "mirror");
    forget_log(&t);
    play(&t, "mirror");
    ck_model(&t, "disk0", DISK0_M0("running", "no", "0", "0", "false"));
    expect_quiet(&t);  /* the copy's start is predicted, nothing asked */
    /* asked for (a job runs: its progress too, not the node-names) */
    q = verify(&t, "mirror");
    ck_assert_str_eq(q, ASK_JOBS);
    free(q);
    /* QEMU's progress; the backing layers keep their node-names */
    ck_model(&t, "disk0", DISK0_M0("running", "no", "0", M32, "false"));
    ck_assert_str_eq(chain_mirror_file(chain(&t), "disk0"),
                     "/tmp/qmpc/none/d0-m.qcow2");
    ck_assert_str_eq(chain_mirror_mode(chain(&t), "disk0"), "absolute-paths");

    play(&t, "speed");  /* not a command the model follows */
    expect_quiet(&t);
    events_after(&t, "speed");
    ck_model(&t, "disk0", DISK0_M0("ready", "yes", M32, M32, "true"));
    expect_quiet(&t);  /* readiness changes no chain */

    play(&t, "complete");
    ck_model(&t, "disk0", DISK0_M0("ready", "pivot", M32, M32, "true"));
    expect_quiet(&t);  /* the verb changes no chain: its events will ask */
    free(client_since(&t));
    events_after(&t, "complete");
    /* the copy is the disk now, on the old backing (sync top) */
    ck_model(&t, "disk0", PIVOTED(""));
    /* announced as a prediction; nothing asked because of the events */
    got = client_since(&t);
    ck_assert_msg(strstr(got, "\"QMPROXY_CHAIN_CHANGED\", \"data\": "
                             "{\"predicted\": true, \"disk\": \"disk0\"")
                  && strstr(got, "d0-m.qcow2"), "%s", got);
    free(got);
    expect_quiet(&t);
    /* checked when asked: the graph changed (the job was alive at the
     * last answer, so no fingerprint holds), so everything is asked */
    q = verify(&t, "complete");
    ck_assert_str_eq(q, "x-debug-query-block-graph " ASK_KNOWN);
    free(q);
    ck_model(&t, "disk0", PIVOTED(N("#block2838")));
    expect_quiet(&t);
    expect_no_warning(&t);
    stop(&t);
}
END_TEST

/* block-job-cancel of a ready copy: QEMU reports BLOCK_JOB_COMPLETED as
 * for a pivot, but the disk stays on its chain. */
START_TEST(test_cancel_is_not_a_pivot)
{
    struct t t;
    const char *m1 = DISK("disk0", N("#block2838"),
        LAYER("d0-m.qcow2", N("#block2838"), RW, SIZE) "," S01 "," BASE0,
        MIRROR("d0-m2.qcow2", "m1", "copy", "ready", "abort", M32, M32)
        JOB("m1", "mirror", "ready", M32, M32, "true"));

    start(&t, "none");
    run_until(&t, "cancel");
    forget_log(&t);
    play(&t, "cancel");
    ck_model(&t, "disk0", m1);
    expect_quiet(&t);
    ck_model(&t, "disk0", m1);
    event(&t, "cancel", "BLOCK_JOB_COMPLETED", "m1", NULL);
    ck_assert_str_eq(chain_job_status(chain(&t), "disk0"), "concluded");
    ck_assert_int_eq(chain_layer_count(chain(&t), "disk0"), 3);
    ck_assert_str_eq(chain_top_file(chain(&t), "disk0"),
                     "/tmp/qmpc/none/d0-m.qcow2");
    event(&t, "cancel", "JOB_STATUS_CHANGE", "m1", "null");
    ck_model(&t, "disk0", PIVOTED(N("#block2838")));
    /* nothing asked because of the job's end */
    expect_quiet(&t);
    free(verify(&t, "cancel"));
    ck_model(&t, "disk0", PIVOTED(N("#block2838")));
    expect_no_warning(&t);
    stop(&t);
}
END_TEST

#define D0M LAYER("d0-m.qcow2", N("#block2838"), RW, SIZE)

/* An intermediate commit folds its layers when it completes; an active
 * commit is a copy onto the base, pivoted by block-job-complete; a
 * stream pulls the layers above its base into the top. */
START_TEST(test_commit_and_stream)
{
    struct t t;
    char *q;
    const char *disk1 = DISK("disk1", N("d1s3"),
        LAYER("d1-s3.qcow2", N("d1s3"), RW, SIZE) ","
        LAYER("d1-s2.qcow2", N("d1s2"), RO, SIZE) "," S11 "," BASE1,
        JOB("st0", "stream", "running", "0", "0", "false"));

    start(&t, "none");
    run_until(&t, "commit");
    forget_log(&t);
    play(&t, "commit");
    ck_model(&t, "disk0", DISK("disk0", N("#block2838"), D0M "," S01 ","
                               BASE0, JOB("c0", "commit", "running", "0",
                                          "0", "false")));
    events_after(&t, "commit");
    ck_model(&t, "disk0", DISK("disk0", N("#block2838"), D0M "," BASE0, ""));
    /* neither the start nor the end asks: checked when asked for */
    expect_quiet(&t);
    q = verify(&t, "commit");
    ck_assert_str_eq(q, "x-debug-query-block-graph " ASK_KNOWN);
    free(q);
    ck_model(&t, "disk0", DISK("disk0", N("#block2838"), D0M "," BASE0, ""));

    play(&t, "acommit");
    ck_model(&t, "disk0", DISK("disk0", N("#block2838"), D0M "," BASE0,
        MIRROR("disk0.qcow2", "c1", "active-commit", "running", "no", "0",
               "0")
        JOB("c1", "commit", "running", "0", "0", "false")));
    events_after(&t, "acommit");
    expect_quiet(&t);  /* READY's progress is in the event */
    ck_model(&t, "disk0", DISK("disk0", N("#block2838"), D0M "," BASE0,
        MIRROR("disk0.qcow2", "c1", "active-commit", "ready", "yes", M32,
               M32)
        JOB("c1", "commit", "ready", M32, M32, "true")));
    play(&t, "acomplete");
    expect_quiet(&t);
    events_after(&t, "acomplete");
    ck_model(&t, "disk0", DISK("disk0", N("#block197"), LAYER("disk0.qcow2",
                               N("#block197"), RW, SIZE), ""));
    expect_quiet(&t);
    q = verify(&t, "acomplete");
    ck_assert_str_eq(q, "x-debug-query-block-graph " ASK_KNOWN);
    free(q);
    ck_model(&t, "disk0", DISK("disk0", N("#block197"), LAYER("disk0.qcow2",
                               N("#block197"), RW, SIZE), ""));

    play(&t, "stream");
    ck_model(&t, "disk1", disk1);
    events_after(&t, "stream");
    ck_model(&t, "disk1", DISK("disk1", N("d1s3"),
        LAYER("d1-s3.qcow2", N("d1s3"), RW, SIZE) "," S11 "," BASE1, ""));
    expect_quiet(&t);
    q = verify(&t, "stream");
    ck_assert_str_eq(q, "x-debug-query-block-graph " ASK_KNOWN);
    free(q);
    ck_model(&t, "disk1", DISK("disk1", N("d1s3"),
        LAYER("d1-s3.qcow2", N("d1s3"), RW, SIZE) "," S11 "," BASE1, ""));
    expect_no_warning(&t);
    stop(&t);
}
END_TEST

/* ---- jobs ---------------------------------------------------------- */

/* QEMU sent BLOCK_JOB_READY before its reply to drive-mirror (it does at
 * times): the job is ready from the start. */
START_TEST(test_ready_before_reply)
{
    struct t t;
    const char *cmd;
    char *up, *q, *text;

    start(&t, "none");
    run_until(&t, "mirror");
    forget_log(&t);
    cmd = fixture_command(t.fx, "mirror");
    rig_send(t.c, cmd);
    spin(&t);
    up = rig_drain(t.r.qemu);
    ck_assert_str_eq(up, cmd);
    free(up);
    event(&t, "mirror", "JOB_STATUS_CHANGE", "m0", "created");
    event(&t, "mirror", "JOB_STATUS_CHANGE", "m0", "running");
    event(&t, "speed", "JOB_STATUS_CHANGE", "m0", "ready");
    event(&t, "speed", "BLOCK_JOB_READY", "m0", NULL);
    ck_assert_ptr_null(chain_job_id(chain(&t), "disk0"));
    /* a job the model did not see start, while a command is out: no
     * question yet, the reply will probably name it */
    q = asked(&t);
    ck_assert_str_eq(q, "");
    free(q);
    /* QEMU answers drive-mirror (it came first): the job with what the
     * earlier events said */
    text = fixture_reply(t.fx, "mirror", true);
    rig_send(t.r.qemu, text);
    free(text);
    spin(&t);
    ck_model(&t, "disk0", DISK0_M0("ready", "yes", M32, M32, "true"));
    /* nothing asked because of the start; when asked for, a job
     * living: no node-names */
    expect_quiet(&t);
    q = verify(&t, "ready");
    ck_assert_str_eq(q, ASK_JOBS);
    free(q);
    ck_model(&t, "disk0", DISK0_M0("ready", "yes", M32, M32, "true"));
    q = asked(&t);
    ck_assert_str_eq(q, "");
    free(q);
    stop(&t);
}
END_TEST

/* JOB_STATUS_CHANGE moves a job through its states; null ends it. */
START_TEST(test_job_status_change)
{
    static const char *const states[] = { "waiting", "pending",
                                          "concluded", NULL };
    struct t t;

    start(&t, "none");
    run_until(&t, "speed");
    ck_assert_str_eq(chain_job_status(chain(&t), "disk0"), "running");
    ck_assert_str_eq(chain_job_id(chain(&t), "d0s2"), "m0");
    ck_assert(!chain_job_manual_finalize(chain(&t), "disk0"));
    run(&t, "speed", "ready");
    ck_assert_str_eq(chain_job_status(chain(&t), "disk0"), "ready");
    play(&t, "complete");
    expect_quiet(&t);
    for (int i = 0; states[i]; i++) {
        event(&t, "complete", "JOB_STATUS_CHANGE", "m0", states[i]);
        ck_assert_str_eq(chain_job_status(chain(&t), "disk0"), states[i]);
        /* a job still there: no query-named-block-nodes */
        char *q = asked(&t);
        ck_assert_str_eq(q, "");
        free(q);
    }
    event(&t, "complete", "JOB_STATUS_CHANGE", "m0", "null");
    ck_assert_ptr_null(chain_job_id(chain(&t), "disk0"));
    /* the end asks nothing; when asked for, with no job left, the graph
     * first, then (it changed) everything */
    expect_quiet(&t);
    char *q = verify(&t, "complete");
    ck_assert_str_eq(q, "x-debug-query-block-graph " ASK_KNOWN);
    free(q);
    stop(&t);
}
END_TEST

/* A snapshot on disk1 while a copy runs on disk0: still no
 * query-named-block-nodes (it walks every node, the job's too). */
START_TEST(test_no_node_query_while_a_job_lives)
{
    struct t t;
    char *up;
    const char *cmd = "{\"execute\": \"blockdev-snapshot-sync\", "
        "\"arguments\": {\"device\": \"disk1\", \"snapshot-file\": "
        "\"/tmp/qmpc/none/d1-x.qcow2\", \"format\": \"qcow2\"}}";

    start(&t, "none");
    run_until(&t, "speed");
    rig_send(t.c, cmd);
    spin(&t);
    up = rig_drain(t.r.qemu);
    ck_assert_str_eq(up, cmd);
    free(up);
    rig_send(t.r.qemu, "{\"return\": {}}\r\n");
    spin(&t);
    ck_assert_str_eq(chain_top_file(chain(&t), "disk1"),
                     "/tmp/qmpc/none/d1-x.qcow2");
    up = asked(&t);
    ck_assert_str_eq(up, ASK_JOBS);
    free(up);
    stop(&t);
}
END_TEST

static char *saved_text(struct t *t);

/* ---- lazy checks: job events predict, asking waits for a need ------- */

/*
 * A copy started, ready and cancelled: no event asks QEMU anything (QMP
 * has no per-disk query, so any question would be about the whole VM).
 * When the chain is asked for, QEMU's block graph is the one of its last
 * answer (the copy left nothing behind), and the prediction says the
 * same chain: confirmed with that one question.
 */
START_TEST(test_cancelled_copy_confirmed_by_the_graph)
{
    struct t t;
    char *q, *saved;

    start(&t, "none");
    run_until(&t, "mirror2");   /* the last check had no job: a fingerprint */
    forget_log(&t);
    play(&t, "mirror2");
    expect_quiet(&t);
    events_after(&t, "mirror2");
    expect_quiet(&t);
    play(&t, "cancel");
    expect_quiet(&t);
    event(&t, "cancel", "BLOCK_JOB_COMPLETED", "m1", NULL);
    event(&t, "cancel", "JOB_STATUS_CHANGE", "m1", "concluded");
    event(&t, "cancel", "JOB_STATUS_CHANGE", "m1", "null");
    expect_quiet(&t);
    ck_model(&t, "disk0", PIVOTED(N("#block2838")));
    /* the state file holds the prediction, marked */
    saved = saved_text(&t);
    ck_assert_msg(strstr(saved, "\"unverified\":true"), "%s", saved);
    free(saved);
    q = verify(&t, "cancel");
    ck_assert_str_eq(q, "x-debug-query-block-graph");
    free(q);
    saved = saved_text(&t);
    ck_assert_msg(!strstr(saved, "unverified"), "%s", saved);
    free(saved);
    ck_model(&t, "disk0", PIVOTED(N("#block2838")));
    expect_no_warning(&t);
    expect_quiet(&t);
    stop(&t);
}
END_TEST

/* The pivot QEMU's events implied did not happen (QEMU's answers are
 * those recorded before the copy existed): the check finds the
 * prediction wrong, warns, and QEMU's chain is the model's. */
START_TEST(test_wrong_prediction_found_when_asked)
{
    struct t t;
    char *q, *log;

    start(&t, "none");
    run_until(&t, "complete");
    forget_log(&t);
    play(&t, "complete");
    events_after(&t, "complete");
    ck_model(&t, "disk0", PIVOTED(""));
    expect_quiet(&t);
    q = verify(&t, "behind");
    ck_assert_str_eq(q, "x-debug-query-block-graph " ASK_KNOWN);
    free(q);
    ck_model(&t, "disk0", DISK0);
    log = log_since(&t);
    ck_assert_msg(logged(log, "warning", "the chain of disk disk0 differs "
        "from what the traffic said: predicted /tmp/qmpc/none/d0-m.qcow2 <- "
        "/tmp/qmpc/none/d0-s1.qcow2 <- /tmp/qmpc/none/disk0.qcow2, QEMU has "
        "/tmp/qmpc/none/d0-s2.qcow2 <- /tmp/qmpc/none/d0-s1.qcow2 <- "
        "/tmp/qmpc/none/disk0.qcow2; QEMU wins"), "%s", log);
    free(log);
    expect_quiet(&t);
    stop(&t);
}
END_TEST

/* The same wrong prediction, found by QEMU refusing a command while it
 * stands: the refusal makes the proxy ask at once. */
START_TEST(test_wrong_prediction_found_by_a_refusal)
{
    struct t t;
    const char *cmd = "{\"execute\": \"block-job-cancel\", \"arguments\": "
                      "{\"device\": \"m0\"}, \"id\": \"x\"}";
    char *up, *q, *log;

    start(&t, "none");
    run_until(&t, "complete");
    forget_log(&t);
    play(&t, "complete");
    events_after(&t, "complete");
    expect_quiet(&t);
    rig_send(t.c, cmd);
    spin(&t);
    up = rig_drain(t.r.qemu);
    ck_assert_str_eq(up, cmd);
    free(up);
    rig_send(t.r.qemu, "{\"id\": \"x\", \"error\": {\"class\": "
                       "\"DeviceNotActive\", \"desc\": \"Block job 'm0' not "
                       "found\"}}\r\n");
    spin(&t);
    q = answer(&t, "behind");
    ck_assert_str_eq(q, ASK_KNOWN);
    free(q);
    ck_model(&t, "disk0", DISK0);
    log = log_since(&t);
    ck_assert_msg(logged(log, "warning", "the chain of disk disk0 differs"),
                  "%s", log);
    free(log);
    expect_quiet(&t);
    stop(&t);
}
END_TEST

/* An operation needs certainty (chain_settle): a copy's start predicted
 * while the job runs has no fingerprint to check, so QEMU is asked then -
 * once for the operation, not once per event.  With nothing predicted, a
 * running job's model is taken as it is. */
START_TEST(test_settle_pays_for_a_prediction)
{
    struct t t;
    bool settled = false;
    char *q;

    start(&t, "none");
    run_until(&t, "mirror");
    play(&t, "mirror");
    expect_quiet(&t);
    chain_settle(chain(&t), nothing, &settled);
    ck_assert(!settled);
    q = answer(&t, "mirror");
    ck_assert_str_eq(q, ASK_JOBS);
    free(q);
    ck_assert(settled);
    settled = false;
    chain_settle(chain(&t), nothing, &settled);
    ck_assert(settled);
    expect_quiet(&t);
    stop(&t);
}
END_TEST

/* An operation waiting for a reconciliation under way is not let go on a
 * prediction that came meanwhile: QEMU answered query-block before the
 * copy's pivot, the pivot's events came, and the operation settles only
 * once QEMU has been asked again. */
START_TEST(test_settle_waits_out_a_prediction_made_meanwhile)
{
    struct t t;
    bool settled = false;
    char *q;

    start(&t, "none");
    run_until(&t, "complete");
    play(&t, "complete");
    chain_reconcile(chain(&t));
    q = asked(&t);
    ck_assert_str_eq(q, ASK_JOBS);
    free(q);
    chain_settle(chain(&t), nothing, &settled);
    reply(&t, "ready", 1);  /* query-block: not pivoted yet */
    event(&t, "complete", "BLOCK_JOB_COMPLETED", "m0", NULL);
    event(&t, "complete", "JOB_STATUS_CHANGE", "m0", "concluded");
    event(&t, "complete", "JOB_STATUS_CHANGE", "m0", "null");
    reply(&t, "complete", 1);  /* query-block-jobs: gone */
    ck_assert(!settled);
    ck_model(&t, "disk0", PIVOTED(""));
    answer_all(&t, "complete");
    ck_assert(settled);
    ck_model(&t, "disk0", PIVOTED(N("#block2838")));
    stop(&t);
}
END_TEST

/* ---- reconciliation ------------------------------------------------ */

/* Another monitor took a snapshot the proxy never saw: QEMU's chain has a
 * layer the prediction lacks.  QEMU wins, with a warning (the prediction
 * should have been exact), and its node-names are learned from
 * query-named-block-nodes (query-block names only the top). */
START_TEST(test_qemu_wins_with_a_warning)
{
    struct t t;
    const char *truth = DISK("disk1", N("d1s3"),
        LAYER("d1-s3.qcow2", N("d1s3"), RW, SIZE) ","
        LAYER("d1-s2.qcow2", N("d1s2"), RO, SIZE) "," S11 "," BASE1, "");
    char *log, *got;

    start(&t, "none");
    run_until(&t, "behind");
    forget_log(&t);
    play(&t, "behind");
    ck_model(&t, "disk1", DISK("disk1", N("d1s3"),
        LAYER("d1-s3.qcow2", N("d1s3"), RW, SIZE) "," S11 "," BASE1, ""));
    got = client_since(&t);
    free(got);
    /* d1-s2 is new to the model: the node-names are asked too */
    expect_asked(&t, "behind", ASK_ALL);
    ck_model(&t, "disk1", truth);
    log = log_since(&t);
    ck_assert_msg(logged(log, "warning", "the chain of disk disk1 differs "
        "from what the traffic said: predicted /tmp/qmpc/none/d1-s3.qcow2 <- "
        "/tmp/qmpc/none/d1-s1.qcow2 <- /tmp/qmpc/none/disk1.qcow2, QEMU has "
        "/tmp/qmpc/none/d1-s3.qcow2 <- /tmp/qmpc/none/d1-s2.qcow2 <- "
        "/tmp/qmpc/none/d1-s1.qcow2 <- /tmp/qmpc/none/disk1.qcow2; QEMU wins"),
        "%s", log);
    free(log);
    /* announced with QEMU's chain, not the prediction */
    got = client_since(&t);
    ck_assert_ptr_nonnull(strstr(got, "\"QMPROXY_CHAIN_CHANGED\", \"data\": "
        "{\"disk\": \"disk1\", \"chain\": [{\"node-name\": \"d1s3\", "
        "\"virtual-size\": 67108864, \"format\": \"qcow2\", \"read-only\": "
        "false, \"file\": \"/tmp/qmpc/none/d1-s3.qcow2\"}, {\"node-name\": "
        "\"d1s2\""));
    free(got);
    stop(&t);
}
END_TEST

/* A prediction with parts only QEMU knows (a blockdev-snapshot of an
 * overlay added on another monitor: the model has only its node-name)
 * is completed from QEMU at debug level, without a warning. */
START_TEST(test_uncertain_prediction_completed_quietly)
{
    struct t t;
    char *log;

    start(&t, "q35");
    run(&t, "snap", "snap");
    forget_log(&t);
    play(&t, "bsnap");
    ck_model(&t, "disk0", QDISK(N("qs2"), LAYER("qs2", N("qs2"), RW, SIZE)
                                "," Q_S1 "," Q_BASE, ""));
    expect_asked(&t, "bsnap", ASK_KNOWN);
    ck_model(&t, "disk0", Q_SNAP2);
    log = log_since(&t);
    ck_assert_msg(logged(log, "debug", "chain of disk0 completed from QEMU: "
                         "/tmp/qmpc/q35/q-s2.qcow2 <- /tmp/qmpc/q35/q-s1.qcow2"
                         " <- /tmp/qmpc/q35/disk0.qcow2"), "%s", log);
    ck_assert_msg(!strstr(log, " warning: "), "%s", log);
    free(log);
    stop(&t);
}
END_TEST

/*
 * An event read after QEMU's answer to query-block-jobs is newer than
 * that answer: the job keeps what the event said.  The client sends two
 * commands at once; the reply to the first makes the proxy ask (no job
 * yet: every question), the reply to the second starts a copy, QEMU
 * answers query-block-jobs (running), then says BLOCK_JOB_READY, then
 * answers the rest.  (Two at once in QEMU's hands: a client with oob.)
 */
START_TEST(test_event_after_jobs_answer_wins)
{
    struct t t;
    char *both, *up, *text, *q;

    client_oob = true;
    start(&t, "none");
    run_until(&t, "behind");
    both = xasprintf("%s%s", fixture_command(t.fx, "behind"),
                     fixture_command(t.fx, "mirror"));
    rig_send(t.c, both);
    spin(&t);
    up = rig_drain(t.r.qemu);
    ck_assert_str_eq(up, both);
    free(up);
    free(both);
    text = fixture_answer(t.fx, "behind");
    rig_send(t.r.qemu, text);
    free(text);
    spin(&t);
    q = asked(&t);
    ck_assert_str_eq(q, ASK_KNOWN);
    free(q);
    text = fixture_answer(t.fx, "mirror");
    rig_send(t.r.qemu, text);
    free(text);
    spin(&t);
    ck_assert_str_eq(chain_job_status(chain(&t), "disk0"), "running");
    reply(&t, "mirror", 2);  /* query-block; query-block-jobs: running */
    event(&t, "speed", "BLOCK_JOB_READY", "m0", NULL);
    reply(&t, "mirror", 1);  /* the graph (no node-names: a job lives) */
    ck_model(&t, "disk0", DISK0_M0("ready", "yes", M32, M32, "true"));
    /* the copy's start came after the questions: asked again */
    q = answer(&t, "ready");
    ck_assert_str_eq(q, ASK_JOBS);
    free(q);
    ck_model(&t, "disk0", DISK0_M0("ready", "yes", M32, M32, "true"));
    stop(&t);
}
END_TEST

/*
 * A chain changed after QEMU's answer to query-block keeps its newer
 * prediction, without a warning, and QEMU is asked again: QEMU answers
 * query-block before the copy's pivot, then reports the pivot, then
 * answers query-block-jobs.
 */
START_TEST(test_change_after_block_answer_asks_again)
{
    struct t t;
    char *q;

    start(&t, "none");
    run_until(&t, "complete");
    forget_log(&t);
    play(&t, "complete");
    /* a reconciliation under way when the pivot comes (block-job-complete
     * itself asks nothing; another change would have) */
    chain_reconcile(chain(&t));
    q = asked(&t);
    ck_assert_str_eq(q, ASK_JOBS);
    free(q);
    reply(&t, "ready", 1);  /* query-block: not pivoted yet */
    event(&t, "complete", "BLOCK_JOB_COMPLETED", "m0", NULL);
    /* pivoted; the job stays until it is dismissed */
    ck_model(&t, "disk0", DISK("disk0", "", LAYER("d0-m.qcow2", "", RW, SIZE)
        "," S01 "," BASE0,
        MIRROR("d0-m.qcow2", "m0", "copy", "concluded", "pivot", M32, M32)
        JOB("m0", "mirror", "concluded", M32, M32, "true")));
    reply(&t, "complete", 1);  /* query-block-jobs: gone (dismissed) */
    ck_model(&t, "disk0", PIVOTED(""));
    expect_no_warning(&t);
    /* asked again, and since no job is left, everything */
    expect_asked(&t, "complete", ASK_KNOWN);
    ck_model(&t, "disk0", PIVOTED(N("#block2838")));
    expect_no_warning(&t);
    stop(&t);
}
END_TEST

/* ---- the saved form and restarts ---------------------------------- */

static char *saved_text(struct t *t)
{
    json_object *o = chain_save(chain(t));
    char *s = xstrdup(json_object_to_json_string_ext(
                          o, JSON_C_TO_STRING_PLAIN
                             | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return s;
}

/* chain_save, a restart, chain_load: what only the proxy knew about a
 * running copy (its target, who started it and when) comes back, and the
 * saved form is the same again. */
START_TEST(test_saved_form_round_trip)
{
    struct t t;
    char *before, *saved, *after, *resaved, *log;
    json_object *o, *jobs;

    start(&t, "none");
    run_until(&t, "speed");
    before = model(&t, NULL);
    saved = saved_text(&t);
    o = json_tokener_parse(saved);
    ck_assert(json_object_object_get_ex(o, "jobs", &jobs));
    json_object_object_del(json_object_array_get_idx(jobs, 0), "started-at");
    ck_assert_str_eq(json_object_to_json_string_ext(
                         jobs, JSON_C_TO_STRING_PLAIN
                               | JSON_C_TO_STRING_NOSLASHESCAPE),
        "[{\"id\":\"m0\",\"type\":\"mirror\",\"status\":\"running\","
        "\"offset\":0,\"len\":33554432,\"ready\":false,\"started-by\":1,"
        "\"disk\":\"disk0\",\"target-file\":\"/tmp/qmpc/none/d0-m.qcow2\","
        "\"target-format\":\"qcow2\",\"mode\":\"absolute-paths\","
        "\"sync\":\"top\",\"active-commit\":false,\"pivot-requested\":false,"
        "\"cancel-requested\":false,\"manual-finalize\":false,"
        "\"manual-dismiss\":false}]");
    json_object_put(o);
    stop(&t);

    o = json_tokener_parse(saved);
    start_at(&t, "none", o, "mirror");
    json_object_put(o);
    after = model(&t, NULL);
    ck_assert_str_eq(after, before);
    resaved = saved_text(&t);
    ck_assert_str_eq(resaved, saved);
    log = log_since(&t);
    ck_assert_msg(logged(log, "info", "found job m0 (mirror) that the proxy "
                         "did not see start"), "%s", log);
    ck_assert_msg(!strstr(log, " warning: "), "%s", log);
    free(log);
    free(before);
    free(after);
    free(saved);
    free(resaved);
    stop(&t);
}
END_TEST

/* After a restart the saved chains are compared with QEMU's: what
 * changed, and a disk that went, is reported. */
START_TEST(test_changed_while_away)
{
    struct t t;
    char *saved, *log;
    json_object *o, *disks, *gone;

    start(&t, "none");
    run(&t, "snap", "snap");
    saved = saved_text(&t);
    stop(&t);

    o = json_tokener_parse(saved);
    ck_assert(json_object_object_get_ex(o, "disks", &disks));
    gone = json_tokener_parse(json_object_to_json_string(
                                  json_object_array_get_idx(disks, 1)));
    json_object_object_add(gone, "disk", json_object_new_string("disk9"));
    json_object_array_add(disks, gone);
    start_at(&t, "none", o, "txn");
    json_object_put(o);
    log = log_since(&t);
    ck_assert_msg(logged(log, "warning", "while qmproxy was away, the chain "
        "of disk disk0 changed: was /tmp/qmpc/none/d0-s1.qcow2 <- "
        "/tmp/qmpc/none/disk0.qcow2, is /tmp/qmpc/none/d0-s2.qcow2 <- "
        "/tmp/qmpc/none/d0-s1.qcow2 <- /tmp/qmpc/none/disk0.qcow2"), "%s",
        log);
    ck_assert_msg(logged(log, "warning", "while qmproxy was away, the chain "
        "of disk disk1 changed: was /tmp/qmpc/none/disk1.qcow2, is "
        "/tmp/qmpc/none/d1-s1.qcow2 <- /tmp/qmpc/none/disk1.qcow2"), "%s",
        log);
    ck_assert_msg(logged(log, "warning", "while qmproxy was away, disk disk9 "
        "went away (its chain was /tmp/qmpc/none/disk1.qcow2)"), "%s", log);
    free(log);
    ck_model(&t, "disk0", DISK0);
    free(saved);
    stop(&t);
}
END_TEST

/* ---- freshness: the block graph checked before an answer ---------- */

/* A query for the chain after the model's last reconciliation: the proxy
 * asks QEMU for its block graph only, and with the graph it saw then,
 * answers from the model. */
static char *query_chain(struct t *t)
{
    free(client_since(t));
    rig_send(t->c, "{\"execute\": \"qmproxy-query-chain\", \"arguments\": "
                   "{\"disk\": \"disk1\"}, \"id\": \"q\"}");
    spin(t);
    return asked(t);
}

START_TEST(test_unchanged_graph_answers_from_the_model)
{
    struct t t;
    char *q, *got;

    start(&t, "none");
    run(&t, "snap", "snap");
    run(&t, "txn", "txn");
    q = query_chain(&t);
    ck_assert_str_eq(q, "x-debug-query-block-graph");
    free(q);
    got = client_since(&t);
    ck_assert_str_eq(got, "");  /* not before the check is answered */
    free(got);
    reply(&t, "txn", 1);
    got = client_since(&t);
    ck_assert_msg(strstr(got, "\"id\": \"q\"") && strstr(got, "d1-s1.qcow2"),
                  "%s", got);
    free(got);
    expect_quiet(&t);
    stop(&t);
}
END_TEST

/* Another monitor took a snapshot of disk1 (the recording's "behind"
 * step): the graph differs, so the proxy asks again before answering, and
 * the new layer is QEMU's, without a warning. */
START_TEST(test_changed_graph_asks_again_before_answering)
{
    struct t t;
    char *q, *got, *log;

    start(&t, "none");
    run(&t, "snap", "snap");
    run(&t, "txn", "txn");
    forget_log(&t);
    q = query_chain(&t);
    ck_assert_str_eq(q, "x-debug-query-block-graph");
    free(q);
    /* QEMU's graph as it was after the snapshot behind the proxy's back
     * and the proxy's own one that followed it */
    reply(&t, "behind", 1);
    got = client_since(&t);
    ck_assert_str_eq(got, "");
    free(got);
    q = answer(&t, "behind");
    ck_assert_str_eq(q, ASK_ALL);  /* d1-s2 is new: its node-name too */
    free(q);
    got = client_since(&t);
    ck_assert_msg(strstr(got, "\"id\": \"q\"") && strstr(got, "d1-s2.qcow2"),
                  "%s", got);
    free(got);
    log = log_since(&t);
    ck_assert_msg(logged(log, "info", "the block graph changed behind the "
                         "proxy's back"), "%s", log);
    ck_assert_msg(!strstr(log, " warning: "), "%s", log);
    free(log);
    stop(&t);
}
END_TEST

/* ---- filters.qmp: a pull backup's filter, block_resize ---------- */

#define F_TOP(size) \
    "\"chain\":[{\"file\":\"disk0.qcow2\",\"format\":\"qcow2\"" \
    N("fmt0") ",\"read-only\":false,\"virtual-size\":" size "}]"
#define F_CBW \
    "\"filters\":[{\"driver\":\"copy-before-write\"," \
    "\"node-name\":\"#block181\",\"layer\":0}]"

static void ck_model_has(struct t *t, const char *disk, const char *part,
                         bool present)
{
    char *got = model(t, disk);
    ck_assert_msg(!strstr(got, part) == !present, "%s %s in %s", part,
                  present ? "not" : "unexpectedly", got);
    free(got);
}

/*
 * libvirt's pull-mode backup: blockdev-backup sync=none into a scratch
 * backed by the disk.  QEMU's query-block then lists the copy-before-write
 * filter as the disk's top image, under the disk's own file name; the
 * model keeps one image (its node-name the disk's format node, not the
 * filter's) and the filter as what it is, without a warning.
 */
START_TEST(test_filter_is_not_a_layer)
{
    struct t t;
    char *log, *xml;

    start(&t, "filters");
    forget_log(&t);
    play(&t, "add-scratch");
    expect_quiet(&t);
    run(&t, "backup", "backup");
    ck_model_has(&t, "disk0", F_TOP("67108864"), true);
    ck_model_has(&t, "disk0", F_CBW, true);
    ck_assert_str_eq(chain_top_node(chain(&t), "disk0"), "fmt0");
    /* the filter's node-name finds the disk too */
    ck_assert_str_eq(chain_disk_name(chain(&t), "#block181"), "disk0");
    xml = chain_to_xml(chain(&t), "disk0");
    ck_assert_msg(strstr(xml, "<filter driver=\"copy-before-write\" "
                              "node-name=\"#block181\" layer=\"0\"/>")
                  && !strstr(xml, "index=\"1\""), "%s", xml);
    free(xml);
    run(&t, "bcancel", "bcancel");
    ck_model_has(&t, "disk0", F_TOP("67108864"), true);
    ck_model_has(&t, "disk0", "filters", false);
    log = log_since(&t);
    ck_assert_msg(!strstr(log, " warning: "), "%s", log);
    free(log);
    stop(&t);
}
END_TEST

/* block_resize by node-name: the new size is the model's as soon as QEMU
 * has answered the command, before the proxy's own questions. */
START_TEST(test_block_resize)
{
    struct t t;
    char *log;

    start(&t, "filters");
    run(&t, "add-scratch", "seed");
    run(&t, "backup", "backup");
    run(&t, "bcancel", "bcancel");
    run(&t, "del-scratch", "bcancel");
    forget_log(&t);
    play(&t, "resize");
    ck_model_has(&t, "disk0", F_TOP("134217728"), true);
    expect_asked(&t, "resize", ASK_KNOWN);
    ck_model_has(&t, "disk0", F_TOP("134217728"), true);
    log = log_since(&t);
    ck_assert_msg(!strstr(log, " warning: "), "%s", log);
    free(log);
    stop(&t);
}
END_TEST

/* A backup's start predicts QEMU's copy-before-write filter on the disk
 * (its node-name is QEMU's to give) and its end the filter's going, and
 * neither asks QEMU; the check when the chain is asked names the filter. */
START_TEST(test_backup_filter_predicted)
{
    struct t t;
    char *q;

    start(&t, "filters");
    forget_log(&t);
    play(&t, "add-scratch");
    expect_quiet(&t);
    play(&t, "backup");
    events_after(&t, "backup");
    expect_quiet(&t);
    ck_model_has(&t, "disk0", "\"filters\":[{\"driver\":\"copy-before-write\","
                              "\"layer\":0}]", true);
    q = verify(&t, "backup");
    ck_assert_str_eq(q, ASK_JOBS);  /* a job runs: no graph to compare */
    free(q);
    ck_model_has(&t, "disk0", F_CBW, true);
    play(&t, "bcancel");
    events_after(&t, "bcancel");
    expect_quiet(&t);
    ck_model_has(&t, "disk0", "filters", false);
    ck_model_has(&t, "disk0", F_TOP("67108864"), true);
    q = verify(&t, "bcancel");
    ck_assert_str_eq(q, "x-debug-query-block-graph " ASK_KNOWN);
    free(q);
    ck_model_has(&t, "disk0", "filters", false);
    expect_no_warning(&t);
    stop(&t);
}
END_TEST

/* qmproxy-query-chain through the router: while a job runs it asks QEMU
 * afresh before answering, and answers the model. */
START_TEST(test_query_chain_command)
{
    struct t t;
    char *got, *end, *q;
    json_object *reply, *ret;

    start(&t, "none");
    run_until(&t, "speed");
    free(client_since(&t));
    rig_send(t.c, "{\"execute\": \"qmproxy-query-chain\", \"arguments\": "
                  "{\"disk\": \"d0s2\"}, \"id\": \"q\"}");
    spin(&t);
    got = client_since(&t);
    ck_assert_str_eq(got, "");  /* not before QEMU has answered */
    free(got);
    q = answer(&t, "ready");
    ck_assert_str_eq(q, ASK_JOBS);
    free(q);
    got = client_since(&t);
    end = strstr(got, "\r\n");
    ck_assert_ptr_nonnull(end);
    ck_assert_str_eq(end, "\r\n");
    reply = json_tokener_parse(got);
    ck_assert(json_object_object_get_ex(reply, "return", &ret));
    /* QEMU's answer, as the model has it; written in QEMU's member
     * order (qjson), so compared as JSON */
    q = plain(&t, ret);
    json_object *have = json_tokener_parse(q);
    json_object *want = json_tokener_parse(DISK0_M0("ready", "yes", M32, M32,
                                                    "true"));
    ck_assert_msg(json_object_equal(have, want), "%s", q);
    ck_model(&t, "disk0", DISK0_M0("ready", "yes", M32, M32, "true"));
    json_object_put(have);
    json_object_put(want);
    free(q);
    json_object_put(reply);
    free(got);
    stop(&t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("chain_model");
    TCase *tc = tcase_create("prediction");

    tcase_add_test(tc, test_snapshot_sync_device);
    tcase_add_test(tc, test_transaction);
    tcase_add_test(tc, test_snapshot_sync_node_name);
    tcase_add_test(tc, test_blockdev_add_snapshot_mirror);
    tcase_add_test(tc, test_mirror_pivot);
    tcase_add_test(tc, test_cancel_is_not_a_pivot);
    tcase_add_test(tc, test_commit_and_stream);
    tcase_add_test(tc, test_filter_is_not_a_layer);
    tcase_add_test(tc, test_block_resize);
    suite_add_tcase(s, tc);
    tc = tcase_create("jobs");
    tcase_add_test(tc, test_ready_before_reply);
    tcase_add_test(tc, test_job_status_change);
    tcase_add_test(tc, test_no_node_query_while_a_job_lives);
    suite_add_tcase(s, tc);
    tc = tcase_create("lazy");
    tcase_add_test(tc, test_cancelled_copy_confirmed_by_the_graph);
    tcase_add_test(tc, test_wrong_prediction_found_when_asked);
    tcase_add_test(tc, test_wrong_prediction_found_by_a_refusal);
    tcase_add_test(tc, test_settle_pays_for_a_prediction);
    tcase_add_test(tc, test_backup_filter_predicted);
    tcase_add_test(tc, test_settle_waits_out_a_prediction_made_meanwhile);
    suite_add_tcase(s, tc);
    tc = tcase_create("reconciliation");
    tcase_add_test(tc, test_qemu_wins_with_a_warning);
    tcase_add_test(tc, test_uncertain_prediction_completed_quietly);
    tcase_add_test(tc, test_event_after_jobs_answer_wins);
    tcase_add_test(tc, test_change_after_block_answer_asks_again);
    tcase_add_test(tc, test_unchanged_graph_answers_from_the_model);
    tcase_add_test(tc, test_changed_graph_asks_again_before_answering);
    suite_add_tcase(s, tc);
    tc = tcase_create("restart");
    tcase_add_test(tc, test_saved_form_round_trip);
    tcase_add_test(tc, test_changed_while_away);
    tcase_add_test(tc, test_query_chain_command);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
