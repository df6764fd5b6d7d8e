/*
 * client: one QMP connection, used synchronously.  Every read is bounded
 * by a deadline through poll(), and a signal (Ctrl-C) ends the wait so
 * the command can decide what to do.  The monitor's side is split into
 * messages by the daemon's linestream (QEMU writes one message a line).
 */
#include "ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "address.h"
#include "jsonobj.h"
#include "linestream.h"
#include "qjson.h"
#include "util.h"

#define DEFAULT_TIMEOUT 30.0

struct ctl_client {
    int fd;
    char *where;               /* the address, for messages */
    struct linestream *ls;
    json_object *greeting;
    json_object *inbox;        /* messages read, not yet taken */
    json_object *events;       /* events kept aside while waiting */
    bool proxy;
    bool eof;
};

static bool on_line(void *opaque, const struct js_text *t)
{
    struct ctl_client *c = opaque;
    enum json_tokener_error err;
    char *text = xstrndup(t->raw, t->len);
    json_object *v = json_tokener_parse_verbose(text, &err);
    if (!v || !json_object_is_type(v, json_type_object)) {
        /* not JSON (QEMU echoes an id of 1e999 as inf): kept as text */
        json_object_put(v);
        v = json_object_new_object();
        json_object_object_add(v, "malformed", json_object_new_string(text));
    }
    free(text);
    json_object_array_add(c->inbox, v);
    return true;
}

uint64_t ctl_deadline(double seconds)
{
    return seconds > 0 ? now_monotonic_us() + (uint64_t)(seconds * 1e6) : 0;
}

static uint64_t default_deadline(void)
{
    return ctl_deadline(ctl_opt.timeout > 0 ? ctl_opt.timeout
                                            : DEFAULT_TIMEOUT);
}

static json_object *inbox_shift(struct ctl_client *c)
{
    json_object *m;

    if (json_object_array_length(c->inbox) == 0) {
        return NULL;
    }
    m = json_object_get(json_object_array_get_idx(c->inbox, 0));
    json_object_array_del_idx(c->inbox, 0, 1);
    return m;
}

int ctl_read(struct ctl_client *c, uint64_t deadline, json_object **msg)
{
    *msg = NULL;
    for (;;) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int timeout_ms = -1, r;
        size_t avail;
        char *buf;
        ssize_t n;

        if ((*msg = inbox_shift(c))) {
            return CTL_EXIT_OK;
        }
        if (c->eof) {
            return CTL_EXIT_CONNECTION;
        }
        if (ctl_interrupted) {
            return CTL_EXIT_INTERRUPTED;
        }
        if (deadline) {
            uint64_t now = now_monotonic_us();
            if (now >= deadline) {
                return CTL_EXIT_TIMEOUT;
            }
            timeout_ms = (int)((deadline - now + 999) / 1000);
        }
        /* a signal between the check above and poll() would not end
         * the wait: look again at least every 200 ms */
        if (timeout_ms < 0 || timeout_ms > 200) {
            timeout_ms = 200;
        }
        r = poll(&p, 1, timeout_ms);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            ctl_error("%s: poll: %s", c->where, strerror(errno));
            return CTL_EXIT_CONNECTION;
        }
        if (r == 0) {
            continue;   /* the deadline check above decides */
        }
        buf = linestream_reserve(c->ls, 65536, &avail);
        n = read(c->fd, buf, avail);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            ctl_error("%s: %s", c->where, strerror(errno));
            c->eof = true;
            continue;
        }
        if (n == 0) {
            c->eof = true;
            continue;
        }
        linestream_commit(c->ls, (size_t)n);
    }
}

static bool write_text(struct ctl_client *c, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t n = write(c->fd, text, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                struct pollfd p = { .fd = c->fd, .events = POLLOUT };
                poll(&p, 1, 1000);
                continue;
            }
            ctl_error("%s: %s", c->where, strerror(errno));
            return false;
        }
        text += n;
        len -= (size_t)n;
    }
    return true;
}

bool ctl_send_raw(struct ctl_client *c, const char *text, size_t len)
{
    return write_text(c, text, len) && write_text(c, "\r\n", 2);
}

bool ctl_send(struct ctl_client *c, const char *name, json_object *args)
{
    json_object *cmd = json_object_new_object();
    char *text;
    bool ok;

    json_object_object_add(cmd, "execute", json_object_new_string(name));
    if (args) {
        json_object_object_add(cmd, "arguments", args);
    }
    text = qjson_to_string(cmd);
    ok = ctl_send_raw(c, text, strlen(text));
    free(text);
    json_object_put(cmd);
    return ok;
}

static void report_read_failure(struct ctl_client *c, int rc)
{
    if (rc == CTL_EXIT_CONNECTION) {
        ctl_error("%s: the monitor closed the connection", c->where);
    } else if (rc == CTL_EXIT_TIMEOUT) {
        ctl_error("%s: no answer in time (--timeout)", c->where);
    }
}

int ctl_wait_reply(struct ctl_client *c, uint64_t deadline,
                   ctl_event_fn on_event, void *opaque, json_object **reply)
{
    *reply = NULL;
    for (;;) {
        json_object *m;
        int rc = ctl_read(c, deadline, &m);
        if (rc != CTL_EXIT_OK) {
            return rc;
        }
        if (json_object_object_get_ex(m, "event", NULL)) {
            if (on_event) {
                on_event(opaque, m);
                json_object_put(m);
            } else {
                json_object_array_add(c->events, m);
            }
            continue;
        }
        *reply = m;
        return CTL_EXIT_OK;
    }
}

