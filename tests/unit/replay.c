/*
 * replay: a recorded conversation played again on the rig (see replay.h).
 */
#include "replay.h"

#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonobj.h"
#include "rig.h"
#include "util.h"

/* How long the proxy may take to send what the recording says it sent. */
#define WAIT_MS 3000

struct replay {
    char *name;
    json_object **entries;
    bool *skipped;
    int n, next;
    struct rig *r;
    int client;
    char rec_tag[8], tag[8];   /* "qmp" + 3 hex digits */
    struct strbuf from_proxy;  /* bytes the proxy wrote to QEMU, unparsed */
    struct strbuf to_client;   /* bytes the client got, unread */
};

struct replay *replay_load(const char *name)
{
    char *path = xasprintf("%s/ops/%s.jsonl", QMPROXY_TEST_DATA, name);
    char *text = rig_read_file(path, NULL);
    struct replay *rp = xcalloc(1, sizeof(*rp));
    char *save, *line;

    rp->name = xstrdup(name);
    rp->client = -1;
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_object *e = json_tokener_parse(line);
        ck_assert_msg(e, "%s: a line that is not JSON: %.80s", path, line);
        rp->entries = xrealloc(rp->entries, sizeof(*rp->entries)
                               * (size_t)(rp->n + 1));
        rp->entries[rp->n++] = e;
    }
    rp->skipped = xcalloc((size_t)rp->n + 1, sizeof(*rp->skipped));
    free(text);
    free(path);
    return rp;
}

void replay_free(struct replay *rp)
{
    for (int i = 0; i < rp->n; i++) {
        json_object_put(rp->entries[i]);
    }
    free(rp->entries);
    free(rp->skipped);
    strbuf_release(&rp->from_proxy);
    strbuf_release(&rp->to_client);
    if (rp->client >= 0) {
        close(rp->client);
    }
    free(rp->name);
    free(rp);
}

json_object *replay_entry(struct replay *rp, int i)
{
    return i >= 0 && i < rp->n ? rp->entries[i] : NULL;
}

void replay_skip(struct replay *rp, int i)
{
    rp->skipped[i] = true;
}

int replay_client(const struct replay *rp)
{
    return rp->client;
}

const char *replay_tag(const struct replay *rp)
{
    return rp->tag;
}

/* The first "qmpXYZ" (three hex digits) in s, or false. */
static bool find_tag(const char *s, char out[8])
{
    for (const char *p = strstr(s, "qmp"); p; p = strstr(p + 1, "qmp")) {
        if (isxdigit((unsigned char)p[3]) && isxdigit((unsigned char)p[4])
            && isxdigit((unsigned char)p[5]) && p[6] >= '0' && p[6] <= '9') {
            memcpy(out, p, 6);
            out[6] = 0;
            return true;
        }
    }
    return false;
}

static char *rewrite_tag(const struct replay *rp, const char *text)
{
    struct strbuf sb = STRBUF_INIT;
    const char *p = text, *hit;

    if (!rp->tag[0] || !strcmp(rp->tag, rp->rec_tag)) {
        return xstrdup(text);
    }
    while ((hit = strstr(p, rp->rec_tag))) {
        strbuf_add(&sb, p, (size_t)(hit - p));
        strbuf_adds(&sb, rp->tag);
        p = hit + strlen(rp->rec_tag);
    }
    strbuf_adds(&sb, p);
    return strbuf_detach(&sb, NULL);
}

char *replay_msg_text(struct replay *rp, int i)
{
    json_object *msg = NULL;

    json_object_object_get_ex(rp->entries[i], "msg", &msg);
    return rewrite_tag(rp, json_object_to_json_string_ext(
                               msg, JSON_C_TO_STRING_SPACED
                                    | JSON_C_TO_STRING_NOSLASHESCAPE));
}

void replay_qemu_writes(struct replay *rp, const char *line)
{
    rig_send(rp->r->qemu, line);
    rig_send(rp->r->qemu, "\r\n");
}

/* One JSON text from the front of sb (owned), or NULL if incomplete. */
static json_object *take_json(struct strbuf *sb)
{
    json_tokener *tok;
    json_object *v;
    size_t used;

    if (!sb->len) {
        return NULL;
    }
    tok = json_tokener_new();
    v = json_tokener_parse_ex(tok, sb->buf, (int)sb->len);
    used = tok->char_offset;
    json_tokener_free(tok);
    if (!v) {
        return NULL;
    }
    while (used < sb->len && isspace((unsigned char)sb->buf[used])) {
        used++;
    }
    memmove(sb->buf, sb->buf + used, sb->len - used);
    sb->len -= used;
    sb->buf[sb->len] = 0;
    return v;
}

static json_object *wait_json(struct replay *rp, int fd, struct strbuf *sb,
                              const char *what)
{
    for (int ms = 0; ms < WAIT_MS; ms++) {
        json_object *v = take_json(sb);
        char *more;
        if (v) {
            return v;
        }
        rig_spin(rp->r, 1);
        more = rig_drain(fd);
        if (more) {
            strbuf_adds(sb, more);
            free(more);
        }
    }
    ck_abort_msg("%s: %s did not come within %d ms (line %d of the "
                 "recording)", rp->name, what, WAIT_MS, rp->next + 1);
    return NULL;
}

json_object *replay_proxy_sends(struct replay *rp)
{
    return wait_json(rp, rp->r->qemu, &rp->from_proxy,
                     "the proxy's command to QEMU");
}

