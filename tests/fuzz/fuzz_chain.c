/*
 * fuzz_chain: the chain model (proxy/chain*.c) reconciled from QEMU's
 * replies, driven without a socket (fuzz_upstream.h answers the model's
 * questions).
 *
 * Input: lines, each an action:
 *   R<line>            QEMU writes this line: an event goes where the
 *                      router sends events, anything else (but a greeting)
 *                      answers the oldest question, as upstream-queue.c does
 *   L                  the oldest question is lost
 *   C<command> <0|1><args>  a client's command passed and QEMU answered
 *                      (1) or refused (0) it
 *   E<name> <data>     an event, by name
 *   S F T A            reconcile, refresh, settle, after-reconcile
 *   U                  QEMU went away and came back (lost, then seed)
 *   D<json>            a saved model is loaded
 *   O<job> <operation> the proxy notes a job's owner
 *   Q<name>            every lookup a client or an operation makes
 * The model starts seeded (its first questions out); at the end every
 * disk is looked at, the model exported and saved, the questions still
 * out are lost, and the model freed.  Checked: no crash, leak or UB; the
 * hooks get what they promise; every export is JSON / well-formed.
 */
#include <libxml/parser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "fuzz_common.h"
#include "fuzz_json.h"
#include "fuzz_upstream.h"
#include "jsonobj.h"
#include "qjson.h"
#include "util.h"

static int done_calls;

static void on_done(void *opaque)
{
    (void)opaque;
    done_calls++;
}

static json_object *parse_json(const char *s, size_t n)
{
    return qjson_parse(s, n);
}

/* What the router does with an event line of QEMU's (router.c). */
static void qemu_event(struct chain *c, const struct js_text *t)
{
    const struct js_member *m = js_text_member(t, "event");
    char name[64];
    size_t n;
    json_object *ev, *data = NULL;

    if (!m || m->value_end - m->value_start < 3
        || m->value_end - m->value_start - 2 >= sizeof(name)) {
        return;
    }
    n = m->value_end - m->value_start - 2;
    memcpy(name, t->raw + m->value_start + 1, n);
    name[n] = 0;
    if (!chain_watches_event(name)) {
        return;
    }
    ev = parse_json(t->raw, t->len);
    json_object_object_get_ex(ev, "data", &data);
    chain_observe_event(c, name, data);
    json_object_put(ev);
}

static void qemu_line(struct chain *c, const char *line, size_t len)
{
    struct js_text t;

    memset(&t, 0, sizeof(t));
    t.raw = line;
    t.len = len;
    linestream_scan_members(&t);
    switch (qmp_classify(&t)) {
    case QMP_EVENT:
        qemu_event(c, &t);
        break;
    case QMP_GREETING:
        break;
    default:
        fake_answer(line, len);
        break;
    }
}

static void check_xml_export(const char *xml)
{
    xmlDocPtr doc;

    if (!xml) {
        return;
    }
    doc = xmlReadMemory(xml, (int)strlen(xml), "chain.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR
                        | XML_PARSE_NOWARNING);
    if (!doc) {
        fprintf(stderr, "not well-formed:\n%s\n", xml);
        FUZZ_ASSERT(!"chain_to_xml wrote XML that is not well-formed");
    }
    xmlFreeDoc(doc);
}

static void look_at(struct chain *c, const char *name)
{
    const char *disk = chain_disk_name(c, name);
    json_object *j = chain_to_json(c, name);
    char *xml = chain_to_xml(c, name);

    FUZZ_ASSERT(!disk == !j);
    if (j) {
        fuzz_check_written(j);
    }
    check_xml_export(xml);
    json_object_put(j);
    free(xml);
    if (!disk) {
        return;
    }
    (void)chain_top_file(c, disk);
    (void)chain_top_format(c, disk);
    (void)chain_top_node(c, disk);
    (void)chain_job_device(c, disk);
    int n = chain_layer_count(c, disk);
    FUZZ_ASSERT(n >= 0);
    for (int i = 0; i < n; i++) {
        (void)chain_layer_file(c, disk, i);
    }
    (void)chain_mirror_file(c, disk);
    (void)chain_mirror_mode(c, disk);
    (void)chain_job_manual_finalize(c, disk);
    (void)chain_job_id(c, disk);
    (void)chain_job_status(c, disk);
}

static void look_at_all(struct chain *c)
{
    json_object *all = chain_to_json(c, NULL), *saved;

    FUZZ_ASSERT(json_object_is_type(all, json_type_array));
    fuzz_check_written(all);
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        const char *name = jobj_str(json_object_array_get_idx(all, i),
                                    "disk");
        FUZZ_ASSERT(name);
        look_at(c, name);
    }
    json_object_put(all);
    saved = chain_save(c);
    fuzz_check_written(saved);
    json_object_put(saved);
}

static void run_line(struct chain *c, const char *s, size_t n)
{
    const char *sp;
    char *a, *b;
    json_object *v;

    if (!n) {
        return;
    }
    switch (s[0]) {
    case 'R':
        qemu_line(c, s + 1, n - 1);
        break;
    case 'L':
        fake_lose();
        break;
    case 'C':
        sp = memchr(s, ' ', n);
        if (!sp || sp + 1 >= s + n) {
            break;
        }
        a = xstrndup(s + 1, (size_t)(sp - s - 1));
        v = parse_json(sp + 2, (size_t)(s + n - sp - 2));
        if (chain_watches(a)) {
            chain_observe(c, a, json_object_is_type(v, json_type_object)
                                    ? v : NULL, 1, sp[1] == '1');
        }
        json_object_put(v);
        free(a);
        break;
    case 'E':
        sp = memchr(s, ' ', n);
        a = xstrndup(s + 1, sp ? (size_t)(sp - s - 1) : n - 1);
        v = sp ? parse_json(sp + 1, (size_t)(s + n - sp - 1)) : NULL;
        if (chain_watches_event(a)) {
            chain_observe_event(c, a, v);
        }
        json_object_put(v);
        free(a);
        break;
    case 'S':
        chain_reconcile(c);
        break;
    case 'F':
        chain_refresh(c, on_done, NULL);
        break;
    case 'T':
        chain_settle(c, on_done, NULL);
        break;
    case 'A':
        chain_after_reconcile(c, on_done, NULL);
        break;
    case 'U':
        chain_upstream_lost(c);
        fake_lose_all();
        chain_seed(c, on_done, NULL);
        break;
    case 'D':
        v = parse_json(s + 1, n - 1);
        chain_load(c, v);
        json_object_put(v);
        break;
    case 'O':
        sp = memchr(s, ' ', n);
        a = xstrndup(s + 1, sp ? (size_t)(sp - s - 1) : n - 1);
        b = sp ? xstrndup(sp + 1, (size_t)(s + n - sp - 1)) : NULL;
        chain_note_job_owner(c, a, b);
        free(a);
        free(b);
        break;
    case 'Q':
        a = xstrndup(s + 1, n - 1);
        look_at(c, a);
        free(a);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct chain *c = chain_new(NULL, NULL, &fake_chain_hooks, NULL);
    const char *s = (const char *)data, *end = s + size;

    done_calls = 0;
    chain_seed(c, on_done, NULL);
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        run_line(c, s, n);
        s += n + 1;
    }
    (void)fake_head();
    look_at_all(c);
    chain_upstream_lost(c);
    fake_lose_all();
    chain_free(c);
    return 0;
}
