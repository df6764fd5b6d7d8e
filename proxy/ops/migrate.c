/*
 * qmproxy-migrate: live migration with storage, as libvirt's
 * `migrate --copy-storage-all`.  The destination is a QEMU started with
 * `-incoming defer` behind its own qmproxy.  Either qmproxy prepares it
 * through that qmproxy ("destination", migrate-dest.c: an NBD server, a
 * writable export of every disk, migrate-incoming; with "tls" the
 * tls-creds-x509 objects on both sides too), or its caller did and names
 * the exports.  Then, on the source:
 *
 *   RUNNING/MIRRORING  drive-mirror sync=full mode=existing of every disk
 *                      to its export, until every copy is ready
 *   MIGRATING          migrate (pause-before-switchover on), until QEMU
 *                      reports pre-switchover: the source is stopped
 *   SWITCHING          block-job-cancel of the ready copies (QEMU's way of
 *                      completing a mirror without pivoting: the export
 *                      then has the disk as the source stopped it), then
 *                      migrate-continue; the device state goes last
 *   MIGRATED           the destination has the VM; the source is told to
 *                      quit (or left paused: "source": "pause")
 *
 * The destination runs the VM as soon as the migration completes, unless
 * its QEMU was started with -S (then qmproxy, or the caller, sends cont).
 * A failure or a qmproxy-migrate-cancel before the switch-over cancels the
 * migration and the copies; the source keeps running as before, and a
 * destination qmproxy prepared is cleaned up.  A restarted proxy carries a
 * migration on from where QEMU is (migrate-resume.c).
 */
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "cmd.h"
#include "jsonobj.h"
#include "log.h"
#include "migrate.h"
#include "migrate-internal.h"
#include "nbd-target.h"
#include "op.h"
#include "qmp.h"
#include "util.h"

#define MAX_DISKS 64

static const char *const source_endings[] = { "quit", "pause", NULL };

