/*
 * migrate-internal: what qmproxy-migrate's files share (migrate.c runs a
 * migration, migrate-resume.c carries one on after a restart).
 */
#ifndef QMPROXY_MIGRATE_INTERNAL_H
#define QMPROXY_MIGRATE_INTERNAL_H

#include <stdbool.h>
#include <json-c/json.h>

#include "op.h"

/* What a migration keeps beside its disks. */
struct migration {
    char *uri;
    char *tls_creds;       /* NULL: a plain stream */
    char *tls_hostname;    /* NULL: the host of the uri */
    /* with "tls": the folders of the credentials qmproxy makes on each
     * side, as objects of the id tls_creds; made: the source's exists */
    char *tls_source_dir, *tls_dest_dir;
    bool tls_made;
    bool quit_source;
    char *status;          /* QEMU's last MIGRATION status */
    bool undoing;          /* cancelled or failed: being undone */
    struct mig_dest *dest; /* NULL: the caller prepared the destination */
    char *destination;     /* its monitor's address, as given */
    bool completing;       /* the migration completed: being finished */
    bool source_running;   /* after a restart: the source's run state */
    bool start_dest;       /* cont it once it has the VM */
    bool rollback_ok;      /* how the undo went on the source */
    char *nbd_host, *nbd_port;  /* where the destination serves the disks */
};

static inline struct migration *mig_of(struct op *op)
{
    return op->priv;
}

void migration_free(void *priv);
/* What is saved of it with --state, and read back after a restart. */
json_object *migration_save(const struct op *op);
struct migration *migration_load(json_object *saved);

/* The steps of migrate.c a resumed migration carries on with. */
void migrate_undo(struct op *op, const char *why);
void migrate_copies_ready(struct op *op, bool ok);
void migrate_watch_copies(struct op *op);
void migrate_on_vm_event(struct op *op, const char *name, json_object *data);
void migrate_copies_completed(struct op *op, bool ok);
void migrate_completed(struct op *op);

#endif
