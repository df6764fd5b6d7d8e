/*
 * fuzz_policy_load: the policy loader (policy/policy.c policy_load): XML,
 * validated against the RelaxNG schema built into the binary, then the
 * semantic checks, on any file.  The input is written to a file in a
 * scratch folder of this process and loaded; a policy that loads is then
 * asked about a few commands and its mirroring rules.  Checked: a refused
 * file always comes with errors, each naming the file; nothing leaks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "fuzz_common.h"
#include "policy.h"

static void ask(const struct policy *p, const char *listener,
                const char *command, const char *args)
{
    json_object *a = args ? json_tokener_parse(args) : NULL;
    static const struct location_lookup lookup = { .declared = cmd_locations };
    free(policy_check_request(p, listener, command, a, &lookup));
    json_object_put(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("policy.xml", data, size);
    char *errors = NULL;
    struct policy *p = policy_load(path, &errors);

    if (!p) {
        FUZZ_ASSERT(errors && *errors);
        FUZZ_ASSERT(!strncmp(errors, path, strlen(path)));
        free(errors);
        return 0;
    }
    FUZZ_ASSERT(!errors);
    FUZZ_ASSERT(!strcmp(policy_path(p), path));
    ask(p, "default", "query-status", NULL);
    ask(p, "admin", "quit", NULL);
    ask(p, "ops", "transaction", "{\"actions\": [{\"type\": "
        "\"blockdev-snapshot-sync\", \"data\": {\"device\": \"d\", "
        "\"snapshot-file\": \"/var/lib/vms/s.qcow2\"}}]}");
    ask(p, "default", "drive-mirror", "{\"device\": \"d\", \"target\": "
        "\"/srv/dest/x.qcow2\", \"sync\": \"full\"}");
    for (int i = 0; i < policy_mirror_rule_count(p); i++) {
        const struct policy_mirror_rule *r = policy_mirror_rule(p, i);
        FUZZ_ASSERT(r->name && r->disks && r->target && r->format);
    }
    (void)policy_mirror_for(p, MIRROR_ON_SNAPSHOT, "vda");
    (void)policy_mirror_for(p, MIRROR_ON_CONNECT, "disk0");
    policy_free(p);
    return 0;
}
