/*
 * op: the high-level operations (snapshot-with-mirror, reopen, abort,
 * block copy) and the steps they are built from.  An operation is a
 * non-blocking state machine over a set of disks: each step sends QMP
 * commands of the proxy's own, and moves on when their replies and the
 * block-job events it waits for have arrived.  Operations are kept (and
 * saved with --state) so that clients can follow them, and so that a
 * restarted proxy can pick them up again.
 */
#ifndef QMPROXY_OP_H
#define QMPROXY_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

struct cmd_env;
struct cmd_call;
struct op;

/* The states clients see (qmproxy-query-operations, QMPROXY_OPERATION). */
enum op_state {
    OP_RUNNING,    /* taking the snapshot, starting the copies */
    OP_MIRRORING,  /* copies started, not all ready */
    OP_READY,      /* every copy ready: reopen or abort at will */
    OP_PIVOTING,   /* reopening */
    OP_PIVOTED,    /* the disks run on their copies (or, reopened onto the
                    * source, on their source without copies) */
    OP_ABORTED,    /* undone: the disks run where they did before */
    OP_FAILED,     /* did not reach its goal; see the disks' states */
    /* a live migration (migrate.c), after its copies are ready: */
    OP_MIGRATING,  /* the VM's state streams to the destination */
    OP_SWITCHING,  /* the source is stopped; the copies are completing */
    OP_MIGRATED,   /* the destination has the VM; the source is ended */
};

#define OP_STATE__MAX (OP_MIGRATED + 1)

const char *op_state_name(enum op_state s);

/* Where one disk of an operation stands, for people and for the steps. */
enum op_disk_state {
    DISK_UNTOUCHED,       /* nothing done to it (yet) */
    DISK_SNAPSHOTTED,     /* runs on its new overlay */
    DISK_MIRRORING,       /* its copy runs, not ready */
    DISK_READY,           /* its copy is ready */
    DISK_REOPENING,       /* being switched */
    DISK_PIVOTED,         /* runs on its copy */
    DISK_ON_SOURCE,       /* reopened onto its source, the copy dropped */
    DISK_COPY_FAILED,
    DISK_COPY_DROPPED,    /* cancelled so that no disk pivots alone */
    DISK_COPY_LOST,       /* the copy ended while the proxy was away */
    DISK_REOPEN_FAILED,
    DISK_ROLLED_BACK,     /* runs where it did before the operation */
    DISK_ROLLBACK_FAILED,
    DISK_RETRYING,        /* an automatic copy waits to be tried again */
    DISK_UNKNOWN,         /* QEMU went away in the middle */
};
#define OP_DISK_STATE__MAX (DISK_UNKNOWN + 1)

const char *op_disk_state_name(enum op_disk_state s);

/* The steps of roll back a disk goes through (step-rollback.c). */
enum rollback_phase {
    ROLLBACK_START,
    ROLLBACK_CANCELLING,   /* its copy is being cancelled */
    ROLLBACK_COMMITTING,   /* the new overlay is folded into the image
                            * below by an active commit */
    ROLLBACK_COMPLETING,   /* that commit is pivoting */
    ROLLBACK_DONE,
};

/* What a client may ask of an existing operation. */
enum op_verb {
    OP_VERB_REOPEN,   /* qmproxy-snapshot-reopen */
    OP_VERB_ABORT,    /* qmproxy-snapshot-abort */
    OP_VERB_MIGRATE_CANCEL,  /* qmproxy-migrate-cancel */
};

/*
 * An image the proxy opened beneath its allowed folder (under a path
 * policy) to hand QEMU by descriptor: op-images.c.
 */
struct op_image {
    int fd;                /* not handed over yet; -1: none */
    bool created;          /* by the proxy: removed again if unused */
    bool used;             /* a node of QEMU's runs on it */
    uint64_t dev, ino;     /* what was created, to remove only that */
    int64_t fdset;         /* the proxy's fd set QEMU holds it in (QEMU
                            * opens /dev/fdset/N); -1: not handed over */
    bool fdset_removed;    /* remove-fd sent (the operation ended) */
    /* while it is being handed over */
    bool handing;
    char *path;            /* borrowed from the disk */
    void (*handed)(struct op *op, int disk, const char *error);
};

