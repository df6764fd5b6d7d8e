/*
 * qemu-guards: client commands that QEMU would answer by aborting (a
 * failed assertion kills the whole VM), refused before QEMU sees them.
 */
#ifndef QMPROXY_QEMU_GUARDS_H
#define QMPROXY_QEMU_GUARDS_H

#include <json-c/json.h>

/* NULL: QEMU may have it; else why not, for a GenericError (owned). */
char *qemu_guard_check(const char *command, json_object *args);

#endif
