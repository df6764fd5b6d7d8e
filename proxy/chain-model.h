/*
 * chain-model: what the chain modules share and nothing else includes: the
 * model's structures and the helpers chain-model.c (the model), chain.c
 * (asking QEMU), chain-reconcile.c (QEMU's answers made into the model),
 * chain-observe.c (what passes through) and chain-export.c (JSON, XML,
 * the saved form) all use.
 */
#ifndef QMPROXY_CHAIN_MODEL_H
#define QMPROXY_CHAIN_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <json-c/json.h>

#include "chain.h"
#include "jsonobj.h"
#include "util.h"

struct event_base;
struct size_worker;

struct layer {
    char *file;
    char *format;
    char *node_name;      /* NULL: not known yet */
    bool read_only;
    int64_t virtual_size; /* -1: not known */
};

/* A filter node on a disk's chain (copy-before-write of a backup, throttle,
 * the mirror's own...): not an image of the chain, an attribute of the disk. */
struct filter {
    char *driver;
    char *node_name;      /* NULL: not known (QEMU names only the top) */
    int above;            /* the index of the layer it filters */
};

struct job {
    char *id;
    char *type;           /* mirror, commit, stream, backup, ... */
    char *disk;           /* the disk it runs on; NULL if unknown */
    char *status;
    int64_t offset, len;
    int64_t speed;        /* bytes/s, QEMU's limit (0: none) */
    bool ready;
    char *error;          /* the last error QEMU reported */
    bool active_commit;
    char *target_file;    /* mirror: the copy; active commit: the base */
    char *target_format;
    char *target_node;    /* blockdev-mirror: the node-name of the copy */
    char *mode, *sync;
    char *base_file;      /* commit/stream: down to here */
    char *top_file;       /* intermediate commit: from here; stream: into
                           * here (NULL: the active layer) */
    bool base_unknown;    /* a base named that the model could not find */
    /* QEMU reported the job's end before its reply to the command that
     * started it (a commit with nothing to do): applied once the job's
     * facts are in */
    bool ended_early, completed_early;
    bool pivot_requested, cancel_requested;
    bool manual_finalize; /* started with auto-finalize false */
    bool manual_dismiss;  /* started with auto-dismiss false */
    unsigned touched;     /* the chain's event count when last changed */
    unsigned started_by;  /* client number; 0: the proxy itself */
    char *started_at;
    char *operation;      /* the proxy operation it belongs to */
};

struct disk {
    char *name;
    char *device;
    char *qdev;
    struct layer *layers;
    int nlayers;
    struct filter *filters;
    int nfilters;
    bool uncertain;       /* a prediction with parts QEMU must fill in */
    /* a job event's prediction, not yet checked with QEMU (chain-lazy.c):
     * checked when someone needs the answer, not because of the event */
    bool unverified;
    char *verified_files; /* the chain's files in QEMU's last answer */
    char *published;      /* the chain as last announced */
    char *last_top;       /* the active layer in QEMU's last answer */
};

struct waiter {
    void (*fn)(void *opaque);
    void *opaque;
};

struct chain {
    struct upstream *up;
    const struct chain_hooks *hooks;
    void *opaque;
    struct disk **disks;
    int ndisks;
    struct job **jobs;
    int njobs;
    json_object *blockdev_nodes;   /* node-name -> {file, format} seen added */
    json_object *early;            /* job id -> facts from events that came
                                    * before the reply that started the job */

    /* reconciliation */
    bool reconciling, dirty, lost;
    bool nodes_asked;              /* this reconciliation's second step */
    int commands_in_flight;        /* watched commands QEMU has not answered */
    bool stranger_job;             /* an event named a job the model does
                                    * not know, while a command was out */
    unsigned generation;
    int pending;
    json_object *q_block, *q_nodes, *q_jobs, *q_graph;
    /* Observations are numbered; QEMU's answers to the reconciliation
     * come at different points of the stream, so what was observed after
     * an answer arrived is newer than the answer. */
    unsigned seq, seq_at_block, seq_at_jobs;
    struct waiter *waiters;        /* for the end of the next reconcile */
    int nwaiters;
    struct waiter *next_waiters;   /* asked for while one was running */
    int nnext_waiters;
    struct waiter *progress_waiters;  /* for chain_refresh_progress */
    int nprogress_waiters;
    bool seeded;
    /* QEMU's block graph (x-debug-query-block-graph) as the model last
     * saw it, hashed: the freshness check of chain_refresh() */
    uint64_t graph_print;
    bool graph_known;
    /* the image files' own sizes at the last reconciliation, hashed: what
     * the graph does not show (chain-sizes.c); read off the loop, so known
     * only once the read is back */
    uint64_t sizes_print;
    bool sizes_known;
    unsigned sizes_epoch;          /* the reconciliation a read records */
    bool sizes_late_logged;        /* "not read in time" said once */
    struct event_base *base;       /* for the size reader's answers */
    struct size_worker *sizes_worker;  /* started at the first read */
    json_object *loaded;           /* a saved model to compare, first time */
};

