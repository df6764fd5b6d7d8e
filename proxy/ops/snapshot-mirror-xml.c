/*
 * qmproxy-snapshot-mirror-xml: the same request as qmproxy-snapshot-mirror,
 * written as the RFC's <domainsnapshot>:
 *
 *   <domainsnapshot>
 *     <name>before-upgrade</name>
 *     <disks>
 *       <disk name='vda' snapshot='external'>
 *         <source file='/src/vda-snap.qcow2'/>
 *         <mirror file='/dest/vda-snap.qcow2'/>
 *         <driver type='qcow2'/>
 *       </disk>
 *     </disks>
 *   </domainsnapshot>
 *
 * A disk's name may be its device name, qdev id, node-name or current
 * image.  A mirror file that exists is used as it is (mode existing, the
 * oVirt flow); one that does not is created by QEMU.  The XML comes from a
 * client, so it is parsed without network, DTDs, entities or external
 * anything, and at most 1 MiB of it; errors give line and column.
 */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "op.h"
#include "policy.h"
#include "qmp.h"
#include "snapshot-mirror-xml.h"
#include "util.h"
#include "xml-error.h"

#define MAX_XML (1u << 20)

static const struct qapi_member args[] = {
    { "xml", QAPI_STR, false, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

/* Line and column of byte offset off. */
static void position(const char *s, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
    for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next) {
        if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name,
                                                   name)) {
            return c;
        }
    }
    return NULL;
}

static char *attr(xmlNodePtr n, const char *name)
{
    xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;
    char *s = v ? xstrdup((const char *)v) : NULL;
    xmlFree(v);
    return s;
}

static const char *keep(struct snapshot_xml *p, char *s)
{
    if (s) {
        p->owned[p->nowned++] = s;
    }
    return s;
}

