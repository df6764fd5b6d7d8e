/*
 * policy: who may do what, where images may go, and which disks are
 * mirrored automatically.  Loaded from an XML file validated against the
 * RelaxNG schema policy/qmproxy.rng (built into the binary), then
 * evaluated per command: the listener a client came through has a role, a
 * role's allow/deny rules are command globs (first match wins) with a
 * default, and every path that would make QEMU create or open an image is
 * resolved and must lie in an allowed directory.
 *
 * This module reads its file and nothing else; acting on the mirroring
 * rules is the operations' business (proxy/ops/auto-mirror.c).
 */
#ifndef QMPROXY_POLICY_H
#define QMPROXY_POLICY_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "location.h"

struct policy;

enum mirror_trigger { MIRROR_ON_SNAPSHOT, MIRROR_ON_CONNECT };

struct policy_mirror_rule {
    char *name;
    char *disks;            /* glob over disk names */
    enum mirror_trigger on;
    char *target;           /* the directory copies go to, or an NBD
                             * server (its exports are named after the
                             * disks: DISK-replica) */
    bool pivot_when_ready;
    bool retry;             /* on-error="retry" */
    int64_t speed;
    bool precreate;
    int retries;
    int backoff_ms, max_backoff_ms;
    int outage_budget_ms;   /* a replica's link may be down this long
                             * before its copy is given up */
    char *format;
};

/* Load and validate; NULL with *errors (owned, one "FILE:LINE: what" per
 * line) when the file is not a valid policy. */
struct policy *policy_load(const char *path, char **errors);
void policy_free(struct policy *p);
const char *policy_path(const struct policy *p);

/*
 * May a client on this listener run this request?  NULL when it may; else
 * the reason (owned), naming the rule that refused it.  Checks the command,
 * each action of a transaction as its own command, and every place the
 * command names: locations(command) says which arguments those are (the
 * commands declare them; the policy only confines them).
 */
char *policy_check_request(const struct policy *p, const char *listener,
                           const char *command, json_object *args,
                           const struct location_lookup *locations);
/* Which rule of which role decides whether this listener may run this
 * command (by name; places are policy_check_request's): owned text, and
 * *allowed.  For qmproxyctl policy explain. */
char *policy_explain_command(const struct policy *p, const char *listener,
                             const char *command, bool *allowed);
/* A short, stable name for what refused a request policy_check_request
 * refused (for the metrics; owned): "ROLE/rule-N", "ROLE/default",
 * "no-role", or "paths" when the command itself is allowed (a place it
 * names, or one of a transaction's actions). */
char *policy_rule_id(const struct policy *p, const char *listener,
                     const char *command);
/* Does the policy confine places (<paths>)?  Then the router reads QEMU's
 * schema, for the commands nobody declared. */
bool policy_confines_places(const struct policy *p);
/* Is this image path (what: "snapshot-file"...) allowed?  NULL: yes. */
char *policy_check_path(const struct policy *p, const char *what,
                        const char *path);
/*
 * The allowed folder an absolute path lies under as written (no symbolic
 * link looked at), and in *rest the path below it; NULL when none does.
 * For the proxy's own operations, which open their images beneath that
 * folder themselves (proxy/beneath.h).
 */
const char *policy_folder_of(const struct policy *p, const char *path,
                             const char **rest);

int policy_mirror_rule_count(const struct policy *p);
const struct policy_mirror_rule *policy_mirror_rule(const struct policy *p,
                                                    int i);
/* The first rule of this trigger matching disk, or NULL. */
const struct policy_mirror_rule *policy_mirror_for(const struct policy *p,
                                                   enum mirror_trigger on,
                                                   const char *disk);

#endif
