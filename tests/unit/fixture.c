/*
 * fixture: recorded QEMU conversations (see fixture.h).
 */
#include "fixture.h"

#include <check.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "rig.h"
#include "util.h"

struct line {
    char *raw;            /* without its line end */
    json_object *msg;
};

struct fixture {
    struct line *lines;
    int n;
};

struct fixture *fixture_load(const char *name)
{
    char *path = xasprintf("%s/chain/%s", QMPROXY_TEST_DATA, name);
    char *text = rig_read_file(path, NULL);
    struct fixture *fx = xcalloc(1, sizeof(*fx));
    char *save = NULL;

    for (char *l = strtok_r(text, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        fx->lines = xrealloc(fx->lines, sizeof(*fx->lines)
                             * (size_t)(fx->n + 1));
        fx->lines[fx->n].raw = xstrdup(l);
        fx->lines[fx->n].msg = json_tokener_parse(l);
        ck_assert_msg(fx->lines[fx->n].msg != NULL, "%s: not JSON: %s",
                      path, l);
        fx->n++;
    }
    free(text);
    free(path);
    return fx;
}

void fixture_free(struct fixture *fx)
{
    for (int i = 0; i < fx->n; i++) {
        free(fx->lines[i].raw);
        json_object_put(fx->lines[i].msg);
    }
    free(fx->lines);
    free(fx);
}

static bool is_command(const struct line *l)
{
    return jobj_str(l->msg, "execute") != NULL;
}

static bool is_event(const struct line *l)
{
    return jobj_str(l->msg, "event") != NULL;
}

static int command_index(const struct fixture *fx, const char *id)
{
    for (int i = 0; i < fx->n; i++) {
        if (is_command(&fx->lines[i])
            && !strcmp(jobj_str(fx->lines[i].msg, "id")
                       ? jobj_str(fx->lines[i].msg, "id") : "", id)) {
            return i;
        }
    }
    ck_abort_msg("no step %s in the fixture", id);
    return -1;
}

/* The line of the reply to the command at index i. */
static int reply_index(const struct fixture *fx, int i)
{
    for (int k = i + 1; k < fx->n; k++) {
        if (!is_event(&fx->lines[k])) {
            ck_assert(!is_command(&fx->lines[k]));
            return k;
        }
    }
    ck_abort_msg("no reply to %s", fx->lines[i].raw);
    return -1;
}

char *fixture_greeting(const struct fixture *fx)
{
    return xasprintf("%s\r\n", fx->lines[0].raw);
}

const char *fixture_command(const struct fixture *fx, const char *id)
{
    return fx->lines[command_index(fx, id)].raw;
}

char *fixture_reply(const struct fixture *fx, const char *id, bool keep_id)
{
    const char *raw = fx->lines[reply_index(fx, command_index(fx, id))].raw;
    char *member = xasprintf("\"id\": \"%s\"", id);
    const char *at = strstr(raw, member);
    size_t mlen = strlen(member);
    char *out;

    ck_assert_ptr_nonnull(at);
    if (keep_id) {
        out = xasprintf("%s\r\n", raw);
    } else if (at > raw + 2 && !strncmp(at - 2, ", ", 2)) {
        /* {"return": ..., "id": "x"} */
        out = xasprintf("%.*s%s\r\n", (int)(at - 2 - raw), raw, at + mlen);
    } else {
        /* {"id": "x", "error": ...} */
        ck_assert(!strncmp(at + mlen, ", ", 2));
        out = xasprintf("%.*s%s\r\n", (int)(at - raw), raw, at + mlen + 2);
    }
    free(member);
    return out;
}

static char *lines(const struct fixture *fx, int from, int to)
{
    struct strbuf sb = STRBUF_INIT;

    for (int k = from; k < to; k++) {
        strbuf_addf(&sb, "%s\r\n", fx->lines[k].raw);
    }
    return strbuf_detach(&sb, NULL);
}

char *fixture_answer(const struct fixture *fx, const char *id)
{
    int i = command_index(fx, id);
    return lines(fx, i + 1, reply_index(fx, i) + 1);
}

char *fixture_events_after(const struct fixture *fx, const char *id)
{
    int k = reply_index(fx, command_index(fx, id)) + 1, end = k;

    while (end < fx->n && is_event(&fx->lines[end])) {
        end++;
    }
    return lines(fx, k, end);
}

char *fixture_event(const struct fixture *fx, const char *id,
                    const char *name, const char *job, const char *status)
{
    for (int k = command_index(fx, id) + 1; k < fx->n; k++) {
        json_object *data = NULL;
        const char *about;
        if (!is_event(&fx->lines[k])
            || strcmp(jobj_str(fx->lines[k].msg, "event"), name)) {
            continue;
        }
        json_object_object_get_ex(fx->lines[k].msg, "data", &data);
        about = jobj_str(data, "id") ? jobj_str(data, "id")
                                     : jobj_str(data, "device");
        if ((!job || (about && !strcmp(about, job)))
            && (!status || (jobj_str(data, "status")
                            && !strcmp(jobj_str(data, "status"), status)))) {
            return xasprintf("%s\r\n", fx->lines[k].raw);
        }
    }
    ck_abort_msg("no %s about %s after step %s", name, job ? job : "?", id);
    return NULL;
}