char *snapshot_xml_parse(const char *xml, size_t len, struct snapshot_xml *p)
{
    xmlParserCtxtPtr ctxt;
    xmlDocPtr doc;
    xmlNodePtr root, disks;
    const char *dtd;
    int line, col;
    char *err = NULL;

    if (len > MAX_XML) {
        return xasprintf("the XML is %zu bytes; at most %u are accepted", len,
                         MAX_XML);
    }
    /* no DTD at all: no entity bombs, no external entities */
    dtd = memmem(xml, len, "<!DOCTYPE", 9);
    if (!dtd) {
        dtd = memmem(xml, len, "<!ENTITY", 8);
    }
    if (dtd) {
        position(xml, (size_t)(dtd - xml), &line, &col);
        return xasprintf("line %d, column %d: a DOCTYPE or ENTITY declaration "
                         "is not accepted in a snapshot request", line, col);
    }
    /* UTF-8 whatever the XML declaration says: the request came as a JSON
     * string, and in another encoding (UTF-7's "+ADw-!DOCTYPE") the DTD
     * would not be the bytes looked for above */
    ctxt = xmlNewParserCtxt();
    doc = xmlCtxtReadMemory(ctxt, xml, (int)len, "domainsnapshot.xml",
                            "UTF-8", XML_PARSE_NONET | XML_PARSE_NOERROR
                            | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
    if (!doc) {
        xmlErrorPtr e = xmlCtxtGetLastError(ctxt);
        char *msg = xml_error_text(e, "?");
        err = xasprintf("line %d, column %d: the XML is not well-formed: %s",
                        e ? e->line : 0, e ? e->int2 : 0, msg);
        free(msg);
        xmlFreeParserCtxt(ctxt);
        return err;
    }
    xmlFreeParserCtxt(ctxt);
    if (doc->intSubset || doc->extSubset) {
        /* however it got there: nothing of a DTD is used */
        err = xstrdup("a DOCTYPE or ENTITY declaration is not accepted in a "
                      "snapshot request");
        goto out;
    }
    root = xmlDocGetRootElement(doc);
    if (!root || strcmp((const char *)root->name, "domainsnapshot")) {
        err = xasprintf("line %ld: the root element must be <domainsnapshot>",
                        root ? xmlGetLineNo(root) : 1L);
        goto out;
    }
    xmlNodePtr name = child(root, "name");
    if (name) {
        xmlChar *text = xmlNodeGetContent(name);
        p->name = xstrdup((const char *)text);
        xmlFree(text);
    }
    disks = child(root, "disks");
    if (!disks) {
        err = xasprintf("line %ld: <domainsnapshot> has no <disks>",
                        xmlGetLineNo(root));
        goto out;
    }
    for (xmlNodePtr d = disks->children; d && !err; d = d->next) {
        char *dname, *snap;
        xmlNodePtr source, mirror, driver;
        struct snapshot_spec *s;
        if (d->type != XML_ELEMENT_NODE) {
            continue;
        }
        if (strcmp((const char *)d->name, "disk")) {
            err = xasprintf("line %ld: unexpected <%s> in <disks>",
                            xmlGetLineNo(d), (const char *)d->name);
            break;
        }
        dname = attr(d, "name");
        snap = attr(d, "snapshot");
        if (!dname) {
            err = xasprintf("line %ld: <disk> needs a name attribute",
                            xmlGetLineNo(d));
        } else if (snap && !strcmp(snap, "no")) {
            free(dname);  /* this disk is left out of the snapshot */
        } else if (snap && strcmp(snap, "external")) {
            err = xasprintf("line %ld: disk %s: snapshot='%s' is not "
                            "supported (only 'external' and 'no')",
                            xmlGetLineNo(d), dname, snap);
            free(dname);
        } else if (p->n == SNAPSHOT_XML_MAX_DISKS) {
            err = xasprintf("at most %d disks at once",
                            SNAPSHOT_XML_MAX_DISKS);
            free(dname);
        } else {
            source = child(d, "source");
            mirror = child(d, "mirror");
            driver = child(d, "driver");
            s = &p->specs[p->n++];
            s->disk = keep(p, dname);
            s->snapshot_file = keep(p, attr(source, "file"));
            s->mirror_file = keep(p, attr(mirror, "file"));
            s->format = keep(p, attr(driver, "type"));
            if (!s->snapshot_file) {
                err = xasprintf("line %ld: disk %s needs <source file='...'/>"
                                " (where its new overlay goes)",
                                xmlGetLineNo(d), dname);
            } else if (mirror && !s->mirror_file) {
                err = xasprintf("line %ld: disk %s: <mirror> needs a file "
                                "attribute", xmlGetLineNo(mirror), dname);
            } else if (s->mirror_file && s->mirror_file[0] == '/'
                       && access(s->mirror_file, F_OK) == 0) {
                s->mirror_mode = "existing";
            }
        }
        free(snap);
    }
out:
    xmlFreeDoc(doc);
    return err;
}

void snapshot_xml_release(struct snapshot_xml *p)
{
    for (int i = 0; i < p->nowned; i++) {
        free(p->owned[i]);
    }
    free(p->name);
}

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    json_object *v;
    struct snapshot_xml p;
    char *err;

    memset(&p, 0, sizeof(p));
    json_object_object_get_ex(a, "xml", &v);
    err = snapshot_xml_parse(json_object_get_string(v),
                             (size_t)json_object_get_string_len(v), &p);
    /* the paths were inside the XML: the policy sees them only now */
    for (int i = 0; !err && i < p.n; i++) {
        const struct policy *pol = call->env->policy(call->env->opaque);
        err = policy_check_path(pol, "snapshot-file", p.specs[i].snapshot_file);
        if (!err) {
            err = policy_check_path(pol, "mirror-file", p.specs[i].mirror_file);
        }
    }
    if (err) {
        cmd_error(call, QMP_GENERIC_ERROR, "%s; nothing was done", err);
        free(err);
    } else {
        snapshot_mirror_start(call, p.name, p.specs, p.n);
    }
    snapshot_xml_release(&p);
    return CMD_RETURN_WAIT;
}

const struct cmd_entry cmd_snapshot_mirror_xml_entry = {
    .name = "qmproxy-snapshot-mirror-xml",
    .args = args,
    .exec = exec,
    .settle_chain = true,
};