int ctl_call_quiet(struct ctl_client *c, const char *name, json_object *args,
                   json_object **reply)
{
    int rc;

    *reply = NULL;
    if (!ctl_send(c, name, args)) {
        return CTL_EXIT_CONNECTION;
    }
    rc = ctl_wait_reply(c, default_deadline(), NULL, NULL, reply);
    report_read_failure(c, rc);
    return rc;
}

int ctl_call(struct ctl_client *c, const char *name, json_object *args,
             json_object **ret)
{
    json_object *reply, *r;
    int rc = ctl_call_quiet(c, name, args, &reply);

    *ret = NULL;
    if (rc != CTL_EXIT_OK) {
        return rc;
    }
    if (json_object_object_get_ex(reply, "return", &r)) {
        *ret = json_object_get(r);
        json_object_put(reply);
        return CTL_EXIT_OK;
    }
    ctl_print_error_reply(reply);
    json_object_put(reply);
    return CTL_EXIT_QMP_ERROR;
}

static bool open_socket(struct ctl_client *c, const char *spec,
                        int *exit_code)
{
    struct address a;
    char *err = address_parse(spec, 0, &a);

    if (err) {
        ctl_error("%s", err);
        free(err);
        *exit_code = CTL_EXIT_USAGE;
        return false;
    }
    switch (address_connect(&a, &c->fd, &err)) {
    case ADDRESS_CONNECTED:
        break;
    case ADDRESS_CONNECT_PENDING: {
        struct pollfd p = { .fd = c->fd, .events = POLLOUT };
        if (poll(&p, 1, (int)((ctl_opt.timeout > 0 ? ctl_opt.timeout
                                : DEFAULT_TIMEOUT) * 1000)) <= 0) {
            err = xstrdup("connection timed out");
        } else {
            err = address_connect_finish(&a, c->fd);
        }
        if (!err) {
            break;
        }
    }
        /* fall through */
    case ADDRESS_CONNECT_FAILED:
        ctl_error("cannot connect to %s: %s", spec, err);
        free(err);
        address_clear(&a);
        *exit_code = CTL_EXIT_CONNECTION;
        return false;
    }
    address_clear(&a);
    return true;
}

static struct ctl_client *client_new(const char *spec)
{
    struct ctl_client *c = xcalloc(1, sizeof(*c));

    c->fd = -1;
    c->ls = linestream_new(on_line, c);
    c->inbox = json_object_new_array();
    c->events = json_object_new_array();
    c->where = xstrdup(spec);
    return c;
}

struct ctl_client *ctl_open_lines(const char *spec, int *exit_code)
{
    struct ctl_client *c = client_new(spec);

    if (!open_socket(c, spec, exit_code)) {
        ctl_client_free(c);
        return NULL;
    }
    return c;
}

struct ctl_client *ctl_connect(bool want_extras, int *exit_code)
{
    struct ctl_client *c = client_new(ctl_opt.socket);
    json_object *m = NULL, *reply = NULL;
    int rc;

    if (!open_socket(c, ctl_opt.socket, exit_code)) {
        goto fail;
    }
    rc = ctl_read(c, default_deadline(), &m);
    if (rc != CTL_EXIT_OK || !json_object_object_get_ex(m, "QMP", NULL)) {
        if (rc == CTL_EXIT_OK) {
            ctl_error("%s: not a QMP monitor (its first message has no "
                      "\"QMP\" greeting)", c->where);
            rc = CTL_EXIT_CONNECTION;
        } else {
            report_read_failure(c, rc);
            if (rc == CTL_EXIT_CONNECTION) {
                ctl_error("%s: (another client may hold QEMU's only "
                          "monitor)", c->where);
            }
        }
        json_object_put(m);
        *exit_code = rc;
        goto fail;
    }
    c->greeting = m;
    rc = ctl_call(c, "qmp_capabilities", NULL, &m);
    if (rc != CTL_EXIT_OK) {
        *exit_code = rc;
        goto fail;
    }
    json_object_put(m);
    if (want_extras) {
        json_object *args = json_object_new_object();
        json_object *en = json_object_new_array();
        json_object_array_add(en, json_object_new_string("events"));
        json_object_object_add(args, "enable", en);
        rc = ctl_call_quiet(c, "qmproxy-capabilities", args, &reply);
        if (rc != CTL_EXIT_OK) {
            *exit_code = rc;
            goto fail;
        }
        c->proxy = json_object_object_get_ex(reply, "return", NULL);
        json_object_put(reply);
    }
    return c;
fail:
    ctl_client_free(c);
    return NULL;
}

void ctl_client_free(struct ctl_client *c)
{
    if (!c) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    linestream_free(c->ls);
    json_object_put(c->greeting);
    json_object_put(c->inbox);
    json_object_put(c->events);
    free(c->where);
    free(c);
}

bool ctl_client_is_proxy(const struct ctl_client *c)
{
    return c->proxy;
}

json_object *ctl_client_greeting(struct ctl_client *c)
{
    return c->greeting;
}

int ctl_client_fd(const struct ctl_client *c)
{
    return c->fd;
}
