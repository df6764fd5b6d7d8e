/*
 * migrate-dest: the destination of a qmproxy-migrate, seen through its own
 * qmproxy (or its QEMU's monitor) as one more QMP client would see it.  It
 * prepares the destination as libvirt's Prepare phase does (an NBD server,
 * a writable export of each disk, migrate-incoming), starts it after the
 * switch-over, and cleans it up after a failure.  The connection is an
 * upstream of its own (the same code as the one to the local QEMU).
 *
 * Each phase sends its commands at once (QMP answers them in order) and
 * ends when every one is answered: the first error, if any, is the
 * phase's.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "jsonobj.h"
#include "log.h"
#include "migrate.h"
#include "nbd-target.h"
#include "op.h"
#include "qmp.h"
#include "upstream.h"
#include "util.h"

struct mig_dest {
    struct event_base *base;
    struct upstream *up;
    struct op *op;
    char *display;           /* the address, for messages */
    bool connected, closing;
    bool gone;               /* its monitor went away: nothing more to ask */
    void (*opened)(struct op *op, bool ok, const char *why);
    /* the phase under way: its commands not yet answered, its first
     * error, what runs when it ends, and the caller's to call then */
    int pending;
    char *error;
    void (*phase_done)(struct mig_dest *dest, bool ok, const char *why);
    void (*done)(struct op *op, bool ok, const char *why);
    /* where the copies and the VM state are to go */
    char *host, *port, *uri;
    bool start;              /* cont the destination once it has the VM */
    /* TLS (NULL: none): the id of the tls-creds-x509 object made on the
     * destination from tls_dir, the one the source's copies name, and the
     * name the destination's certificate is checked against (NULL: the
     * host it is reached at) */
    char *tls_id, *tls_dir, *tls_hostname;
    bool tls_made;           /* the object was added */
    /* what the preparation found and made */
    json_object *devices;    /* query-block's answer */
    bool nbd_started;
    int exports;             /* block-export-add that succeeded */
};

static char *export_id(const struct op_disk *d)
{
    return xasprintf("qmproxy-migrate-%s", d->disk);
}

/* ---- the connection ------------------------------------------------- */

static void on_ready(void *opaque)
{
    struct mig_dest *dest = opaque;

    if (!dest->connected && !dest->closing) {
        dest->connected = true;
        dest->opened(dest->op, true, NULL);
    }
}

static void on_gave_up(void *opaque, const char *why)
{
    struct mig_dest *dest = opaque;
    char *msg;

    if (dest->connected || dest->closing) {
        return;
    }
    dest->closing = true;
    msg = xasprintf("the destination's monitor %s could not be reached: %s",
                    dest->display, why ? why : "?");
    dest->opened(dest->op, false, msg);
    free(msg);
}

static void on_lost(void *opaque, const char *why)
{
    struct mig_dest *dest = opaque;

    /* the commands under way are answered as lost; later ones are not
     * sent (the connection would only be tried again) */
    dest->gone = true;
    log_info("migration %s: the destination's monitor %s went away: %s",
             dest->op->name, dest->display, why ? why : "?");
}

static const struct upstream_callbacks dest_callbacks = {
    .ready = on_ready,
    .lost = on_lost,
    .gave_up = on_gave_up,
};

struct mig_dest *mig_dest_open(struct event_base *base,
                               const struct address *addr,
                               const char *display, struct op *op,
                               void (*opened)(struct op *, bool,
                                              const char *))
{
    struct mig_dest *dest = xcalloc(1, sizeof(*dest));

    dest->base = base;
    dest->op = op;
    dest->opened = opened;
    dest->display = xstrdup(display);
    dest->up = upstream_new(base, addr, &dest_callbacks, dest, NULL);
    upstream_connect(dest->up, 10 * 1000);
    return dest;
}

