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

static void allowed(struct policy *p, const char *listener, const char *cmd,
                    const char *args_json)
{
    json_object *args = args_json ? json_tokener_parse(args_json) : NULL;
    char *why = policy_check_request(p, listener, cmd, args, cmd_locations);
    ck_assert_msg(!why, "%s refused: %s", cmd, why);
    json_object_put(args);
}

static void refused(struct policy *p, const char *listener, const char *cmd,
                    const char *args_json, const char *words)
{
    json_object *args = args_json ? json_tokener_parse(args_json) : NULL;
    char *why = policy_check_request(p, listener, cmd, args, cmd_locations);
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
    /* blockdev-add: any filename inside */
    char *args = xasprintf("{\"driver\": \"qcow2\", \"file\": {\"driver\": "
                           "\"file\", \"filename\": \"%s/x\"}}", outside);
    refused(p, "default", "blockdev-add", args, "is not allowed by policy");
    free(args);
    policy_free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("evaluation");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roles_first_match);
    tcase_add_test(tc, test_paths_resolved);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