static inline char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static inline bool same(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* chain-model.c: the model itself */

/*
 * QEMU names an image it opened with options by its options
 * ("json:{...,"file": {"driver": "file", "filename": "/x"}}"); the file
 * a person means is the innermost filename.
 */
char *ch_plain_filename(const char *name);
/* Is this driver a filter (QEMU's is_filter drivers), not an image format? */
bool ch_is_filter_driver(const char *driver);
void ch_layer_clear(struct layer *l);
void ch_disk_free(struct disk *d);
void ch_job_free(struct job *j);
struct disk *ch_disk_by_name(const struct chain *c, const char *name);
struct disk *ch_find_disk(const struct chain *c, const char *any);
struct job *ch_find_job(const struct chain *c, const char *id);
struct job *ch_disk_job(const struct chain *c, const struct disk *d);
void ch_remove_job(struct chain *c, struct job *j);
/* What QEMU's query-block-jobs says of j (one element of its answer). */
void ch_job_progress(struct job *j, json_object *q);
struct job *ch_add_job(struct chain *c, const char *id);
int ch_layer_index(const struct disk *d, const char *file_or_node);
void ch_keep_layers(struct disk *d, int from, int to);
void ch_insert_top(struct disk *d, const char *file, const char *format,
                   const char *node);
/* The files of a disk's chain, in words ("top <- ... <- base"). */
char *ch_describe_chain(const struct disk *d);
/* chain-sizes.c: the sizes the model's image files give themselves
 * (image_file_size), hashed with their names, read off the loop: a
 * block_resize made through another monitor changes them. */

enum ch_sizes_verdict {
    CH_SIZES_SAME,      /* as at the last reconciliation */
    CH_SIZES_CHANGED,
    CH_SIZES_UNKNOWN,   /* not read in time, or nothing to compare with */
    CH_SIZES_DROPPED,   /* the chain is being freed: answer nobody */
};
/* The model was just reconciled with QEMU: read its files' sizes as the
 * ones to compare with (known once the read is back). */
void ch_sizes_record(struct chain *c);
/* Read them again and say how they compare, on the loop (done may be
 * called before this returns when there is nothing to read with). */
void ch_sizes_compare(struct chain *c,
                      void (*done)(void *opaque, enum ch_sizes_verdict v),
                      void *opaque);
/* Stop the reader (chain_free): compares not back get DROPPED. */
void ch_sizes_stop(struct chain *c);

/* chain.c: asking QEMU */

/* Ask QEMU for the truth soon (coalesced). */
void ch_schedule(struct chain *c);
/* A change the model does not predict (HMP, a reopen, another monitor):
 * QEMU's next answer, whatever it is, completes the model without a
 * warning. */
void ch_nothing_predicted(struct chain *c);

/* chain-job-predict.c: what a job's end means for its disk */

/* A job finished without error: predict the chain QEMU now has. */
void ch_job_completed(struct chain *c, struct job *j);
/* A backup's copy-before-write filter on its disk (on), or gone. */
void ch_backup_filter(struct chain *c, const struct job *j, bool on);

/* chain-lazy.c: a job event's prediction, verified when needed */

/* The prediction of a job event (or a job's start) on this disk is the
 * model's until someone needs the answer: announced and saved now, asked
 * of QEMU later.  False for a disk the model does not know (the caller
 * asks QEMU now: there is nothing to predict on). */
bool ch_predicted(struct chain *c, const char *disk);
/* Does some disk hold a prediction QEMU has not confirmed? */
bool ch_unverified(const struct chain *c);
/* QEMU's block graph is the one of the last answer: do the predictions
 * say the same chains?  Then they are confirmed (true). */
bool ch_predictions_hold(struct chain *c);

/* chain-reconcile.c: announcing a disk's chain */

/* Announce d's chain if it differs from what was last announced; a
 * prediction (predicted) says so in the event. */
void ch_publish_prediction(struct chain *c, struct disk *d);

/* chain-export.c: the model as JSON */
json_object *ch_layers_json(const struct disk *d);
bool ch_job_is_mirror(const struct job *j);
const char *ch_mirror_ready(const struct job *j);
json_object *ch_mirror_json(const struct job *j);
json_object *ch_job_json(const struct job *j);
json_object *ch_disk_json(const struct chain *c, const struct disk *d);
char *ch_publishable(const struct chain *c, const struct disk *d);

#endif
