/*
 * qemu-commands: QEMU's commands that name places outside QEMU, and those
 * that take the descriptors passed with them, from QEMU 7.2's schema
 * (qapi/block-core.json, block.json, misc.json).
 */
#include "qemu-commands.h"

#include <string.h>

#define FILE_AT(p) { p, LOCATION_FILE }
#define END { NULL, LOCATION_FILE }

#define AT(p, kind) { p, kind }

/* Members of block driver options that name host files, at any depth and
 * through nested children: images, a vvfat directory, blkdebug's rules, a
 * backing file written into a header; and every node, by its driver. */
static const struct location block_options[] = {
    FILE_AT("**.filename"), FILE_AT("**.dir"), FILE_AT("**.config"),
    FILE_AT("**.backing-file"), AT("**", LOCATION_BLOCK_NODE), END,
};
static const struct location nbd_server[] = {
    AT("addr", LOCATION_SOCKET), END,
};
static const struct location export[] = {
    AT("addr", LOCATION_SOCKET), FILE_AT("mountpoint"), END,
};
static const struct location uri[] = { AT("uri", LOCATION_URI), END };
static const struct location dump[] = { AT("protocol", LOCATION_URI), END };
static const struct location chardev[] = {
    FILE_AT("backend.data.out"), FILE_AT("backend.data.in"),
    FILE_AT("backend.data.logfile"), FILE_AT("backend.data.device"),
    FILE_AT("backend.data.path"),
    AT("backend.data.addr", LOCATION_SOCKET), END,
};
/* object-add's properties that name files: memory-backend-file's
 * mem-path, secret's file, the tls-creds folders */
static const struct location object[] = {
    FILE_AT("mem-path"), FILE_AT("file"), FILE_AT("dir"), END,
};
static const struct location reopen[] = {
    FILE_AT("options.*.**.filename"), FILE_AT("options.*.**.dir"),
    FILE_AT("options.*.**.config"), AT("options.*.**", LOCATION_BLOCK_NODE),
    END,
};
/* a guest network's helper programs and sockets */
static const struct location netdev[] = {
    AT("script", LOCATION_PROGRAM), AT("downscript", LOCATION_PROGRAM),
    AT("helper", LOCATION_PROGRAM), AT("addr", LOCATION_SOCKET),
    AT("local", LOCATION_SOCKET), AT("remote", LOCATION_SOCKET),
    FILE_AT("path"), FILE_AT("sock"), END,
};
/* device properties that load host files */
static const struct location device[] = {
    FILE_AT("file"), FILE_AT("romfile"), FILE_AT("filename"), END,
};
static const struct location hmp[] = {
    AT("command-line", LOCATION_ANYTHING), END,
};
/* its actions are commands of their own, checked one by one */
static const struct location none[] = { END };

static const struct location snapshot_file[] = {
    FILE_AT("snapshot-file"), END,
};
static const struct location target[] = { FILE_AT("target"), END };
static const struct location filename[] = { FILE_AT("filename"), END };
static const struct location backing_file[] = {
    FILE_AT("backing-file"), END,
};

/* getfd and add-fd, as QAPI accepts them: a call it refuses never runs
 * the handler that would take the descriptors. */
static const struct qapi_member getfd_args[] = {
    { "fdname", QAPI_STR, false, NULL, NULL, NULL },
    { NULL, QAPI_STR, false, NULL, NULL, NULL },
};
static const struct qapi_member add_fd_args[] = {
    { "fdset-id", QAPI_INT, true, NULL, NULL, NULL },
    { "opaque", QAPI_STR, true, NULL, NULL, NULL },
    { NULL, QAPI_STR, false, NULL, NULL, NULL },
};

