/*
 * cmd: the table of the proxy's own commands and finding one in it.  It
 * sits above the commands (it names each entry); how a call answers is in
 * cmd-call.c, below them, so that no call runs in a circle.
 */
#include "cmd.h"

#include <string.h>

#include "qemu-commands.h"

extern const struct cmd_entry cmd_capabilities_entry;
extern const struct cmd_entry cmd_query_chain_entry;
extern const struct cmd_entry cmd_snapshot_mirror_entry;
extern const struct cmd_entry cmd_snapshot_mirror_xml_entry;
extern const struct cmd_entry cmd_reopen_entry;
extern const struct cmd_entry cmd_snapshot_reopen_entry;
extern const struct cmd_entry cmd_snapshot_abort_entry;
extern const struct cmd_entry cmd_block_copy_entry;
extern const struct cmd_entry cmd_migrate_entry;
extern const struct cmd_entry cmd_migrate_cancel_entry;
extern const struct cmd_entry cmd_query_operations_entry;
extern const struct cmd_entry cmd_rhel_drive_mirror_entry;
extern const struct cmd_entry cmd_rhel_drive_reopen_entry;
extern const struct cmd_entry cmd_rhel_transaction_entry;

const struct cmd_entry *const cmd_table[] = {
    &cmd_capabilities_entry,
    &cmd_query_chain_entry,
    &cmd_snapshot_mirror_entry,
    &cmd_snapshot_mirror_xml_entry,
    &cmd_reopen_entry,
    &cmd_snapshot_reopen_entry,
    &cmd_snapshot_abort_entry,
    &cmd_block_copy_entry,
    &cmd_migrate_entry,
    &cmd_migrate_cancel_entry,
    &cmd_query_operations_entry,
    &cmd_rhel_drive_mirror_entry,
    &cmd_rhel_drive_reopen_entry,
    &cmd_rhel_transaction_entry,
    NULL,
};

const struct cmd_entry *cmd_find(const char *name)
{
    for (const struct cmd_entry *const *e = cmd_table; *e; e++) {
        if (!(*e)->claims && !strcmp((*e)->name, name)) {
            return *e;
        }
    }
    return NULL;
}

const struct location *cmd_locations(const char *name)
{
    const struct cmd_entry *e = cmd_find(name);

    return e ? e->locations : qemu_command_locations(name);
}

const struct cmd_entry *cmd_for_request(const char *name, json_object *args)
{
    for (const struct cmd_entry *const *e = cmd_table; *e; e++) {
        if (!strcmp((*e)->name, name)) {
            return !(*e)->claims || (*e)->claims(args) ? *e : NULL;
        }
    }
    return NULL;
}
