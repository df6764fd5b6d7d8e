/*
 * qemu-guards: client commands that QEMU would answer by aborting.
 *
 * Each rule is a command and the argument shape that trips an assertion
 * in QEMU, found against the QEMUs the proxy is tested with: the client
 * gets a GenericError saying what to change, and the VM lives on.
 */
#include "qemu-guards.h"

#include <string.h>

#include "util.h"

/* blockdev-reopen {"options": []}: bdrv_reopen_multiple() asserts a
 * non-empty queue (QEMU 7.2 block.c:4390, 10.0.2 block.c:4586). */
static char *reopen_nothing(json_object *args)
{
    json_object *options;

    if (json_object_object_get_ex(args, "options", &options)
        && json_object_is_type(options, json_type_array)
        && json_object_array_length(options) == 0) {
        return xstrdup("Parameter 'options' lists no node to reopen (give at "
                       "least one node's options; QEMU aborts on an empty "
                       "list)");
    }
    return NULL;
}

static const struct {
    const char *command;
    char *(*check)(json_object *args);
} guards[] = {
    { "blockdev-reopen", reopen_nothing },
};

char *qemu_guard_check(const char *command, json_object *args)
{
    for (size_t i = 0; command && i < sizeof(guards) / sizeof(guards[0]); i++) {
        if (!strcmp(command, guards[i].command)) {
            return guards[i].check(args);
        }
    }
    return NULL;
}
