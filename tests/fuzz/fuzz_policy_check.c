/*
 * fuzz_policy_check: policy_check_request and policy_check_path against a
 * fixed policy, with fuzzed listener, command and arguments.
 *
 * The policy (written at start into this process's scratch folder D)
 * allows images under D/allowed, an NBD socket there and one TCP server,
 * and the https protocol.  D/allowed holds symbolic links that lead out
 * (to /etc, to D/outside, dangling to D/outside/new), one that loops, and
 * one that goes up.  Input: a byte choosing the listener, a byte choosing
 * the command (or taking it from the input), then the arguments as a
 * client's JSON text, "%D" in it standing for D.
 *
 * The oracle beyond "no crash": a path the policy lets through must, as
 * the kernel resolves it (realpath of the path, or of its folder for a
 * file QEMU would create), lie under D/allowed.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"
#include "fuzz_common.h"
#include "fuzz_json.h"
#include "policy.h"
#include "util.h"

static struct policy *policy;
static char allowed_real[PATH_MAX];

static const char *const listeners[] = { "default", "admin", "ops", "" };
static const char *const commands[] = {
    "transaction", "blockdev-add", "blockdev-create", "blockdev-snapshot-sync",
    "drive-mirror", "drive-backup", "blockdev-change-medium",
    "change-backing-file", "block-stream", "block-commit", "nbd-server-start",
    "block-export-add", "migrate", "migrate-incoming", "dump-guest-memory",
    "screendump", "pmemsave", "memsave", "chardev-add", "chardev-change",
    "object-add", "qmproxy-snapshot-mirror", "qmproxy-block-copy",
    "qmproxy-reopen", "__com.redhat_drive-mirror",
    "__com.redhat_drive-reopen", "query-status", "quit",
    "human-monitor-command", "qmproxy-capabilities",
};
#define NCOMMANDS (sizeof(commands) / sizeof(*commands))

static void setup(void)
{
    const char *d = fuzz_dir();
    char *xml, *path;
    char *errors = NULL;

    path = xasprintf("%s/allowed", d);
    mkdir(path, 0700);
    free(path);
    path = xasprintf("%s/allowed/sub", d);
    mkdir(path, 0700);
    free(path);
    path = xasprintf("%s/outside", d);
    mkdir(path, 0700);
    free(path);
    fuzz_write_file("allowed/image.qcow2", "", 0);
    fuzz_write_file("outside/secret.qcow2", "", 0);
#define LINK(target, name)                                            \
    do {                                                              \
        char *t_ = xasprintf(target, d), *n_ = xasprintf(name, d);    \
        if (symlink(t_, n_) != 0) {                                   \
            perror(n_);                                               \
            abort();                                                  \
        }                                                             \
        free(t_);                                                     \
        free(n_);                                                     \
    } while (0)
    LINK("/etc%.0s", "%s/allowed/etc");
    LINK("%s/outside", "%s/allowed/out");
    LINK("%s/outside/new.qcow2", "%s/allowed/dangling");
    LINK("loop%.0s", "%s/allowed/loop");
    LINK("..%.0s", "%s/allowed/up");
    LINK("sub/../../outside%.0s", "%s/allowed/sub-up");
#undef LINK
    xml = xasprintf(
        "<policy>\n"
        "  <roles>\n"
        "    <role name=\"operator\" default=\"deny\">\n"
        "      <deny command=\"quit\"/>\n"
        "      <allow command=\"query-*\"/>\n"
        "      <allow command=\"qmproxy-*\"/>\n"
        "      <allow command=\"block*\"/>\n"
        "      <allow command=\"drive-*\"/>\n"
        "      <allow command=\"transaction\"/>\n"
        "      <allow command=\"nbd-*\"/>\n"
        "      <allow command=\"migrate*\"/>\n"
        "      <allow command=\"__com.redhat_*\"/>\n"
        "    </role>\n"
        "  </roles>\n"
        "  <listeners default-role=\"operator\">\n"
        "    <listener name=\"admin\" role=\"full\"/>\n"
        "    <listener name=\"ops\" role=\"monitor\"/>\n"
        "  </listeners>\n"
        "  <paths>\n"
        "    <allow dir=\"%s/allowed\"/>\n"
        "    <allow nbd=\"unix:%s/allowed/nbd.sock\"/>\n"
        "    <allow nbd=\"tcp:localhost:10809\"/>\n"
        "    <allow protocol=\"https\"/>\n"
        "  </paths>\n"
        "</policy>\n", d, d);
    path = xstrdup(fuzz_write_file("policy.xml", xml, strlen(xml)));
    free(xml);
    policy = policy_load(path, &errors);
    if (!policy) {
        fprintf(stderr, "the fixed policy does not load:\n%s", errors);
        abort();
    }
    free(path);
    path = xasprintf("%s/allowed", d);
    if (!realpath(path, allowed_real)) {
        abort();
    }
    free(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setup();
    return 0;
}

static bool under_allowed(const char *real)
{
    size_t n = strlen(allowed_real);
    return !strncmp(real, allowed_real, n) && (!real[n] || real[n] == '/');
}

/* The kernel's view of a path the policy let through. */
static void check_passed_path(const char *path)
{
    char real[PATH_MAX];

    if (path[0] != '/') {
        return;
    }
    if (realpath(path, real)) {
        if (!under_allowed(real)) {
            fprintf(stderr, "allowed: %s\nwhich is %s\n", path, real);
            FUZZ_ASSERT(!"the policy let a path out of its folders");
        }
        return;
    }
    if (errno == ENOENT) {
        /* a file QEMU would create: its folder must be inside */
        char *copy = xstrdup(path), *dir = dirname(copy);
        if (realpath(dir, real) && !under_allowed(real)) {
            /* "/" and the allowed folder's own parent are fine only
             * when the path names the folder itself */
            fprintf(stderr, "allowed: %s\nwhose folder is %s\n", path, real);
            FUZZ_ASSERT(!"the policy let a new file out of its folders");
        }
        free(copy);
    }
}

