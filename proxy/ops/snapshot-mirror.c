/*
 * qmproxy-snapshot-mirror: the mirrored snapshot of the 2012 RFC.  One
 * transaction of blockdev-snapshot-sync for all disks (the consistent
 * point), then drive-mirror sync=top of each new overlay; answers when
 * every copy is ready.  Writes made between the two steps are not lost:
 * sync=top copies the whole new overlay.  Any failure after the
 * transaction undoes everything it did (copies cancelled, overlays folded
 * back by active commit) and the error says where each disk stands.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "nbd-target.h"
#include "op.h"
#include "qmp.h"
#include "util.h"

static const char *const modes[] = { "existing", "absolute-paths", NULL };

static const struct qapi_member disk_members[] = {
    { "disk", QAPI_STR, false, NULL, NULL, NULL },
    { "snapshot-file", QAPI_STR, false, NULL, NULL, NULL },
    /* a path, an NBD URI, or an NBD server and export (nbd-target.h) */
    { "mirror-file", QAPI_ANY, false, NULL, NULL, NULL },
    { "format", QAPI_STR, true, NULL, NULL, NULL },
    { "mirror-mode", QAPI_ENUM, true, modes, NULL, NULL },
    { "speed", QAPI_INT, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static const struct qapi_member disk_element = {
    "disks", QAPI_OBJECT, false, NULL, disk_members, NULL
};

static const struct qapi_member args[] = {
    { "name", QAPI_STR, true, NULL, NULL, NULL },
    { "disks", QAPI_LIST, false, NULL, NULL, &disk_element },
    { NULL, 0, false, NULL, NULL, NULL },
};

static void mirrors_ready(struct op *op, bool ok)
{
    op_ready_or_rollback(op, ok);
}

static void mirrors_started(struct op *op, bool ok)
{
    if (!ok) {
        op_ready_or_rollback(op, false);
        return;
    }
    op_set_state(op, OP_MIRRORING);
    step_wait_ready(op, mirrors_ready);
}

static void snapshotted(struct op *op, bool ok)
{
    if (!ok) {
        /* the transaction is atomic: nothing to undo */
        op_fail(op, "%s", op->step_error);
        return;
    }
    step_start_mirrors(op, mirrors_started);
}

static bool creates(const char *mode)
{
    return !mode || strcmp(mode, "existing");
}

/* One image to open beneath its folder. */
struct to_open {
    const char *what, *path;
    bool create;
    int fd;
};

/*
 * Under a path policy, the overlays' and the copies' images opened (or
 * created) beneath their folders, to be handed to QEMU by descriptor
 * (op-images.c); all or none: when one cannot be, those created already
 * are removed.
 */
static char *open_images(const struct policy *pol, struct to_open *img,
                         int n)
{
    char *err = NULL, *tmp;

    for (int i = 0; i < n; i++) {
        img[i].fd = -1;
    }
    for (int i = 0; i < n && !err; i++) {
        if (img[i].path) {
            err = op_open_image(pol, img[i].what, img[i].path,
                                img[i].create ? OP_IMAGE_NEW
                                              : OP_IMAGE_EXISTING,
                                &img[i].fd);
        }
    }
    if (!err) {
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (img[i].fd >= 0) {
            struct op_image undo;
            op_image_init(&undo);
            op_image_take(&undo, img[i].fd, img[i].create);
            close(img[i].fd);
            op_image_remove_unused(pol, &undo, img[i].path);
        }
    }
    tmp = xasprintf("%s; nothing was done", err);
    free(err);
    return tmp;
}

void snapshot_mirror_start(struct cmd_call *call, const char *name,
                           const struct snapshot_spec *specs, int n)
{
    const char *resolved[64];
    char *targets[64] = { NULL };
    const char *mirror_modes[64];
    struct to_open images[128];   /* each disk's overlay, then copy */
    struct op *op;
    char *err = NULL;

    if (n == 0) {
        cmd_error(call, QMP_GENERIC_ERROR, "no disks given: say which disks "
                  "to snapshot and where their copies go");
        return;
    }
    if (n > 64) {
        cmd_error(call, QMP_GENERIC_ERROR, "at most 64 disks at once");
        return;
    }
    if (name && !op_name_free(name)) {
        cmd_error(call, QMP_GENERIC_ERROR, "an operation named '%s' is "
                  "already under way; choose another name", name);
        return;
    }
    for (int i = 0; i < n && !err; i++) {
        const struct snapshot_spec *s = &specs[i];
        err = op_check_disk(s->disk, &resolved[i]);
        for (int k = 0; k < i && !err; k++) {
            if (!strcmp(resolved[k], resolved[i])) {
                err = xasprintf("disk %s is named twice", resolved[i]);
            }
        }
        if (!err) {
            err = op_check_new_file("snapshot-file", s->snapshot_file);
        }
        mirror_modes[i] = s->mirror_mode;
        if (!err && s->mirror_file) {
            err = nbd_target_resolve_string("mirror-file", s->mirror_file,
                                            &targets[i]);
        }
        if (!err && s->mirror_file) {
            err = op_check_target("mirror-file", targets[i], &mirror_modes[i]);
        }
        if (!err && s->speed < 0) {
            err = xasprintf("speed of %s must not be negative", s->disk);
        }
        if (err) {
            char *tmp = xasprintf("%s; nothing was done", err);
            free(err);
            err = tmp;
        }
    }
    for (int i = 0; i < n && !err; i++) {
        images[2 * i] = (struct to_open){ "snapshot-file",
                                          specs[i].snapshot_file, true, -1 };
        images[2 * i + 1] = (struct to_open){ "mirror-file", targets[i],
                                              creates(mirror_modes[i]), -1 };
    }
    if (!err) {
        err = open_images(call->env->policy(call->env->opaque), images,
                          2 * n);
    }
    if (err) {
        cmd_error(call, QMP_GENERIC_ERROR, "%s", err);
        free(err);
        for (int i = 0; i < n; i++) {
            free(targets[i]);
        }
        return;
    }
    op = op_new("snapshot-mirror", name, call->client, call);
    for (int i = 0; i < n; i++) {
        struct op_disk *d = op_add_disk(op, resolved[i]);
        d->snapshot_file = xstrdup(specs[i].snapshot_file);
        d->mirror_file = targets[i];   /* canonical; NULL: no copy */
        d->format = xstrdup(specs[i].format ? specs[i].format : "qcow2");
        if (d->mirror_file && nbd_target_is(d->mirror_file)) {
            /* the export serves the guest's view of the overlay's copy */
            d->mirror_format = xstrdup("raw");
        }
        d->mode = xstrdup(d->mirror_file ? mirror_modes[i]
                                         : "absolute-paths");
        d->sync = xstrdup("top");
        d->speed = specs[i].speed;
        op_image_take(&d->snapshot_image, images[2 * i].fd, true);
        op_image_take(&d->copy_image, images[2 * i + 1].fd,
                      creates(mirror_modes[i]));
    }
    op_set_state(op, OP_RUNNING);
    step_snapshot(op, snapshotted);
}

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    json_object *disks;
    struct snapshot_spec specs[64];
    char *targets[64] = { NULL };
    size_t n;
    char *err = NULL;

    json_object_object_get_ex(a, "disks", &disks);
    n = json_object_array_length(disks);
    if (n > 64) {
        cmd_error(call, QMP_GENERIC_ERROR, "at most 64 disks at once");
        return CMD_RETURN_NORMAL;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *d = json_object_array_get_idx(disks, i);
        json_object *mirror = NULL;
        json_object_object_get_ex(d, "mirror-file", &mirror);
        /* an object (an NBD server and export) as the URI it stands for */
        if (!err) {
            err = nbd_target_resolve("mirror-file", mirror, &targets[i]);
        }
        specs[i] = (struct snapshot_spec){
            .disk = qapi_get_str(d, "disk", NULL),
            .snapshot_file = qapi_get_str(d, "snapshot-file", NULL),
            .mirror_file = targets[i],
            .format = qapi_get_str(d, "format", NULL),
            .mirror_mode = qapi_get_str(d, "mirror-mode", NULL),
            .speed = qapi_get_int(d, "speed", 0),
        };
    }
    if (err) {
        cmd_error(call, QMP_GENERIC_ERROR, "%s; nothing was done", err);
        free(err);
    } else {
        snapshot_mirror_start(call, qapi_get_str(a, "name", NULL), specs,
                              (int)n);
    }
    for (size_t i = 0; i < n; i++) {
        free(targets[i]);
    }
    return err ? CMD_RETURN_NORMAL : CMD_RETURN_WAIT;
}

static const struct location locations[] = {
    { "disks.*.snapshot-file", LOCATION_FILE },
    { "disks.*.mirror-file", LOCATION_FILE },
    { "disks.*.mirror-file.server", LOCATION_SOCKET },
    { NULL, LOCATION_FILE },
};

const struct cmd_entry cmd_snapshot_mirror_entry = {
    .name = "qmproxy-snapshot-mirror",
    .args = args,
    .exec = exec,
    .settle_chain = true,
    .locations = locations,
};
