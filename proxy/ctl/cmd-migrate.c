/*
 * migrate URI DISK[=EXPORT]... [--destination MONITOR [--paused]]
 *         [--speed B] [--synchronous-writes] [--pause-source]
 *         [--tls-creds ID | --tls-source-dir DIR --tls-dest-dir DIR
 *          [--tls-hostname H]] [--name N] [--wait]
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
        { "destination", required_argument, NULL, 'd' },
        { "paused", no_argument, NULL, 'P' },
        { "synchronous-writes", no_argument, NULL, 'S' },
        { "tls-creds", required_argument, NULL, 't' },
        { "tls-source-dir", required_argument, NULL, 's' },
        { "tls-dest-dir", required_argument, NULL, 'D' },
        { "tls-hostname", required_argument, NULL, 'H' },
        { "name", required_argument, NULL, 'n' },
        { "wait", no_argument, NULL, 'w' },
        { NULL, 0, NULL, 0 },
    };
    struct ctl_op_wait w = { .type = "migrate", .show_progress = true };
    json_object *args = json_object_new_object();
    json_object *disks, *tls = NULL;
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
        case 'd': jobj_add_str(args, "destination", optarg); break;
        case 'P': jobj_add_bool(args, "paused", true); break;
        case 'S': jobj_add_bool(args, "synchronous-writes", true); break;
        case 't': jobj_add_str(args, "tls-creds", optarg); break;
        case 's': case 'D': case 'H':
            /* "tls": the credentials qmproxy makes on both sides */
            if (!tls) {
                tls = json_object_new_object();
                json_object_object_add(args, "tls", tls);
            }
            jobj_add_str(tls, opt == 's' ? "source-creds-dir"
                              : opt == 'D' ? "dest-creds-dir" : "hostname",
                         optarg);
            break;
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
        /* DISK=EXPORT, or DISK alone when qmproxy makes the exports
         * (--destination); what is missing is said by qmproxy-migrate */
        const char *eq = strchr(argv[i], '=');
        json_object *d;
        if (eq == argv[i] || (eq && !eq[1])) {
            ctl_error("%s: write each disk as DISK=EXPORT "
                      "(disk0=nbd://HOST:PORT/disk0), or DISK with "
                      "--destination", argv[i]);
            goto usage;
        }
        d = json_object_new_object();
        json_object_object_add(d, "disk", json_object_new_string_len(
                                   argv[i], eq ? (int)(eq - argv[i])
                                               : (int)strlen(argv[i])));
        if (eq) {
            jobj_add_str(d, "target", eq + 1);
        }
        json_object_array_add(disks, d);
    }
    return ctl_run_operation("qmproxy-migrate", args, &w, wait);
usage:
    json_object_put(args);
    return ctl_usage(&ctl_migrate_entry);
}

const struct ctl_entry ctl_migrate_entry = {
    .name = "migrate",
    .usage = "URI DISK[=EXPORT]... [--destination MONITOR [--paused]] "
             "[--speed B] [--synchronous-writes] [--pause-source] "
             "[--tls-creds ID | --tls-source-dir DIR --tls-dest-dir DIR "
             "[--tls-hostname H]] [--name N] [--wait]",
    .summary = "move the VM and its disks to a destination prepared with "
               "-incoming defer and NBD exports",
    .exec = exec,
};
