/*
 * abort NAME: undo a snapshot-mirror operation (copies cancelled, each new
 * overlay folded back).  Waits for the answer.
 */
#include "ctl.h"

#include <getopt.h>

#include "jsonobj.h"

static int exec(int argc, char **argv)
{
    struct ctl_op_wait w = { 0 };
    json_object *args;

    optind = 1;
    if (getopt_long(argc, argv, "", (const struct option[]){ { NULL, 0, NULL, 0 } },
                    NULL) != -1 || argc - optind != 1) {
        return ctl_usage(&ctl_abort_entry);
    }
    w.name = argv[optind];
    args = json_object_new_object();
    jobj_add_str(args, "name", argv[optind]);
    return ctl_run_operation("qmproxy-snapshot-abort", args, &w, true);
}

const struct ctl_entry ctl_abort_entry = {
    .name = "abort",
    .usage = "NAME",
    .summary = "undo a snapshot-mirror operation",
    .exec = exec,
};
