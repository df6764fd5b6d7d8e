/*
 * chain-observe: the chain model's predictions from what passes through,
 * whoever sent it: snapshots, transactions, job starts, the verbs that
 * pivot or drop a copy, and QEMU's block-job events.  A command that
 * changes chains ends by asking QEMU for the truth (ch_schedule); a job's
 * start and end concern one disk, whose prediction stands until someone
 * needs the answer (chain-lazy.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain-model.h"
#include "fdset-names.h"
#include "log.h"

static const char *const watched_commands[] = {
    "blockdev-snapshot-sync", "blockdev-snapshot", "transaction",
    "drive-mirror", "blockdev-mirror", "block-commit", "block-stream",
    "drive-backup", "blockdev-backup", "block-job-complete", "job-complete",
    "block-job-cancel", "job-cancel", "job-finalize", "job-dismiss",
    "block-job-dismiss", "block-job-finalize", "blockdev-add",
    "blockdev-del", "blockdev-reopen", "blockdev-change-medium", "eject",
    "blockdev-open-tray", "blockdev-close-tray", "blockdev-insert-medium",
    "blockdev-remove-medium", "device_add", "device_del",
    "human-monitor-command", "block_resize", "x-blockdev-reopen",
    "change-backing-file", "x-blockdev-change", NULL,
};

static const char *const watched_events[] = {
    "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED",
    "BLOCK_JOB_ERROR", "BLOCK_JOB_PENDING", "JOB_STATUS_CHANGE",
    "DEVICE_DELETED", "DEVICE_TRAY_MOVED", NULL,
};

static bool in_list(const char *const *list, const char *s)
{
    for (; *list; list++) {
        if (!strcmp(*list, s)) {
            return true;
        }
    }
    return false;
}

bool chain_watches(const char *command)
{
    return in_list(watched_commands, command);
}

bool chain_watches_event(const char *name)
{
    return in_list(watched_events, name);
}

/* ---- observations -------------------------------------------------- */

static void observe_snapshot_sync(struct chain *c, json_object *a)
{
    const char *dev = jobj_str(a, "device");
    struct disk *d = ch_find_disk(c, dev ? dev : jobj_str(a, "node-name"));

    if (!d) {
        return;
    }
    ch_insert_top(d, jobj_str(a, "snapshot-file"), jobj_str(a, "format"),
               jobj_str(a, "snapshot-node-name"));
    if (same(jobj_str(a, "mode"), "existing")) {
        /* its backing file is whatever the image's header says */
        d->uncertain = true;
    }
}

static void observe_snapshot(struct chain *c, json_object *a)
{
    struct disk *d = ch_find_disk(c, jobj_str(a, "node"));
    const char *overlay = jobj_str(a, "overlay");
    json_object *added = NULL;

    if (!d || !overlay) {
        return;
    }
    json_object_object_get_ex(c->blockdev_nodes, overlay, &added);
    if (added && !jobj_str(added, "file")) {
        added = NULL;  /* added with a file the model could not follow */
    }
    ch_insert_top(d, added ? jobj_str(added, "file") : overlay,
               added ? jobj_str(added, "format") : NULL, overlay);
    d->uncertain = !added;
}

/* block_resize names the disk (device) or a node: the image it resizes is
 * the disk's active layer, or the layer of that node-name (a filter's
 * node-name resizes what it filters). */
static void observe_resize(struct chain *c, json_object *a)
{
    const char *dev = jobj_str(a, "device");
    const char *node = jobj_str(a, "node-name");
    struct disk *d = ch_find_disk(c, dev && dev[0] ? dev : node);
    int i = 0;

    if (!d || !d->nlayers) {
        return;
    }
    if (!(dev && dev[0]) && node) {
        i = ch_layer_index(d, node);
        for (int k = 0; i < 0 && k < d->nfilters; k++) {
            if (same(d->filters[k].node_name, node)) {
                i = d->filters[k].above < d->nlayers ? d->filters[k].above
                                                     : -1;
            }
        }
    }
    if (i >= 0) {
        d->layers[i].virtual_size = jobj_int(a, "size",
                                             d->layers[i].virtual_size);
    }
}

