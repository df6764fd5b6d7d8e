/*
 * tap: live observers of the traffic log.  Each observer connected to a
 * tap socket receives every traffic-log line as it happens.  Observers are
 * read-only (what they send is thrown away) and one that falls behind is
 * cut off rather than allowed to slow QEMU's clients.
 */
#ifndef QMPROXY_TAP_H
#define QMPROXY_TAP_H

#include <stddef.h>

struct event_base;
struct address;
struct tap;

struct tap *tap_new(struct event_base *base, const struct address *addr,
                    int mode, char **error);
void tap_free(struct tap *t);
/* Send one line (newline included) to every observer. */
void tap_broadcast(struct tap *t, const char *line, size_t len);
/* Anyone watching? */
size_t tap_observers(const struct tap *t);

#endif
