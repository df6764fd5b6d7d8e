/*
 * migrate URI DISK=EXPORT... [--speed B] [--pause-source] [--tls-creds ID]
 *         [--name N] [--wait]
 */
#include "ctl.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"

static int exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "speed", required_argument, NULL, 'b' },
        { "pause-source", no_argument, NULL, 'p' },
        { "tls-creds", required_argument, NULL, 't' },
        { "name", required_argument, NULL, 'n' },
        { "wait", no_argument, NULL, 'w' },
        { NULL, 0, NULL, 0 },
    };
    struct ctl_op_wait w = { .type = "migrate", .show_progress = true };
    json_object *args = json_object_new_object();
    json_object *disks;
    bool wait = false;
    int opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            if (!ctl_add_speed(args, optarg)) {
                goto usage;
            }
            break;
        case 'p': jobj_add_str(args, "source", "pause"); break;
        case 't': jobj_add_str(args, "tls-creds", optarg); break;
        case 'n': jobj_add_str(args, "name", optarg); w.name = optarg; break;
        case 'w': wait = true; break;
        default: goto usage;
        }
    }
    if (argc - optind < 2) {
        goto usage;
    }
    jobj_add_str(args, "uri", argv[optind]);
    disks = json_object_new_array();
    json_object_object_add(args, "disks", disks);
    for (int i = optind + 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        json_object *d;
        if (!eq || eq == argv[i] || !eq[1]) {
            ctl_error("%s: write each disk as DISK=EXPORT "
                      "(disk0=nbd://HOST:PORT/disk0)", argv[i]);
            goto usage;
        }
        d = json_object_new_object();
        json_object_object_add(d, "disk",
                               json_object_new_string_len(argv[i],
                                                          (int)(eq - argv[i])));
        jobj_add_str(d, "target", eq + 1);
        json_object_array_add(disks, d);
    }
    return ctl_run_operation("qmproxy-migrate", args, &w, wait);
usage:
    json_object_put(args);
    return ctl_usage(&ctl_migrate_entry);
}

const struct ctl_entry ctl_migrate_entry = {
    .name = "migrate",
    .usage = "URI DISK=EXPORT... [--speed B] [--pause-source] "
             "[--tls-creds ID] [--name N] [--wait]",
    .summary = "move the VM and its disks to a destination prepared with "
               "-incoming defer and NBD exports",
    .exec = exec,
};
