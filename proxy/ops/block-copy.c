/*
 * qmproxy-block-copy: the higher-level API the RFC's reviewer asked for
 * (libvirt's virDomainBlockCopy): copy a disk, its whole chain (sync=full)
 * or only its active layer (shallow), and answer when the copy is ready;
 * then qmproxy-reopen switches onto it (or drops it).
 */
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "cmd.h"
#include "nbd-target.h"
#include "op.h"
#include "qmp.h"
#include "util.h"

static const char *const modes[] = { "existing", "absolute-paths", NULL };

static const struct qapi_member args[] = {
    { "disk", QAPI_STR, false, NULL, NULL, NULL },
    /* a path, an NBD URI, or an NBD server and export (nbd-target.h) */
    { "target", QAPI_ANY, false, NULL, NULL, NULL },
    { "format", QAPI_STR, true, NULL, NULL, NULL },
    { "shallow", QAPI_BOOL, true, NULL, NULL, NULL },
    { "mode", QAPI_ENUM, true, modes, NULL, NULL },
    { "speed", QAPI_INT, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static void started(struct op *op, bool ok)
{
    if (!ok) {
        op_fail(op, "%s", op->step_error);
        return;
    }
    op_set_state(op, OP_MIRRORING);
    step_wait_ready(op, op_ready_or_rollback);
}

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    const char *mode = qapi_get_str(a, "mode", NULL);
    char *target = NULL;
    const char *disk;
    long long speed = qapi_get_int(a, "speed", 0);
    char *err = op_check_disk(qapi_get_str(a, "disk", NULL), &disk);
    struct op *op;
    struct op_disk *d;
    json_object *given = NULL;
    int image = -1;

    json_object_object_get_ex(a, "target", &given);
    if (!err) {
        err = nbd_target_resolve("target", given, &target);
    }
    if (!err) {
        err = op_check_target("target", target, &mode);
    }
    if (!err && speed < 0) {
        err = xstrdup("speed must not be negative");
    }
    if (!err) {
        /* under a path policy the proxy creates or opens the image itself
         * and hands it to QEMU (op-images.c) */
        err = op_open_image(call->env->policy(call->env->opaque), "target",
                            target, strcmp(mode, "existing")
                            ? OP_IMAGE_NEW : OP_IMAGE_EXISTING, &image);
    }
    if (err) {
        cmd_error(call, QMP_GENERIC_ERROR, "%s; nothing was done", err);
        free(err);
        free(target);
        return CMD_RETURN_NORMAL;
    }
    op = op_new("block-copy", NULL, call->client, call);
    d = op_add_disk(op, disk);
    d->mirror_file = target;
    op_image_take(&d->copy_image, image, strcmp(mode, "existing") != 0);
    d->sync = xstrdup(qapi_get_bool(a, "shallow", false) ? "top" : "full");
    d->mode = xstrdup(mode);
    d->speed = speed;
    if (qapi_get_str(a, "format", NULL)) {
        d->format = xstrdup(qapi_get_str(a, "format", NULL));
    } else if (nbd_target_is(target)) {
        d->format = xstrdup("raw");   /* an export serves the disk's data */
    } else if (strcmp(mode, "existing")) {
        const char *fmt = chain_top_format(call->env->chain, disk);
        d->format = xstrdup(fmt ? fmt : "qcow2");
    }
    op_set_state(op, OP_RUNNING);
    step_start_mirrors(op, started);
    return CMD_RETURN_WAIT;
}

static const struct location locations[] = {
    { "target", LOCATION_FILE },
    { "target.server", LOCATION_SOCKET },
    { NULL, LOCATION_FILE },
};

const struct cmd_entry cmd_block_copy_entry = {
    .name = "qmproxy-block-copy",
    .args = args,
    .exec = exec,
    .settle_chain = true,
    .locations = locations,
};