/* A disk's chain replaced by one image (or by none: no medium). */
static void set_medium(struct disk *d, const char *file, const char *format,
                       const char *node)
{
    ch_keep_layers(d, 0, 0);
    for (int i = 0; i < d->nfilters; i++) {
        free(d->filters[i].driver);
        free(d->filters[i].node_name);
    }
    d->nfilters = 0;
    if (file || node) {
        ch_insert_top(d, file, format, node);
    }
}

/*
 * The removable-media commands (a CD-ROM, a floppy): eject and
 * blockdev-remove-medium leave the drive empty; blockdev-change-medium and
 * blockdev-insert-medium put one image in, whose backing chain and probed
 * format only QEMU knows (so the prediction is uncertain: QEMU's answer
 * completes it without a warning).  Opening the tray keeps the medium
 * unless QEMU had to force it, so the prediction is uncertain too.
 */
static void observe_medium(struct chain *c, const char *command,
                           json_object *a)
{
    const char *dev = jobj_str(a, "device");
    struct disk *d = ch_find_disk(c, dev && dev[0] ? dev : jobj_str(a, "id"));

    if (!d) {
        return;
    }
    if (!strcmp(command, "eject")
        || !strcmp(command, "blockdev-remove-medium")) {
        set_medium(d, NULL, NULL, NULL);
    } else if (!strcmp(command, "blockdev-change-medium")) {
        set_medium(d, jobj_str(a, "filename"), jobj_str(a, "format"), NULL);
    } else if (!strcmp(command, "blockdev-insert-medium")) {
        const char *node = jobj_str(a, "node-name");
        json_object *added = NULL;
        json_object_object_get_ex(c->blockdev_nodes, node ? node : "",
                                  &added);
        set_medium(d, added ? jobj_str(added, "file") : NULL,
                   added ? jobj_str(added, "format") : NULL, node);
    }
    d->uncertain = true;
}

static struct job *start_job(struct chain *c, json_object *a,
                             const char *type, unsigned client)
{
    const char *dev = jobj_str(a, "device");
    const char *id = jobj_str(a, "job-id");
    struct disk *d = ch_find_disk(c, dev);
    struct job *j;

    if (!id) {
        id = dev;
    }
    if (!id) {
        return NULL;
    }
    if ((j = ch_find_job(c, id))) {
        ch_remove_job(c, j);  /* a concluded job of the same id, now replaced */
    }
    j = ch_add_job(c, id);
    j->touched = c->seq;
    str_set(&j->type, type);
    str_set(&j->disk, d ? d->name : NULL);
    str_set(&j->status, "running");
    j->started_by = client;
    j->manual_finalize = !jobj_bool(a, "auto-finalize", true);
    j->manual_dismiss = !jobj_bool(a, "auto-dismiss", true);
    /* QEMU may have reported on the job before answering the command */
    json_object *early;
    if (json_object_object_get_ex(c->early, id, &early)) {
        if (jobj_str(early, "status")) {
            str_set(&j->status, jobj_str(early, "status"));
        }
        j->ready = jobj_bool(early, "ready", false);
        j->offset = jobj_int(early, "offset", 0);
        j->len = jobj_int(early, "len", 0);
        j->ended_early = jobj_bool(early, "ended", false);
        j->completed_early = jobj_bool(early, "completed", false);
        if (jobj_str(early, "error")) {
            str_set(&j->error, jobj_str(early, "error"));
        }
        json_object_object_del(c->early, id);
    }
    return j;
}

static struct job *observe_mirror(struct chain *c, json_object *a,
                                  unsigned client, bool blockdev)
{
    struct job *j = start_job(c, a, "mirror", client);
    struct disk *d;

    if (!j) {
        return NULL;
    }
    d = ch_disk_by_name(c, j->disk);
    str_set(&j->sync, jobj_str(a, "sync"));
    if (blockdev) {
        const char *node = jobj_str(a, "target");
        json_object *added = NULL;
        json_object_object_get_ex(c->blockdev_nodes, node ? node : "",
                                  &added);
        str_set(&j->target_file, added && jobj_str(added, "file")
                                 ? jobj_str(added, "file") : node);
        str_set(&j->target_format, added ? jobj_str(added, "format") : NULL);
        str_set(&j->target_node, node);
        str_set(&j->mode, "existing");
    } else {
        char *plain = ch_plain_filename(jobj_str(a, "target"));
        str_set(&j->target_file, plain);
        free(plain);
        str_set(&j->mode, jobj_str(a, "mode") ? jobj_str(a, "mode")
                                             : "absolute-paths");
        str_set(&j->target_format, jobj_str(a, "format") ? jobj_str(a, "format")
                : (d && d->nlayers ? d->layers[0].format : NULL));
    }
    return j;
}

