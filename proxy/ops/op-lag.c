/*
 * op-lag: how far a ready copy trails its disk.  A mirror that is ready
 * keeps copying what the guest writes; QEMU's job progress says how much
 * is left (len - offset).  For a replica on another host that is the
 * data a failure there would lose, so clients see it: lag-bytes, and
 * lag-seconds, the time since the copy was last seen with nothing left
 * (seen: at READY, and whenever qmproxy-query-operations asks QEMU).
 */
#include "op.h"

#include <string.h>

#include "op-internal.h"
#include "chain.h"
#include "util.h"

void op_disk_in_sync(struct op_disk *d)
{
    d->lag_known = true;
    d->lag_bytes = 0;
    d->in_sync_at_us = now_monotonic_us();
}

bool op_disk_lag_seconds(const struct op_disk *d, double *seconds)
{
    if (!d->lag_known || (d->lag_bytes && !d->in_sync_at_us)) {
        return false;
    }
    *seconds = d->lag_bytes == 0
        ? 0 : (double)(now_monotonic_us() - d->in_sync_at_us) / 1e6;
    return true;
}

void ops_each_lag(void (*fn)(void *opaque, const char *operation,
                             const char *disk, int64_t bytes,
                             const double *seconds),
                  void *opaque)
{
    for (int i = 0; i < op_reg.nops; i++) {
        const struct op *op = op_reg.ops[i];
        for (int k = 0; k < op->ndisks; k++) {
            const struct op_disk *d = &op->disks[k];
            double seconds;
            if (d->lag_known) {
                fn(opaque, op->name, d->disk, d->lag_bytes,
                   op_disk_lag_seconds(d, &seconds) ? &seconds : NULL);
            }
        }
    }
}

void ops_observe_lag(void)
{
    for (int i = 0; i < op_reg.nops; i++) {
        struct op *op = op_reg.ops[i];
        for (int k = 0; k < op->ndisks; k++) {
            struct op_disk *d = &op->disks[k];
            const char *job = chain_job_id(op_chain(), d->disk);
            int64_t offset, len;
            if (!d->own_job || !d->ready || d->done || !job || !d->job
                || strcmp(job, d->job)
                || !chain_job_progress(op_chain(), d->disk, &offset, &len)) {
                d->lag_known = false;
                continue;
            }
            d->offset = offset;
            d->len = len;
            if (len <= offset) {
                op_disk_in_sync(d);
            } else {
                d->lag_known = true;
                d->lag_bytes = len - offset;
            }
        }
    }
}
