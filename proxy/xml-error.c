/*
 * xml-error: a libxml2 error as one line of text (see xml-error.h).
 */
#include "xml-error.h"

#include <string.h>

#include "util.h"

char *xml_error_text(const xmlError *err, const char *none)
{
    char *msg = xstrdup(err && err->message ? err->message : none);
    size_t n = strlen(msg);

    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) {
        msg[--n] = 0;
    }
    for (char *nl = msg; (nl = strchr(nl, '\n')); ) {
        *nl = ' ';
    }
    return msg;
}
