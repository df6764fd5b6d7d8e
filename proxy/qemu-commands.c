/*
 * qemu-commands: QEMU's commands that name places outside QEMU, from
 * QEMU 7.2's schema (qapi/block-core.json, block.json, misc.json).
 */
#include "qemu-commands.h"

#include <string.h>

#define FILE_AT(p) { p, LOCATION_FILE }
#define END { NULL, LOCATION_FILE }

/* Members of block driver options that name host files, at any depth and
 * through nested children: images, a vvfat directory, blkdebug's rules, a
 * backing file written into a header. */
static const struct location block_options[] = {
    FILE_AT("**.filename"), FILE_AT("**.dir"), FILE_AT("**.config"),
    FILE_AT("**.backing-file"), END,
};

static const struct location snapshot_file[] = {
    FILE_AT("snapshot-file"), END,
};
static const struct location target[] = { FILE_AT("target"), END };
static const struct location filename[] = { FILE_AT("filename"), END };
static const struct location backing_file[] = {
    FILE_AT("backing-file"), END,
};

static const struct {
    const char *name;
    const struct location *locations;
} table[] = {
    { "blockdev-add", block_options },
    { "blockdev-create", block_options },
    { "blockdev-snapshot-sync", snapshot_file },
    { "drive-mirror", target },
    { "drive-backup", target },
    { "blockdev-change-medium", filename },
    { "change-backing-file", backing_file },
    { "block-stream", backing_file },
    { "block-commit", backing_file },
};

const struct location *qemu_command_locations(const char *name)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (!strcmp(table[i].name, name)) {
            return table[i].locations;
        }
    }
    return NULL;
}
