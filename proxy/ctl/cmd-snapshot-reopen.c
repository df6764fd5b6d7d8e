/*
 * snapshot-reopen NAME --to mirror|source: every disk of a snapshot-mirror
 * operation, all or nothing.  Waits for the answer.
 */
#include "ctl.h"

#include <getopt.h>
#include <string.h>

#include "jsonobj.h"

static int exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "to", required_argument, NULL, 't' },
        { NULL, 0, NULL, 0 },
    };
    struct ctl_op_wait w = { 0 };
    const char *to = NULL;
    json_object *args;
    int opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt != 't') {
            return ctl_usage(&ctl_snapshot_reopen_entry);
        }
        to = optarg;
    }
    if (argc - optind != 1 || !to ||
        (strcmp(to, "mirror") && strcmp(to, "source"))) {
        return ctl_usage(&ctl_snapshot_reopen_entry);
    }
    w.name = argv[optind];
    args = json_object_new_object();
    jobj_add_str(args, "name", argv[optind]);
    jobj_add_str(args, "target", to);
    return ctl_run_operation("qmproxy-snapshot-reopen", args, &w, true);
}

const struct ctl_entry ctl_snapshot_reopen_entry = {
    .name = "snapshot-reopen",
    .usage = "NAME --to mirror|source",
    .summary = "every disk of a snapshot onto its copies, or stay on the source",
    .exec = exec,
};
