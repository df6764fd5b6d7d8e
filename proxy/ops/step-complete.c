/*
 * step-complete: end every ready copy without pivoting, the disk staying
 * where it runs and the copy holding its data as of now (a migration's
 * switch-over, the source stopped).  QEMU's way: block-job-cancel, not
 * forced, of a ready mirror completes it; the proxy's jobs then wait in
 * PENDING for job-finalize.
 */
#include "op.h"

#include <stdlib.h>
#include <string.h>

#include "op-internal.h"
#include "qmp.h"
#include "util.h"

static void complete_check(struct op *op);

static void complete_cmd_done(struct op *op, int i, bool ok,
                              json_object *ret, const char *error)
{
    struct op_disk *d = &op->disks[i];
    (void)ret;
    if (!ok) {
        d->failed = true;
        str_set(&d->job_error, error);
    }
    complete_check(op);
}

static void complete_check(struct op *op)
{
    bool all = true;

    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->job) {
            continue;
        }
        if (d->failed) {
            op_note_copy_failed(op, d, "did not complete",
                                "QEMU gave no reason");
            op->step_failed = true;
        } else if (d->pending && !d->done && d->own_job) {
            d->own_job = false;   /* finalized once */
            op_qmp(op, qmp_command("job-finalize", op_job_args("id", d->job)),
                   complete_cmd_done, i);
        }
        if (!d->done && !d->failed) {
            all = false;
        }
    }
    if (op->outstanding || !(all || op->step_failed)) {
        return;
    }
    op->check = NULL;
    for (int i = 0; !op->step_failed && i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        d->own_job = false;
        d->state = DISK_COPY_DROPPED;
        str_setf(&d->note, "complete at %s", d->mirror_file);
    }
    op->next(op, !op->step_failed);
}

void step_complete_copies(struct op *op, void (*next)(struct op *, bool))
{
    op->next = next;
    op->check = complete_check;
    op->step_failed = false;
    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        if (!d->job) {
            continue;
        }
        /* completed already, waiting to be finalized (a restarted proxy
         * finds it so): cancelling it now would abort it */
        bool pending = d->job_status && !strcmp(d->job_status, "pending");
        op_reset_job_facts(d);
        d->own_job = true;
        if (pending) {
            d->pending = true;
            continue;
        }
        /* not forced: a ready mirror completes instead of being dropped */
        op_qmp(op, qmp_command("block-job-cancel",
                               op_job_args("device", d->job)),
               complete_cmd_done, i);
    }
    if (!op->outstanding) {
        complete_check(op);
    }
}
