/*
 * Unit tests for policy evaluation: roles and their first-match rules,
 * transaction actions, and image paths resolved through symlinks and "..".
 */
#include <check.h>

#include "check_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "policy.h"
#include "util.h"

static char dir[64];

static struct policy *load(const char *body)
{
    char path[128], *errors = NULL;
    FILE *f;
    struct policy *p;

    snprintf(path, sizeof(path), "%s/p.xml", dir);
    f = fopen(path, "w");
    fprintf(f, "<policy>%s</policy>\n", body);
    fclose(f);
    p = policy_load(path, &errors);
    ck_assert_msg(p != NULL, "%s", errors ? errors : "?");
    return p;
}

static void setup(void)
{
    strcpy(dir, "/tmp/qmproxy-policy-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const struct location_lookup lookup = { .declared = cmd_locations };

static void allowed(struct policy *p, const char *listener, const char *cmd,
                    const char *args_json)
{
    json_object *args = args_json ? json_tokener_parse(args_json) : NULL;
    char *why = policy_check_request(p, listener, cmd, args, &lookup);
    ck_assert_msg(!why, "%s refused: %s", cmd, why);
    json_object_put(args);
}

static void refused(struct policy *p, const char *listener, const char *cmd,
                    const char *args_json, const char *words)
{
    json_object *args = args_json ? json_tokener_parse(args_json) : NULL;
    char *why = policy_check_request(p, listener, cmd, args, &lookup);
    ck_assert_msg(why && strstr(why, words), "%s: got %s", cmd,
                  why ? why : "(allowed)");
    free(why);
    json_object_put(args);
}

START_TEST(test_roles_first_match)
{
    struct policy *p = load(
        "<roles><role name='op' default='deny'>"
        "<deny command='query-hidden'/><allow command='query-*'/>"
        "<allow command='transaction'/><allow command='blockdev-snapshot-*'/>"
        "</role><role name='open' default='allow'><deny command='quit'/>"
        "</role></roles>"
        "<listeners default-role='monitor'><listener name='a' role='op'/>"
        "<listener name='b' role='open'/></listeners>");

    allowed(p, "a", "query-status", NULL);
    refused(p, "a", "query-hidden", NULL, "rule <deny command='query-hidden'/>");
    refused(p, "a", "stop", NULL, "denies what no rule allows");
    allowed(p, "b", "stop", NULL);
    refused(p, "b", "quit", NULL, "for listener 'b'");
    /* the built-in monitor role, for everyone else */
    allowed(p, "other", "query-block", NULL);
    allowed(p, "other", "qmproxy-query-chain", NULL);
    refused(p, "other", "qmproxy-snapshot-abort", NULL, "allows only queries");
    /* transaction actions, one by one */
    allowed(p, "a", "transaction", "{\"actions\": [{\"type\": "
            "\"blockdev-snapshot-sync\", \"data\": {}}]}");
    refused(p, "a", "transaction", "{\"actions\": [{\"type\": "
            "\"blockdev-snapshot-sync\", \"data\": {}}, {\"type\": "
            "\"drive-backup\", \"data\": {}}]}", "transaction action 1");
    policy_free(p);
}
END_TEST

START_TEST(test_paths_resolved)
{
    char allowed_dir[128], outside[128], link[160], body[512];
    struct policy *p;

    snprintf(allowed_dir, sizeof(allowed_dir), "%s/in", dir);
    snprintf(outside, sizeof(outside), "%s/out", dir);
    snprintf(link, sizeof(link), "%s/in/link", dir);
    ck_assert_int_eq(mkdir(allowed_dir, 0700), 0);
    ck_assert_int_eq(mkdir(outside, 0700), 0);
    ck_assert_int_eq(symlink(outside, link), 0);
    snprintf(body, sizeof(body), "<paths><allow dir='%s'/></paths>",
             allowed_dir);
    p = load(body);

    char *ok[] = { xasprintf("%s/a.qcow2", allowed_dir),
                   xasprintf("%s/new/sub/b.qcow2", allowed_dir),
                   xasprintf("%s/x/../c.qcow2", allowed_dir) };
    for (int i = 0; i < 3; i++) {
        char *why = policy_check_path(p, "f", ok[i]);
        ck_assert_msg(!why, "%s: %s", ok[i], why);
        free(ok[i]);
    }
    char *bad[] = { xasprintf("%s/../out/a.qcow2", allowed_dir),
                    xasprintf("%s/link/b.qcow2", allowed_dir),
                    xasprintf("%s/new/../../out/c.qcow2", allowed_dir),
                    xstrdup("relative.qcow2"),
                    xstrdup("nbd:localhost:10809"),
                    xasprintf("%sx/d.qcow2", allowed_dir) };
    for (int i = 0; i < 6; i++) {
        char *why = policy_check_path(p, "f", bad[i]);
        ck_assert_msg(why != NULL, "%s allowed", bad[i]);
        free(why);
        free(bad[i]);
    }
    /* symlinks whose targets do not exist yet: QEMU would create the
     * file where they point (the dangling-link hole) */
    char *l1 = xasprintf("%s/dangling.qcow2", allowed_dir);
    char *t1 = xasprintf("%s/created-there.qcow2", outside);
    char *l2 = xasprintf("%s/dangling-dir", allowed_dir);
    char *l3 = xasprintf("%s/relative.qcow2", allowed_dir);
    char *l4 = xasprintf("%s/loop1", allowed_dir);
    char *l5 = xasprintf("%s/loop2", allowed_dir);
    char *l6 = xasprintf("%s/inside.qcow2", allowed_dir);
    ck_assert_int_eq(symlink(t1, l1), 0);
    ck_assert_int_eq(symlink("../out/not-yet", l2), 0);
    ck_assert_int_eq(symlink("../out/r.qcow2", l3), 0);
    ck_assert_int_eq(symlink(l5, l4), 0);
    ck_assert_int_eq(symlink(l4, l5), 0);
    ck_assert_int_eq(symlink("new/../a-sibling.qcow2", l6), 0);
    char *dangling[] = { xstrdup(l1), xasprintf("%s/x.qcow2", l2),
                         xstrdup(l3), xasprintf("%s/y", l4),
                         xasprintf("%s/sub/../dangling.qcow2", allowed_dir) };
    for (int i = 0; i < 5; i++) {
        char *why = policy_check_path(p, "f", dangling[i]);
        ck_assert_msg(why != NULL, "%s allowed", dangling[i]);
        free(why);
        free(dangling[i]);
    }
    /* a link that stays inside is fine */
    char *why = policy_check_path(p, "f", l6);
    ck_assert_msg(!why, "%s: %s", l6, why);
    free(l1); free(t1); free(l2); free(l3); free(l4); free(l5); free(l6);

    /* blockdev-add: any filename inside */
    char *args = xasprintf("{\"driver\": \"qcow2\", \"file\": {\"driver\": "
                           "\"file\", \"filename\": \"%s/x\"}}", outside);
    refused(p, "default", "blockdev-add", args, "is not allowed by policy");
    free(args);
    policy_free(p);
}
END_TEST

/* Every place a block node, an NBD URI, a socket or a URI can point. */
/* The allowed folder a path is written under, and the rest of it: what
 * the proxy's operations open their images beneath. */
START_TEST(test_folder_of)
{
    char a[128], b[128], body[512], path[256];
    const char *rest = NULL;
    struct policy *p;

    snprintf(a, sizeof(a), "%s/vms", dir);
    snprintf(b, sizeof(b), "%s/vms2", dir);
    ck_assert_int_eq(mkdir(a, 0700), 0);
    ck_assert_int_eq(mkdir(b, 0700), 0);
    snprintf(body, sizeof(body), "<paths><allow dir='%s'/><allow dir='%s/'/>"
             "</paths>", a, b);
    p = load(body);
    snprintf(path, sizeof(path), "%s/sub/x.qcow2", a);
    ck_assert_str_eq(policy_folder_of(p, path, &rest), a);
    ck_assert_str_eq(rest, "sub/x.qcow2");
    /* a component boundary: vms2 is not under vms */
    snprintf(path, sizeof(path), "%s//y.qcow2", b);
    ck_assert_str_eq(policy_folder_of(p, path, &rest), b);
    ck_assert_str_eq(rest, "y.qcow2");
    snprintf(path, sizeof(path), "%sx/z.qcow2", a);
    ck_assert_ptr_null(policy_folder_of(p, path, &rest));
    ck_assert_ptr_null(policy_folder_of(p, a, &rest));   /* the folder itself */
    ck_assert_ptr_null(policy_folder_of(p, "/etc/passwd", &rest));
    policy_free(p);
    /* no <paths>: nothing to open beneath */
    p = load("<roles/>");
    ck_assert_ptr_null(policy_folder_of(p, path, &rest));
    ck_assert_ptr_null(policy_folder_of(NULL, path, &rest));
    policy_free(p);
}
END_TEST

START_TEST(test_endpoints)
{
    char body[1024];
    struct policy *p;
    char *allowed_dir = xasprintf("%s/in", dir);
    char *sock_ok = xasprintf("%s/exports/vm.sock", dir);
    char *args;

    ck_assert_int_eq(mkdir(allowed_dir, 0700), 0);
    snprintf(body, sizeof(body),
             "<paths><allow dir='%s'/><allow nbd='unix:%s'/>"
             "<allow nbd='tcp:169.254.7.2:10809'/><allow protocol='https'/>"
             "</paths>", allowed_dir, sock_ok);
    p = load(body);

    /* NBD nodes by their server */
    args = xasprintf("{\"driver\": \"nbd\", \"node-name\": \"n\", "
                     "\"server\": {\"type\": \"unix\", \"path\": "
                     "\"%s/forbidden/x.sock\"}, \"export\": \"e\"}", dir);
    refused(p, "default", "blockdev-add", args, "NBD server unix:");
    free(args);
    args = xasprintf("{\"driver\": \"nbd\", \"node-name\": \"n\", "
                     "\"server\": {\"type\": \"unix\", \"path\": "
                     "\"%s\"}}", sock_ok);
    allowed(p, "default", "blockdev-add", args);
    free(args);
    args = xasprintf("{\"driver\": \"nbd\", \"node-name\": \"n\", "
                     "\"server\": {\"type\": \"unix\", \"path\": "
                     "\"%s/a.sock\"}}", allowed_dir);
    allowed(p, "default", "blockdev-add", args);  /* in an allowed folder */
    free(args);
    allowed(p, "default", "blockdev-add",
            "{\"driver\": \"raw\", \"node-name\": \"r\", \"file\": "
            "{\"driver\": \"nbd\", \"server\": {\"type\": \"inet\", "
            "\"host\": \"169.254.7.2\", \"port\": \"10809\"}}}");
    refused(p, "default", "blockdev-add",
            "{\"driver\": \"raw\", \"node-name\": \"r\", \"file\": "
            "{\"driver\": \"nbd\", \"server\": {\"type\": \"inet\", "
            "\"host\": \"169.254.7.3\", \"port\": \"10809\"}}}",
            "tcp:169.254.7.3:10809");
    /* other protocols: refused unless allowed; unknown drivers refused */
    refused(p, "default", "blockdev-add",
            "{\"driver\": \"ssh\", \"node-name\": \"s\", \"server\": "
            "{\"host\": \"h\"}, \"path\": \"/x\"}",
            "<allow protocol=\"ssh\"/>");
    allowed(p, "default", "blockdev-add",
            "{\"driver\": \"https\", \"node-name\": \"h\", \"url\": "
            "\"https://169.254.7.9/x.img\"}");
    refused(p, "default", "blockdev-add",
            "{\"driver\": \"frobnicate\", \"node-name\": \"f\"}",
            "does not know where it reaches");
    refused(p, "default", "blockdev-create",
            "{\"job-id\": \"j\", \"options\": {\"driver\": \"ssh\", "
            "\"location\": {\"server\": {\"host\": \"h\"}, "
            "\"path\": \"/x\"}, \"size\": 1}}", "ssh");
    /* URIs where a file goes */
    allowed(p, "default", "drive-mirror",
            "{\"device\": \"d\", \"target\": "
            "\"nbd://169.254.7.2:10809/exp\", \"sync\": \"full\"}");
    /* NBD's default port is the allowed one */
    allowed(p, "default", "drive-mirror",
            "{\"device\": \"d\", \"target\": "
            "\"nbd://169.254.7.2/exp\", \"sync\": \"full\"}");
    refused(p, "default", "drive-mirror",
            "{\"device\": \"d\", \"target\": "
            "\"nbd://169.254.7.2:10810/exp\", \"sync\": \"full\"}",
            "tcp:169.254.7.2:10810");
    args = xasprintf("{\"device\": \"d\", \"target\": \"nbd+unix:///e?"
                     "socket=%s\", \"sync\": \"full\"}", sock_ok);
    allowed(p, "default", "drive-mirror", args);
    free(args);
    refused(p, "default", "drive-mirror",
            "{\"device\": \"d\", \"target\": \"nbd:unix:/tmp/x.sock\", "
            "\"sync\": \"full\"}", "unix:/tmp/x.sock");
    refused(p, "default", "drive-mirror",
            "{\"device\": \"d\", \"target\": \"json:{\\\"driver\\\": "
            "\\\"ssh\\\"}\", \"sync\": \"full\"}", "ssh");
    refused(p, "default", "drive-mirror",
            "{\"device\": \"d\", \"target\": \"gopher://x\", "
            "\"sync\": \"full\"}", "does not know the protocol gopher");
    /* sockets QEMU listens on, and migration */
    refused(p, "default", "nbd-server-start",
            "{\"addr\": {\"type\": \"unix\", \"data\": {\"path\": "
            "\"/tmp/elsewhere.sock\"}}}", "unix:/tmp/elsewhere.sock");
    refused(p, "default", "migrate", "{\"uri\": \"exec:cat > /etc/x\"}",
            "<allow protocol=\"exec\"/>");
    allowed(p, "default", "migrate", "{\"uri\": \"fd:migrate\"}");
    refused(p, "default", "migrate", "{\"uri\": \"tcp:169.254.7.2:4444\"}",
            "tcp");
    refused(p, "default", "dump-guest-memory",
            "{\"paging\": false, \"protocol\": \"file:/etc/dump\"}",
            "images may be created or opened only under");
    refused(p, "default", "object-add",
            "{\"qom-type\": \"memory-backend-file\", \"id\": \"m\", "
            "\"size\": 1, \"mem-path\": \"/dev/shm/x\"}",
            "mem-path");
    policy_free(p);
    free(allowed_dir);
    free(sock_ok);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("evaluation");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roles_first_match);
    tcase_add_test(tc, test_paths_resolved);
    tcase_add_test(tc, test_endpoints);
    tcase_add_test(tc, test_folder_of);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
