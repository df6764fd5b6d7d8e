/*
 * snapshot-mirror-xml FILE [--wait [--abort-on-interrupt]]: the same
 * operation from the RFC's <domainsnapshot> XML ("-" reads stdin).
 */
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <libxml/parser.h>
#include <stdlib.h>
#include <string.h>

#include "jsonobj.h"
#include "util.h"

static int exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "wait", no_argument, NULL, 'w' },
        { "abort-on-interrupt", no_argument, NULL, 'a' },
        { NULL, 0, NULL, 0 },
    };
    struct ctl_op_wait w = { .type = "snapshot-mirror", .show_progress = true };
    bool wait = false;
    json_object *args;
    char *xml, *name = NULL;
    int opt, rc;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'w': wait = true; break;
        case 'a': w.abort_on_interrupt = true; break;
        default: return ctl_usage(&ctl_snapshot_mirror_xml_entry);
        }
    }
    if (optind != argc - 1) {
        return ctl_usage(&ctl_snapshot_mirror_xml_entry);
    }
    xml = ctl_read_file(strcmp(argv[optind], "-") ? argv[optind]
                                                  : "/dev/stdin");
    if (!xml) {
        ctl_error("%s: %s", argv[optind], strerror(errno));
        return CTL_EXIT_USAGE;
    }
    /* the operation's name, to follow it: <domainsnapshot><name>, read as
     * qmproxy reads the request, UTF-8 whatever the declaration says (and
     * libxml2 says nothing on stderr of bytes another encoding refuses) */
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), argv[optind], "UTF-8",
                                  XML_PARSE_NONET | XML_PARSE_NOERROR |
                                  XML_PARSE_NOWARNING);
    if (doc) {
        xmlNodePtr root = xmlDocGetRootElement(doc);
        for (xmlNodePtr n = root ? root->children : NULL; n; n = n->next) {
            if (n->type == XML_ELEMENT_NODE &&
                !xmlStrcmp(n->name, BAD_CAST "name")) {
                xmlChar *s = xmlNodeGetContent(n);
                name = xstrdup((const char *)s);
                xmlFree(s);
            }
        }
        xmlFreeDoc(doc);
    }
    args = json_object_new_object();
    jobj_add_str(args, "xml", xml);
    free(xml);
    w.name = name;
    rc = ctl_run_operation("qmproxy-snapshot-mirror-xml", args, &w, wait);
    free(name);
    return rc;
}

const struct ctl_entry ctl_snapshot_mirror_xml_entry = {
    .name = "snapshot-mirror-xml",
    .usage = "FILE|- [--wait [--abort-on-interrupt]]",
    .summary = "the same, from the RFC's <domainsnapshot> XML",
    .exec = exec,
};
