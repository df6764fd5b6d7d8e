/*
 * snapshot-mirror --name N --disk D --snapshot FILE --mirror FILE
 *                 [--format F] [--existing] [--speed B] [--disk ...]
 *                 [--wait [--abort-on-interrupt]]
 * qmproxy-snapshot-mirror with readable flags: each --disk starts a disk,
 * the flags after it describe that disk.
 */
#include "ctl.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "util.h"

static int exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "name", required_argument, NULL, 'n' },
        { "disk", required_argument, NULL, 'd' },
        { "snapshot", required_argument, NULL, 's' },
        { "mirror", required_argument, NULL, 'm' },
        { "format", required_argument, NULL, 'f' },
        { "existing", no_argument, NULL, 'e' },
        { "speed", required_argument, NULL, 'b' },
        { "wait", no_argument, NULL, 'w' },
        { "abort-on-interrupt", no_argument, NULL, 'a' },
        { NULL, 0, NULL, 0 },
    };
    struct ctl_op_wait w = { .type = "snapshot-mirror", .show_progress = true };
    json_object *args = json_object_new_object();
    json_object *disks = json_object_new_array(), *disk = NULL;
    bool wait = false;
    const char *name = NULL;
    int opt;

    json_object_object_add(args, "disks", disks);
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt != 'd' && opt != 'n' && opt != 'w' && opt != 'a' &&
            opt != '?' && !disk) {
            ctl_error("--snapshot, --mirror, --format, --existing and "
                      "--speed come after the --disk they describe");
            goto usage;
        }
        switch (opt) {
        case 'n': name = optarg; break;
        case 'd':
            disk = json_object_new_object();
            jobj_add_str(disk, "disk", optarg);
            json_object_array_add(disks, disk);
            break;
        case 's': jobj_add_str(disk, "snapshot-file", optarg); break;
        case 'm': jobj_add_str(disk, "mirror-file", optarg); break;
        case 'f': jobj_add_str(disk, "format", optarg); break;
        case 'e': jobj_add_str(disk, "mirror-mode", "existing"); break;
        case 'b':
            if (!ctl_add_speed(disk, optarg)) {
                goto usage;
            }
            break;
        case 'w': wait = true; break;
        case 'a': w.abort_on_interrupt = true; break;
        default: goto usage;
        }
    }
    if (optind != argc || json_object_array_length(disks) == 0) {
        goto usage;
    }
    for (size_t i = 0; i < json_object_array_length(disks); i++) {
        json_object *d = json_object_array_get_idx(disks, i);
        if (!jobj_str(d, "snapshot-file") || !jobj_str(d, "mirror-file")) {
            ctl_error("--disk %s needs --snapshot FILE and --mirror FILE",
                      jobj_str(d, "disk"));
            goto usage;
        }
    }
    jobj_add_str(args, "name", name);
    w.name = name;
    return ctl_run_operation("qmproxy-snapshot-mirror", args, &w, wait);
usage:
    json_object_put(args);
    return ctl_usage(&ctl_snapshot_mirror_entry);
}

const struct ctl_entry ctl_snapshot_mirror_entry = {
    .name = "snapshot-mirror",
    .usage = "[--name N] --disk D --snapshot FILE --mirror FILE [--format F] "
             "[--existing] [--speed B] [--disk ...] [--wait "
             "[--abort-on-interrupt]]",
    .summary = "snapshot disks at one point and copy each new overlay",
    .exec = exec,
};