static struct job *observe_commit(struct chain *c, json_object *a,
                                  unsigned client)
{
    struct job *j = start_job(c, a, "commit", client);
    struct disk *d;
    const char *topname, *basename;
    int ti, bi;

    if (!j) {
        return NULL;
    }
    d = ch_disk_by_name(c, j->disk);
    topname = jobj_str(a, "top-node") ? jobj_str(a, "top-node")
                                     : jobj_str(a, "top");
    basename = jobj_str(a, "base-node") ? jobj_str(a, "base-node")
                                       : jobj_str(a, "base");
    /* QEMU's defaults: the active layer down to the bottom of the chain */
    ti = topname ? ch_layer_index(d, topname) : 0;
    bi = basename ? ch_layer_index(d, basename) : (d ? d->nlayers - 1 : -1);
    j->active_commit = ti == 0;
    if (d && ti >= 0 && ti < d->nlayers) {
        str_set(&j->top_file, d->layers[ti].file);
    }
    if (d && bi >= 0 && bi < d->nlayers) {
        str_set(&j->base_file, d->layers[bi].file);
        if (j->active_commit) {
            str_set(&j->target_file, d->layers[bi].file);
            str_set(&j->target_format, d->layers[bi].format);
        }
    }
    return j;
}

static struct job *observe_stream(struct chain *c, json_object *a,
                                  unsigned client)
{
    struct job *j = start_job(c, a, "stream", client);
    struct disk *d;
    const char *basename;
    int bi, ti;

    if (!j) {
        return NULL;
    }
    d = ch_disk_by_name(c, j->disk);
    basename = jobj_str(a, "base-node") ? jobj_str(a, "base-node")
                                       : jobj_str(a, "base");
    bi = basename ? ch_layer_index(d, basename) : -1;
    if (jobj_str(a, "bottom")) {
        /* the last node streamed, inclusive: the base is the one under it
         * (none when it is the bottom of the chain) */
        int bottom = ch_layer_index(d, jobj_str(a, "bottom"));
        basename = jobj_str(a, "bottom");
        bi = bottom >= 0 ? bottom + 1 : -1;
        if (d && bi == d->nlayers) {
            basename = NULL;
        }
    }
    if (d && bi >= 0 && bi < d->nlayers) {
        str_set(&j->base_file, d->layers[bi].file);
    }
    j->base_unknown = basename && bi < 0;
    /* "device" may name a node inside the chain: the stream fills that
     * layer, and those above it stay (QEMU's parallel streams) */
    ti = ch_layer_index(d, jobj_str(a, "device"));
    if (d && ti > 0) {
        str_set(&j->top_file, d->layers[ti].file);
    }
    return j;
}

static void observe_transaction(struct chain *c, json_object *a,
                                unsigned client)
{
    json_object *actions;

    if (!json_object_object_get_ex(a, "actions", &actions)
        || !json_object_is_type(actions, json_type_array)) {
        return;
    }
    for (size_t i = 0; i < json_object_array_length(actions); i++) {
        json_object *act = json_object_array_get_idx(actions, i), *data;
        const char *type = jobj_str(act, "type");
        if (!json_object_object_get_ex(act, "data", &data) || !type) {
            continue;
        }
        if (!strcmp(type, "blockdev-snapshot-sync")) {
            observe_snapshot_sync(c, data);
        } else if (!strcmp(type, "blockdev-snapshot")) {
            observe_snapshot(c, data);
        } else if (!strcmp(type, "drive-backup")
                   || !strcmp(type, "blockdev-backup")) {
            start_job(c, data, "backup", client);
        }
    }
}

/*
 * The host file under a node's options: its own filename, or its file
 * child's, inline or named by reference to a node added before (libvirt
 * adds the storage node, then a format node whose "file" names it).
 */