static const struct qapi_member disk_members[] = {
    { "disk", QAPI_STR, false, NULL, NULL, NULL },
    /* the destination's writable export (nbd-target.h's forms); made by
     * qmproxy when "destination" is given */
    { "target", QAPI_ANY, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static const struct qapi_member disk_element = {
    "disks", QAPI_OBJECT, false, NULL, disk_members, NULL
};

/* TLS for a destination qmproxy prepares (as libvirt's
 * migrate_tls_x509_cert_dir): the folders QEMU reads on each host */
static const struct qapi_member tls_members[] = {
    /* on the source: ca-cert.pem, client-cert.pem, client-key.pem */
    { "source-creds-dir", QAPI_STR, false, NULL, NULL, NULL },
    /* on the destination: ca-cert.pem, server-cert.pem, server-key.pem */
    { "dest-creds-dir", QAPI_STR, false, NULL, NULL, NULL },
    /* the name in the destination's certificate (default: the host of
     * uri, as reached) */
    { "hostname", QAPI_STR, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

static const struct qapi_member args[] = {
    { "name", QAPI_STR, true, NULL, NULL, NULL },
    /* where the destination's migrate-incoming listens */
    { "uri", QAPI_STR, false, NULL, NULL, NULL },
    { "disks", QAPI_LIST, false, NULL, NULL, &disk_element },
    { "source", QAPI_ENUM, true, source_endings, NULL, NULL },
    /* the destination's monitor (its qmproxy's listener), unix:PATH or
     * tcp:HOST:PORT: qmproxy prepares it, starts it, cleans it up */
    { "destination", QAPI_STR, true, NULL, NULL, NULL },
    { "nbd-port", QAPI_STR, true, NULL, NULL, NULL },
    /* with destination: leave it paused when it has the VM */
    { "paused", QAPI_BOOL, true, NULL, NULL, NULL },
    /* the source's tls-creds-x509 object for the migration stream, with a
     * destination its caller prepared */
    { "tls-creds", QAPI_STR, true, NULL, NULL, NULL },
    /* with destination: qmproxy makes the credentials on both sides */
    { "tls", QAPI_OBJECT, true, NULL, tls_members, NULL },
    /* the guest's writes wait until they reach the destination too
     * (copy-mode write-blocking, libvirt's synchronous writes): less to
     * drain at the switch-over, slower writes meanwhile */
    { "synchronous-writes", QAPI_BOOL, true, NULL, NULL, NULL },
    /* bytes per second for each disk's copy (0: as fast as it goes) */
    { "speed", QAPI_INT, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};



/* ---- the end -------------------------------------------------------- */

static void source_ended(struct op *op, int i, bool ok, json_object *ret,
                         const char *error)
{
    (void)i;
    (void)ret;
    if (!ok) {
        log_warn("migration %s: the source did not end: %s", op->name, error);
    }
}

static void tls_dropped(struct op *op, int i, bool ok, json_object *ret,
                        const char *error)
{
    (void)i;
    (void)ret;
    if (!ok) {
        log_warn("migration %s: removing its TLS credentials from the "
                 "source failed: %s", op->name, error);
    }
}

/* The credentials qmproxy made on the source go again (the source runs
 * on after a failure, or stays paused), and the migration parameters no
 * longer name them. */
static void drop_source_tls(struct op *op)
{
    struct migration *m = mig_of(op);
    json_object *a;

    if (!m->tls_made) {
        return;
    }
    m->tls_made = false;
    a = json_object_new_object();
    jobj_add_str(a, "tls-creds", "");
    jobj_add_str(a, "tls-hostname", "");
    op_qmp(op, qmp_command("migrate-set-parameters", a), tls_dropped, -1);
    a = json_object_new_object();
    jobj_add_str(a, "id", m->tls_creds);
    op_qmp(op, qmp_command("object-del", a), tls_dropped, -1);
}

static void finished(struct op *op)
{
    struct migration *m = mig_of(op);

    mig_dest_close(m->dest);
    m->dest = NULL;
    op_succeed(op, OP_MIGRATED);
    if (!m->quit_source) {
        drop_source_tls(op);
    }
    if (m->quit_source) {
        /* after the answer: the monitor goes away with QEMU */
        op_qmp(op, qmp_command("quit", NULL), source_ended, -1);
    }
}

static void destination_finished(struct op *op, bool ok, const char *why)
{
    if (!ok) {
        struct migration *m = mig_of(op);
        mig_dest_close(m->dest);
        m->dest = NULL;
        op_fail(op, "the VM's state is on the destination, but finishing "
                "there failed: %s; the source is left paused", why);
        return;
    }
    finished(op);
}

void migrate_completed(struct op *op)
{
    struct migration *m = mig_of(op);

    if (m->completing) {
        return;
    }
    m->completing = true;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        d->state = DISK_PIVOTED;
        str_setf(&d->note, "on the destination, at %s", d->mirror_file);
    }
    op->vm_event = NULL;
    if (m->dest) {
        mig_dest_finish(m->dest, m->start_dest, destination_finished);
    } else {
        finished(op);
    }
}

/* ---- undoing: before the switch-over the source is still the VM ------ */

static void resumed(struct op *op, int i, bool ok, json_object *ret,
                    const char *error)
{
    (void)i;
    (void)ret;
    if (!ok) {
        str_setf(&op->step_error, "%s; and the source could not be resumed: "
                 "%s", op->step_error, error);
    }
}

static void status_read(struct op *op, int i, bool ok, json_object *ret,
                        const char *error)
{
    const char *st = ok ? jobj_str(ret, "status") : NULL;
    (void)i;
    (void)error;
    /* a migration cancelled after the source stopped leaves it paused in
     * some versions of QEMU; it was running when the migration began */
    if (st && (!strcmp(st, "paused") || !strcmp(st, "finish-migrate"))) {
        op_qmp(op, qmp_command("cont", NULL), resumed, -1);
    }
}

static void report_undone(struct op *op, bool dest_ok, const char *why)
{
    struct migration *m = mig_of(op);
    bool prepared_here = m->dest != NULL;

    mig_dest_close(m->dest);
    m->dest = NULL;
    drop_source_tls(op);
    if (m->rollback_ok && dest_ok && op->busy_with
        && !strcmp(op->busy_with, "cancel")) {
        op->busy_with = NULL;
        op_succeed(op, OP_ABORTED);
        return;
    }
    if (!prepared_here) {
        op_fail(op, "%s; the source runs as before; the destination is left "
                "as it was prepared (quit it or remove its exports)",
                op->step_error);
    } else if (dest_ok) {
        op_fail(op, "%s; the source runs as before; the destination's "
                "exports were removed and its QEMU told to quit",
                op->step_error);
    } else {
        op_fail(op, "%s; the source runs as before; cleaning up the "
                "destination failed: %s", op->step_error, why);
    }
}

static void undone(struct op *op, bool ok)
{
    struct migration *m = mig_of(op);

    m->rollback_ok = ok;
    if (m->dest) {
        mig_dest_abandon(m->dest, report_undone);
    } else {
        report_undone(op, true, NULL);
    }
}

static void cancel_sent(struct op *op, int i, bool ok, json_object *ret,
                        const char *error)
{
    (void)op;
    (void)i;
    (void)ok;
    (void)ret;
    (void)error;  /* no migration under way: nothing to cancel */
}

void migrate_undo(struct op *op, const char *why)
{
    if (mig_of(op)->undoing) {
        return;
    }
    mig_of(op)->undoing = true;
    if (!op->step_error || strcmp(op->step_error, why)) {
        str_set(&op->step_error, why);
    }
    op->vm_event = NULL;
    if (op->state == OP_MIGRATING || op->state == OP_SWITCHING) {
        op_qmp(op, qmp_command("migrate_cancel", NULL), cancel_sent, -1);
        op_qmp(op, qmp_command("query-status", NULL), status_read, -1);
    }
    step_rollback(op, undone);
}

/* ---- the switch-over: copies completed while the source is stopped -- */

static void continued(struct op *op, int i, bool ok, json_object *ret,
                      const char *error)
{
    (void)i;
    (void)ret;
    if (!ok) {
        op_fail(op, "migrate-continue was refused at the switch-over: %s; "
                "the source is paused with its copies migrate_completed, the "
                "destination has not started", error);
    }
}

void migrate_copies_completed(struct op *op, bool ok)
{
    json_object *a;

    if (!ok) {
        migrate_undo(op, op->step_error);
        return;
    }
    a = json_object_new_object();
    jobj_add_str(a, "state", "pre-switchover");
    op_qmp(op, qmp_command("migrate-continue", a), continued, -1);
}

/* ---- migrating ----------------------------------------------------- */

static void migration_ended(struct op *op, int i, bool ok, json_object *ret,
                            const char *error)
{
    struct migration *m = mig_of(op);
    const char *reason = ok ? jobj_str(ret, "error-desc") : NULL;
    char *why;
    (void)i;
    (void)error;
    why = xasprintf("the migration to %s %s in QEMU%s%s", m->uri,
                    m->status, reason ? ": " : "", reason ? reason : "");
    migrate_undo(op, why);
    free(why);
}

void migrate_on_vm_event(struct op *op, const char *name, json_object *data)
{
    struct migration *m = mig_of(op);
    const char *st = jobj_str(data, "status");

    if (strcmp(name, "MIGRATION") || !st) {
        return;
    }
    str_set(&m->status, st);
    if (!strcmp(st, "pre-switchover") && op->state == OP_MIGRATING) {
        op_set_state(op, OP_SWITCHING);
        step_complete_copies(op, migrate_copies_completed);
    } else if (!strcmp(st, "completed") && op->state == OP_SWITCHING) {
        migrate_completed(op);
    } else if (!strcmp(st, "failed") || !strcmp(st, "cancelled")) {
        if (op->state == OP_MIGRATING || op->state == OP_SWITCHING) {
            /* QEMU's reason first, then the undo */
            op->vm_event = NULL;
            op_qmp(op, qmp_command("query-migrate", NULL), migration_ended,
                   -1);
        }
    }
}

/* A copy failing while the VM state streams: the disks would not match. */
void migrate_watch_copies(struct op *op)
{
    for (int i = 0; i < op->ndisks && !mig_of(op)->undoing; i++) {
        struct op_disk *d = &op->disks[i];
        if (d->failed || d->done) {
            d->state = DISK_COPY_FAILED;
            str_setf(&d->note, "its copy to %s failed during the migration: "
                     "%s", d->mirror_file, d->job_error ? d->job_error : "?");
            d->own_job = false;
            op->check = NULL;
            migrate_undo(op, d->note);
            return;
        }
    }
}

static void migrate_sent(struct op *op, int i, bool ok, json_object *ret,
                         const char *error)
{
    (void)i;
    (void)ret;
    if (!ok && op->state == OP_MIGRATING) {
        char *why = xasprintf("QEMU refused to migrate to %s: %s",
                              mig_of(op)->uri, error);
        migrate_undo(op, why);
        free(why);
    }
}

static void capabilities_set(struct op *op, int i, bool ok, json_object *ret,
                             const char *error)
{
    struct migration *m = mig_of(op);
    json_object *a;
    (void)i;
    (void)ret;
    if (op->state != OP_READY || m->undoing) {
        return;
    }
    if (!ok) {
        char *why = xasprintf("the migration could not be set up: %s", error);
        migrate_undo(op, why);
        free(why);
        return;
    }
    if (op->outstanding) {
        return;   /* the parameters' answer too */
    }
    op_set_state(op, OP_MIGRATING);
    op->check = migrate_watch_copies;
    op->vm_event = migrate_on_vm_event;
    a = json_object_new_object();
    jobj_add_str(a, "uri", m->uri);
    op_qmp(op, qmp_command("migrate", a), migrate_sent, -1);
}

static json_object *capability(const char *name)
{
    json_object *c = json_object_new_object();

    jobj_add_str(c, "capability", name);
    jobj_add_bool(c, "state", 1);
    return c;
}

void migrate_copies_ready(struct op *op, bool ok)
{
    struct migration *m = mig_of(op);
    json_object *caps, *a, *p;

    if (!ok) {
        migrate_undo(op, op->step_error);
        return;
    }
    op_set_state(op, OP_READY);
    op->check = migrate_watch_copies;
    caps = json_object_new_array();
    /* MIGRATION events, and a stop before the device state goes, where
     * the copies are completed */
    json_object_array_add(caps, capability("events"));
    json_object_array_add(caps, capability("pause-before-switchover"));
    a = json_object_new_object();
    json_object_object_add(a, "capabilities", caps);
    op_qmp(op, qmp_command("migrate-set-capabilities", a), capabilities_set,
           -1);
    p = json_object_new_object();
    /* always said, so that a plain migration does not inherit the TLS of
     * an earlier one */
    jobj_add_str(p, "tls-creds", m->tls_creds ? m->tls_creds : "");
    jobj_add_str(p, "tls-hostname", m->tls_hostname ? m->tls_hostname : "");
    op_qmp(op, qmp_command("migrate-set-parameters", p), capabilities_set,
           -1);
}

static void copies_started(struct op *op, bool ok)
{
    if (!ok) {
        migrate_undo(op, op->step_error);
        return;
    }
    op_set_state(op, OP_MIRRORING);
    step_wait_ready(op, migrate_copies_ready);
}

/* ---- the request --------------------------------------------------- */

static char *check_uri(const char *uri)
{
    static const char *const schemes[] = { "tcp:", "unix:", "rdma:",
                                           "exec:", "fd:", NULL };

    for (int k = 0; schemes[k]; k++) {
        if (!strncmp(uri, schemes[k], strlen(schemes[k]))
            && uri[strlen(schemes[k])]) {
            return NULL;
        }
    }
    return xasprintf("uri '%s' is not a migration URI: give where the "
                     "destination's migrate-incoming listens, as "
                     "tcp:HOST:PORT or unix:PATH", uri);
}

static char *check_disks(json_object *disks, bool made_here,
                         const char **resolved, char **targets, int *n)
{
    size_t count = json_object_array_length(disks);
    char *err = NULL;

    if (count == 0) {
        return xstrdup("no disks given: name every disk of the VM and the "
                       "destination's export it goes to");
    }
    if (count > MAX_DISKS) {
        return xasprintf("at most %d disks at once", MAX_DISKS);
    }
    for (size_t i = 0; i < count && !err; i++) {
        json_object *d = json_object_array_get_idx(disks, i), *t = NULL;
        json_object_object_get_ex(d, "target", &t);
        err = op_check_disk(qapi_get_str(d, "disk", NULL), &resolved[i]);
        for (size_t k = 0; k < i && !err; k++) {
            if (!strcmp(resolved[k], resolved[i])) {
                err = xasprintf("disk %s is named twice", resolved[i]);
            }
        }
        if (!err && made_here && t) {
            err = xasprintf("the target of %s is made on the destination "
                            "by qmproxy: give no target with destination",
                            resolved[i]);
        } else if (!err && !made_here && !t) {
            err = xasprintf("no target for %s: name the destination's "
                            "export it goes to, or give destination (its "
                            "monitor) for qmproxy to make the exports",
                            resolved[i]);
        }
        if (!err && !made_here) {
            err = nbd_target_resolve("target", t, &targets[i]);
        }
        if (!err && !made_here && !nbd_target_is(targets[i])) {
            err = xasprintf("the target of %s is not an NBD export: a "
                            "migration copies each disk to the "
                            "destination's export (nbd://HOST:PORT/EXPORT)",
                            resolved[i]);
        }
    }
    *n = (int)count;
    return err;
}

/* The destination's monitor, and the host its NBD server listens on: the
 * migration URI's (the host the VM state goes to). */
static char *check_destination(const char *destination, const char *uri,
                               struct address *addr, char **nbd_host)
{
    const char *colon;
    char *err = address_parse(destination, 0, addr);

    if (err) {
        char *tmp = xasprintf("destination: %s", err);
        free(err);
        return tmp;
    }
    colon = strrchr(uri, ':');
    if (strncmp(uri, "tcp:", 4) || colon == uri + 3 || colon == uri + 4) {
        return xasprintf("with destination, uri must be tcp:HOST:PORT (the "
                         "destination's NBD server listens on HOST too), "
                         "not '%s'", uri);
    }
    *nbd_host = xstrndup(uri + 4, (size_t)(colon - (uri + 4)));
    return NULL;
}

static void destination_prepared(struct op *op, bool ok, const char *why)
{
    if (!ok) {
        str_set(&op->step_error, why);
        mig_of(op)->rollback_ok = true;   /* nothing done on the source */
        mig_dest_abandon(mig_of(op)->dest, report_undone);
        return;
    }
    step_start_mirrors(op, copies_started);
}

static void prepare_destination(struct op *op)
{
    struct migration *m = mig_of(op);

    if (m->tls_dest_dir) {
        mig_dest_use_tls(m->dest, m->tls_creds, m->tls_dest_dir,
                         m->tls_hostname);
    }
    mig_dest_prepare(m->dest, m->nbd_host, m->nbd_port, m->uri,
                     destination_prepared);
}

static void source_tls_made(struct op *op, int i, bool ok, json_object *ret,
                            const char *error)
{
    struct migration *m = mig_of(op);
    (void)i;
    (void)ret;
    if (!ok) {
        mig_dest_close(m->dest);
        m->dest = NULL;
        op_fail(op, "making the source's TLS credentials from %s "
                "(object-add tls-creds-x509) failed: %s; nothing was done "
                "on either side", m->tls_source_dir, error);
        return;
    }
    m->tls_made = true;
    prepare_destination(op);
}

static void destination_opened(struct op *op, bool ok, const char *why)
{
    struct migration *m = mig_of(op);
    json_object *a;

    if (!ok) {
        mig_dest_close(m->dest);
        m->dest = NULL;
        op_fail(op, "%s; nothing was done on either side", why);
        return;
    }
    if (!m->tls_source_dir) {
        prepare_destination(op);
        return;
    }
    /* the client's side of the copies and of the migration stream,
     * checking the destination's certificate against the CA in the
     * folder (and offering its own, which the destination checks) */
    a = json_object_new_object();
    jobj_add_str(a, "qom-type", "tls-creds-x509");
    jobj_add_str(a, "id", m->tls_creds);
    jobj_add_str(a, "dir", m->tls_source_dir);
    jobj_add_str(a, "endpoint", "client");
    jobj_add_bool(a, "verify-peer", 1);
    op_qmp(op, qmp_command("object-add", a), source_tls_made, -1);
}

/* "tls": both folders absolute paths, only with a destination qmproxy
 * prepares, and not beside tls-creds. */
static char *check_tls(json_object *tls, bool with_destination,
                       bool with_creds)
{
    static const char *const dirs[] = { "source-creds-dir",
                                        "dest-creds-dir", NULL };

    if (!tls) {
        return NULL;
    }
    if (!with_destination) {
        return xstrdup("tls makes the credentials on both sides, so it "
                       "needs destination (the destination's monitor); "
                       "for a destination its caller prepared, name the "
                       "source's tls-creds-x509 object in tls-creds and "
                       "in each target");
    }
    if (with_creds) {
        return xstrdup("give tls (credentials qmproxy makes from folders) "
                       "or tls-creds (an object that exists), not both");
    }
    for (int k = 0; dirs[k]; k++) {
        const char *dir = qapi_get_str(tls, dirs[k], "");
        if (dir[0] != '/') {
            return xasprintf("tls.%s must be an absolute path (the folder "
                             "QEMU reads the credentials from on %s host), "
                             "not '%s'", dirs[k],
                             k == 0 ? "the source" : "the destination", dir);
        }
    }
    return NULL;
}

static enum cmd_retval exec(struct cmd_call *call, json_object *a)
{
    const char *name = qapi_get_str(a, "name", NULL);
    const char *uri = qapi_get_str(a, "uri", NULL);
    const char *destination = qapi_get_str(a, "destination", NULL);
    struct address dest_addr = { 0 };
    char *nbd_host = NULL;
    const char *resolved[MAX_DISKS];
    char *targets[MAX_DISKS] = { NULL };
    json_object *disks = NULL, *tls = NULL;
    struct migration *m;
    struct op *op;
    int n = 0;
    char *err = NULL;

    json_object_object_get_ex(a, "disks", &disks);
    json_object_object_get_ex(a, "tls", &tls);
    if (name && !op_name_free(name)) {
        err = xasprintf("an operation named '%s' is already under way; "
                        "choose another name", name);
    }
    if (!err) {
        err = check_uri(uri);
    }
    if (!err && qapi_get_int(a, "speed", 0) < 0) {
        err = xstrdup("speed must not be negative");
    }
    if (!err) {
        err = check_disks(disks, destination != NULL, resolved, targets, &n);
    }
    if (!err && destination) {
        err = check_destination(destination, uri, &dest_addr, &nbd_host);
    }
    if (!err) {
        err = check_tls(tls, destination != NULL,
                        qapi_get_str(a, "tls-creds", NULL) != NULL);
    }
    if (err) {
        cmd_error(call, QMP_GENERIC_ERROR, "%s; nothing was done", err);
        free(err);
        for (int i = 0; i < MAX_DISKS; i++) {
            free(targets[i]);
        }
        address_clear(&dest_addr);
        free(nbd_host);
        return CMD_RETURN_NORMAL;
    }
    op = op_new("migrate", name, call->client, call);
    m = xcalloc(1, sizeof(*m));
    m->uri = xstrdup(uri);
    if (qapi_get_str(a, "tls-creds", NULL)) {
        m->tls_creds = xstrdup(qapi_get_str(a, "tls-creds", NULL));
    }
    if (tls) {
        /* one id, made on both sides: unique among this proxy's
         * operations, and a valid QOM id whatever the name */
        m->tls_creds = xasprintf("qmproxy-migrate-tls-%u", op->seq);
        m->tls_source_dir = xstrdup(qapi_get_str(tls, "source-creds-dir",
                                                 NULL));
        m->tls_dest_dir = xstrdup(qapi_get_str(tls, "dest-creds-dir", NULL));
        if (qapi_get_str(tls, "hostname", NULL)) {
            m->tls_hostname = xstrdup(qapi_get_str(tls, "hostname", NULL));
        }
    }
    m->quit_source = strcmp(qapi_get_str(a, "source", "quit"), "pause");
    op->priv = m;
    op->priv_free = migration_free;
    op->priv_save = migration_save;
    for (int i = 0; i < n; i++) {
        struct op_disk *d = op_add_disk(op, resolved[i]);
        d->mirror_file = targets[i];
        d->format = xstrdup("raw");   /* the export serves the guest's data */
        d->mode = xstrdup("existing");
        d->sync = xstrdup("full");
        d->speed = qapi_get_int(a, "speed", 0);
        if (qapi_get_bool(a, "synchronous-writes", false)) {
            d->copy_mode = xstrdup("write-blocking");
        }
    }
    op_set_state(op, OP_RUNNING);
    if (destination) {
        m->start_dest = !qapi_get_bool(a, "paused", false);
        m->nbd_host = nbd_host;
        m->nbd_port = xstrdup(qapi_get_str(a, "nbd-port", "10809"));
        m->destination = xstrdup(destination);
        m->dest = mig_dest_open(call->env->base, &dest_addr, destination, op,
                                destination_opened);
        address_clear(&dest_addr);
    } else {
        step_start_mirrors(op, copies_started);
    }
    return CMD_RETURN_WAIT;
}

void migrate_cancel(struct op *op)
{
    op->busy_with = "cancel";
    op->check = NULL;
    migrate_undo(op, "cancelled on request");
}

static const struct location locations[] = {
    /* judged as QEMU's migrate uri is (exec: runs a program) */
    { "uri", LOCATION_URI },
    { "destination", LOCATION_URI },
    { "tls.source-creds-dir", LOCATION_FILE },
    { "disks.*.target", LOCATION_FILE },
    { "disks.*.target.server", LOCATION_SOCKET },
    { NULL, LOCATION_FILE },
};

const struct cmd_entry cmd_migrate_entry = {
    .name = "qmproxy-migrate",
    .args = args,
    .exec = exec,
    .settle_chain = true,
    .locations = locations,
};
