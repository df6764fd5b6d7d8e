/*
 * sdnotify: telling the service manager how the service is (sd_notify(3)'s
 * protocol, without libsystemd): datagrams of VARIABLE=value lines to the
 * Unix socket NOTIFY_SOCKET names (a path, or '@' for an abstract one),
 * and WATCHDOG=1 every half of WATCHDOG_USEC from the event loop, so a
 * loop that hangs stops the pings and the manager restarts the service.
 * Sending never blocks: the socket is non-blocking, and what the manager
 * cannot take at once is kept (a few messages) and tried again.
 */
#ifndef QMPROXY_SDNOTIFY_H
#define QMPROXY_SDNOTIFY_H

#include <stdint.h>

struct event_base;
struct sdnotify;

/* From NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (then removed from
 * the environment, so no child talks for the service).  NULL when
 * NOTIFY_SOCKET is not set (nothing to tell), or with *error (owned) when
 * it is unusable. */
struct sdnotify *sdnotify_new(struct event_base *base, char **error);
/* Send "READY=1", "STATUS=...", several lines at once...; NULL-safe. */
void sdnotify_send(struct sdnotify *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The watchdog interval the manager asked for, 0 if none. */
uint64_t sdnotify_watchdog_usec(const struct sdnotify *n);
void sdnotify_free(struct sdnotify *n);

#endif