static const struct {
    const char *name;
    const struct location *locations;
    const struct qapi_member *fd_args;
} table[] = {
    { "blockdev-add", block_options, NULL },
    { "blockdev-create", block_options, NULL },
    { "blockdev-snapshot-sync", snapshot_file, NULL },
    { "drive-mirror", target, NULL },
    { "drive-backup", target, NULL },
    { "blockdev-change-medium", filename, NULL },
    { "change-backing-file", backing_file, NULL },
    { "block-stream", backing_file, NULL },
    { "block-commit", backing_file, NULL },
    { "nbd-server-start", nbd_server, NULL },
    { "block-export-add", export, NULL },
    { "migrate", uri, NULL },
    { "migrate-incoming", uri, NULL },
    { "dump-guest-memory", dump, NULL },
    { "screendump", filename, NULL },
    { "pmemsave", filename, NULL },
    { "memsave", filename, NULL },
    { "chardev-add", chardev, NULL },
    { "chardev-change", chardev, NULL },
    { "object-add", object, NULL },
    { "blockdev-reopen", reopen, NULL },
    { "x-blockdev-reopen", reopen, NULL },
    { "dumpdtb", filename, NULL },
    { "migrate-recover", uri, NULL },
    { "xen-save-devices-state", filename, NULL },
    { "xen-load-devices-state", filename, NULL },
    { "netdev_add", netdev, NULL },
    { "device_add", device, NULL },
    { "human-monitor-command", hmp, NULL },
    { "transaction", none, NULL },
    { "getfd", NULL, getfd_args },
    { "add-fd", NULL, add_fd_args },
};

/* QEMU 7.2's block drivers (BlockdevDriver) by where they reach. */
static const struct {
    const char *name;
    enum block_driver_reach reach;
} drivers[] = {
    /* formats, filters and local protocols: their host files are the
     * filename/dir/config members, checked as files */
    { "blkdebug", DRIVER_LOCAL }, { "blklogwrites", DRIVER_LOCAL },
    { "blkreplay", DRIVER_LOCAL }, { "blkverify", DRIVER_LOCAL },
    { "bochs", DRIVER_LOCAL }, { "cloop", DRIVER_LOCAL },
    { "compress", DRIVER_LOCAL }, { "copy-before-write", DRIVER_LOCAL },
    { "copy-on-read", DRIVER_LOCAL }, { "dmg", DRIVER_LOCAL },
    { "file", DRIVER_LOCAL }, { "host_cdrom", DRIVER_LOCAL },
    { "host_device", DRIVER_LOCAL }, { "luks", DRIVER_LOCAL },
    { "null-aio", DRIVER_LOCAL }, { "null-co", DRIVER_LOCAL },
    { "parallels", DRIVER_LOCAL }, { "preallocate", DRIVER_LOCAL },
    { "qcow", DRIVER_LOCAL }, { "qcow2", DRIVER_LOCAL },
    { "qed", DRIVER_LOCAL }, { "quorum", DRIVER_LOCAL },
    { "raw", DRIVER_LOCAL }, { "replication", DRIVER_LOCAL },
    { "snapshot-access", DRIVER_LOCAL }, { "throttle", DRIVER_LOCAL },
    { "vdi", DRIVER_LOCAL }, { "vhdx", DRIVER_LOCAL },
    { "vmdk", DRIVER_LOCAL }, { "vpc", DRIVER_LOCAL },
    { "vvfat", DRIVER_LOCAL },
    /* an NBD server: server is a SocketAddress */
    { "nbd", DRIVER_NBD },
    /* elsewhere on the network, or the host's hardware */
    { "ftp", DRIVER_ELSEWHERE }, { "ftps", DRIVER_ELSEWHERE },
    { "http", DRIVER_ELSEWHERE }, { "https", DRIVER_ELSEWHERE },
    { "gluster", DRIVER_ELSEWHERE }, { "iscsi", DRIVER_ELSEWHERE },
    { "nfs", DRIVER_ELSEWHERE }, { "rbd", DRIVER_ELSEWHERE },
    { "ssh", DRIVER_ELSEWHERE }, { "nvme", DRIVER_ELSEWHERE },
    { "nvme-io_uring", DRIVER_ELSEWHERE },
    { "virtio-blk-vfio-pci", DRIVER_ELSEWHERE },
    { "virtio-blk-vhost-user", DRIVER_ELSEWHERE },
    { "virtio-blk-vhost-vdpa", DRIVER_ELSEWHERE },
};

enum block_driver_reach qemu_block_driver_reach(const char *name)
{
    for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
        if (!strcmp(drivers[i].name, name)) {
            return drivers[i].reach;
        }
    }
    return DRIVER_UNKNOWN;
}

static int find(const char *name)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (!strcmp(table[i].name, name)) {
            return (int)i;
        }
    }
    return -1;
}

const struct location *qemu_command_locations(const char *name)
{
    int i = find(name);
    return i < 0 ? NULL : table[i].locations;
}

const struct qapi_member *qemu_command_fd_args(const char *name)
{
    int i = find(name);
    return i < 0 ? NULL : table[i].fd_args;
}
