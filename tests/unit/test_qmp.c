/*
 * Unit tests for the QMP layer: message kinds, QEMU's request checks,
 * replies and events in QEMU's exact form, and QAPI-worded argument checks.
 */
#include <check.h>
#include <pthread.h>

#include "check_main.h"
#include <stdlib.h>
#include <string.h>

#include "jsonstream.h"
#include "qapi.h"
#include "qjson.h"
#include "qmp.h"
#include "util.h"

static enum qmp_kind last_kind;

static bool classify_cb(void *opaque, const struct js_text *t)
{
    (void)opaque;
    last_kind = t->error ? (enum qmp_kind)-1 : qmp_classify(t);
    return true;
}

static enum qmp_kind classify(const char *s)
{
    struct jsonstream *js = jsonstream_new(false, 0, classify_cb, NULL);
    last_kind = (enum qmp_kind)-2;
    jsonstream_feed(js, s, strlen(s));
    jsonstream_free(js);
    return last_kind;
}

START_TEST(test_classify_every_kind)
{
    ck_assert_int_eq(classify("{\"QMP\": {\"version\": {}, \"capabilities\": "
                              "[\"oob\"]}}"), QMP_GREETING);
    ck_assert_int_eq(classify("{\"return\": {}}"), QMP_RETURN);
    ck_assert_int_eq(classify("{\"return\": [], \"id\": \"x\"}"), QMP_RETURN);
    ck_assert_int_eq(classify("{\"id\": 1, \"error\": {\"class\": "
                              "\"GenericError\", \"desc\": \"d\"}}"),
                     QMP_ERROR);
    ck_assert_int_eq(classify("{\"timestamp\": {\"seconds\": 1, "
                              "\"microseconds\": 2}, \"event\": \"STOP\"}"),
                     QMP_EVENT);
    ck_assert_int_eq(classify("{\"something\": 1}"), QMP_UNKNOWN);
    ck_assert_int_eq(classify("[1] "), QMP_UNKNOWN);
    /* a nested "return" is not a top-level one */
    ck_assert_int_eq(classify("{\"data\": {\"return\": 1}, \"event\": \"X\"}"),
                     QMP_EVENT);
    ck_assert_str_eq(qmp_kind_name(QMP_EVENT), "event");
}
END_TEST

static char *check(const char *text, bool allow_oob, struct qmp_request *req)
{
    json_object *v = json_tokener_parse(text);
    char *err = qmp_check_request(v, true, allow_oob, req);
    /* keep v alive for req's borrowed pointers: leak-free via a static */
    static json_object *keep;
    json_object_put(keep);
    keep = v;
    return err;
}