struct op_disk {
    char *disk;            /* the chain model's name for it */
    char *snapshot_file;   /* NULL: no snapshot step */
    char *mirror_file;     /* NULL: no copy */
    char *format;          /* of the snapshot and the copy */
    char *mirror_format;   /* of the copy, when not format's (an NBD
                            * export of a snapshot's copy: raw) */
    char *mode;            /* the copy: existing | absolute-paths */
    char *sync;            /* the copy: top | full */
    char *copy_mode;       /* the copy: NULL (background) | write-blocking
                            * (the guest's writes reach the copy before
                            * they complete: nothing left to drain) */
    char *on_target_error; /* the copy: NULL (QEMU's default, the job
                            * fails) | stop (a replica: the job pauses,
                            * its dirty bitmap kept, and is resumed) */
    char *target_node;     /* the copy's NBD node, named by the proxy so
                            * that a hung connection can be yanked */
    bool stopped_on_error; /* the job paused itself on a target error */
    int64_t speed;
    /* what the snapshot replaced, to undo it */
    char *old_top_file, *old_top_node;
    char *new_top_node;    /* the snapshot's node-name, ours */
    char *job;             /* the copy's job id */
    bool own_job;          /* started by this operation */
    char *undo_job;        /* the active commit that undoes the snapshot */
    /* what the events said of the job being waited for */
    char *job_status;
    bool ready, pending, done, failed;
    char *job_error;
    int64_t offset, len;
    enum rollback_phase rollback;  /* while the operation is undone */
    bool plain_job;        /* job-id and finalizing left to QEMU's defaults
                            * (RHEL-era clients name jobs by device) */
    bool manual_finalize;  /* the job waits in PENDING for job-finalize */
    /* a ready copy's lag (op-lag.c): bytes QEMU has yet to copy, and
     * when it was last seen with none */
    bool lag_known;
    int64_t lag_bytes;
    uint64_t in_sync_at_us;   /* monotonic; 0: not seen in sync */
    json_object *pending_args; /* blockdev-mirror's, until its node is added */
    char *copy_node;       /* the copy's own node (QEMU 10's way), while a
                            * reopen may still have to delete it */
    /* the backing file (and its format) a copy the proxy formats names,
     * when not the layer below the disk's (automatic mirroring builds on
     * the destination's copy of the older layers); NULL: that layer */
    char *copy_backing, *copy_backing_format;
    /* under a path policy, the copy's and the snapshot's images as the
     * proxy opened them (op-images.c) */
    struct op_image copy_image, snapshot_image;
    /* where the disk stands, for people */
    enum op_disk_state state;
    char *note;
};

struct op {
    unsigned seq;
    char *name;
    char *type;
    enum op_state state;
    struct op_disk *disks;
    int ndisks;
    char *error;           /* why it failed */
    unsigned client;
    char *started_at;
    struct cmd_call *call; /* the reply still owed, if any */
    int witness_fd;        /* __com.redhat_drive-reopen: a byte on success */
    bool to_mirror;        /* a reopen: onto the copies, or stay put */
    /* the step in progress */
    int outstanding;       /* its commands not yet answered */
    bool step_failed;
    char *step_error;
    void (*check)(struct op *op);               /* after each job event */
    /* also after each job event, beside the step (a replica's watch):
     * before check(), which may end the operation */
    void (*job_watcher)(struct op *op, void *opaque);
    void *job_watcher_opaque;
    /* after each event of the whole VM (MIGRATION, STOP, RESUME) */
    void (*vm_event)(struct op *op, const char *name, json_object *data);
    /* check() runs with the chain model settled (QEMU's answer to every
     * event so far): a job another client completed has pivoted or not
     * only in QEMU's next answer */
    bool model_settled;
    bool awaiting_model;
    void (*next)(struct op *op, bool ok);       /* when the step ends */
    struct op *parent;     /* a reopen of a snapshot's disks updates it */
    const char *busy_with; /* a command acting on it ("reopen", "abort") */
    char *rule;            /* the policy rule that started it, if any */
    void *priv;            /* the command's own state */
    void (*priv_free)(void *priv);
    /* what of it is saved with --state (NULL: nothing), and what a
     * restarted proxy loaded of it until the command takes it over */
    json_object *(*priv_save)(const struct op *op);
    json_object *loaded_priv;
};

/* ---- checks shared by the commands (NULL: fine; else owned error) ---- */
char *op_check_disk(const char *name, const char **resolved);
char *op_check_new_file(const char *what, const char *path);
char *op_check_existing_file(const char *what, const char *path);
/*
 * A copy's target (canonical, see nbd-target.h): a file is checked as new
 * or existing by *mode (NULL: absolute-paths); an NBD export is an image
 * made beforehand on the receiving side (QEMU cannot create one over NBD),
 * so its mode is existing, and another mode asked for is refused.  *mode
 * is set to the mode to use.
 */
