/*
 * qemu-commands: what the proxy needs to know about QEMU's own commands,
 * in one table: which arguments name a place outside QEMU (for the
 * policy).  The proxy's own commands say the same on their cmd_entry.
 */
#ifndef QMPROXY_QEMU_COMMANDS_H
#define QMPROXY_QEMU_COMMANDS_H

#include "location.h"

/* NULL when the command names no location (or is not in the table). */
const struct location *qemu_command_locations(const char *name);

/* Where a block driver's nodes reach. */
enum block_driver_reach {
    DRIVER_LOCAL,      /* host files, named by filename/dir/config */
    DRIVER_NBD,        /* an NBD server */
    DRIVER_ELSEWHERE,  /* another protocol, or the host's hardware */
    DRIVER_UNKNOWN,    /* not one of QEMU 7.2's drivers */
};
enum block_driver_reach qemu_block_driver_reach(const char *name);

#endif
