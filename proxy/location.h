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
    LOCATION_FILE,        /* a string: a host file or folder, or a
                           * protocol's URI (nbd://, nbd+unix://, json:) */
    LOCATION_BLOCK_NODE,  /* an object with a "driver": a block node,
                           * reaching wherever its driver reaches */
    LOCATION_SOCKET,      /* SocketAddress (flat or legacy {type, data}):
                           * where QEMU listens or connects */
    LOCATION_URI,         /* scheme:rest, as migrate's uri (exec:, unix:,
                           * tcp:, fd:, rdma:, file:) */
    LOCATION_PROGRAM,     /* a program QEMU runs (netdev scripts) */
    LOCATION_ANYTHING,    /* a command line that can name anything (HMP):
                           * nothing to check, so nothing to allow */
};

struct location {
    const char *path;   /* NULL ends a table */
    enum location_kind kind;
};

/*
 * Call fn for every value the locations name in args (of any type: the
 * caller judges by the kind); stops at, and returns, the first non-NULL
 * result of fn.  key is the last member name (NULL at the top).
 */
typedef char *(*location_fn)(void *opaque, const struct location *loc,
                             const char *key, json_object *value);
char *location_each(const struct location *locs, json_object *args,
                    location_fn fn, void *opaque);

/* What the policy asks of the commands, for a command and for each
 * action of a transaction. */
struct location_lookup {
    /* The declared locations (NULL: none declared). */
    const struct location *(*declared)(const char *command);
    /* For a command that declares none: the argument through which it can
     * still name a place (from QEMU's schema), or NULL. */
    const char *(*undeclared)(void *opaque, const char *command);
    void *opaque;
};

#endif