static const char *options_filename(struct chain *c, json_object *o,
                                    int depth)
{
    json_object *file, *added;

    if (depth > 16) {
        return NULL;
    }
    if (json_object_is_type(o, json_type_string)) {
        return json_object_object_get_ex(c->blockdev_nodes,
                                         json_object_get_string(o), &added)
            ? jobj_str(added, "file") : NULL;
    }
    if (jobj_str(o, "filename")) {
        const char *real = fdset_names_path(jobj_str(o, "filename"));
        return real ? real : jobj_str(o, "filename");
    }
    return json_object_object_get_ex(o, "file", &file)
        ? options_filename(c, file, depth + 1) : NULL;
}

static void observe_blockdev_add(struct chain *c, json_object *a)
{
    const char *node = jobj_str(a, "node-name");
    const char *filename = options_filename(c, a, 0);
    json_object *info;

    if (!node) {
        return;
    }
    info = json_object_new_object();
    jobj_add_str(info, "file", filename);
    json_object_object_add(info, "format",
                           json_object_new_string(jobj_str(a, "driver")
                                                  ? jobj_str(a, "driver")
                                                  : "raw"));
    json_object_object_add(c->blockdev_nodes, node, info);
}

void chain_command_sent(struct chain *c)
{
    c->commands_in_flight++;
}

/* No command is out any more: a job an event named and no reply started
 * was started elsewhere (another monitor); learn about it now. */
static void commands_answered(struct chain *c)
{
    if (c->commands_in_flight > 0) {
        c->commands_in_flight--;
    }
    if (c->commands_in_flight == 0 && c->stranger_job) {
        c->stranger_job = false;
        /* the replies started the jobs the events named (start_job took
         * their facts out of c->early), or some job is still a stranger */
        if (json_object_object_length(c->early) > 0) {
            ch_schedule(c);
        }
    }
}

void chain_unanswered(struct chain *c)
{
    commands_answered(c);
}

static void observe(struct chain *c, const char *command, json_object *args,
                    unsigned client, bool ok);
static void apply_early_ends(struct chain *c);
static void job_started(struct chain *c, struct job *j);
static void predict_on(struct chain *c, const char *disk);

void chain_observe(struct chain *c, const char *command, json_object *args,
                   unsigned client, bool ok)
{
    observe(c, command, args, client, ok);
    commands_answered(c);
}

