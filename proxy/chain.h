/*
 * chain: the proxy's model of every disk's backing chain, with the mirror
 * or copy target and the block job running on it.  It is seeded from
 * QEMU's query-block (and query-named-block-nodes, for the node-names of
 * backing layers), kept up to date from what passes through (snapshots,
 * job starts, job events, pivots) whoever sent it, and reconciled with a
 * fresh query of its own: after every change, except a job's start and
 * events, whose prediction concerns one disk and is checked only when an
 * answer is needed (a query, an operation settling).  Where its
 * prediction and QEMU's answer differ, QEMU wins and the difference is
 * logged.  Chains that changed are announced with a QMPROXY_CHAIN_CHANGED
 * event.
 *
 * Disks are named by their QMP device when they have one, else by their
 * qdev id (with -blockdev the device is empty), and are also found by the
 * node-name of any layer and by the file of their active layer.
 */
#ifndef QMPROXY_CHAIN_H
#define QMPROXY_CHAIN_H

#include <stdbool.h>
#include <json-c/json.h>

struct chain;
struct event_base;
struct upstream;

struct chain_hooks {
    /* Send an event (in QEMU's form) to every negotiated client. */
    void (*emit_event)(void *opaque, const char *name, json_object *data);
    /* The model changed: persist it. */
    void (*changed)(void *opaque);
    /* A disk got a new overlay, whoever made it (seen in QEMU's answer). */
    void (*new_overlay)(void *opaque, const char *disk, const char *overlay,
                        const char *below, const char *below_format,
                        long long size);
};

/* base: the loop the image size reads (off it) answer on; NULL: none,
 * sizes unknown (the freshness check rests on the block graph) */
struct chain *chain_new(struct event_base *base, struct upstream *up,
                        const struct chain_hooks *hooks, void *opaque);
void chain_free(struct chain *c);
/* No image size read outstanding (they answer on a later loop turn): for
 * tests that drive the loop themselves. */
bool chain_sizes_idle(const struct chain *c);

/*
 * QEMU is negotiated: learn its disks, then call done.  A state loaded
 * before is compared with what QEMU says, and what changed while the proxy
 * was away is reported.
 */
void chain_seed(struct chain *c, void (*done)(void *opaque), void *opaque);
/* QEMU went away: queries in flight will not be answered. */
void chain_upstream_lost(struct chain *c);

/* Is this command one whose success changes the model? */
bool chain_watches(const char *command);
/* A watched command went to QEMU; its reply (chain_observe) or its loss
 * (chain_unanswered) will follow.  Until then an event about a job the
 * model does not know is probably about the job that command starts. */
void chain_command_sent(struct chain *c);
void chain_unanswered(struct chain *c);
/* A watched command and QEMU's reply to it (ret NULL: it failed). */
void chain_observe(struct chain *c, const char *command, json_object *args,
                   unsigned client, bool ok);
/* Is this event one the model follows? */
bool chain_watches_event(const char *name);
void chain_observe_event(struct chain *c, const char *name,
                         json_object *data);

/* Ask QEMU again now (after a change the proxy made itself). */
void chain_reconcile(struct chain *c);
/* Refresh job progress from QEMU, then call done (for queries). */
void chain_refresh(struct chain *c, void (*done)(void *opaque), void *opaque);
/* Ask QEMU for the jobs' progress alone (query-block-jobs: offset, len,
 * speed, ready), lighter than a reconciliation, then call done; jobs
 * QEMU adds or drops are left to the reconciliations. */
void chain_refresh_progress(struct chain *c, void (*done)(void *opaque),
                            void *opaque);
/* Call done once no reconciliation is under way or due and no job
 * event's prediction is unchecked: the model then holds QEMU's answer to
 * everything done so far (an operation may act on it). */
void chain_settle(struct chain *c, void (*done)(void *opaque), void *opaque);
/* Call done once the next reconciliation has completed. */
void chain_after_reconcile(struct chain *c, void (*done)(void *opaque),
                           void *opaque);

/* Resolve a name a client may use for a disk; NULL when unknown. */
const char *chain_disk_name(const struct chain *c, const char *any_name);
/* The model as JSON: one disk, or every disk (disk NULL). New reference;
 * NULL if the disk is unknown. */
json_object *chain_to_json(const struct chain *c, const char *disk);
/* The model as libvirt-style <disk> XML (owned); NULL if unknown. */
char *chain_to_xml(const struct chain *c, const char *disk);

/* The disk's active layer, its backing chain and job, for operations. */
const char *chain_top_file(const struct chain *c, const char *disk);
const char *chain_top_format(const struct chain *c, const char *disk);
/* chain-guard.c: NULL when QEMU may have this client command; else why
 * not (owned): a blockdev-snapshot-sync over a layer the proxy handed
 * QEMU by descriptor, or a drive-mirror (sync top) of the layer above
 * one, would write /dev/fdset/N into a header. */
char *chain_check_backing_names(const struct chain *c, const char *command,
                                json_object *args);
/* The disk's size as its active layer says, or -1 when not known. */
int64_t chain_top_size(const struct chain *c, const char *disk);
const char *chain_top_node(const struct chain *c, const char *disk);
/* The "device" argument QEMU's block commands take for this disk. */
const char *chain_job_device(const struct chain *c, const char *disk);
int chain_layer_count(const struct chain *c, const char *disk);
/* The node-name of the disk's layer on file, or NULL. */
const char *chain_layer_node_of_file(const struct chain *c, const char *disk,
                                     const char *file);
const char *chain_layer_file(const struct chain *c, const char *disk, int i);
/* The file a copy (a mirror job) on disk writes to, or NULL. */
const char *chain_mirror_file(const struct chain *c, const char *disk);
/* How that copy's target was opened: "existing" or "absolute-paths". */
const char *chain_mirror_mode(const struct chain *c, const char *disk);
/* The copy's node-name and format when it was started with blockdev-mirror
 * (its target a node of its own); NULL for drive-mirror. */
const char *chain_mirror_target_node(const struct chain *c, const char *disk);
const char *chain_mirror_target_format(const struct chain *c, const char *disk);
/* Was the disk defined with -blockdev (no legacy drive name)? */
bool chain_disk_is_blockdev(const struct chain *c, const char *disk);
/* Does the job on disk wait for job-finalize (auto-finalize false)? */
bool chain_job_manual_finalize(const struct chain *c, const char *disk);
/* The id of the job running on disk, or NULL. */
const char *chain_job_id(const struct chain *c, const char *disk);
const char *chain_job_status(const struct chain *c, const char *disk);
/* The progress QEMU last reported for the job on disk (false: no job). */
bool chain_job_progress(const struct chain *c, const char *disk,
                        int64_t *offset, int64_t *len);
/* Who started a job (client number, 0 for the proxy) and for what. */
void chain_note_job_owner(struct chain *c, const char *job_id,
                          const char *operation);

/* For the metrics: the disks and their depth, the jobs as last known. */
struct chain_job_info {
    const char *disk;     /* NULL: not known yet */
    const char *id, *type;
    long long offset, len, speed;
    bool ready;
};
int chain_disk_count(const struct chain *c);
/* The i-th disk's name; *depth: the layers of its chain, active included */
const char *chain_disk_at(const struct chain *c, int i, int *depth);
int chain_job_count(const struct chain *c);
void chain_job_at(const struct chain *c, int i, struct chain_job_info *out);

/* Persistence: what only the proxy knows, plus the model. */
json_object *chain_save(const struct chain *c);
void chain_load(struct chain *c, json_object *saved);

#endif