char *op_check_target(const char *what, const char *target, const char **mode);
/*
 * Under a path policy, the image at path (what: "target"...) opened by the
 * proxy beneath its allowed folder, following no symbolic link, to be
 * handed to QEMU by descriptor, read-write: an existing one, a new one
 * (exclusively), or a new one replacing a file there (as QEMU's
 * absolute-paths mode would).  *fd is -1 when there is nothing to open (no
 * path policy, or not a host file).  NULL: fine; else what to fix (owned).
 */
struct policy;
enum op_image_open { OP_IMAGE_EXISTING, OP_IMAGE_NEW, OP_IMAGE_REPLACE };
char *op_open_image(const struct policy *pol, const char *what,
                    const char *path, enum op_image_open how, int *fd);
/* No image (inline: op.c, below op-images.c, starts every disk so). */
static inline void op_image_init(struct op_image *im)
{
    *im = (struct op_image){ .fd = -1, .fdset = -1 };
}
/* An image op_open_image opened (fd -1: none), created or not. */
void op_image_take(struct op_image *im, int fd, bool created);
/* The name QEMU opens it by: /dev/fdset/N once handed over, else path
 * (owned). */
char *op_image_qemu_name(const struct op_image *im, const char *path);
/* blockdev-add's arguments for an image as a node of its own: format
 * node "node" over file node "file_node", no backing yet
 * (blockdev-snapshot or step-reopen gives it the one it needs). */
json_object *op_image_node_args(const struct op_image *im, const char *path,
                                const char *format, const char *node,
                                const char *file_node);
/* How the proxy formats an image it created: qemu-img on the descriptor,
 * the backing file (NULL: none) named by its real path, because QEMU
 * would write the name its node has, /dev/fdset/N. */
struct op_image_header {
    const char *format;
    int64_t size;
    const char *backing, *backing_format;
};
/* Hand disk i's image over: format it (hdr, its size known; NULL: opened,
 * not created), then add-fd into a set of the proxy's own; handed(op, i,
 * NULL) when QEMU holds it, else with what went wrong (never before this
 * returns).  path: the image's real path (the chain model calls
 * /dev/fdset/N by it); role: "copy", "snapshot". */
void op_image_hand_over(struct op *op, int i, struct op_image *im,
                        const char *path, const char *role,
                        const struct op_image_header *hdr,
                        void (*handed)(struct op *op, int disk,
                                       const char *error));
/* Remove an image the proxy created that no node ever ran on (an
 * operation refused or failed before), so that asking again works: by
 * name beneath its folder again, and only while that name is still the
 * file the proxy made. */
void op_image_remove_unused(const struct policy *pol, struct op_image *im,
                            const char *path);

/* One disk of a snapshot-with-mirror request, however it was asked for. */
struct snapshot_spec {
    const char *disk;
    const char *snapshot_file;
    const char *mirror_file;     /* NULL: a snapshot without a copy */
    const char *format;          /* NULL: qcow2 */
    const char *mirror_mode;     /* NULL: absolute-paths */
    int64_t speed;
};
/* Check and start a snapshot-with-mirror; answers call when every copy is
 * ready (or with what went wrong). */
void snapshot_mirror_start(struct cmd_call *call, const char *name,
                           const struct snapshot_spec *specs, int n);

/* ---- the registry ---- */
void ops_init(const struct cmd_env *env);
void ops_free(void);
struct op *op_new(const char *type, const char *name, unsigned client,
                  struct cmd_call *call);
struct op *op_find(const char *name);
/* fn for every operation of this type that has not ended. */
void ops_each_live(const char *type, void (*fn)(struct op *op, void *opaque),
                   void *opaque);
/* How many operations have not ended (the service status). */
size_t ops_count_active(void);
/* How many operations the proxy holds in each state (the finished ones
 * it keeps for clients to look at included), for the metrics. */
void ops_count_by_state(unsigned counts[OP_STATE__MAX]);
/* Is this name free for a new operation? */
bool op_name_free(const char *name);
struct op_disk *op_add_disk(struct op *op, const char *disk);
/* NULL when a client may now ask verb of op; else why not (owned). */
char *op_verb_refused(const struct op *op, enum op_verb verb);

/* op-announce.c */

/* Move to s (or announce again, s being the state it is in), by the
 * transition table; an illegal move is a bug, logged as one. */
void op_set_state(struct op *op, enum op_state s);
/* Finish: move to final (announced, saved), then answer the caller with
 * the operation as qmproxy-query-operations shows it. */
void op_succeed(struct op *op, enum op_state final);
/* Fail: the error with where every disk stands, announced, and the
 * caller answered with it as a GenericError. */
