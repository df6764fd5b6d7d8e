/*
 * migrate-resume: a qmproxy-migrate after a restart of the source's proxy
 * (--state).  What the migration needs beyond its disks is saved with it
 * (migration_save); on the way back the proxy asks QEMU where the
 * migration and the copies are, and carries on from there where that is
 * safe, else undoes it while the source still can be given the VM back.
 */
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "jsonobj.h"
#include "log.h"
#include "migrate.h"
#include "migrate-internal.h"
#include "op.h"
#include "qmp.h"
#include "util.h"

/*
 * What a restarted proxy does, by what QEMU's migration is now
 * (query-migrate), whether every copy still runs, and the state it saved.
 * The events of the time it was away are lost, and the state it saved may
 * trail what it did last (it is written after the step that changed it),
 * so QEMU's answers are what counts: a migration QEMU runs with our
 * copies ready is ours.  First match wins; none: undone.
 */
enum resume_action {
    RESUME_UNDO,          /* cancel the migration and the copies */
    RESUME_WAIT_COPIES,   /* no migration in QEMU yet: wait for the copies
                           * to be ready, then migrate */
    RESUME_FOLLOW,        /* QEMU migrates the RAM: follow its events */
    RESUME_SWITCH_OVER,   /* the source stopped at pre-switchover, every
                           * copy there: complete them, migrate-continue */
    RESUME_FOLLOW_SWITCH, /* migrate-continue was sent (so the copies were
                           * complete): the device state goes */
    RESUME_FINISH,        /* completed in QEMU (after the copies were):
                           * start the destination and end the source */
};

#define SAVED(s) (1u << (s))
#define BEFORE_SWITCH (SAVED(OP_MIRRORING) | SAVED(OP_READY) \
                       | SAVED(OP_MIGRATING) | SAVED(OP_SWITCHING))

static const struct resume_rule {
    unsigned saved;           /* the states saved it applies to */
    const char *status;       /* QEMU's migration status; NULL: any */
    bool needs_copies;        /* only when every copy is still there */
    enum resume_action action;
    const char *why;          /* for RESUME_UNDO */
} resume_rules[] = {
    /* the destination was being prepared and the copies started: what
     * of it was made is not known */
    { SAVED(OP_RUNNING), NULL, false, RESUME_UNDO,
      "it was still preparing the destination and starting the copies" },
    { SAVED(OP_MIRRORING) | SAVED(OP_READY) | SAVED(OP_MIGRATING), "none",
      true, RESUME_WAIT_COPIES, NULL },
    { BEFORE_SWITCH, "setup", true, RESUME_FOLLOW, NULL },
    { BEFORE_SWITCH, "active", true, RESUME_FOLLOW, NULL },
    { BEFORE_SWITCH, "pre-switchover", true, RESUME_SWITCH_OVER, NULL },
    /* only qmproxy sends migrate-continue, once the copies completed */
    { BEFORE_SWITCH, "device", false, RESUME_FOLLOW_SWITCH, NULL },
    { BEFORE_SWITCH, "completed", false, RESUME_FINISH, NULL },
    /* stopped at the switch-over, a copy gone: it completed or it failed
     * while the proxy was away, which cannot be told any more; the
     * source, which has every write, keeps the VM */
    { BEFORE_SWITCH, "pre-switchover", false, RESUME_UNDO,
      "a copy ended while it was away at the switch-over (completed or "
      "failed: it cannot tell which), so the source keeps the VM" },
    { BEFORE_SWITCH, "none", false, RESUME_UNDO,
      "a copy ended while it was away" },
    { BEFORE_SWITCH, NULL, false, RESUME_UNDO,
      "QEMU's migration or a copy ended while it was away" },
};

static const struct resume_rule *resume_rule(enum op_state saved,
                                             const char *status,
                                             bool copies)
{
    for (size_t k = 0; k < sizeof(resume_rules) / sizeof(*resume_rules);
         k++) {
        const struct resume_rule *r = &resume_rules[k];
        if ((r->saved & SAVED(saved))
            && (!r->status || !strcmp(r->status, status))
            && (copies || !r->needs_copies)) {
            return r;
        }
    }
    return NULL;
}

/* Forward along a migration's states to s (a saved state may trail). */
static void move_on_to(struct op *op, enum op_state s)
{
    static const enum op_state path[] = { OP_MIRRORING, OP_READY,
                                          OP_MIGRATING, OP_SWITCHING };
    bool passed = false;

    for (size_t k = 0; k < sizeof(path) / sizeof(*path)
         && op->state != s; k++) {
        if (passed) {
            op_set_state(op, path[k]);
        }
        passed = passed || path[k] == op->state;
    }
}

static bool every_copy_there(struct op *op)
{
    for (int i = 0; i < op->ndisks; i++) {
        if (op->disks[i].job && !op->disks[i].job_status) {
            return false;
        }
    }
    return true;
}

static void resume_undo(struct op *op, const char *why)
{
    char *msg = xasprintf("qmproxy restarted while the migration was %s: "
                          "%s", op_state_name(op->state), why);
    migrate_undo(op, msg);
    free(msg);
}