START_TEST(test_request_checks)
{
    struct qmp_request req;
    char *err;

    err = qmp_check_request(NULL, false, false, &req);
    ck_assert_str_eq(err, "QMP input must be a JSON object");
    free(err);

    static const struct {
        const char *in;
        bool oob;
        const char *error;
    } cases[] = {
        { "[1]", false, "QMP input must be a JSON object" },
        { "{\"execute\": 1}", false, "QMP input member 'execute' must be a string" },
        { "{\"arguments\": {}}", false, "QMP input lacks member 'execute'" },
        { "{\"execute\": \"x\", \"bogus\": 1}", false, "QMP input member 'bogus' is unexpected" },
        { "{\"execute\": \"x\", \"arguments\": []}", false, "QMP input member 'arguments' must be an object" },
        { "{\"exec-oob\": \"x\"}", false, "QMP input member 'exec-oob' is unexpected" },
        { "{\"execute\": \"x\", \"exec-oob\": \"y\"}", true, "QMP input member 'execute' clashes with 'exec-oob'" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err = check(cases[i].in, cases[i].oob, &req);
        ck_assert_msg(err && !strcmp(err, cases[i].error), "%s: got %s",
                      cases[i].in, err ? err : "(accepted)");
        free(err);
    }

    err = check("{\"exec-oob\": \"migrate-pause\", \"id\": null}", true, &req);
    ck_assert_ptr_null(err);
    ck_assert(req.oob);
    ck_assert(req.has_id);
    ck_assert_ptr_null(req.id);
    ck_assert_str_eq(req.command, "migrate-pause");

    err = check("{\"execute\": \"query-status\", \"arguments\": {\"a\": 1}}",
                false, &req);
    ck_assert_ptr_null(err);
    ck_assert(!req.oob && !req.has_id);
    ck_assert_ptr_nonnull(req.args);
}
END_TEST

START_TEST(test_replies_in_qemu_form)
{
    struct qmp_request req = { 0 };
    size_t len;
    char *s;

    s = qmp_error_reply(QMP_COMMAND_NOT_FOUND, "no", NULL, &len);
    ck_assert_str_eq(s, "{\"error\": {\"class\": \"CommandNotFound\", "
                        "\"desc\": \"no\"}}\r\n");
    ck_assert_uint_eq(len, strlen(s));
    free(s);

    req.has_id = true;
    req.id = json_object_new_int(5);
    s = qmp_error_reply(QMP_GENERIC_ERROR, "d\xc3\xa9", &req, &len);
    /* QEMU puts "id" first in an error, escapes non-ASCII */
    ck_assert_str_eq(s, "{\"id\": 5, \"error\": {\"class\": \"GenericError\", "
                        "\"desc\": \"d\\u00E9\"}}\r\n");
    free(s);
    s = qmp_return_reply(NULL, &req, &len);
    ck_assert_str_eq(s, "{\"return\": {}, \"id\": 5}\r\n");
    free(s);
    json_object_put(req.id);

    json_object *data = json_object_new_object();
    json_object_object_add(data, "disk", json_object_new_string("d0"));
    s = qmp_event_message("QMPROXY_TEST", data, &len);
    ck_assert_msg(!strncmp(s, "{\"timestamp\": {\"seconds\": ", 26), "%s", s);
    ck_assert_ptr_nonnull(strstr(s, "\"microseconds\": "));
    ck_assert_ptr_nonnull(strstr(s, "}, \"event\": \"QMPROXY_TEST\", \"data\": "
                                    "{\"disk\": \"d0\"}}\r\n"));
    json_object_put(data);
    free(s);
}
END_TEST

START_TEST(test_qjson_strings)
{
    struct strbuf sb = STRBUF_INIT;

    qjson_write_string(&sb, "a\"\\\b\f\n\r\t\x01/\x7f", 11);
    ck_assert_str_eq(sb.buf, "\"a\\\"\\\\\\b\\f\\n\\r\\t\\u0001/\\u007F\"");
    sb.len = 0;
    /* invalid UTF-8 becomes U+FFFD, like QEMU */
    qjson_write_string(&sb, "\xff\xc3", 2);
    ck_assert_str_eq(sb.buf, "\"\\uFFFD\\uFFFD\"");
    strbuf_release(&sb);
}
END_TEST

/* A text nested n deep: n '[' then n ']'. */
static char *nested(int n)
{
    char *s = xmalloc((size_t)n * 2 + 1);

    memset(s, '[', (size_t)n);
    memset(s + n, ']', (size_t)n);
    s[n * 2] = 0;
    return s;
}

static void *parse_on_another_thread(void *arg)
{
    (void)arg;
    return qjson_parse("{\"x\": [1, 2]}", 13);
}

/* qjson_parse keeps its tokener between calls: each call must read its
 * text alone, whatever the one before left behind. */
START_TEST(test_qjson_parse)
{
    json_object *v, *x;
    char *deep = nested(JSONSTREAM_MAX_NESTING), *deeper;
    pthread_t th;
    void *got;

    v = qjson_parse("{\"a\": 1}", 8);
    ck_assert_ptr_nonnull(v);
    ck_assert(json_object_object_get_ex(v, "a", &x));
    ck_assert_int_eq(json_object_get_int(x), 1);
    json_object_put(v);

    /* half a text, then a whole one: the half is forgotten */
    ck_assert_ptr_null(qjson_parse("{\"a\": [1, ", 10));
    v = qjson_parse("[true]", 6);
    ck_assert_ptr_nonnull(v);
    ck_assert(json_object_is_type(v, json_type_array));
    json_object_put(v);

    /* an error, then a whole one */
    ck_assert_ptr_null(qjson_parse("{]", 2));
    v = qjson_parse("\"s\"", 3);
    ck_assert_str_eq(json_object_get_string(v), "s");
    json_object_put(v);

    /* as deep as QEMU accepts; json-c's own default stops at 32 */
    v = qjson_parse(deep, strlen(deep));
    ck_assert_ptr_nonnull(v);
    json_object_put(v);
    deeper = nested(JSONSTREAM_MAX_NESTING + 1);
    ck_assert_ptr_null(qjson_parse(deeper, strlen(deeper)));
    v = qjson_parse("[1]", 3);
    ck_assert_ptr_nonnull(v);
    json_object_put(v);

    /* another thread has its own tokener (the traffic log's writer) */
    ck_assert_int_eq(pthread_create(&th, NULL, parse_on_another_thread,
                                    NULL), 0);
    ck_assert_int_eq(pthread_join(th, &got), 0);
    ck_assert_ptr_nonnull(got);
    ck_assert(json_object_object_get_ex(got, "x", &x));
    ck_assert_int_eq(json_object_array_length(x), 2);
    json_object_put(got);
    free(deep);
    free(deeper);
}
END_TEST

static const char *const modes[] = { "existing", "absolute-paths", NULL };
static const struct qapi_member disk_members[] = {
    { "disk", QAPI_STR, false, NULL, NULL, NULL },
    { "speed", QAPI_INT, true, NULL, NULL, NULL },
    { "mode", QAPI_ENUM, true, modes, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};
static const struct qapi_member disk_elem = {
    "disks", QAPI_OBJECT, false, NULL, disk_members, NULL
};
static const struct qapi_member args_schema[] = {
    { "name", QAPI_STR, true, NULL, NULL, NULL },
    { "disks", QAPI_LIST, false, NULL, NULL, &disk_elem },
    { "flag", QAPI_BOOL, true, NULL, NULL, NULL },
    { NULL, 0, false, NULL, NULL, NULL },
};

START_TEST(test_qapi_messages)
{
    static const struct {
        const char *args;
        const char *error;
    } cases[] = {
        { "{}", "Parameter 'disks' is missing" },
        { "{\"disks\": 1}", "Invalid parameter type for 'disks', expected: array" },
        { "{\"disks\": [1]}", "Invalid parameter type for 'disks[0]', expected: object" },
        { "{\"disks\": [{}]}", "Parameter 'disks[0].disk' is missing" },
        { "{\"disks\": [{\"disk\": 1}]}", "Invalid parameter type for 'disks[0].disk', expected: string" },
        { "{\"disks\": [{\"disk\": \"a\", \"speed\": \"fast\"}]}", "Invalid parameter type for 'disks[0].speed', expected: integer" },
        { "{\"disks\": [{\"disk\": \"a\", \"speed\": 1.5}]}", "Invalid parameter type for 'disks[0].speed', expected: integer" },
        { "{\"disks\": [{\"disk\": \"a\", \"mode\": \"bogus\"}]}", "Parameter 'disks[0].mode' does not accept value 'bogus'" },
        { "{\"disks\": [{\"disk\": \"a\", \"extra\": 1}]}", "Parameter 'disks[0].extra' is unexpected" },
        { "{\"disks\": [], \"flag\": 1}", "Invalid parameter type for 'flag', expected: boolean" },
        { "{\"disks\": [], \"bogus\": 1}", "Parameter 'bogus' is unexpected" },
        { "{\"disks\": [{\"disk\": \"a\", \"speed\": 5, \"mode\": \"existing\"}]}", NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *a = json_tokener_parse(cases[i].args);
        char *err = qapi_check(args_schema, a);
        if (cases[i].error) {
            ck_assert_msg(err && !strcmp(err, cases[i].error), "%s: got %s",
                          cases[i].args, err ? err : "(valid)");
        } else {
            ck_assert_msg(!err, "%s: %s", cases[i].args, err);
        }
        free(err);
        json_object_put(a);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("qmp");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_classify_every_kind);
    tcase_add_test(tc, test_request_checks);
    tcase_add_test(tc, test_replies_in_qemu_form);
    tcase_add_test(tc, test_qjson_strings);
    tcase_add_test(tc, test_qjson_parse);
    tcase_add_test(tc, test_qapi_messages);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
