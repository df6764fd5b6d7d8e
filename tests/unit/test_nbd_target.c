/*
 * Unit tests for nbd-target: every way of naming an NBD export becomes
 * the one name QEMU gives it, paths pass through untouched, mistakes are
 * refused saying what to write, and a disk's top image is recognised as
 * its copy by server and export whatever options the copy was opened
 * with.
 */
#include <check.h>

#include "check_main.h"
#include <stdlib.h>
#include <string.h>

#include "nbd-target.h"

/* The canonical form of a target written as JSON text (NULL: refused,
 * and then *err holds the reason). */
static char *resolve(const char *json, char **err)
{
    json_object *v = json_tokener_parse(json);
    char *out = NULL;

    ck_assert(v || !strcmp(json, "null"));   /* json-c's null is NULL */
    *err = nbd_target_resolve("target", v, &out);
    json_object_put(v);
    if (*err) {
        ck_assert_ptr_null(out);
    }
    return out;
}

#define CANONICAL(json, want)                                        \
    do {                                                             \
        char *err_, *got_ = resolve(json, &err_);                    \
        ck_assert_msg(!err_, "%s: %s", json, err_ ? err_ : "");      \
        ck_assert_str_eq(got_, want);                                \
        free(got_);                                                  \
    } while (0)

#define REFUSED(json, words)                                         \
    do {                                                             \
        char *err_, *got_ = resolve(json, &err_);                    \
        ck_assert_msg(err_ && strstr(err_, words), "%s: got %s",     \
                      json, err_ ? err_ : got_);                     \
        free(err_);                                                  \
    } while (0)

START_TEST(test_uris_become_qemus_name)
{
    CANONICAL("\"nbd://169.254.1.2:10810/vda\"", "nbd://169.254.1.2:10810/vda");
    CANONICAL("\"nbd://169.254.1.2/vda\"", "nbd://169.254.1.2:10809/vda");
    CANONICAL("\"nbd+tcp://h:1/e\"", "nbd://h:1/e");
    CANONICAL("\"nbd://h:1\"", "nbd://h:1");
    CANONICAL("\"nbd://h:1/\"", "nbd://h:1");
    CANONICAL("\"nbd://[fe80::1]:10809/e\"", "nbd://[fe80::1]:10809/e");
    CANONICAL("\"nbd+unix:///e?socket=/run/n.sock\"",
              "nbd+unix:///e?socket=/run/n.sock");
    CANONICAL("\"nbd+unix://?socket=/run/n.sock\"",
              "nbd+unix://?socket=/run/n.sock");
    CANONICAL("\"nbd+unix:///?socket=/run/n.sock\"",
              "nbd+unix://?socket=/run/n.sock");
    CANONICAL("\"nbd:h:10809:exportname=e\"", "nbd://h:10809/e");
    CANONICAL("\"nbd:unix:/run/n.sock:exportname=e\"",
              "nbd+unix:///e?socket=/run/n.sock");
}
END_TEST

START_TEST(test_objects_and_json)
{
    CANONICAL("{\"server\": {\"type\": \"inet\", \"host\": \"h\", "
              "\"port\": \"7\"}, \"export\": \"e\"}", "nbd://h:7/e");
    CANONICAL("{\"driver\": \"nbd\", \"server\": {\"type\": \"unix\", "
              "\"path\": \"/s\"}}", "nbd+unix://?socket=/s");
    CANONICAL("{\"server\": {\"type\": \"unix\", \"path\": \"/s\"}, "
              "\"export\": \"\"}", "nbd+unix://?socket=/s");
    /* options that matter keep the json: form, written in one order */
    CANONICAL("{\"tls-creds\": \"t\", \"export\": \"e\", \"server\": "
              "{\"port\": \"7\", \"host\": \"h\", \"type\": \"inet\"}}",
              "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"inet\","
              "\"host\":\"h\",\"port\":\"7\"},\"export\":\"e\","
              "\"tls-creds\":\"t\"}");
    /* and the json: form reads back to itself */
    CANONICAL("\"json:{\\\"driver\\\":\\\"nbd\\\",\\\"server\\\":{\\\"type\\\":"
              "\\\"unix\\\",\\\"path\\\":\\\"/s\\\"},\\\"reconnect-delay\\\":5}\"",
              "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\","
              "\"path\":\"/s\"},\"reconnect-delay\":5}");
}
END_TEST

START_TEST(test_paths_pass_through)
{
    CANONICAL("\"/dest/disk0.qcow2\"", "/dest/disk0.qcow2");
    CANONICAL("\"relative.qcow2\"", "relative.qcow2");   /* checked later */
    CANONICAL("\"json:{\\\"driver\\\":\\\"file\\\"}\"", "json:{\"driver\":\"file\"}");
    ck_assert(!nbd_target_is("/nbd:odd/name"));
    ck_assert(nbd_target_is("nbd://h/e"));
    ck_assert(nbd_target_is("json:{\"driver\": \"nbd\"}"));
    ck_assert(!nbd_target_is("json:{\"driver\": \"file\"}"));
}
END_TEST

