/*
 * fuzz_snapshot_xml: the <domainsnapshot> parser of
 * qmproxy-snapshot-mirror-xml (proxy/ops/snapshot-mirror-xml.c, exposed
 * through snapshot-mirror-xml.h), on any bytes.
 *
 * Checked: an accepted request has at most 64 disks, each with a name and
 * a snapshot file, a mirror mode that is absent or "existing"; a refused
 * one says why; and, since the parser promises "no DTD at all" (no entity
 * bombs, no external entities), an accepted document has no DTD when
 * libxml2 reads it the same way.
 */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "snapshot-mirror-xml.h"

static void silent(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    xmlSetGenericErrorFunc(NULL, silent);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct snapshot_xml p;
    char *err;

    memset(&p, 0, sizeof(p));
    err = snapshot_xml_parse((const char *)data, size, &p);
    if (err) {
        FUZZ_ASSERT(*err);
    } else {
        xmlDocPtr doc;

        FUZZ_ASSERT(p.n >= 0 && p.n <= SNAPSHOT_XML_MAX_DISKS);
        FUZZ_ASSERT(p.nowned <= SNAPSHOT_XML_MAX_DISKS * 4);
        for (int i = 0; i < p.n; i++) {
            const struct snapshot_spec *s = &p.specs[i];
            FUZZ_ASSERT(s->disk && s->snapshot_file);
            FUZZ_ASSERT(!s->mirror_mode || !strcmp(s->mirror_mode,
                                                   "existing"));
        }
        doc = xmlReadMemory((const char *)data, (int)size, "x.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR
                            | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
        FUZZ_ASSERT(doc);
        if (doc->intSubset || doc->extSubset) {
            fprintf(stderr, "accepted a document with a DTD\n");
            FUZZ_ASSERT(!"a DTD got past the snapshot XML parser");
        }
        xmlFreeDoc(doc);
    }
    free(err);
    snapshot_xml_release(&p);
    return 0;
}
