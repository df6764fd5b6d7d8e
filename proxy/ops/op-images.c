/*
 * op-images: under a path policy, the images an operation has QEMU create
 * or open are opened by the proxy itself, beneath the allowed folder with
 * no symbolic link followed (beneath.h), and handed to QEMU by descriptor
 * (add-fd, then /dev/fdset/N in the commands).  The policy's
 * check of the path came first; this closes the window between that check
 * and QEMU's open: whatever is swapped in meanwhile, QEMU gets the file
 * the proxy opened, and that one lies beneath the folder.
 *
 * Local file system opens on the loop, as the checks' stat() calls are.
 */
#include "op.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "op-internal.h"
#include "beneath.h"
#include "cmd.h"
#include "fdset-names.h"
#include "jsonobj.h"
#include "nbd-target.h"
#include "policy.h"
#include "qmp.h"
#include "spawn.h"
#include "upstream.h"
#include "util.h"

/* What went wrong opening path (rest beneath folder), said so that the
 * client knows what to change. */
static char *open_failed(const char *what, const char *path,
                         const char *folder, const char *rest, int dirfd,
                         int err, bool create)
{
    struct stat st;

    /* EEXIST for a name that is no file (now): a link came and went */
    if (err == ELOOP || err == EXDEV
        || (err == EEXIST
            && (fstatat(dirfd, rest, &st, AT_SYMLINK_NOFOLLOW) != 0
                || S_ISLNK(st.st_mode)))) {
        return xasprintf("%s %s is not allowed: under the path policy qmproxy "
                         "opens the images it has QEMU %s itself, beneath %s, "
                         "and its path there goes through a symbolic link or "
                         "'..' out of it (name the file as it lies beneath %s, "
                         "with no symbolic link)", what, path,
                         create ? "create" : "open", folder, folder);
    }
    if (err == EEXIST) {
        return xasprintf("%s %s already exists; qmproxy will not have QEMU "
                         "create an image over it (remove it, or use mode "
                         "'existing' to use it as it is)", what, path);
    }
    return xasprintf("%s %s cannot be %s beneath %s: %s", what, path,
                     create ? "created" : "opened", folder, strerror(err));
}

char *op_open_image(const struct policy *pol, const char *what,
                    const char *path, enum op_image_open how, int *fd)
{
    static const int flags[] = {
        [OP_IMAGE_EXISTING] = O_RDWR,
        [OP_IMAGE_NEW] = O_CREAT | O_EXCL | O_RDWR,
        [OP_IMAGE_REPLACE] = O_CREAT | O_TRUNC | O_RDWR,
    };
    bool create = how != OP_IMAGE_EXISTING;
    const char *folder, *rest;
    int dirfd, err;
    char *msg = NULL;

    *fd = -1;
    if (!policy_confines_places(pol) || !path || path[0] != '/'
        || nbd_target_is(path)) {
        return NULL;   /* no path policy, or no host file: the policy's */
    }
    folder = policy_folder_of(pol, path, &rest);
    if (!folder) {
        return xasprintf("%s %s is not allowed: under the path policy qmproxy "
                         "opens the images it has QEMU %s itself, beneath an "
                         "allowed folder, following no symbolic link; name "
                         "it beneath one of them as it lies there (the "
                         "folders as the policy resolved them)", what, path,
                         create ? "create" : "open");
    }
    dirfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        return xasprintf("%s %s: the allowed folder %s cannot be opened: %s",
                         what, path, folder, strerror(errno));
    }
    /* created as QEMU creates images (0644 less the umask) */
    *fd = beneath_open(dirfd, rest, flags[how], 0644);
    err = errno;
    if (*fd < 0) {
        msg = open_failed(what, path, folder, rest, dirfd, err, create);
    }
    close(dirfd);
    return msg;
}

void op_image_take(struct op_image *im, int fd, bool created)
{
    struct stat st;

    im->fd = fd;
    im->created = created && fd >= 0 && fstat(fd, &st) == 0;
    if (im->created) {
        im->dev = (uint64_t)st.st_dev;
        im->ino = (uint64_t)st.st_ino;
    }
}

char *op_image_qemu_name(const struct op_image *im, const char *path)
{
    return im->fdset >= 0 ? xasprintf("/dev/fdset/%lld", (long long)im->fdset)
                          : xstrdup(path);
}

json_object *op_image_node_args(const struct op_image *im, const char *path,
                                const char *format, const char *node,
                                const char *file_node)
{
    json_object *add = json_object_new_object(), *file;
    char *name = op_image_qemu_name(im, path);

    jobj_add_str(add, "driver", format);
    jobj_add_str(add, "node-name", node);
    file = json_object_new_object();
    jobj_add_str(file, "driver", "file");
    jobj_add_str(file, "node-name", file_node);
    jobj_add_str(file, "filename", name);
    json_object_object_add(add, "file", file);
    json_object_object_add(add, "backing", NULL);
    free(name);
    return add;
}

/* The image of disk i being handed over (one step at a time: the copy's
 * or the snapshot's). */
static struct op_image *handing(struct op *op, int i)
{
    struct op_disk *d = &op->disks[i];
    return d->copy_image.handing ? &d->copy_image
         : d->snapshot_image.handing ? &d->snapshot_image : NULL;
}

static void handed(struct op *op, int i, struct op_image *im,
                   const char *error)
{
    im->handing = false;
    im->handed(op, i, error);
}

