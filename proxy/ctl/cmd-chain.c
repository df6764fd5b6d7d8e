/*
 * chain [DISK] [--xml | --dot]: each disk's backing chain, top to base,
 * as qemu-img info --backing-chain shows an image's, but live and with
 * any copy in progress.  From qmproxy-query-chain; against a plain QEMU,
 * from query-block and query-block-jobs (no node-names below the top,
 * no XML).
 */
#include "ctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "util.h"

/* ---- a plain QEMU: the same shape from query-block ------------------ */

static json_object *layers_from_image(json_object *image, const char *top_node)
{
    json_object *chain = json_object_new_array();
    bool top = true;

    while (image) {
        json_object *l = json_object_new_object(), *next;
        jobj_add_str(l, "file", jobj_str(image, "filename"));
        jobj_add_str(l, "format", jobj_str(image, "format"));
        if (top) {
            jobj_add_str(l, "node-name", top_node);
        }
        if (jobj_typed(image, "virtual-size", json_type_int)) {
            json_object_object_add(l, "virtual-size", json_object_new_int64(
                                       jobj_int(image, "virtual-size", 0)));
        }
        json_object_array_add(chain, l);
        next = jobj_typed(image, "backing-image", json_type_object);
        image = next;
        top = false;
    }
    return chain;
}

static json_object *chain_from_qemu(struct ctl_client *c, const char *want,
                                    int *rc)
{
    json_object *blocks, *jobs = NULL, *out = json_object_new_array();

    if ((*rc = ctl_call(c, "query-block", NULL, &blocks)) != CTL_EXIT_OK) {
        json_object_put(out);
        return NULL;
    }
    if (ctl_call(c, "query-block-jobs", NULL, &jobs) != CTL_EXIT_OK) {
        jobs = json_object_new_array();
    }
    for (size_t i = 0; i < json_object_array_length(blocks); i++) {
        json_object *b = json_object_array_get_idx(blocks, i);
        json_object *ins = jobj_typed(b, "inserted", json_type_object);
        const char *device = jobj_str(b, "device");
        const char *qdev = jobj_str(b, "qdev");
        const char *node = jobj_str(ins, "node-name");
        const char *name = device && *device ? device : qdev;
        json_object *d;

        if (!ins || !name) {
            continue;
        }
        if (want && strcmp(want, name) && (!node || strcmp(want, node)) &&
            (!qdev || strcmp(want, qdev))) {
            continue;
        }
        d = json_object_new_object();
        jobj_add_str(d, "disk", name);
        jobj_add_str(d, "device", device ? device : "");
        jobj_add_str(d, "qdev", qdev);
        jobj_add_str(d, "node-name", node);
        json_object_object_add(d, "chain", layers_from_image(
            jobj_typed(ins, "image", json_type_object), node));
        for (size_t k = 0; k < json_object_array_length(jobs); k++) {
            json_object *j = json_object_array_get_idx(jobs, k);
            const char *jd = jobj_str(j, "device");
            if (jd && (!strcmp(jd, name) || (node && !strcmp(jd, node)))) {
                json_object *job = json_object_new_object();
                jobj_add_str(job, "id", jd);
                jobj_add_str(job, "type", jobj_str(j, "type"));
                jobj_add_str(job, "status", jobj_str(j, "status"));
                json_object_object_add(job, "offset", json_object_new_int64(
                                           jobj_int(j, "offset", 0)));
                json_object_object_add(job, "len", json_object_new_int64(
                                           jobj_int(j, "len", 0)));
                jobj_add_bool(job, "ready", jobj_bool(j, "ready", false));
                json_object_object_add(d, "job", job);
            }
        }
        json_object_array_add(out, d);
    }
    json_object_put(blocks);
    json_object_put(jobs);
    if (want && json_object_array_length(out) == 0) {
        ctl_error("No disk named '%s'", want);
        json_object_put(out);
        *rc = CTL_EXIT_QMP_ERROR;
        return NULL;
    }
    return out;
}

/* ---- text ----------------------------------------------------------- */

static void print_layer(json_object *l, int depth, bool top)
{
    char size[32] = "";
    const char *node = jobj_str(l, "node-name");

    if (jobj_typed(l, "virtual-size", json_type_int)) {
        ctl_human_size(size, sizeof(size),
                       (double)jobj_int(l, "virtual-size", 0));
    }
    printf("  %*s%s%s%s%s  %s", depth > 0 ? (depth - 1) * 4 : 0, "",
           depth ? "└── " : "",
           ctl_color(top ? "\033[1m" : ""), *ctl_str(l, "file") ?
           ctl_str(l, "file") : "?", ctl_color(top ? "\033[0m" : ""),
           *ctl_str(l, "format") && *ctl_str(l, "format") ?
           ctl_str(l, "format") : "?");
    if (*size) {
        printf("  %s", size);
    }
    if (node) {
        printf("  %snode %s%s", ctl_color("\033[2m"), node,
               ctl_color("\033[0m"));
    }
    putchar('\n');
}

