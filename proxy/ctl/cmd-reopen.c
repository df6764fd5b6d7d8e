/*
 * reopen DISK [FILE]: onto the copy (no FILE, or the copy's file), or
 * back onto the current image (dropping the copy).  Waits for the answer.
 */
#include "ctl.h"

#include <getopt.h>

#include "jsonobj.h"

static int exec(int argc, char **argv)
{
    struct ctl_op_wait w = { .type = "reopen" };
    json_object *args;

    optind = 1;
    if (getopt_long(argc, argv, "", (const struct option[]){ { NULL, 0, NULL, 0 } },
                    NULL) != -1 || argc - optind < 1 || argc - optind > 2) {
        return ctl_usage(&ctl_reopen_entry);
    }
    args = json_object_new_object();
    jobj_add_str(args, "disk", argv[optind]);
    jobj_add_str(args, "file", argv[optind + 1]);
    return ctl_run_operation("qmproxy-reopen", args, &w, true);
}

const struct ctl_entry ctl_reopen_entry = {
    .name = "reopen",
    .usage = "DISK [FILE]",
    .summary = "switch a disk onto its copy (or FILE: keep the current image)",
    .exec = exec,
};
