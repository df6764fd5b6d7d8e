/*
 * xml-error: a libxml2 error as one line of text, for the errors the
 * proxy returns (a policy file's, a <domainsnapshot> request's).
 */
#ifndef QMPROXY_XML_ERROR_H
#define QMPROXY_XML_ERROR_H

#include <libxml/xmlerror.h>

/* err's message (none when there is none) without the line break it ends
 * with, and with those inside ("indicate encoding !\nBytes: ...") turned
 * into spaces; owned by the caller. */
char *xml_error_text(const xmlError *err, const char *none);

#endif
