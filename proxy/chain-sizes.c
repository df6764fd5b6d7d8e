/*
 * chain-sizes: the freshness check's second half.  The block graph shows
 * no sizes, so the sizes the model's image files state themselves (what
 * block_resize rewrites) are hashed at each reconciliation and compared at
 * each check.  The reads go to a thread (image-size-worker): an image on
 * a network file system may keep an open() waiting for minutes, and the
 * loop serves every client.  A check whose reads are not back within the
 * bound is answered "unknown", and the caller answers from the graph.
 */
#include "chain-model.h"

#include <stdlib.h>
#include <string.h>

#include "image-size.h"
#include "image-size-worker.h"
#include "log.h"
#include "util.h"

/* How long a check waits for the sizes before answering without them:
 * local headers in the page cache take well under a millisecond each. */
#define SIZE_READ_BOUND_MS 2000

struct sizes_wait {
    struct chain *chain;
    unsigned generation, epoch;
    void (*done)(void *opaque, enum ch_sizes_verdict v);
    void *opaque;
};

static struct size_worker *worker(struct chain *c)
{
    if (!c->sizes_worker && c->base) {
        c->sizes_worker = size_worker_new(c->base, image_file_size,
                                          SIZE_READ_BOUND_MS);
    }
    return c->sizes_worker;
}

/* Every layer of every disk, in the model's order. */
static struct image_ref *size_refs(const struct chain *c, int *n)
{
    struct image_ref *refs = NULL;

    *n = 0;
    for (int i = 0; i < c->ndisks; i++) {
        const struct disk *d = c->disks[i];
        refs = xrealloc(refs, sizeof(*refs) * (size_t)(*n + d->nlayers + 1));
        for (int k = 0; k < d->nlayers; k++) {
            refs[(*n)++] = (struct image_ref){ d->layers[k].file,
                                               d->layers[k].format };
        }
    }
    return refs;
}

/* FNV-1a over each image's name, format and size: the same files with the
 * same sizes, the same print (a list of other files never matches). */
static uint64_t sizes_print(const struct image_ref *refs,
                            const int64_t *sizes, int n)
{
    uint64_t h = FNV1A_START;

    for (int i = 0; i < n; i++) {
        const char *path = refs[i].path ? refs[i].path : "";
        const char *format = refs[i].format ? refs[i].format : "";
        uint64_t size = (uint64_t)sizes[i];
        unsigned char le[8];

        /* with their NULs, so that names cannot run into each other */
        h = fnv1a(h, path, strlen(path) + 1);
        h = fnv1a(h, format, strlen(format) + 1);
        for (int b = 0; b < 8; b++) {
            le[b] = (unsigned char)(size >> (8 * b));
        }
        h = fnv1a(h, le, sizeof(le));
    }
    return h;
}

static void read_sizes(struct chain *c, bool bounded,
                       size_worker_done_fn *done, struct sizes_wait *w)
{
    int n;
    struct image_ref *refs = size_refs(c, &n);

    size_worker_read(worker(c), refs, n, bounded, done, w);
    free(refs);
}

static void on_recorded(void *opaque, enum size_answer answer,
                        const struct image_ref *refs, const int64_t *sizes,
                        int n)
{
    struct sizes_wait *w = opaque;
    struct chain *c = w->chain;

    if (answer == SIZES_READ && w->generation == c->generation
        && w->epoch == c->sizes_epoch) {
        c->sizes_print = sizes_print(refs, sizes, n);
        c->sizes_known = true;
    }
    free(w);
}

void ch_sizes_record(struct chain *c)
{
    struct sizes_wait *w;

    c->sizes_known = false;
    c->sizes_epoch++;  /* a read for an earlier reconciliation is void */
    if (!worker(c)) {
        return;
    }
    w = xcalloc(1, sizeof(*w));
    *w = (struct sizes_wait){ c, c->generation, c->sizes_epoch, NULL, NULL };
    /* unbounded: however late, it is what the next checks compare with */
    read_sizes(c, false, on_recorded, w);
}

static void on_compared(void *opaque, enum size_answer answer,
                        const struct image_ref *refs, const int64_t *sizes,
                        int n)
{
    struct sizes_wait *w = opaque;
    struct chain *c = w->chain;
    enum ch_sizes_verdict v;

    if (answer == SIZES_DROPPED) {
        v = CH_SIZES_DROPPED;
    } else if (answer == SIZES_LATE) {
        v = CH_SIZES_UNKNOWN;
        if (!c->sizes_late_logged) {
            log_warn("the image files' sizes were not read within %d ms (a "
                     "file system not answering?): the chains are checked "
                     "with QEMU's block graph alone, which shows no sizes, "
                     "until they are", SIZE_READ_BOUND_MS);
        } else {
            log_debug("image sizes still not read: checked by the graph "
                      "alone");
        }
        c->sizes_late_logged = true;
    } else {
        if (c->sizes_late_logged) {
            log_info("the image files' sizes are read in time again");
        }
        c->sizes_late_logged = false;
        if (!c->sizes_known) {
            log_debug("no image sizes of the last reconciliation to compare "
                      "with: checked by the graph alone");
            v = CH_SIZES_UNKNOWN;
        } else {
            v = sizes_print(refs, sizes, n) == c->sizes_print
                ? CH_SIZES_SAME : CH_SIZES_CHANGED;
        }
    }
    w->done(w->opaque, v);
    free(w);
}

void ch_sizes_compare(struct chain *c,
                      void (*done)(void *opaque, enum ch_sizes_verdict v),
                      void *opaque)
{
    struct sizes_wait *w;

    if (!worker(c)) {
        done(opaque, CH_SIZES_UNKNOWN);  /* no loop to answer on */
        return;
    }
    w = xcalloc(1, sizeof(*w));
    *w = (struct sizes_wait){ c, c->generation, c->sizes_epoch, done, opaque };
    read_sizes(c, true, on_compared, w);
}

bool chain_sizes_idle(const struct chain *c)
{
    return size_worker_idle(c->sizes_worker);
}

void ch_sizes_stop(struct chain *c)
{
    size_worker_free(c->sizes_worker);  /* answers the waits DROPPED */
    c->sizes_worker = NULL;
}
