/*
 * op-checks: what is checked before an operation touches anything: the
 * disk is known and idle, a new image's folder exists and nothing is
 * there yet, an existing image is there, a copy's backing file exists.
 */
#include "op.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "op-internal.h"
#include "chain.h"
#include "nbd-target.h"
#include "util.h"

char *op_check_disk(const char *name, const char **resolved)
{
    const char *disk = chain_disk_name(op_chain(), name);
    const struct op *by;

    if (!disk) {
        return xasprintf("No disk named '%s' (give a device name, a qdev "
                         "id, a node-name or the disk's current image)", name);
    }
    if (chain_job_id(op_chain(), disk)) {
        return xasprintf("disk %s is busy: block job %s runs on it", disk,
                         chain_job_id(op_chain(), disk));
    }
    if (ops_busy_disk(disk, &by)) {
        return xasprintf("disk %s is busy: operation %s (%s) is %s on it",
                         disk, by->name, by->type, op_state_name(by->state));
    }
    *resolved = disk;
    return NULL;
}

static char *parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash == path ? xstrdup("/")
                         : xstrndup(path, (size_t)(slash - path));
}

/*
 * The proxy will not have QEMU create an image over an existing file (that
 * is how a guest's data gets lost), and says plainly when a folder is
 * missing, before anything is touched.  Paths with a protocol prefix
 * (nbd:, blkdebug:...) are QEMU's business.
 */
char *op_check_new_file(const char *what, const char *path)
{
    char *dir;
    char *err = NULL;

    if (!path[0]) {
        return xasprintf("%s is empty", what);
    }
    if (path[0] != '/') {
        return strchr(path, ':') ? NULL
            : xasprintf("%s '%s' must be an absolute path", what, path);
    }
    if (access(path, F_OK) == 0) {
        return xasprintf("%s %s already exists; qmproxy will not have QEMU "
                         "create an image over it (remove it, or use mode "
                         "'existing' to use it as it is)", what, path);
    }
    dir = parent_dir(path);
    if (access(dir, F_OK) != 0) {
        err = xasprintf("%s %s cannot be created: folder %s does not exist",
                        what, path, dir);
    }
    free(dir);
    return err;
}

char *op_check_existing_file(const char *what, const char *path)
{
    if (!path[0]) {
        return xasprintf("%s is empty", what);
    }
    if (path[0] != '/') {
        return strchr(path, ':') ? NULL
            : xasprintf("%s '%s' must be an absolute path", what, path);
    }
    if (access(path, F_OK) != 0) {
        return xasprintf("%s %s does not exist (mode 'existing' uses an "
                         "image created beforehand): %s", what, path,
                         strerror(errno));
    }
    return NULL;
}

char *op_check_target(const char *what, const char *target, const char **mode)
{
    if (nbd_target_is(target)) {
        if (*mode && strcmp(*mode, "existing")) {
            return xasprintf("%s %s is an NBD export, which QEMU cannot "
                             "create: create the image on the receiving "
                             "side, export it, and use mode 'existing' (the "
                             "default for NBD targets)", what, target);
        }
        *mode = "existing";
        return NULL;
    }
    if (!*mode) {
        *mode = "absolute-paths";
    }
    return strcmp(*mode, "existing") ? op_check_new_file(what, target)
                                     : op_check_existing_file(what, target);
}

/*
 * The backing file a qcow2 image's header names, made absolute (relative
 * names are relative to the image's folder); NULL when the proxy cannot
 * see the image, it is not qcow2 or it has no backing.  Owned.
 */
char *op_backing_file(const char *image)
{
    unsigned char hdr[24];
    char path[4096];
    int fd;
    uint64_t off;
    uint32_t len;

    if (!image || image[0] != '/') {
        return NULL;
    }
    fd = open(image, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)
        || memcmp(hdr, "QFI\xfb", 4)) {
        close(fd);
        return NULL;  /* not qcow2: nothing to say */
    }
    off = 0;
    for (int i = 8; i < 16; i++) {
        off = off << 8 | hdr[i];
    }
    len = (uint32_t)hdr[16] << 24 | (uint32_t)hdr[17] << 16
        | (uint32_t)hdr[18] << 8 | hdr[19];
    if (!off || !len || len >= sizeof(path)
        || pread(fd, path, len, (off_t)off) != (ssize_t)len) {
        close(fd);
        return NULL;
    }
    close(fd);
    path[len] = 0;
    if (path[0] != '/') {
        const char *slash = strrchr(image, '/');
        return xasprintf("%.*s/%s", (int)(slash - image), image, path);
    }
    return xstrdup(path);
}

/*
 * The destination of a mode=existing copy opens its backing file when it
 * is finalized; if that file is not there yet, that disk alone would fail
 * after others had pivoted.  Look first (when the proxy can see the file).
 */
char *op_missing_backing(const char *image)
{
    char *backing = op_backing_file(image);

    if (backing && access(backing, F_OK) == 0) {
        free(backing);
        return NULL;
    }
    return backing;
}

const char *op_image_format(const char *image)
{
    unsigned char magic[4];
    int fd = open(image, O_RDONLY | O_CLOEXEC);
    bool qcow2 = fd >= 0 && pread(fd, magic, 4, 0) == 4
                 && !memcmp(magic, "QFI\xfb", 4);

    if (fd >= 0) {
        close(fd);
    }
    return qcow2 ? "qcow2" : "raw";
}
