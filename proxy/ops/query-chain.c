/*
 * qmproxy-query-chain: the backing-chain model, as JSON or as libvirt-style
 * <disk> XML, answered once the model is known to be QEMU's truth
 * (chain_refresh: job progress asked afresh, changes made through other
 * monitors found).
 */
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "cmd.h"
#include "qmp.h"
#include "util.h"

static const char *const formats[] = { "json", "xml", NULL };

static const struct qapi_member args[] = {
    { "disk", QAPI_STR, true, NULL, NULL, NULL },
    { "format", QAPI_ENUM, true, formats, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

struct query {
    struct cmd_call *call;
    char *disk;
    bool xml;
};

/* A disk name the model does not know, even after checking with QEMU. */
static void no_such_disk(struct cmd_call *call, struct chain *c,
                         const char *disk)
{
    json_object *all = chain_to_json(c, NULL);
    struct strbuf names = STRBUF_INIT;

    for (size_t i = 0; i < json_object_array_length(all); i++) {
        json_object *d = json_object_array_get_idx(all, i), *n;
        json_object_object_get_ex(d, "disk", &n);
        strbuf_addf(&names, "%s'%s'", i ? ", " : "",
                    json_object_get_string(n));
    }
    cmd_error(call, QMP_GENERIC_ERROR, "No disk named '%s'; the disks "
              "are %s (a device name, a qdev id, or a node-name)", disk,
              names.buf ? names.buf : "none");
    strbuf_release(&names);
    json_object_put(all);
}

static void answer(void *opaque)
{
    struct query *q = opaque;
    struct chain *c = q->call->env->chain;

    if (q->disk && !chain_disk_name(c, q->disk)) {
        no_such_disk(q->call, c, q->disk);
    } else if (q->xml) {
        char *xml = chain_to_xml(c, q->disk);
        cmd_return(q->call, json_object_new_string(xml));
        free(xml);
    } else {
        json_object *ret = chain_to_json(c, q->disk);
        if (q->disk) {
            /* always a list, filtered to the one disk */
            json_object *a = json_object_new_array();
            json_object_array_add(a, ret);
            ret = a;
        }
        cmd_return(q->call, ret);
    }
    free(q->disk);
    free(q);
}

/* The disk is looked up after the model is known fresh: a disk added
 * through another monitor a moment ago is found too. */
static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    struct chain *c = call->env->chain;
    const char *disk = qapi_get_str(a, "disk", NULL);
    struct query *q;

    q = xcalloc(1, sizeof(*q));
    q->call = call;
    q->disk = disk ? xstrdup(disk) : NULL;
    q->xml = !strcmp(qapi_get_str(a, "format", "json"), "xml");
    chain_refresh(c, answer, q);
    return CMD_RETURN_WAIT;
}

const struct cmd_entry cmd_query_chain_entry = {
    .name = "qmproxy-query-chain",
    .args = args,
    .exec = exec,
};
