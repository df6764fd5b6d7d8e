/*
 * op-internal: what the files of the operations engine share, and nobody
 * outside proxy/ops/op*.c and step-*.c sees.
 */
#ifndef QMPROXY_OP_INTERNAL_H
#define QMPROXY_OP_INTERNAL_H

#include <stdbool.h>
#include <json-c/json.h>

#include "op.h"

struct chain;
struct cmd_env;

/* Every operation the proxy knows, live or kept for clients to see. */
struct op_registry {
    const struct cmd_env *env;
    struct op **ops;
    int nops;
    unsigned next_seq;
    unsigned tag;          /* keeps our node-names and job ids apart from
                            * those of an earlier run of the proxy */
};
extern struct op_registry op_reg;

struct chain *op_chain(void);
bool op_is_final(enum op_state s);
/* Whether the operation's state machine lets it move from one to the
 * other (the transition table, op.c). */
bool op_may_become(enum op_state from, enum op_state to);
bool op_state_from_name(const char *name, enum op_state *s);
bool op_disk_state_from_name(const char *name, enum op_disk_state *s);
/* Answer the caller, last: answering lets the client's next command run. */
void op_answer(struct op *op);
/* {key: id}, for the job commands. */
json_object *op_job_args(const char *key, const char *id);
/* Forget what the events said of the job waited for before. */
void op_reset_job_facts(struct op_disk *d);
/* The backing file a qcow2 image names, absolute, or NULL (owned). */
char *op_backing_file(const char *image);
/* The backing file a qcow2 image names, when it is not there (owned). */
char *op_missing_backing(const char *image);
/* "qcow2" when the image starts with qcow2's magic, else "raw". */
const char *op_image_format(const char *image);

/*
 * QEMU 10's way for the proxy's own copies of -blockdev disks: the copy is
 * a node of its own (blockdev-add, its backing left out), the job is
 * blockdev-mirror, and before the pivot blockdev-reopen gives the copy the
 * backing its header names.  QEMU 7.2 (and a legacy -drive disk, or a copy
 * QEMU must create) keeps drive-mirror, which opens the backing itself.
 * Keyed on the version QEMU's greeting reported.  An image the proxy
 * handed over by descriptor (op-images.c) always goes this way, on every
 * version and disk: drive-mirror opens its target read-only first, and
 * QEMU takes from an fd set only a descriptor of the access mode asked.
 */
#define OP_BLOCKDEV_WAY_SINCE 1000   /* QEMU 10.0, as major * 100 + minor */
bool op_blockdev_way(const struct op_disk *d);
/* The node-names of such a copy, its file and the backing given it:
 * derived from the job id, so a restarted proxy finds them again. */
char *op_copy_node(const char *job, char which);
/* The node of the disk's copy when it was made that way (owned), else
 * NULL (drive-mirror, or a client's own blockdev-mirror). */
char *op_copy_target(const struct op_disk *d);

#endif
