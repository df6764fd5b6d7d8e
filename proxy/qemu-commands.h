/*
 * qemu-commands: what the proxy needs to know about QEMU's own commands,
 * in one table: which arguments name a place outside QEMU (for the
 * policy), and which commands take the descriptors passed with them.  The
 * proxy's own commands say the same on their cmd_entry.
 */
#ifndef QMPROXY_QEMU_COMMANDS_H
#define QMPROXY_QEMU_COMMANDS_H

#include "location.h"
#include "qapi.h"

/* NULL when the command names no location (or is not in the table). */
const struct location *qemu_command_locations(const char *name);
/* For a command that takes the descriptors passed with it (getfd,
 * add-fd): the arguments with which QEMU runs it, so a call it would
 * refuse does not take them; NULL for every other command. */
const struct qapi_member *qemu_command_fd_args(const char *name);

/* Where a block driver's nodes reach. */
enum block_driver_reach {
    DRIVER_LOCAL,      /* host files, named by filename/dir/config */
    DRIVER_NBD,        /* an NBD server */
    DRIVER_ELSEWHERE,  /* another protocol, or the host's hardware */
    DRIVER_UNKNOWN,    /* not one of QEMU 7.2's drivers */
};
enum block_driver_reach qemu_block_driver_reach(const char *name);

#endif
