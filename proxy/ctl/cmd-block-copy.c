/*
 * block-copy DISK TARGET [--shallow] [--existing] [--format F] [--speed B]
 *            [--wait [--abort-on-interrupt]]
 */
#include "ctl.h"

#include <getopt.h>
#include <stdlib.h>

#include "jsonobj.h"

static int exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "shallow", no_argument, NULL, 's' },
        { "existing", no_argument, NULL, 'e' },
        { "format", required_argument, NULL, 'f' },
        { "speed", required_argument, NULL, 'b' },
        { "wait", no_argument, NULL, 'w' },
        { "abort-on-interrupt", no_argument, NULL, 'a' },
        { NULL, 0, NULL, 0 },
    };
    struct ctl_op_wait w = { .type = "block-copy", .show_progress = true };
    json_object *args = json_object_new_object();
    bool wait = false;
    int opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 's': jobj_add_bool(args, "shallow", true); break;
        case 'e': jobj_add_str(args, "mode", "existing"); break;
        case 'f': jobj_add_str(args, "format", optarg); break;
        case 'b':
            if (!ctl_add_speed(args, optarg)) {
                goto usage;
            }
            break;
        case 'w': wait = true; break;
        case 'a': w.abort_on_interrupt = true; break;
        default: goto usage;
        }
    }
    if (argc - optind != 2) {
        goto usage;
    }
    jobj_add_str(args, "disk", argv[optind]);
    jobj_add_str(args, "target", argv[optind + 1]);
    return ctl_run_operation("qmproxy-block-copy", args, &w, wait);
usage:
    json_object_put(args);
    return ctl_usage(&ctl_block_copy_entry);
}

const struct ctl_entry ctl_block_copy_entry = {
    .name = "block-copy",
    .usage = "DISK TARGET [--shallow] [--existing] [--format F] [--speed B] "
             "[--wait [--abort-on-interrupt]]",
    .summary = "copy a disk's chain (or its top) to TARGET; then reopen",
    .exec = exec,
};