static void observe(struct chain *c, const char *command, json_object *args,
                    unsigned client, bool ok)
{
    struct job *j;
    const char *id;

    if (!ok) {
        /* QEMU refused it: nothing changed, but a refusal while a job
         * event's prediction stands may be QEMU saying it is wrong (a
         * verb on a job the model thinks alive, a node it thinks there) */
        if (ch_unverified(c)) {
            ch_schedule(c);
        }
        return;
    }
    c->seq++;
    if (!strcmp(command, "blockdev-snapshot-sync")) {
        observe_snapshot_sync(c, args);
    } else if (!strcmp(command, "blockdev-snapshot")) {
        observe_snapshot(c, args);
    } else if (!strcmp(command, "transaction")) {
        observe_transaction(c, args, client);
    } else if (!strcmp(command, "drive-mirror")
               || !strcmp(command, "blockdev-mirror")) {
        job_started(c, observe_mirror(c, args, client,
                                      !strcmp(command, "blockdev-mirror")));
        return;
    } else if (!strcmp(command, "block-commit")) {
        job_started(c, observe_commit(c, args, client));
        return;
    } else if (!strcmp(command, "block-stream")) {
        job_started(c, observe_stream(c, args, client));
        return;
    } else if (!strcmp(command, "drive-backup")
               || !strcmp(command, "blockdev-backup")) {
        j = start_job(c, args, "backup", client);
        if (j) {
            ch_backup_filter(c, j, true);
        }
        job_started(c, j);
        return;
    } else if (!strcmp(command, "eject")
               || (!strncmp(command, "blockdev-", 9)
                   && (strstr(command, "-medium")
                       || strstr(command, "-tray")))) {
        observe_medium(c, command, args);
    } else if (!strcmp(command, "block_resize")) {
        observe_resize(c, args);
    } else if (!strcmp(command, "blockdev-add")) {
        observe_blockdev_add(c, args);
        return;  /* a node on its own changes no disk's chain */
    } else if (!strcmp(command, "blockdev-del")) {
        /* its name may be used again, for another file */
        json_object_object_del(c->blockdev_nodes,
                               jobj_str(args, "node-name") ? jobj_str(args,
                                                           "node-name") : "");
    } else if (!strcmp(command, "blockdev-reopen")
               || !strcmp(command, "x-blockdev-reopen")
               || !strcmp(command, "x-blockdev-change")
               || !strcmp(command, "change-backing-file")) {
        /* a new backing child, a child added or removed (quorum), a
         * header rewritten: not predicted, QEMU's answer says it */
        ch_nothing_predicted(c);
    } else if (!strcmp(command, "human-monitor-command")) {
        const char *line = jobj_str(args, "command-line");
        /* HMP can change chains too (snapshot_blkdev, block_job_*...);
         * what it did is not predicted: QEMU's answer says it */
        if (!line || (strncmp(line, "snapshot_blkdev", 15)
                      && strncmp(line, "block_", 6)
                      && strncmp(line, "drive_", 6)
                      && strncmp(line, "change", 6)
                      && strncmp(line, "eject", 5))) {
            return;
        }
        ch_nothing_predicted(c);
    } else {
        id = jobj_str(args, "device") ? jobj_str(args, "device")
                                     : jobj_str(args, "id");
        j = ch_find_job(c, id);
        /* A job verb on a job the model knows changes no chain by itself:
         * the events that follow say what happened (a pivot, the end), and
         * they ask QEMU.  Asking now too would only keep QEMU busy with
         * whole-VM queries while the client waits for its next reply. */
        if (j && (!strcmp(command, "block-job-complete")
                  || !strcmp(command, "job-complete"))) {
            j->pivot_requested = true;
            return;
        } else if (j && (!strcmp(command, "block-job-cancel")
                         || !strcmp(command, "job-cancel"))) {
            j->cancel_requested = true;
            return;
        } else if (j && (!strcmp(command, "job-dismiss")
                         || !strcmp(command, "block-job-dismiss"))) {
            ch_remove_job(c, j);
            return;
        } else if (j && (!strcmp(command, "job-finalize")
                         || !strcmp(command, "block-job-finalize"))) {
            return;
        } else if (strstr(command, "job-")) {
            /* a verb on a job the model does not hold: gone already (QEMU
             * often reports a finalized job's end before its reply to
             * job-finalize), or started elsewhere, whose events ask */
            return;
        }
    }
    apply_early_ends(c);
    ch_schedule(c);
}

/* Jobs whose end QEMU reported before the reply that started them: their
 * facts are in now, so their end is predicted as if it came now (and the
 * job let go of if QEMU dismissed it already). */
static void apply_early_ends(struct chain *c)
{
    for (int i = c->njobs; i-- > 0;) {
        struct job *j = c->jobs[i];
        if (j->ended_early) {
            /* its last word may have come too: dismissed already */
            bool gone = same(j->status, "null");
            j->ended_early = false;
            if (j->completed_early) {
                ch_job_completed(c, j);
            }
            ch_backup_filter(c, j, false);
            str_set(&j->status, "concluded");
            if (gone) {
                ch_remove_job(c, j);
            }
        }
    }
}

/*
 * A job started (j; NULL if the command named none the model could
 * follow): its copy or its end (QEMU may have reported it before the
 * reply) is the prediction of the one disk it runs on.  Nothing is asked
 * of QEMU because of it; a job on a disk the model cannot name is asked
 * about now.
 */
static void job_started(struct chain *c, struct job *j)
{
    char *disk = j ? dup_or_null(j->disk) : NULL;

    apply_early_ends(c);   /* may let go of j */
    predict_on(c, disk);
    free(disk);
}

/* A job's end on its disk is the model's prediction; nothing is asked
 * because of it (a job on a disk the model cannot name excepted). */
static void predict_on(struct chain *c, const char *disk)
{
    if (!ch_predicted(c, disk)) {
        ch_schedule(c);
    }
}

/* A job concluded: its chain is predicted at once when the job stays
 * until dismissed, else when it is dismissed, which QEMU reports in the
 * same breath (JOB_STATUS_CHANGE to null). */
static void job_ended(struct chain *c, struct job *j)
{
    if (j->manual_dismiss) {
        predict_on(c, j->disk);
    }
}

