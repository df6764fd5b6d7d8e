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

#endif