/* "%D" in the input stands for the scratch folder. */
static char *expand(const uint8_t *data, size_t n)
{
    struct strbuf sb = STRBUF_INIT;

    for (size_t i = 0; i < n; i++) {
        if (data[i] == '%' && i + 1 < n && data[i + 1] == 'D') {
            strbuf_adds(&sb, fuzz_dir());
            i++;
        } else {
            strbuf_addc(&sb, (char)data[i]);
        }
    }
    strbuf_addc(&sb, 0);
    sb.len--;
    return strbuf_detach(&sb, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = { data, size };
    const char *listener = listeners[fuzz_u8(&in) % 4];
    uint8_t c = fuzz_u8(&in);
    char *command = NULL, *text, *err;
    size_t len;
    struct fuzz_one_text args;

    if (c < NCOMMANDS * 8) {
        command = xstrdup(commands[c % NCOMMANDS]);
    } else {
        /* the command's name from the input, up to a newline */
        const uint8_t *nl = memchr(in.p, '\n', in.n);
        size_t n = nl ? (size_t)(nl - in.p) : in.n;
        command = xstrndup((const char *)in.p, n);
        in.p += nl ? n + 1 : n;
        in.n -= nl ? n + 1 : n;
    }
    text = expand(in.p, in.n);
    len = strlen(text);

    /* the arguments as the session reads a client's JSON */
    fuzz_read_one(text, len, &args);
    if (args.ok && json_object_is_type(args.value, json_type_object)) {
        static const struct location_lookup lookup = {
            .declared = cmd_locations,
        };
        err = policy_check_request(policy, listener, command, args.value,
                                   &lookup);
        free(err);
    }
    fuzz_one_text_release(&args);

    /* and the text as one path, as every location is judged */
    err = policy_check_path(policy, "target", text);
    if (!err) {
        check_passed_path(text);
    }
    free(err);
    free(text);
    free(command);
    return 0;
}
