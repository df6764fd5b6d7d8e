/*
 * location: which arguments of a command name a place outside QEMU (an
 * image file, a socket, a host, a URL), declared next to the command: on
 * the proxy's own commands' entries (cmd.h), and for QEMU's commands in
 * one table (qemu-commands.c).  The policy confines what they name; a
 * command that takes a path and forgot to say so would be unconfined, so
 * the declaration lives where the command is written.
 *
 * A location is a path into the arguments: member names separated by
 * dots, "*" for every element of an array, and "**" for any depth (every
 * member and element below), e.g. "disks.*.snapshot-file" or
 * "**.filename".
 */
#ifndef QMPROXY_LOCATION_H
#define QMPROXY_LOCATION_H

#include <json-c/json.h>

enum location_kind {
    LOCATION_FILE,   /* a host file or directory */
};

struct location {
    const char *path;   /* NULL ends a table */
    enum location_kind kind;
};

/*
 * Call fn for every string the locations name in args; stops at, and
 * returns, the first non-NULL result of fn.  key is the last member name.
 */
typedef char *(*location_fn)(void *opaque, const struct location *loc,
                             const char *key, const char *value);
char *location_each(const struct location *locs, json_object *args,
                    location_fn fn, void *opaque);

/* The locations of a command by name (NULL: it names none), as the
 * policy asks for a command and for each action of a transaction. */
typedef const struct location *(*location_lookup_fn)(const char *command);

#endif