static void print_progress(json_object *o)
{
    int64_t off = jobj_int(o, "offset", 0), len = jobj_int(o, "len", 0);
    char a[32], b[32];

    if (len > 0) {
        printf(", %.0f%% (%s of %s)", 100.0 * (double)off / (double)len,
               ctl_human_size(a, sizeof(a), (double)off),
               ctl_human_size(b, sizeof(b), (double)len));
    }
}

/* Filter nodes on the disk (a backup's copy-before-write, a throttle):
 * not layers, each said with the layer it filters. */
static void print_filters(json_object *filters, json_object *chain)
{
    size_t n = filters ? json_object_array_length(filters) : 0;

    for (size_t i = 0; i < n; i++) {
        json_object *f = json_object_array_get_idx(filters, i);
        json_object *on = chain ? json_object_array_get_idx(
            chain, (size_t)jobj_int(f, "layer", 0)) : NULL;
        printf("    %sfilter%s %s on %s", ctl_color("\033[33m"),
               ctl_color("\033[0m"), ctl_str(f, "driver"),
               on ? ctl_str(on, "file") : "?");
        if (jobj_str(f, "node-name")) {
            printf("  %snode %s%s", ctl_color("\033[2m"),
                   jobj_str(f, "node-name"), ctl_color("\033[0m"));
        }
        putchar('\n');
    }
}

static void print_disk(json_object *d)
{
    json_object *chain = jobj_typed(d, "chain", json_type_array);
    json_object *m = jobj_typed(d, "mirror", json_type_object);
    json_object *j = jobj_typed(d, "job", json_type_object);
    const char *qdev = jobj_str(d, "qdev");
    size_t n = chain ? json_object_array_length(chain) : 0;

    printf("%s%s%s", ctl_color("\033[1;36m"), ctl_str(d, "disk"),
           ctl_color("\033[0m"));
    if (qdev && strcmp(qdev, ctl_str(d, "disk"))) {
        printf("  (%s)", qdev);
    }
    putchar('\n');
    for (size_t i = 0; i < n; i++) {
        print_layer(json_object_array_get_idx(chain, i), (int)i, i == 0);
    }
    if (n == 0) {
        printf("    (no medium)\n");
    }
    print_filters(jobj_typed(d, "filters", json_type_array), chain);
    if (m) {
        printf("    %s%s%s → %s", ctl_color("\033[33m"),
               !strcmp(ctl_str(m, "type"), "active-commit") ? "commit" : "copy",
               ctl_color("\033[0m"), ctl_str(m, "file"));
        if (*ctl_str(m, "format")) {
            printf(" (%s)", ctl_str(m, "format"));
        }
        printf("  job %s, %s", ctl_str(m, "job"), ctl_str(m, "status"));
        print_progress(m);
        putchar('\n');
    } else if (j) {
        printf("    %sjob%s %s (%s), %s", ctl_color("\033[33m"),
               ctl_color("\033[0m"), ctl_str(j, "id"), ctl_str(j, "type"),
               ctl_str(j, "status"));
        print_progress(j);
        putchar('\n');
    }
    if (j && *ctl_str(j, "operation")) {
        printf("    operation %s\n", ctl_str(j, "operation"));
    }
}

/* ---- Graphviz ------------------------------------------------------- */

static void dot_string(const char *s)
{
    putchar('"');
    for (; s && *s; s++) {
        if (*s == '\n') {
            fputs("\\n", stdout);
            continue;
        }
        if (*s == '"' || *s == '\\') {
            putchar('\\');
        }
        putchar(*s);
    }
    putchar('"');
}

