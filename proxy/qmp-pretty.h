/*
 * qmp-pretty: a message of QEMU's as a pretty-printing monitor would have
 * written it (-qmp-pretty, -mon pretty=on): QEMU's compact line re-laid
 * out with its pretty writer's rules, byte for byte.  The members keep
 * their order (QEMU writes both forms from the same dictionary walk) and
 * the tokens their spelling; only white space changes: every member and
 * element on a line of its own, indented four spaces a level, closing
 * brackets on their own line (an empty object is "{" newline "}"), and
 * every line ending in CRLF, as the monitor's output always does.
 */
#ifndef QMPROXY_QMP_PRETTY_H
#define QMPROXY_QMP_PRETTY_H

#include <stddef.h>

/* The pretty form of one compact message (trailing CRLF optional), CRLF
 * at its end; owned, *out_len its length. */
char *qmp_pretty(const char *compact, size_t len, size_t *out_len);

#endif
