/*
 * exec: any QMP command, as a JSON request or in qmp-shell's simple
 * syntax:
 *   qmproxyctl exec '{"execute": "query-block"}'
 *   qmproxyctl exec block_set_io_throttle id=disk0 bps=1000 iops=0 ...
 *   qmproxyctl exec blockdev-add driver=qcow2 node-name=n file.driver=file \
 *       file.filename=/vm/a.qcow2
 * A value is JSON when it parses as JSON (QEMU's parser: numbers,
 * true/false/null, objects, lists, 'single-quoted' strings), else a
 * string; a dotted key makes nested objects.  Works against QEMU too.
 */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "util.h"

/* Set key (dotted) = value in args; NULL or what is wrong (owned). */
static char *set_dotted(json_object *args, const char *key, json_object *value)
{
    char *path = xstrdup(key), *save = NULL, *part, *next;
    json_object *o = args;

    part = strtok_r(path, ".", &save);
    if (!part) {
        free(path);
        json_object_put(value);
        return xasprintf("'%s': empty key", key);
    }
    while ((next = strtok_r(NULL, ".", &save))) {
        json_object *sub;
        if (!json_object_object_get_ex(o, part, &sub)) {
            sub = json_object_new_object();
            json_object_object_add(o, part, sub);
        } else if (!json_object_is_type(sub, json_type_object)) {
            char *err = xasprintf("'%s': '%s' is already a value, not an "
                                  "object", key, part);
            free(path);
            json_object_put(value);
            return err;
        }
        o = sub;
        part = next;
    }
    if (json_object_object_get_ex(o, part, NULL)) {
        char *err = xasprintf("'%s' is given twice", key);
        free(path);
        json_object_put(value);
        return err;
    }
    json_object_object_add(o, part, value);
    free(path);
    return NULL;
}

json_object *ctl_simple_args(int argc, char **argv)
{
    json_object *args = json_object_new_object();

    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        json_object *value;
        char *key, *err;

        if (!eq || eq == argv[i]) {
            ctl_error("'%s': arguments are key=value", argv[i]);
            json_object_put(args);
            return NULL;
        }
        value = ctl_parse_json(eq + 1, &err);
        if (err) {
            /* not JSON: the text is a string */
            free(err);
            value = json_object_new_string(eq + 1);
        }
        key = xstrndup(argv[i], (size_t)(eq - argv[i]));
        err = set_dotted(args, key, value);
        free(key);
        if (err) {
            ctl_error("%s", err);
            free(err);
            json_object_put(args);
            return NULL;
        }
    }
    return args;
}

int ctl_show_reply(json_object *reply)
{
    json_object *ret;

    if (json_object_object_get_ex(reply, "return", &ret)) {
        if (ctl_opt.json) {
            ctl_print_json(ret, false);
        } else if (json_object_is_type(ret, json_type_string)) {
            /* HMP's output, an XML chain: the text itself */
            fputs(json_object_get_string(ret), stdout);
            size_t n = json_object_get_string_len(ret);
            if (n && json_object_get_string(ret)[n - 1] != '\n') {
                putchar('\n');
            }
        } else if (!(json_object_is_type(ret, json_type_object) &&
                     json_object_object_length(ret) == 0)) {
            ctl_print_json(ret, true);
        }
        return CTL_EXIT_OK;
    }
    ctl_print_error_reply(reply);
    return CTL_EXIT_QMP_ERROR;
}

static int exec(int argc, char **argv)
{
    struct ctl_client *c;
    json_object *reply = NULL;
    int rc;

    if (argc < 2) {
        return ctl_usage(&ctl_exec_entry);
    }
    if (argv[1][0] == '{') {
        char *err;
        json_object *req = ctl_parse_json(argv[1], &err);
        if (err || !json_object_is_type(req, json_type_object) ||
            (!jobj_str(req, "execute") && !jobj_str(req, "exec-oob"))) {
            ctl_error("not a QMP request: %s", err ? err :
                      "an object with \"execute\" is expected");
            free(err);
            json_object_put(req);
            return CTL_EXIT_USAGE;
        }
        json_object_put(req);
        if (argc > 2) {
            return ctl_usage(&ctl_exec_entry);
        }
        if (!(c = ctl_connect(false, &rc))) {
            return rc;
        }
        /* the request goes as typed, byte for byte */
        if (!ctl_send_raw(c, argv[1], strlen(argv[1]))) {
            ctl_client_free(c);
            return CTL_EXIT_CONNECTION;
        }
    } else {
        json_object *args;
        if (argc == 3 && argv[2][0] == '{') {
            char *err;
            args = ctl_parse_json(argv[2], &err);
            if (err || !json_object_is_type(args, json_type_object)) {
                ctl_error("arguments: %s", err ? err : "not an object");
                free(err);
                json_object_put(args);
                return CTL_EXIT_USAGE;
            }
        } else if (!(args = ctl_simple_args(argc - 2, argv + 2))) {
            return CTL_EXIT_USAGE;
        }
        if (json_object_object_length(args) == 0) {
            json_object_put(args);
            args = NULL;
        }
        if (!(c = ctl_connect(false, &rc))) {
            json_object_put(args);
            return rc;
        }
        if (!ctl_send(c, argv[1], args)) {
            ctl_client_free(c);
            return CTL_EXIT_CONNECTION;
        }
    }
    rc = ctl_wait_reply(c, ctl_deadline(ctl_opt.timeout > 0 ?
                                        ctl_opt.timeout : 30), NULL, NULL,
                        &reply);
    if (rc == CTL_EXIT_OK) {
        rc = ctl_show_reply(reply);
    } else if (rc == CTL_EXIT_TIMEOUT) {
        ctl_error("no answer in time (--timeout)");
    } else if (rc == CTL_EXIT_CONNECTION) {
        ctl_error("the monitor closed the connection");
    }
    json_object_put(reply);
    ctl_client_free(c);
    return rc;
}

const struct ctl_entry ctl_exec_entry = {
    .name = "exec",
    .usage = "'{\"execute\": NAME, ...}' | NAME [KEY=VALUE ...] | NAME '{ARGS}'",
    .summary = "run any QMP command (QEMU's or the proxy's)",
    .exec = exec,
};