static void dest_free_later(evutil_socket_t fd, short what, void *opaque)
{
    struct mig_dest *dest = opaque;
    (void)fd;
    (void)what;
    upstream_free(dest->up);
    json_object_put(dest->devices);
    free(dest->error);
    free(dest->display);
    free(dest->host);
    free(dest->port);
    free(dest->uri);
    free(dest->tls_id);
    free(dest->tls_dir);
    free(dest->tls_hostname);
    free(dest);
}

void mig_dest_close(struct mig_dest *dest)
{
    if (!dest) {
        return;
    }
    dest->closing = true;
    /* never from inside the upstream's own callbacks */
    event_base_once(dest->base, -1, EV_TIMEOUT, dest_free_later, dest, NULL);
}

/* ---- phases --------------------------------------------------------- */

struct dest_call {
    struct mig_dest *dest;
    char *what;
    void (*then)(struct mig_dest *dest, json_object *ret);
};

static void phase_check(struct mig_dest *dest)
{
    void (*next)(struct mig_dest *, bool, const char *) = dest->phase_done;
    char *error;

    if (dest->pending || !next) {
        return;
    }
    dest->phase_done = NULL;
    error = dest->error;
    dest->error = NULL;
    next(dest, !error, error);
    free(error);
}

/* The usual end of a phase: the caller is told. */
static void tell_caller(struct mig_dest *dest, bool ok, const char *why)
{
    dest->done(dest->op, ok, why);
}

static void call_done(void *opaque, const struct upstream_reply *r)
{
    struct dest_call *c = opaque;
    struct mig_dest *dest = c->dest;
    bool ok = !r->lost && r->kind == QMP_RETURN;

    dest->pending--;
    if (!ok && !dest->error) {
        dest->error = xasprintf("%s on the destination %s", c->what,
                                r->lost ? "got no answer: its monitor went "
                                "away" : upstream_reply_error_desc(r));
    }
    if (ok && c->then && !dest->closing) {
        c->then(dest, upstream_reply_return(r));
    }
    free(c->what);
    free(c);
    if (!dest->closing) {
        phase_check(dest);
    }
}