void chain_observe_event(struct chain *c, const char *name, json_object *data)
{
    const char *id = jobj_str(data, "device");
    struct job *j;

    c->seq++;
    if ((j = ch_find_job(c, id ? id : jobj_str(data, "id")))) {
        j->touched = c->seq;
    }
    if (!id) {
        id = jobj_str(data, "id");
    }
    if (id && !ch_find_job(c, id)
        && !(!strcmp(name, "JOB_STATUS_CHANGE")
             && same(jobj_str(data, "status"), "null")
             && c->commands_in_flight == 0)) {
        /* not started as far as the model knows: keep what was said, for
         * the reply that is probably on its way (but with no command out,
         * a job's last word is about one the model already let go of) */
        json_object *e = NULL;
        if (!json_object_object_get_ex(c->early, id, &e)) {
            e = json_object_new_object();
            json_object_object_add(c->early, id, e);
        }
        if (!strcmp(name, "JOB_STATUS_CHANGE") && jobj_str(data, "status")) {
            json_object_object_add(e, "status", json_object_new_string(
                                       jobj_str(data, "status")));
        } else if (!strcmp(name, "BLOCK_JOB_READY")) {
            json_object_object_add(e, "status", json_object_new_string("ready"));
            jobj_add_bool(e, "ready", 1);
        } else if (!strcmp(name, "BLOCK_JOB_COMPLETED")
                   || !strcmp(name, "BLOCK_JOB_CANCELLED")) {
            jobj_add_bool(e, "ended", 1);
            jobj_add_bool(e, "completed",
                          !strcmp(name, "BLOCK_JOB_COMPLETED")
                          && !jobj_str(data, "error"));
            jobj_add_str(e, "error", jobj_str(data, "error"));
        }
        if (json_object_object_get_ex(data, "offset", NULL)) {
            json_object_object_add(e, "offset", json_object_new_int64(
                                       jobj_int(data, "offset", 0)));
            json_object_object_add(e, "len", json_object_new_int64(
                                       jobj_int(data, "len", 0)));
        }
    }
    if (!strcmp(name, "JOB_STATUS_CHANGE")) {
        j = ch_find_job(c, jobj_str(data, "id"));
        if (j && jobj_str(data, "status")) {
            str_set(&j->status, jobj_str(data, "status"));
            if (same(j->status, "null")) {
                char *disk = dup_or_null(j->disk);
                ch_remove_job(c, j);
                predict_on(c, disk);
                free(disk);
            }
        }
        return;
    }
    if (!strcmp(name, "BLOCK_JOB_PENDING")) {
        j = ch_find_job(c, jobj_str(data, "id"));
        if (j) {
            str_set(&j->status, "pending");
        }
        return;
    }
    if (!strncmp(name, "DEVICE_", 7)) {
        ch_schedule(c);
        return;
    }
    j = ch_find_job(c, id);
    if (!j && c->commands_in_flight > 0) {
        /* QEMU often reports on a job before its reply to the command
         * that started it: wait for the replies out (the facts are kept
         * in c->early) rather than ask whole-VM questions now */
        c->stranger_job = true;
        return;
    }
    if (!j) {
        ch_schedule(c);  /* a job we never saw start: learn about it */
        return;
    }
    j->offset = jobj_int(data, "offset", j->offset);
    j->len = jobj_int(data, "len", j->len);
    j->speed = jobj_int(data, "speed", j->speed);
    if (!strcmp(name, "BLOCK_JOB_READY")) {
        j->ready = true;
        str_set(&j->status, "ready");
    } else if (!strcmp(name, "BLOCK_JOB_ERROR")) {
        char *e = xasprintf("%s error, action %s",
                            jobj_str(data, "operation") ? jobj_str(data,
                                                                 "operation")
                                                       : "I/O",
                            jobj_str(data, "action") ? jobj_str(data, "action")
                                                    : "?");
        str_set(&j->error, e);
        free(e);
    } else if (!strcmp(name, "BLOCK_JOB_COMPLETED")) {
        if (jobj_str(data, "error")) {
            str_set(&j->error, jobj_str(data, "error"));
        } else {
            ch_job_completed(c, j);
        }
        ch_backup_filter(c, j, false);
        str_set(&j->status, "concluded");
        job_ended(c, j);
    } else if (!strcmp(name, "BLOCK_JOB_CANCELLED")) {
        ch_backup_filter(c, j, false);
        str_set(&j->status, "concluded");
        job_ended(c, j);
    }
}