static void migration_status_read(struct op *op, int i, bool ok,
                                  json_object *ret, const char *error)
{
    struct migration *m = mig_of(op);
    const char *status = (ok ? jobj_str(ret, "status") : NULL);
    bool copies = every_copy_there(op);
    const struct resume_rule *r;
    (void)i;
    if (!ok) {
        char *why = xasprintf("query-migrate failed: %s", error);
        resume_undo(op, why);
        free(why);
        return;
    }
    status = status ? status : "none";
    if (m->source_running && (!strcmp(status, "completed")
                              || !strcmp(status, "failed")
                              || !strcmp(status, "cancelled"))) {
        /* a migration that ended with the source running is not one
         * under way: an earlier one's (a VM that came here by migration
         * says completed), or ours failed and QEMU resumed the source;
         * either way no migration of this operation goes on */
        status = "none";
    }
    str_set(&m->status, status);
    r = resume_rule(op->state, status, copies);
    log_info("migration %s after a restart: was %s, QEMU's migration %s, "
             "copies %s: %s", op->name, op_state_name(op->state), status,
             copies ? "all there" : "not all there",
             r ? (r->action == RESUME_UNDO ? "undone" : "carried on")
               : "undone");
    if (!r || r->action == RESUME_UNDO) {
        char *why = r ? xstrdup(r->why)
            : xasprintf("QEMU's migration is %s", status);
        resume_undo(op, why);
        free(why);
        return;
    }
    switch (r->action) {
    case RESUME_WAIT_COPIES:
        if (op->state == OP_MIGRATING) {
            /* saved just before migrate was sent, which QEMU never got:
             * back to where the copies are waited for */
            op->state = OP_READY;
        }
        op_set_state(op, OP_MIRRORING);
        step_wait_ready(op, migrate_copies_ready);
        break;
    case RESUME_FOLLOW:
        move_on_to(op, OP_MIGRATING);
        op->check = migrate_watch_copies;
        op->vm_event = migrate_on_vm_event;
        break;
    case RESUME_SWITCH_OVER:
        move_on_to(op, OP_SWITCHING);
        op->vm_event = migrate_on_vm_event;
        step_complete_copies(op, migrate_copies_completed);
        break;
    case RESUME_FOLLOW_SWITCH:
        move_on_to(op, OP_SWITCHING);
        op->vm_event = migrate_on_vm_event;
        break;
    case RESUME_FINISH:
        move_on_to(op, OP_SWITCHING);
        migrate_completed(op);
        break;
    case RESUME_UNDO:
        break;
    }
}

static void run_state_read(struct op *op, int i, bool ok, json_object *ret,
                           const char *error)
{
    const char *st = ok ? jobj_str(ret, "status") : NULL;
    (void)i;
    (void)error;
    mig_of(op)->source_running = st && !strcmp(st, "running");
}

/* The source's run state, then its migration (answered in that order). */
static void ask_qemu(struct op *op)
{
    op_qmp(op, qmp_command("query-status", NULL), run_state_read, -1);
    op_qmp(op, qmp_command("query-migrate", NULL), migration_status_read,
           -1);
}

/* The destination's monitor did not answer again: the source is undone
 * while it still can be given the VM back; once the device state has
 * gone (migrate-continue sent) both sides are left as they are. */
static void status_without_destination(struct op *op, int i, bool ok,
                                       json_object *ret, const char *error)
{
    const char *status = ok ? jobj_str(ret, "status") : NULL;
    (void)i;
    (void)error;
    if (status && (!strcmp(status, "device")
                   || (!strcmp(status, "completed")
                       && !mig_of(op)->source_running))) {
        op_fail(op, "%s; QEMU's migration is %s, so the VM may be on the "
                "destination already: the source is left as it is (see "
                "query-migrate on both sides)", op->step_error, status);
        return;
    }
    migrate_undo(op, op->step_error);
}

static void destination_reopened(struct op *op, bool ok, const char *why)
{
    struct migration *m = mig_of(op);

    if (!ok) {
        mig_dest_close(m->dest);
        m->dest = NULL;
        str_setf(&op->step_error, "qmproxy restarted while the migration "
                 "was %s and %s", op_state_name(op->state), why);
        op_qmp(op, qmp_command("query-status", NULL), run_state_read, -1);
        op_qmp(op, qmp_command("query-migrate", NULL),
               status_without_destination, -1);
        return;
    }
    mig_dest_assume_prepared(m->dest, m->nbd_host, m->nbd_port, m->uri);
    ask_qemu(op);
}

void migrate_resume(struct op *op, struct event_base *base)
{
    json_object *saved = op->loaded_priv;
    struct migration *m;
    struct address addr = { 0 };
    char *err;

    if (!saved || !jobj_str(saved, "uri")) {
        /* saved by a proxy that kept no migration state: undone */
        op->priv = xcalloc(1, sizeof(struct migration));
        op->priv_free = migration_free;
        resume_undo(op, "its state file does not say where the migration "
                    "goes");
        return;
    }
    m = migration_load(saved);
    op->priv = m;
    op->priv_free = migration_free;
    op->priv_save = migration_save;
    json_object_put(op->loaded_priv);
    op->loaded_priv = NULL;
    if (!m->destination) {
        ask_qemu(op);
        return;
    }
    err = address_parse(m->destination, 0, &addr);
    if (err) {
        str_setf(&op->step_error, "qmproxy restarted while the migration "
                 "was %s and cannot read the destination it saved: %s",
                 op_state_name(op->state), err);
        free(err);
        migrate_undo(op, op->step_error);
        return;
    }
    m->dest = mig_dest_open(base, &addr, m->destination, op,
                            destination_reopened);
    if (m->tls_dest_dir) {
        mig_dest_use_tls(m->dest, m->tls_creds, m->tls_dest_dir,
                         m->tls_hostname);
    }
    address_clear(&addr);
}