static void dest_call(struct mig_dest *dest, const char *what,
                      json_object *cmd,
                      void (*then)(struct mig_dest *, json_object *))
{
    struct dest_call *c;

    if (dest->gone) {
        if (!dest->error) {
            dest->error = xasprintf("%s on the destination was not sent: "
                                    "its monitor %s went away", what,
                                    dest->display);
        }
        json_object_put(cmd);
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->dest = dest;
    c->what = xstrdup(what);
    c->then = then;
    dest->pending++;
    upstream_send_internal(dest->up, cmd, call_done, c);
    json_object_put(cmd);
}

/* ---- preparing ------------------------------------------------------ */

/* Whether a qdev path names the device id: "disk0", or QOM's
 * "/machine/peripheral/disk0" with or without "/virtio-backend". */
static bool qdev_is(const char *qdev, const char *id)
{
    static const char peripheral[] = "/machine/peripheral/";
    size_t n = strlen(id);

    if (!qdev) {
        return false;
    }
    if (!strncmp(qdev, peripheral, sizeof(peripheral) - 1)) {
        qdev += sizeof(peripheral) - 1;
    }
    return !strncmp(qdev, id, n) && (qdev[n] == 0 || qdev[n] == '/');
}

/* The destination's node for the disk the source names so: the same
 * device name or qdev id (the VM is started alike on both sides). */
static const char *dest_node(struct mig_dest *dest, const char *disk)
{
    size_t n = dest->devices ? json_object_array_length(dest->devices) : 0;

    for (size_t i = 0; i < n; i++) {
        json_object *dev = json_object_array_get_idx(dest->devices, i);
        json_object *inserted = NULL;
        const char *qdev = jobj_str(dev, "qdev");
        const char *device = jobj_str(dev, "device");
        json_object_object_get_ex(dev, "inserted", &inserted);
        if (!inserted) {
            continue;
        }
        if ((device && !strcmp(device, disk)) || qdev_is(qdev, disk)) {
            return jobj_str(inserted, "node-name");
        }
    }
    return NULL;
}

static void exported(struct mig_dest *dest, json_object *ret)
{
    (void)ret;
    dest->exports++;
}

static void tls_made(struct mig_dest *dest, json_object *ret)
{
    (void)ret;
    dest->tls_made = true;
}

/* The export of a disk as the source's copy names it: its URI, or with
 * TLS the nbd driver's options naming the source's credentials. */
static char *export_target(struct mig_dest *dest, const char *disk)
{
    json_object *t, *server;
    char *out = NULL, *err;

    if (!dest->tls_id) {
        return xasprintf("nbd://%s:%s/%s", dest->host, dest->port, disk);
    }
    t = json_object_new_object();
    server = json_object_new_object();
    jobj_add_str(server, "type", "inet");
    jobj_add_str(server, "host", dest->host);
    jobj_add_str(server, "port", dest->port);
    json_object_object_add(t, "server", server);
    jobj_add_str(t, "export", disk);
    jobj_add_str(t, "tls-creds", dest->tls_id);
    if (dest->tls_hostname) {
        jobj_add_str(t, "tls-hostname", dest->tls_hostname);
    }
    err = nbd_target_resolve("target", t, &out);
    json_object_put(t);
    if (err) {   /* made of checked parts: a bug */
        log_error("migration: %s", err);
        free(err);
        return xasprintf("nbd://%s:%s/%s", dest->host, dest->port, disk);
    }
    return out;
}

static void nbd_started(struct mig_dest *dest, json_object *ret)
{
    (void)ret;
    dest->nbd_started = true;
}

static void devices_read(struct mig_dest *dest, json_object *ret)
{
    struct op *op = dest->op;

    dest->devices = json_object_get(ret);
    for (int i = 0; i < op->ndisks; i++) {
        if (!dest_node(dest, op->disks[i].disk)) {
            str_setf(&dest->error, "the destination has no disk %s (start "
                     "its QEMU with the same drives as the source's)",
                     op->disks[i].disk);
            return;
        }
    }
}

static void prepare_exports(struct mig_dest *dest, bool ok, const char *why);

void mig_dest_use_tls(struct mig_dest *dest, const char *id, const char *dir,
                      const char *hostname)
{
    str_set(&dest->tls_id, id);
    str_set(&dest->tls_dir, dir);
    str_set(&dest->tls_hostname, hostname);
}

void mig_dest_prepare(struct mig_dest *dest, const char *host,
                      const char *port, const char *uri,
                      void (*done)(struct op *, bool, const char *))
{
    str_set(&dest->host, host);
    str_set(&dest->port, port);
    str_set(&dest->uri, uri);
    dest->done = done;
    dest->phase_done = prepare_exports;
    dest_call(dest, "query-block", qmp_command("query-block", NULL),
              devices_read);
    phase_check(dest);   /* nothing sent: its monitor is gone */
}

void mig_dest_assume_prepared(struct mig_dest *dest, const char *host,
                              const char *port, const char *uri)
{
    str_set(&dest->host, host);
    str_set(&dest->port, port);
    str_set(&dest->uri, uri);
    dest->nbd_started = true;
    dest->exports = dest->op->ndisks;
    dest->tls_made = dest->tls_id != NULL;
}

static json_object *id_args(const char *id)
{
    json_object *a = json_object_new_object();

    jobj_add_str(a, "id", id);
    return a;
}

static void prepare_exports(struct mig_dest *dest, bool ok, const char *why)
{
    struct op *op = dest->op;
    json_object *a, *addr, *data;

    if (!ok) {
        tell_caller(dest, false, why);
        return;
    }
    dest->phase_done = tell_caller;
    if (dest->tls_id) {
        /* the server's side of both TLS connections, checking the
         * source's client certificate too (verify-peer) */
        a = id_args(dest->tls_id);
        jobj_add_str(a, "qom-type", "tls-creds-x509");
        jobj_add_str(a, "dir", dest->tls_dir);
        jobj_add_str(a, "endpoint", "server");
        jobj_add_bool(a, "verify-peer", 1);
        dest_call(dest, "object-add of its TLS credentials (tls-creds-x509)",
                  qmp_command("object-add", a), tls_made);
        a = json_object_new_object();
        jobj_add_str(a, "tls-creds", dest->tls_id);
        dest_call(dest, "migrate-set-parameters tls-creds",
                  qmp_command("migrate-set-parameters", a), NULL);
    }
    a = json_object_new_object();
    addr = json_object_new_object();
    data = json_object_new_object();
    jobj_add_str(data, "host", dest->host);
    jobj_add_str(data, "port", dest->port);
    jobj_add_str(addr, "type", "inet");
    json_object_object_add(addr, "data", data);
    json_object_object_add(a, "addr", addr);
    if (dest->tls_id) {
        jobj_add_str(a, "tls-creds", dest->tls_id);
    }
    dest_call(dest, "nbd-server-start", qmp_command("nbd-server-start", a),
              nbd_started);
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        char *id = export_id(d);
        a = id_args(id);
        jobj_add_str(a, "type", "nbd");
        jobj_add_str(a, "node-name", dest_node(dest, d->disk));
        jobj_add_str(a, "name", d->disk);
        jobj_add_bool(a, "writable", 1);
        dest_call(dest, "block-export-add", qmp_command("block-export-add", a),
                  exported);
        free(id);
        free(d->mirror_file);
        d->mirror_file = export_target(dest, d->disk);
    }
    a = json_object_new_object();
    jobj_add_str(a, "uri", dest->uri);
    dest_call(dest, "migrate-incoming", qmp_command("migrate-incoming", a),
              NULL);
    phase_check(dest);
}