json_object *replay_client_gets(struct replay *rp)
{
    for (;;) {
        json_object *m = wait_json(rp, rp->client, &rp->to_client,
                                   "the client's reply");
        if (!json_object_object_get_ex(m, "event", NULL)) {
            return m;
        }
        json_object_put(m);  /* QEMU's events reach every client */
    }
}

static const char *str_of(json_object *e, const char *key)
{
    return jobj_str(e, key) ? jobj_str(e, key) : "";
}

static int client_of(json_object *e)
{
    return (int)jobj_int(e, "client", -1);
}

/* A command the proxy sent QEMU: the one recorded, the tag aside. */
static void expect_proxy_command(struct replay *rp, int i)
{
    json_object *got = replay_proxy_sends(rp), *want;
    const char *got_text = json_object_to_json_string_ext(
        got, JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *want_text;

    if (!rp->tag[0]) {
        char rec[8], now[8];
        want_text = replay_msg_text(rp, i);
        if (find_tag(want_text, rec) && find_tag(got_text, now)) {
            memcpy(rp->rec_tag, rec, sizeof(rec));
            memcpy(rp->tag, now, sizeof(now));
        }
        free(want_text);
    }
    want_text = replay_msg_text(rp, i);
    want = json_tokener_parse(want_text);
    ck_assert_msg(json_object_equal(got, want),
                  "%s line %d: the proxy sent QEMU\n  %s\nwhere the "
                  "recording has\n  %s", rp->name, i + 1, got_text,
                  want_text);
    json_object_put(want);
    json_object_put(got);
    free(want_text);
}

/* A reply the client got: the same id and outcome as recorded. */
static void expect_client_reply(struct replay *rp, int i)
{
    json_object *got = replay_client_gets(rp), *want, *gr, *wr;
    char *want_text = replay_msg_text(rp, i);
    const char *got_text = json_object_to_json_string_ext(
        got, JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);

    want = json_tokener_parse(want_text);
    ck_assert_msg(json_object_equal(jobj_typed(got, "id", json_type_string),
                                    jobj_typed(want, "id", json_type_string)),
                  "%s line %d: the client got\n  %.300s\nwhere the "
                  "recording has\n  %.300s", rp->name, i + 1, got_text,
                  want_text);
    gr = jobj_typed(got, "return", json_type_object);
    wr = jobj_typed(want, "return", json_type_object);
    ck_assert_msg(!gr == !wr && (!wr || !strcmp(str_of(gr, "state"),
                                                str_of(wr, "state"))),
                  "%s line %d: the client got\n  %.300s\nwhere the "
                  "recording has\n  %.300s", rp->name, i + 1, got_text,
                  want_text);
    json_object_put(want);
    json_object_put(got);
    free(want_text);
}

static void play(struct replay *rp, int i)
{
    json_object *e = rp->entries[i], *msg = NULL;
    const char *dir = str_of(e, "dir"), *from = str_of(e, "from");
    const char *kind = str_of(e, "kind");
    int client = client_of(e);

    json_object_object_get_ex(e, "msg", &msg);
    if (!strcmp(dir, "in") && !strcmp(from, "qmproxy")) {
        expect_proxy_command(rp, i);
    } else if (!strcmp(dir, "out") && !strcmp(from, "qemu")
               && strcmp(kind, "greeting")) {
        char *text = replay_msg_text(rp, i);
        replay_qemu_writes(rp, text);
        free(text);
    } else if (client > 0 && !strcmp(kind, "greeting")) {
        ck_assert_msg(rp->client < 0, "%s: one client only", rp->name);
        rp->client = rig_client(rp->r);   /* greeting and negotiation */
    } else if (client > 0 && !strcmp(dir, "in")) {
        const char *cmd = jobj_str(msg, "execute");
        if (strcmp(cmd ? cmd : "", "qmp_capabilities")) {
            char *text = replay_msg_text(rp, i);
            rig_send(rp->client, text);
            free(text);
        }
    } else if (client > 0 && !strcmp(dir, "out") && !strcmp(kind, "reply")
               && !json_object_object_get_ex(msg, "QMP", NULL)) {
        json_object *ret;
        /* qmp_capabilities' answer was taken by rig_client */
        if (!(json_object_object_get_ex(msg, "return", &ret)
              && json_object_is_type(ret, json_type_object)
              && json_object_object_length(ret) == 0
              && !json_object_object_get_ex(msg, "id", NULL)
              && !strcmp(from, "qmproxy"))) {
            expect_client_reply(rp, i);
        }
    }
    /* the proxy's own events: the client did not ask for them */
}

void replay_start(struct replay *rp, struct rig *r)
{
    char *greeting;
    int i;

    rp->r = r;
    greeting = replay_msg_text(rp, 0);
    ck_assert_str_eq(str_of(rp->entries[0], "kind"), "greeting");
    {
        char *line = xasprintf("%s\r\n", greeting);
        rig_connect(r, line);
        free(line);
    }
    free(greeting);
    /* the negotiation was rig_connect's: go on after QEMU's answer */
    for (i = 1; i < rp->n; i++) {
        if (!strcmp(str_of(rp->entries[i], "kind"), "reply")) {
            break;
        }
    }
    rp->next = i + 1;
}

int replay_until(struct replay *rp,
                 bool (*stop)(json_object *entry, void *opaque),
                 void *opaque)
{
    for (; rp->next < rp->n; rp->next++) {
        if (rp->skipped[rp->next]) {
            continue;
        }
        if (stop && stop(rp->entries[rp->next], opaque)) {
            return rp->next;
        }
        play(rp, rp->next);
    }
    rig_spin(rp->r, 20);
    return -1;
}
