/*
 * tap: observers of the traffic, fed line by line.
 */
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "listener.h"
#include "log.h"
#include "util.h"

/* An observer this far behind is disconnected. */
#define OBSERVER_MAX_BACKLOG (1u << 20)

struct observer {
    struct tap *tap;
    struct conn *conn;
    unsigned id;
};

struct tap {
    struct event_base *base;
    struct listener *listener;
    struct observer **obs;
    size_t nobs;
    unsigned next_id;
};

static void drop_observer(struct tap *t, struct observer *o)
{
    for (size_t i = 0; i < t->nobs; i++) {
        if (t->obs[i] == o) {
            t->obs[i] = t->obs[--t->nobs];
            break;
        }
    }
    conn_free(o->conn);
    free(o);
}

static void on_closed(void *opaque, const char *why)
{
    struct observer *o = opaque;
    (void)why;
    log_info("tap observer %u on %s left", o->id,
             listener_display(o->tap->listener));
    drop_observer(o->tap, o);
}

static const struct conn_callbacks observer_cb = {
    .closed = on_closed,
};

static void on_accept(void *opaque, struct listener *l, int fd)
{
    struct tap *t = opaque;
    struct observer *o = xcalloc(1, sizeof(*o));

    o->tap = t;
    o->id = ++t->next_id;
    o->conn = conn_new(t->base, fd, &observer_cb, o);
    conn_read_discard(o->conn);
    t->obs = xrealloc(t->obs, sizeof(*t->obs) * (t->nobs + 1));
    t->obs[t->nobs++] = o;
    log_info("tap observer %u connected on %s", o->id, listener_display(l));
}

struct tap *tap_new(struct event_base *base, const struct address *addr,
                    int mode, char **error)
{
    struct tap *t = xcalloc(1, sizeof(*t));

    t->base = base;
    t->listener = listener_new(base, addr, mode, on_accept, t, error);
    if (!t->listener) {
        free(t);
        return NULL;
    }
    listener_enable(t->listener, true);
    return t;
}

void tap_free(struct tap *t)
{
    if (!t) {
        return;
    }
    while (t->nobs) {
        struct observer *o = t->obs[t->nobs - 1];
        t->nobs--;
        conn_free(o->conn);
        free(o);
    }
    free(t->obs);
    listener_free(t->listener);
    free(t);
}

void tap_broadcast(struct tap *t, const char *line, size_t len)
{
    for (size_t i = t->nobs; i-- > 0;) {
        struct observer *o = t->obs[i];
        if (conn_output_pending(o->conn) > OBSERVER_MAX_BACKLOG) {
            log_warn("tap observer %u is too slow; cutting it off", o->id);
            drop_observer(t, o);
            continue;
        }
        conn_write(o->conn, line, len);
    }
}

size_t tap_observers(const struct tap *t)
{
    return t->nobs;
}
