/*
 * chain-job-predict: what a block job's end means for the one disk it ran
 * on, predicted from what passed through (the verbs asked of it, its
 * events): a copy pivoted or dropped, layers folded by a commit or pulled
 * by a stream, a backup's filter gone.  chain-observe.c reads the events
 * and calls here; chain-lazy.c keeps the prediction until it is checked.
 */
#include <stdlib.h>
#include <string.h>

#include "chain-model.h"

/* The filter QEMU puts on a disk for a backup's life (copy-before-write,
 * since QEMU 6.2: 7.2 and 10.0 alike), on the active layer, named by QEMU
 * (the prediction cannot know its node-name). */
static const char backup_filter[] = "copy-before-write";

void ch_backup_filter(struct chain *c, const struct job *j, bool on)
{
    struct disk *d = ch_disk_by_name(c, j->disk);
    int k = 0;

    if (!d || !same(j->type, "backup")) {
        return;
    }
    if (on) {
        d->filters = xrealloc(d->filters, sizeof(*d->filters)
                              * (size_t)(d->nfilters + 1));
        d->filters[d->nfilters++] = (struct filter){
            .driver = xstrdup(backup_filter), .node_name = NULL, .above = 0,
        };
        return;
    }
    for (int i = 0; i < d->nfilters; i++) {
        if (same(d->filters[i].driver, backup_filter)) {
            free(d->filters[i].driver);
            free(d->filters[i].node_name);
        } else {
            d->filters[k++] = d->filters[i];
        }
    }
    d->nfilters = k;
}

/* Layers [from, to) of d leave the chain (folded into another). */
static void drop_layers(struct disk *d, int from, int to)
{
    for (int i = from; i < to; i++) {
        ch_layer_clear(&d->layers[i]);
    }
    memmove(d->layers + from, d->layers + to, sizeof(*d->layers)
            * (size_t)(d->nlayers - to));
    d->nlayers -= to - from;
}

/* A job finished without error: predict the chain QEMU now has. */
void ch_job_completed(struct chain *c, struct job *j)
{
    struct disk *d = ch_disk_by_name(c, j->disk);
    int bi, ti;

    if (!d) {
        return;
    }
    if (same(j->type, "mirror") && j->pivot_requested && !j->target_file) {
        /* a job found after a restart whose target nobody told us: no
         * guess; QEMU's answer, when the disk is checked, says */
        d->uncertain = true;
    } else if (same(j->type, "mirror") && j->pivot_requested) {
        /* the copy is the disk now: its backing is the old backing for a
         * top-only copy QEMU created, nothing for a full one, and whatever
         * the image says for an existing one */
        bool top_only = same(j->sync, "top");
        bool created = same(j->mode, "absolute-paths");
        int keep_from = top_only && created ? 1 : d->nlayers;
        struct layer new_top = {
            .file = dup_or_null(j->target_file),
            .format = dup_or_null(j->target_format),
            .virtual_size = d->nlayers ? d->layers[0].virtual_size : -1,
        };
        ch_keep_layers(d, keep_from, d->nlayers);
        d->layers = xrealloc(d->layers, sizeof(*d->layers)
                             * (size_t)(d->nlayers + 1));
        memmove(d->layers + 1, d->layers, sizeof(*d->layers)
                * (size_t)d->nlayers);
        d->layers[0] = new_top;
        d->nlayers++;
        /* certain only for a copy QEMU created for sync top or full: an
         * existing target (blockdev-mirror's always is) keeps the backing
         * it was opened with, whatever the sync (iotest 155's null-co
         * backing), and sync none's is the old top */
        d->uncertain = !created || same(j->sync, "none");
    } else if (same(j->type, "commit")) {
        bi = ch_layer_index(d, j->base_file);
        ti = j->active_commit ? 0 : ch_layer_index(d, j->top_file);
        if (bi < 0 || ti < 0) {
            d->uncertain = true;
        } else if (j->active_commit && j->pivot_requested) {
            ch_keep_layers(d, bi, d->nlayers);
            d->layers[0].read_only = false;
        } else if (!j->active_commit) {
            /* layers top..base-1 are folded into base */
            drop_layers(d, ti, bi);
        }
    } else if (same(j->type, "stream")) {
        /* the layers between the one streamed into and the base are
         * pulled into it */
        ti = j->top_file ? ch_layer_index(d, j->top_file) : 0;
        bi = j->base_file ? ch_layer_index(d, j->base_file) : d->nlayers;
        if (j->base_unknown || ti < 0 || bi < 0) {
            d->uncertain = true;
        } else if (bi > ti + 1) {
            drop_layers(d, ti + 1, bi);
        }
    }
}