static void print_dot(json_object *disks)
{
    printf("digraph chains {\n"
           "  rankdir=TB;\n"
           "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f4f4f4\","
           " fontname=\"Helvetica\", fontsize=10];\n"
           "  edge [fontname=\"Helvetica\", fontsize=9];\n");
    for (size_t i = 0; i < json_object_array_length(disks); i++) {
        json_object *d = json_object_array_get_idx(disks, i);
        json_object *chain = jobj_typed(d, "chain", json_type_array);
        json_object *m = jobj_typed(d, "mirror", json_type_object);
        size_t n = chain ? json_object_array_length(chain) : 0;

        printf("  subgraph cluster_%zu {\n    label=", i);
        dot_string(ctl_str(d, "disk"));
        printf(";\n    style=dashed;\n    d%zu [shape=component, "
               "fillcolor=\"#d8e8ff\", label=", i);
        dot_string(ctl_str(d, "disk"));
        printf("];\n");
        for (size_t k = 0; k < n; k++) {
            json_object *l = json_object_array_get_idx(chain, k);
            struct strbuf label = STRBUF_INIT;
            char size[32] = "";
            if (jobj_typed(l, "virtual-size", json_type_int)) {
                ctl_human_size(size, sizeof(size),
                               (double)jobj_int(l, "virtual-size", 0));
            }
            strbuf_addf(&label, "%s\n%s%s%s", ctl_str(l, "file"),
                        *ctl_str(l, "format") ? ctl_str(l, "format") : "?",
                        *size ? ", " : "", size);
            if (*ctl_str(l, "node-name")) {
                strbuf_addf(&label, "\nnode %s", ctl_str(l, "node-name"));
            }
            printf("    d%zul%zu [label=", i, k);
            dot_string(label.buf);
            printf("%s];\n", k == 0 ? ", fillcolor=\"#ffffff\", penwidth=2" : "");
            strbuf_release(&label);
            if (k == 0) {
                printf("    d%zu -> d%zul0 [label=\"active\"];\n", i, i);
            } else {
                printf("    d%zul%zu -> d%zul%zu [label=\"backing\"];\n",
                       i, k - 1, i, k);
            }
        }
        if (m && n) {
            struct strbuf label = STRBUF_INIT;
            int64_t off = jobj_int(m, "offset", 0), len = jobj_int(m, "len", 0);
            strbuf_addf(&label, "%s\n%s", ctl_str(m, "file"),
                        *ctl_str(m, "format") ? ctl_str(m, "format") : "");
            printf("    d%zum [style=\"rounded,dashed,filled\", "
                   "fillcolor=\"#fff3d0\", label=", i);
            dot_string(label.buf);
            strbuf_release(&label);
            printf("];\n    d%zul0 -> d%zum [style=dashed, color=\"#c08000\", "
                   "label=", i, i);
            label = (struct strbuf)STRBUF_INIT;
            strbuf_addf(&label, "%s %s, %s", ctl_str(m, "type"),
                        ctl_str(m, "job"), ctl_str(m, "status"));
            if (len > 0) {
                strbuf_addf(&label, " %.0f%%", 100.0 * (double)off / (double)len);
            }
            dot_string(label.buf);
            strbuf_release(&label);
            printf("];\n");
        }
        printf("  }\n");
    }
    printf("}\n");
}

static int exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "xml", no_argument, NULL, 'x' },
        { "dot", no_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 },
    };
    bool xml = false, dot = false;
    const char *disk = NULL;
    struct ctl_client *c;
    json_object *args, *reply = NULL, *ret;
    int rc, opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'x': xml = true; break;
        case 'd': dot = true; break;
        default: return ctl_usage(&ctl_chain_entry);
        }
    }
    if (argc - optind > 1 || (xml && dot)) {
        return ctl_usage(&ctl_chain_entry);
    }
    disk = optind < argc ? argv[optind] : NULL;
    if (!(c = ctl_connect(false, &rc))) {
        return rc;
    }
    args = json_object_new_object();
    jobj_add_str(args, "disk", disk);
    if (xml) {
        jobj_add_str(args, "format", "xml");
    }
    rc = ctl_call_quiet(c, "qmproxy-query-chain", args, &reply);
    if (rc != CTL_EXIT_OK) {
        goto out;
    }
    if (json_object_object_get_ex(reply, "return", &ret)) {
        ret = json_object_get(ret);
    } else {
        json_object *e = jobj_typed(reply, "error", json_type_object);
        if (!e || !*ctl_str(e, "class") ||
            strcmp(ctl_str(e, "class"), "CommandNotFound")) {
            ctl_print_error_reply(reply);
            rc = CTL_EXIT_QMP_ERROR;
            goto out;
        }
        if (xml) {
            ctl_error("--xml needs qmproxy (this monitor is QEMU's own)");
            rc = CTL_EXIT_QMP_ERROR;
            goto out;
        }
        /* a plain QEMU */
        if (!(ret = chain_from_qemu(c, disk, &rc))) {
            goto out;
        }
    }
    if (xml) {
        if (ctl_opt.json) {
            ctl_print_json(ret, false);
        } else {
            const char *s = json_object_get_string(ret);
            fputs(s, stdout);
            if (*s && s[strlen(s) - 1] != '\n') {
                putchar('\n');
            }
        }
    } else if (ctl_opt.json) {
        ctl_print_json(ret, false);
    } else if (dot) {
        print_dot(ret);
    } else {
        for (size_t i = 0; i < json_object_array_length(ret); i++) {
            if (i) {
                putchar('\n');
            }
            print_disk(json_object_array_get_idx(ret, i));
        }
    }
    json_object_put(ret);
out:
    json_object_put(reply);
    ctl_client_free(c);
    return rc;
}

const struct ctl_entry ctl_chain_entry = {
    .name = "chain",
    .usage = "[DISK] [--xml | --dot]",
    .summary = "each disk's backing chain, top to base, and copies in progress",
    .exec = exec,
};
