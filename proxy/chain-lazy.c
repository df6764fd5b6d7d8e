/*
 * chain-lazy: a job event's prediction, verified only when someone needs
 * the answer.
 *
 * QMP has no per-disk query-block: asking QEMU after a job event costs a
 * question about the whole VM, whatever the event concerns.  So a job's
 * start and end change the model of the one disk they concern (the
 * prediction of chain-observe.c), that disk is marked "unverified", and
 * nothing is asked because of the event.  The check comes when an answer
 * is needed (chain.c): qmproxy-query-chain and an operation's chain_settle
 * ask QEMU's block graph (or, while a job runs, everything) first, and a
 * command QEMU refuses while a prediction stands asks again; a restart
 * compares the saved model with QEMU's anyway.
 */
#include <stdlib.h>
#include <string.h>

#include "chain-model.h"

bool ch_predicted(struct chain *c, const char *disk)
{
    struct disk *d = ch_disk_by_name(c, disk);

    if (!d) {
        return false;
    }
    d->unverified = true;
    ch_publish_prediction(c, d);
    if (c->hooks->changed) {
        c->hooks->changed(c->opaque);  /* the state file holds it, marked */
    }
    return true;
}

bool ch_unverified(const struct chain *c)
{
    for (int i = 0; i < c->ndisks; i++) {
        if (c->disks[i]->unverified) {
            return true;
        }
    }
    return false;
}

/*
 * The block graph QEMU has now is the one of its last full answer (same
 * fingerprint): QEMU's chains are what that answer said.  A prediction
 * that says the same files (a copy cancelled, a job with nothing to do)
 * is confirmed; one that says otherwise is wrong, and the caller asks
 * QEMU for the truth.
 */
bool ch_predictions_hold(struct chain *c)
{
    bool hold = true;

    for (int i = 0; i < c->ndisks && hold; i++) {
        struct disk *d = c->disks[i];
        char *now;
        if (!d->unverified) {
            continue;
        }
        now = ch_describe_chain(d);
        hold = d->verified_files && !strcmp(now, d->verified_files);
        free(now);
    }
    for (int i = 0; i < c->ndisks && hold; i++) {
        c->disks[i]->unverified = false;
    }
    return hold;
}