START_TEST(test_mistakes_say_what_to_write)
{
    REFUSED("\"nbd://:1/e\"", "names no host");
    REFUSED("\"nbd:///e\"", "names no host");
    REFUSED("\"nbd://h:0/e\"", "not a port number");
    REFUSED("\"nbd://h:port/e\"", "not a port number");
    REFUSED("\"nbd://h/e?x=y\"", "takes no query");
    REFUSED("\"nbd://[fe80::1/e\"", "closing ']'");
    REFUSED("\"nbd+unix:///e\"", "socket=PATH");
    REFUSED("\"nbd+unix:///e?socket=/a&b=c\"", "exactly one query");
    REFUSED("\"nbd+unix://host/e?socket=/a\"", "names no host");
    REFUSED("\"nbd+unix:///e?socket=rel\"", "absolute path");
    REFUSED("\"nbd:h\"", "expected nbd:HOST:PORT");
    REFUSED("\"nbd:unix:\"", "expected nbd:unix:SOCKET");
    REFUSED("\"nbd:unix:exportname=e\"", "expected nbd:unix:SOCKET");
    REFUSED("{}", "needs 'server'");
    REFUSED("{\"server\": \"h:1\"}", "needs 'server'");
    REFUSED("{\"server\": {\"type\": \"inet\", \"host\": \"h\", \"port\": 7}}",
            "both strings");
    REFUSED("{\"server\": {\"type\": \"vsock\"}}", "'inet' or 'unix'");
    REFUSED("{\"server\": {\"type\": \"unix\", \"path\": \"/s\"}, "
            "\"export\": 3}", "'export' must be a string");
    REFUSED("{\"driver\": \"file\", \"filename\": \"/x\"}",
            "only an NBD export");
    REFUSED("{\"server\": {\"type\": \"unix\", \"path\": \"/s\"}, "
            "\"bitmap\": \"b\"}", "unknown member 'bitmap'");
    REFUSED("42", "string or object");
    REFUSED("null", "string or object");
}
END_TEST

START_TEST(test_top_names_its_copy)
{
    const char *tls = "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"inet\","
                      "\"host\":\"h\",\"port\":\"7\"},\"export\":\"e\","
                      "\"tls-creds\":\"t\"}";

    ck_assert(nbd_target_names("nbd://h:7/e", tls));
    ck_assert(nbd_target_names("nbd://h:7/e", "nbd://h:7/e"));
    ck_assert(nbd_target_names("nbd://h:7", "nbd://h:7/"));
    ck_assert(nbd_target_names("/a.qcow2", "/a.qcow2"));
    ck_assert(!nbd_target_names("nbd://h:7/other", tls));
    ck_assert(!nbd_target_names("nbd://h:8/e", tls));
    ck_assert(!nbd_target_names("nbd+unix:///e?socket=/s", "nbd://h:7/e"));
    ck_assert(!nbd_target_names("/a.qcow2", "nbd://h:7/e"));
    ck_assert(!nbd_target_names(NULL, "nbd://h:7/e"));
}
END_TEST

START_TEST(test_export_on_a_server)
{
    char *out, *err;

    err = nbd_target_export_on("target", "nbd://h", "d-replica", &out);
    ck_assert_ptr_null(err);
    ck_assert_str_eq(out, "nbd://h:10809/d-replica");
    free(out);
    err = nbd_target_export_on("target", "nbd+unix://?socket=/s", "d", &out);
    ck_assert_ptr_null(err);
    ck_assert_str_eq(out, "nbd+unix:///d?socket=/s");
    free(out);
    err = nbd_target_export_on("target", "nbd://h:1/vda", "d", &out);
    ck_assert_ptr_nonnull(strstr(err, "names an export (vda)"));
    ck_assert_ptr_null(out);
    free(err);
    err = nbd_target_export_on("target", "/srv/replicas", "d", &out);
    ck_assert_ptr_nonnull(strstr(err, "is not an NBD server"));
    free(err);
    err = nbd_target_export_on("target", "nbd://:1", "d", &out);
    ck_assert_ptr_nonnull(strstr(err, "names no host"));
    free(err);
}
END_TEST

static Suite *nbd_target_suite(void)
{
    Suite *s = suite_create("nbd-target");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_uris_become_qemus_name);
    tcase_add_test(tc, test_objects_and_json);
    tcase_add_test(tc, test_paths_pass_through);
    tcase_add_test(tc, test_mistakes_say_what_to_write);
    tcase_add_test(tc, test_top_names_its_copy);
    tcase_add_test(tc, test_export_on_a_server);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(nbd_target_suite)
