/*
 * service: what the service manager is told about the proxy (through
 * sdnotify): READY=1 once QEMU's greeting is read and clients are let in,
 * STATUS= with the clients and operations whenever they change,
 * RELOADING=1 ... READY=1 around a SIGHUP reload, STOPPING=1 on the way
 * out.  Without NOTIFY_SOCKET it does nothing.
 */
#ifndef QMPROXY_SERVICE_H
#define QMPROXY_SERVICE_H

#include <stdbool.h>

struct event_base;
struct router;
struct service;

/* upstream: how to name QEMU's monitor in the status.  NULL with *error
 * (owned) if NOTIFY_SOCKET is set but unusable. */
struct service *service_new(struct event_base *base, struct router *r,
                            const char *upstream, char **error);
void service_reloading(struct service *s);
/* what: one line on how the reload went, for STATUS= */
void service_reloaded(struct service *s, const char *what);
void service_stopping(struct service *s);
void service_free(struct service *s);

#endif
