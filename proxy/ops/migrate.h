/*
 * migrate: what qmproxy-migrate-cancel needs of a migration under way.
 */
#ifndef QMPROXY_MIGRATE_H
#define QMPROXY_MIGRATE_H

struct op;

/* Cancel the migration and its copies; the source keeps running.  The
 * operation then ends aborted (or failed, saying what was left). */
void migrate_cancel(struct op *op);

#endif
