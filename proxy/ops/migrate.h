/*
 * migrate: what qmproxy-migrate-cancel needs of a migration under way.
 */
#ifndef QMPROXY_MIGRATE_H
#define QMPROXY_MIGRATE_H

#include <stdbool.h>

struct address;
struct event_base;
struct mig_dest;
struct op;

/* Cancel the migration and its copies; the source keeps running.  The
 * operation then ends aborted (or failed, saying what was left). */
void migrate_cancel(struct op *op);

/* After a restart of the proxy (--state): carry the migration on from
 * where QEMU is now, where that is safe, else undo it (migrate.c).  Each
 * disk's job_status is its copy's status in QEMU now (NULL: gone). */
void migrate_resume(struct op *op, struct event_base *base);

/* ---- the destination through its monitor (migrate-dest.c) ----
 * Each ends by calling its function with the operation, whether it went
 * well and, if not, why. */

/* Connect; opened() once negotiated, or when it cannot be reached. */
struct mig_dest *mig_dest_open(struct event_base *base,
                               const struct address *addr,
                               const char *display, struct op *op,
                               void (*opened)(struct op *, bool,
                                              const char *));
/* TLS for what mig_dest_prepare() makes: a tls-creds-x509 object id made
 * there from dir (endpoint server, verify-peer) for the NBD server and the
 * incoming migration; each export's target then names the source's object
 * of the same id (and hostname, when not NULL, as the name to check the
 * destination's certificate against).  Removed again by mig_dest_finish(). */
void mig_dest_use_tls(struct mig_dest *dest, const char *id, const char *dir,
                      const char *hostname);
/* An NBD server on host:port, a writable export of each of op's disks
 * (named as on the source; sets each disk's mirror_file to it), and
 * migrate-incoming on uri. */
void mig_dest_prepare(struct mig_dest *dest, const char *host,
                      const char *port, const char *uri,
                      void (*done)(struct op *, bool, const char *));
/* After a restart: what mig_dest_prepare() made before (an NBD server on
 * host:port, every export, TLS as set) is taken to be there. */
void mig_dest_assume_prepared(struct mig_dest *dest, const char *host,
                              const char *port, const char *uri);
/* After the switch-over: cont (when start and it is not running), the
 * exports and the NBD server removed. */
void mig_dest_finish(struct mig_dest *dest, bool start,
                     void (*done)(struct op *, bool, const char *));
/* After a failure: the exports and the NBD server removed, its QEMU told
 * to quit. */
void mig_dest_abandon(struct mig_dest *dest,
                      void (*done)(struct op *, bool, const char *));
/* Disconnect (once the current callbacks have returned). */
void mig_dest_close(struct mig_dest *dest);

#endif
