/*
 * policy check FILE: the same checks as qmproxy --check-policy (the
 * daemon's policy_load: the RelaxNG schema built into it, then the
 * semantic checks), exit 0 valid, 1 not.
 *
 * policy explain --policy FILE --listener NAME COMMAND [ARGS-JSON]:
 * which rule of which role decides, and, when the role allows the
 * command and arguments are given, whether the places they name are
 * allowed (as the running proxy would judge them).  Exit 0 allowed, 1
 * refused.  Needs no monitor.
 */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "jsonobj.h"
#include "policy.h"
#include "util.h"

static int check(int argc, char **argv)
{
    struct policy *p;
    char *errors = NULL;

    if (argc != 2) {
        return ctl_usage(&ctl_policy_entry);
    }
    p = policy_load(argv[1], &errors);
    if (!p) {
        if (ctl_opt.json) {
            json_object *o = json_object_new_object();
            jobj_add_bool(o, "valid", false);
            jobj_add_str(o, "errors", errors);
            ctl_print_json(o, false);
            json_object_put(o);
        }
        fprintf(stderr, "%s", errors);
        free(errors);
        return CTL_EXIT_QMP_ERROR;
    }
    if (ctl_opt.json) {
        json_object *o = json_object_new_object();
        jobj_add_bool(o, "valid", true);
        ctl_print_json(o, false);
        json_object_put(o);
    } else {
        printf("%s: a valid qmproxy policy\n", argv[1]);
    }
    policy_free(p);
    return CTL_EXIT_OK;
}

static int explain(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "policy", required_argument, NULL, 'p' },
        { "listener", required_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 },
    };
    const char *file = NULL, *listener = "default", *command;
    const struct location_lookup lookup = { .declared = cmd_locations };
    struct policy *p;
    json_object *args = NULL;
    char *errors = NULL, *rule, *places = NULL;
    bool allowed;
    int opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "p:l:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p': file = optarg; break;
        case 'l': listener = optarg; break;
        default: return ctl_usage(&ctl_policy_entry);
        }
    }
    if (!file || argc - optind < 1 || argc - optind > 2) {
        return ctl_usage(&ctl_policy_entry);
    }
    command = argv[optind];
    if (argc - optind == 2) {
        char *err;
        args = ctl_parse_json(argv[optind + 1], &err);
        if (err || !json_object_is_type(args, json_type_object)) {
            ctl_error("ARGS-JSON: %s", err ? err : "not an object");
            free(err);
            json_object_put(args);
            return CTL_EXIT_USAGE;
        }
    }
    if (!(p = policy_load(file, &errors))) {
        fprintf(stderr, "%s", errors);
        free(errors);
        json_object_put(args);
        return CTL_EXIT_USAGE;
    }
    rule = policy_explain_command(p, listener, command, &allowed);
    if (allowed) {
        /* the whole check: transaction actions, places */
        places = policy_check_request(p, listener, command, args, &lookup);
    }
    if (ctl_opt.json) {
        json_object *o = json_object_new_object();
        jobj_add_bool(o, "allowed", allowed && !places);
        jobj_add_str(o, "rule", rule);
        jobj_add_str(o, "refused", places);
        ctl_print_json(o, false);
        json_object_put(o);
    } else {
        printf("%s%s%s %s for listener '%s': %s\n",
               ctl_color(allowed ? "\033[32m" : "\033[31m"),
               allowed ? "allow" : "deny", ctl_color("\033[0m"), command,
               listener, rule);
        if (places) {
            printf("%sbut refused%s: %s\n", ctl_color("\033[31m"),
                   ctl_color("\033[0m"), places);
        }
    }
    allowed = allowed && !places;
    free(rule);
    free(places);
    json_object_put(args);
    policy_free(p);
    return allowed ? CTL_EXIT_OK : CTL_EXIT_QMP_ERROR;
}

static int exec(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "check")) {
        return check(argc - 1, argv + 1);
    }
    if (argc >= 2 && !strcmp(argv[1], "explain")) {
        return explain(argc - 1, argv + 1);
    }
    return ctl_usage(&ctl_policy_entry);
}

const struct ctl_entry ctl_policy_entry = {
    .name = "policy",
    .usage = "check FILE | explain --policy FILE [--listener NAME] COMMAND "
             "[ARGS-JSON]",
    .summary = "validate a policy; say which rule decides a command",
    .no_monitor = true,
    .exec = exec,
};
