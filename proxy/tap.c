/*
 * tap: observers of the traffic.  Lines are gathered into one batch for all
 * observers and sent every TAP_FLUSH_MS (or sooner once TAP_BATCH bytes are
 * waiting): one send per observer per batch, not one per line, so sixteen
 * observers cost the loop a few sends a tick instead of sixteen per
 * message.
 */
#include "tap.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "listener.h"
#include "log.h"
#include "util.h"

/* An observer this far behind is disconnected. */
#define OBSERVER_MAX_BACKLOG (1u << 20)
/* How long a line may wait for its batch, and the batch's size. */
#define TAP_FLUSH_MS 10
#define TAP_BATCH (64u * 1024u)

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
    struct strbuf batch;     /* lines not yet sent to anyone */
    struct event *timer;     /* sends the batch */
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

/* Send bytes to every observer; cut off those too far behind. */
static void send_all(struct tap *t, const char *buf, size_t len)
{
    /* backwards: an observer that fails the write leaves the array */
    for (size_t i = t->nobs; i-- > 0;) {
        if (i >= t->nobs) {
            continue;
        }
        struct observer *o = t->obs[i];
        if (conn_output_pending(o->conn) > OBSERVER_MAX_BACKLOG) {
            log_warn("tap observer %u is too slow; cutting it off", o->id);
            drop_observer(t, o);
            continue;
        }
        conn_write(o->conn, buf, len);
    }
}

static void tap_flush(struct tap *t)
{
    if (t->batch.len) {
        send_all(t, t->batch.buf, t->batch.len);
    }
    if (t->batch.cap > 4 * TAP_BATCH) {
        strbuf_release(&t->batch);
    }
    t->batch.len = 0;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tap_flush(arg);
}

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
    t->timer = evtimer_new(base, on_timer, t);
    t->listener = listener_new(base, addr, mode, on_accept, t, error);
    if (!t->listener) {
        event_free(t->timer);
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
    tap_flush(t);  /* the last lines, as far as the sockets take them */
    event_free(t->timer);
    strbuf_release(&t->batch);
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
    if (!t->nobs) {
        return;
    }
    if (len >= TAP_BATCH) {
        /* a huge line goes as it is, after what waits: no second copy */
        evtimer_del(t->timer);
        tap_flush(t);
        send_all(t, line, len);
        return;
    }
    strbuf_add(&t->batch, line, len);
    if (t->batch.len >= TAP_BATCH) {
        evtimer_del(t->timer);
        tap_flush(t);
    } else if (!evtimer_pending(t->timer, NULL)) {
        struct timeval tv = { 0, TAP_FLUSH_MS * 1000 };
        evtimer_add(t->timer, &tv);
    }
}

size_t tap_observers(const struct tap *t)
{
    return t->nobs;
}
