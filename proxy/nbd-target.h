/*
 * nbd-target: an NBD export as the target of a copy (a disk on another
 * host, served there by qemu-storage-daemon, qemu-nbd or the destination
 * QEMU's NBD server).  Clients name it as a URI (nbd://HOST[:PORT]/EXPORT,
 * nbd+unix:///EXPORT?socket=PATH) or as QEMU's BlockdevOptionsNbd
 * ({server, export, tls-creds...}); the operations hand QEMU one
 * canonical string for it, the very name QEMU gives the node once it runs
 * on it (so the chain model can tell that a disk now runs on its copy).
 */
#ifndef QMPROXY_NBD_TARGET_H
#define QMPROXY_NBD_TARGET_H

#include <stdbool.h>
#include <json-c/json.h>

/* Does this target string name an NBD export (any of the URI forms, or
 * json:{} options of the nbd driver)? */
bool nbd_target_is(const char *target);

/*
 * A target argument (a string, or an object mirroring BlockdevOptionsNbd)
 * as the string the operation keeps and gives drive-mirror: a file path
 * as it is, an NBD export in canonical form.  NULL on success (*out set,
 * owned); otherwise what is wrong and how to fix it (owned).  what names
 * the argument in the error.
 */
char *nbd_target_resolve(const char *what, json_object *target, char **out);
/*
 * Does QEMU's name for a disk's top image (from the chain model) name this
 * copy's target?  The same string, or the same NBD server and export:
 * QEMU names an export by its URI even when it was opened with TLS options
 * that the target's json:{} form keeps.
 */
bool nbd_target_names(const char *top, const char *target);

/*
 * An NBD server named without an export (nbd://HOST[:PORT],
 * nbd+unix://?socket=PATH, as a policy rule names where replicas go), with
 * export: the target's canonical name in *out (owned), or why not.
 */
char *nbd_target_export_on(const char *what, const char *server,
                           const char *export, char **out);

/* The same for a target given as a string (a path, or an NBD URI). */
char *nbd_target_resolve_string(const char *what, const char *target,
                                char **out);

#endif
