/*
 * chain-guard: a client's command that has QEMU write a layer the proxy
 * handed over by descriptor into a new image's header as its backing file
 * (blockdev-snapshot-sync over it; drive-mirror of the layer above it,
 * sync top, QEMU creating the copy).  QEMU writes the name its node has,
 * and that node's name is /dev/fdset/N: the image would name a backing
 * file no one else can open, and any later open of the chain by its
 * header fails.  Refused before QEMU sees it, saying what to do instead.
 */
#include "chain.h"
#include "chain-model.h"

#include <stdlib.h>
#include <string.h>

#include "fdset-names.h"
#include "jsonobj.h"
#include "util.h"

static char *check_snapshot(const struct chain *c, json_object *data)
{
    const char *name = jobj_str(data, "device") ? jobj_str(data, "device")
                                                : jobj_str(data, "node-name");
    const char *disk = name ? chain_disk_name(c, name) : NULL;
    const char *top = disk ? chain_top_file(c, disk) : NULL;

    if (!top || !fdset_names_handed_over(top)) {
        return NULL;
    }
    return xasprintf("blockdev-snapshot-sync over %s would write QEMU's name "
                     "for it, /dev/fdset/N, into the new overlay's header as "
                     "its backing file: qmproxy handed QEMU that image by "
                     "descriptor.  Take the snapshot with "
                     "qmproxy-snapshot-mirror, or create the overlay naming "
                     "its backing file (blockdev-create) and use "
                     "blockdev-snapshot", top);
}

static char *check_mirror(const struct chain *c, json_object *args)
{
    const char *device = jobj_str(args, "device");
    const char *disk = device ? chain_disk_name(c, device) : NULL;
    const char *mode = jobj_str(args, "mode"), *sync = jobj_str(args, "sync");
    const char *below = disk ? chain_layer_file(c, disk, 1) : NULL;

    if ((mode && strcmp(mode, "absolute-paths")) || !sync
        || strcmp(sync, "top") || !below || !fdset_names_handed_over(below)) {
        return NULL;
    }
    return xasprintf("drive-mirror with sync 'top' would write QEMU's name "
                     "for %s, /dev/fdset/N, into the new copy's header as its "
                     "backing file: qmproxy handed QEMU that image by "
                     "descriptor.  Create the copy naming its backing file "
                     "and use mode 'existing', or qmproxy-block-copy", below);
}

char *chain_check_backing_names(const struct chain *c, const char *command,
                                json_object *args)
{
    json_object *actions;

    if (!strcmp(command, "blockdev-snapshot-sync")) {
        return check_snapshot(c, args);
    }
    if (!strcmp(command, "drive-mirror")) {
        return check_mirror(c, args);
    }
    if (strcmp(command, "transaction")
        || !json_object_object_get_ex(args, "actions", &actions)
        || !json_object_is_type(actions, json_type_array)) {
        return NULL;
    }
    for (size_t i = 0; i < json_object_array_length(actions); i++) {
        json_object *act = json_object_array_get_idx(actions, i), *data;
        const char *type = jobj_str(act, "type");
        char *err;
        if (!type || strcmp(type, "blockdev-snapshot-sync")
            || !json_object_object_get_ex(act, "data", &data)) {
            continue;
        }
        err = check_snapshot(c, data);
        if (err) {
            char *in = xasprintf("transaction action %zu: %s", i, err);
            free(err);
            return in;
        }
    }
    return NULL;
}
