/*
 * op-images: under a path policy, the images an operation has QEMU create
 * or open are opened by the proxy itself, beneath the allowed folder with
 * no symbolic link followed (beneath.h), and handed to QEMU by descriptor
 * (step-mirror: add-fd, then /dev/fdset/N in the command).  The policy's
 * check of the path came first; this closes the window between that check
 * and QEMU's open: whatever is swapped in meanwhile, QEMU gets the file
 * the proxy opened, and that one lies beneath the folder.
 *
 * Local file system opens on the loop, as the checks' stat() calls are.
 */
#include "op.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "nbd-target.h"
#include "policy.h"
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
                    const char *path, bool create, int *fd)
{
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
    *fd = beneath_open(dirfd, rest, create ? O_CREAT | O_EXCL | O_RDWR
                                           : O_RDWR, 0644);
    err = errno;
    if (*fd < 0) {
        msg = open_failed(what, path, folder, rest, dirfd, err, create);
    }
    close(dirfd);
    return msg;
}

void op_disk_take_image(struct op_disk *d, int fd, bool created)
{
    struct stat st;

    d->mirror_fd = fd;
    d->mirror_created = created && fd >= 0 && fstat(fd, &st) == 0;
    if (d->mirror_created) {
        d->mirror_dev = (uint64_t)st.st_dev;
        d->mirror_ino = (uint64_t)st.st_ino;
    }
}

void op_remove_unused_image(const struct policy *pol, struct op_disk *d)
{
    const char *folder, *rest, *slash;
    char *parent;
    int dirfd, pfd;
    struct stat st;

    if (!d->mirror_created || d->mirror_used) {
        return;
    }
    d->mirror_created = false;
    folder = policy_folder_of(pol, d->mirror_file, &rest);
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
            && (uint64_t)st.st_dev == d->mirror_dev
            && (uint64_t)st.st_ino == d->mirror_ino) {
            unlinkat(pfd, name, 0);
        }
        close(pfd);
    }
    free(parent);
    close(dirfd);
}