static void added(struct op *op, int i, bool ok, json_object *ret,
                  const char *error)
{
    struct op_image *im = handing(op, i);
    json_object *id;

    if (!im) {
        return;
    }
    if (!ok || !json_object_object_get_ex(ret, "fdset-id", &id)) {
        handed(op, i, im, error ? error : "add-fd gave no fdset-id");
        return;
    }
    im->fdset = json_object_get_int64(id);
    fdset_names_set(im->fdset, im->path);
    handed(op, i, im, NULL);
}

/* add-fd, in an fd set of the proxy's own; the opaque string says whose
 * it is in query-fdsets.  Only the read-write descriptor: a node added
 * with blockdev-add opens it read-write only, and a read-only descriptor
 * of another open file beside it would make QEMU's image locks (taken
 * per open file) conflict with each other. */
static void add_fd(struct op *op, int i, struct op_image *im,
                   const char *role)
{
    json_object *args = json_object_new_object();
    int fd = im->fd;
    char *opaque = xasprintf("qmproxy %s %s %s %s", op->name,
                             op->disks[i].disk, role, im->path);

    im->fd = -1;   /* the upstream's now */
    im->fdset = -1;
    json_object_object_add(args, "fdset-id", json_object_new_int64(
                               fdset_names_next_id(op_reg.tag)));
    jobj_add_str(args, "opaque", opaque);
    op_qmp_fd(op, qmp_command("add-fd", args), fd, added, i);
    free(opaque);
}

struct formatting {
    struct op *op;
    int disk;
    char *role;
};

static void formatted(void *opaque, int status, const char *output)
{
    struct formatting *f = opaque;
    struct op *op = f->op;
    struct op_image *im = handing(op, f->disk);

    op->outstanding--;
    if (op_is_final(op->state) || !im) {
        /* ended meanwhile (QEMU went away) */
    } else if (status != 0) {
        char *why = xasprintf("qemu-img could not format the image qmproxy "
                              "created: %s", output);
        handed(op, f->disk, im, why);
        free(why);
    } else {
        add_fd(op, f->disk, im, f->role);
    }
    free(f->role);
    free(f);
}

void op_image_hand_over(struct op *op, int i, struct op_image *im,
                        const char *path, const char *role,
                        const struct op_image_header *hdr,
                        void (*done)(struct op *op, int disk,
                                     const char *error))
{
    struct formatting *f;
    char sz[32];
    char *argv[16];
    int n = 0;

    im->handing = true;
    im->path = (char *)path;
    im->handed = done;
    if (!hdr) {
        add_fd(op, i, im, role);
        return;
    }
    snprintf(sz, sizeof(sz), "%lld", (long long)hdr->size);
    argv[n++] = "qemu-img";
    argv[n++] = "create";
    argv[n++] = "-q";
    argv[n++] = "-f";
    argv[n++] = (char *)hdr->format;
    if (hdr->backing && strcmp(hdr->format, "raw")) {
        argv[n++] = "-u";   /* QEMU has it open; no need to look */
        argv[n++] = "-b";
        argv[n++] = (char *)hdr->backing;
        argv[n++] = "-F";
        argv[n++] = (char *)hdr->backing_format;
    }
    /* the descriptor itself, as the child's 3: the open file, not a name */
    argv[n++] = "/dev/fd/3";
    argv[n++] = sz;
    argv[n] = NULL;
    f = xcalloc(1, sizeof(*f));
    f->op = op;
    f->disk = i;
    f->role = xstrdup(role);
    op->outstanding++;  /* keeps the step while qemu-img runs */
    spawn_run_with_fd(op_reg.env->base, argv, im->fd, formatted, f);
}

void op_image_remove_unused(const struct policy *pol, struct op_image *im,
                            const char *path)
{
    const char *folder, *rest, *slash;
    char *parent;
    int dirfd, pfd;
    struct stat st;

    if (!im->created || im->used || !path) {
        return;
    }
    im->created = false;
    folder = policy_folder_of(pol, path, &rest);
    if (!folder || (dirfd = open(folder, O_RDONLY | O_DIRECTORY
                                         | O_CLOEXEC)) < 0) {
        return;   /* the policy changed meanwhile: leave it */
    }
    slash = strrchr(rest, '/');
    parent = slash ? xstrndup(rest, (size_t)(slash - rest)) : xstrdup(".");
    pfd = beneath_open(dirfd, parent, O_RDONLY | O_DIRECTORY, 0);
    if (pfd >= 0) {
        const char *name = slash ? slash + 1 : rest;
        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
            && (uint64_t)st.st_dev == im->dev
            && (uint64_t)st.st_ino == im->ino) {
            unlinkat(pfd, name, 0);
        }
        close(pfd);
    }
    free(parent);
    close(dirfd);
}

static void release(const struct policy *pol, struct op_image *im,
                    const char *path)
{
    op_image_remove_unused(pol, im, path);
    if (im->fd >= 0) {
        close(im->fd);
        im->fd = -1;
    }
    if (im->fdset >= 0 && !im->fdset_removed) {
        /* nobody waits for the answer: the operation is over, and a set
         * QEMU no longer has is no worse */
        json_object *a = json_object_new_object();
        json_object *cmd;
        json_object_object_add(a, "fdset-id", json_object_new_int64(im->fdset));
        cmd = qmp_command("remove-fd", a);
        upstream_send_internal(op_reg.env->up, cmd, NULL, NULL);
        json_object_put(cmd);
        im->fdset_removed = true;
    }
}

void op_release_images(struct op *op)
{
    const struct cmd_env *env = op_reg.env;
    const struct policy *pol = env->policy(env->opaque);

    for (int i = 0; i < op->ndisks; i++) {
        struct op_disk *d = &op->disks[i];
        release(pol, &d->copy_image, d->mirror_file);
        release(pol, &d->snapshot_image, d->snapshot_file);
    }
}