/* ---- the end -------------------------------------------------------- */

static void status_read(struct mig_dest *dest, json_object *ret)
{
    const char *st = jobj_str(ret, "status");

    /* a QEMU started with -S waits for cont after the migration */
    if (st && strcmp(st, "running") && dest->start) {
        dest_call(dest, "cont", qmp_command("cont", NULL), NULL);
    }
}

static void remove_exports(struct mig_dest *dest)
{
    struct op *op = dest->op;

    for (int i = 0; i < op->ndisks && dest->exports; i++) {
        char *id = export_id(&op->disks[i]);
        dest_call(dest, "block-export-del",
                  qmp_command("block-export-del", id_args(id)), NULL);
        free(id);
    }
    dest->exports = 0;
    if (dest->nbd_started) {
        dest->nbd_started = false;
        dest_call(dest, "nbd-server-stop", qmp_command("nbd-server-stop",
                                                       NULL), NULL);
    }
}

void mig_dest_finish(struct mig_dest *dest, bool start,
                     void (*done)(struct op *, bool, const char *))
{
    dest->start = start;
    dest->done = done;
    dest->phase_done = tell_caller;
    dest_call(dest, "query-status", qmp_command("query-status", NULL),
              status_read);
    remove_exports(dest);
    if (dest->tls_made) {
        /* the destination runs on: nothing of the migration left there */
        json_object *a = json_object_new_object();
        jobj_add_str(a, "tls-creds", "");
        dest_call(dest, "migrate-set-parameters",
                  qmp_command("migrate-set-parameters", a), NULL);
        dest_call(dest, "object-del", qmp_command("object-del",
                                                  id_args(dest->tls_id)),
                  NULL);
        dest->tls_made = false;
    }
    phase_check(dest);
}

void mig_dest_abandon(struct mig_dest *dest,
                      void (*done)(struct op *, bool, const char *))
{
    dest->done = done;
    dest->phase_done = tell_caller;
    free(dest->error);
    dest->error = NULL;
    if (!dest->connected) {
        phase_check(dest);
        return;
    }
    remove_exports(dest);
    /* as libvirt destroys the destination domain: a QEMU that was waiting
     * for this migration has nothing else to do */
    dest_call(dest, "quit", qmp_command("quit", NULL), NULL);
    phase_check(dest);
}