void op_fail(struct op *op, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The operation a command names, when verb may be asked of it now;
 * otherwise the client is answered why (refused: the lookup's own
 * refusal, owned, or NULL) and NULL returned. */
struct op *op_for_verb(struct cmd_call *call, char *refused, struct op *op,
                       enum op_verb verb);
/* A copy that ended without completing: the disk's note and the step's
 * error say so ("<disk's copy> <what>: <QEMU's reason, or fallback>"). */
void op_note_copy_failed(struct op *op, struct op_disk *d, const char *what,
                         const char *fallback);
/* A command that takes an operation over (an abort, a cancel) becomes the
 * caller to answer; the operation's own caller, if still waiting, is
 * answered now with the error why. */
void op_take_over_call(struct op *op, struct cmd_call *call,
                       const char *why_fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* One line per disk: where each stands now. */
char *op_disks_summary(const struct op *op);

/* op-json.c */

json_object *op_to_json(const struct op *op);
json_object *ops_to_json(const char *name);
/* Read every ready copy's lag from the chain model (refreshed from QEMU
 * by the caller). */
void ops_observe_lag(void);
/* How long a ready copy has trailed its disk (0: in sync); false when
 * not known (no lag known, or never seen in sync). */
bool op_disk_lag_seconds(const struct op_disk *d, double *seconds);
/* Every ready copy whose lag is known, for the metrics (seconds NULL
 * when not known). */
void ops_each_lag(void (*fn)(void *opaque, const char *operation,
                             const char *disk, int64_t bytes,
                             const double *seconds),
                  void *opaque);
/* A copy just reported ready: it is in sync now. */
void op_disk_in_sync(struct op_disk *d);
json_object *ops_save(void);
void ops_load(json_object *saved);
/* After QEMU is known again (a restart): carry on or report failure. */
void ops_resume(void);
/* QEMU's monitor went away: operations in the middle of a step fail
 * (ready ones wait to be checked again when it is back). */
void ops_upstream_lost(void);
/* A ready operation watches its copies again (after a refused reopen). */
void op_watch(struct op *op);
/* Whether a job someone else ended pivoted is known only once the chain
 * model has QEMU's next answer: true when check() must wait for it (it
 * runs again then, once). */
bool op_wait_for_model(struct op *op);
/* Block-job events, for the operations waiting on them. */
void ops_observe_event(const char *name, json_object *data);
/* Events of the whole VM an operation may wait for (a migration's). */
bool ops_watch_event(const char *name);
bool ops_busy_disk(const char *disk, const struct op **by);
/* The operation a command names, if of one of types (NULL-ended; what:
 * how to say them): NULL and *found set, or what is wrong (owned). */
char *op_find_of_type(const char *name, const char *const *types,
                      const char *what, struct op **found);
/* The snapshot-with-copies operation a command names: NULL and *found
 * set, or what is wrong (owned). */
char *op_find_snapshot(const char *name, struct op **found);
/* The unfinished operation whose disk runs this job (and which disk). */
struct op *op_owning_job(const char *job, int *index);

/* ---- steps: each ends by calling op->next(op, ok) ---- */
void step_snapshot(struct op *op, void (*next)(struct op *, bool));
void step_start_mirrors(struct op *op, void (*next)(struct op *, bool));
void step_wait_ready(struct op *op, void (*next)(struct op *, bool));
/* to_mirror: pivot onto the copies; else drop them, stay on the source.
 * All or nothing: every copy is brought to PENDING before any is
 * finalized; if one cannot be, none is. */
void step_reopen(struct op *op, bool to_mirror,
                 void (*next)(struct op *, bool));
/* End every ready copy without pivoting: the copies hold the disks as
 * they are now (the VM stopped), the disks stay where they run. */
void step_complete_copies(struct op *op, void (*next)(struct op *, bool));
/* Undo: cancel copies, fold new overlays back by active commit. */
void step_rollback(struct op *op, void (*next)(struct op *, bool));
/* The usual ending of a step chain: ready, or undo and report. */
void op_ready_or_rollback(struct op *op, bool ok);

/* Send a command of the operation's own (chain model informed). */
void op_qmp(struct op *op, json_object *cmd,
            void (*done)(struct op *op, int disk, bool ok,
                         json_object *ret, const char *error),
            int disk);
/* The same with a descriptor (ownership passes; -1: none), for add-fd. */
void op_qmp_fd(struct op *op, json_object *cmd, int fd,
               void (*done)(struct op *op, int disk, bool ok,
                            json_object *ret, const char *error),
               int disk);
/* The operation has ended (op-images.c): the fd sets of its images are
 * removed (QEMU keeps the descriptors its nodes still use, and drops each
 * set once nothing uses it), images not handed over are closed, and
 * those the proxy created that nothing ran on are removed. */
void op_release_images(struct op *op);

#endif
