/*
 * snapshot-mirror-xml: the parser of the RFC's <domainsnapshot>, for
 * qmproxy-snapshot-mirror-xml and for what tests it on its own (the
 * fuzzer, tests/fuzz/fuzz_snapshot_xml.c).  Not for other modules.
 */
#ifndef QMPROXY_SNAPSHOT_MIRROR_XML_H
#define QMPROXY_SNAPSHOT_MIRROR_XML_H

#include <stddef.h>

#include "op.h"

#define SNAPSHOT_XML_MAX_DISKS 64

struct snapshot_xml {
    char *name;                  /* <name>, or NULL */
    struct snapshot_spec specs[SNAPSHOT_XML_MAX_DISKS];
    int n;
    char *owned[SNAPSHOT_XML_MAX_DISKS * 4];  /* what specs point into */
    int nowned;
};

/* Parse len bytes of XML into p (zeroed by the caller).  NULL when it is
 * a request; else what is wrong with it (owned).  Either way, release p
 * with snapshot_xml_release. */
char *snapshot_xml_parse(const char *xml, size_t len, struct snapshot_xml *p);
void snapshot_xml_release(struct snapshot_xml *p);

#endif
