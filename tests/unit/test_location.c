/*
 * Unit tests for location: the declared paths into a command's arguments
 * (members, "*" elements, "**" any depth) find every place they name, and
 * the proxy's own and QEMU's commands declare theirs.
 */
#include <check.h>

#include "check_main.h"
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "location.h"
#include "util.h"

static char *collect(void *opaque, const struct location *loc,
                     const char *key, json_object *value)
{
    struct strbuf *sb = opaque;
    (void)loc;
    if (json_object_is_type(value, json_type_string)) {
        strbuf_addf(sb, "%s=%s;", key ? key : "",
                    json_object_get_string(value));
    }
    return NULL;
}

static char *found(const struct location *locs, const char *json)
{
    json_object *args = json_tokener_parse(json);
    struct strbuf sb = STRBUF_INIT;

    ck_assert_ptr_null(location_each(locs, args, collect, &sb));
    json_object_put(args);
    return sb.buf ? strbuf_detach(&sb, NULL) : xstrdup("");
}

#define EXPECT(locs, json, want)                 \
    do {                                         \
        char *got_ = found(locs, json);          \
        ck_assert_str_eq(got_, want);            \
        free(got_);                              \
    } while (0)

START_TEST(test_paths)
{
    static const struct location member[] = {
        { "target", LOCATION_FILE }, { NULL, LOCATION_FILE } };
    static const struct location elements[] = {
        { "disks.*.snapshot-file", LOCATION_FILE },
        { "disks.*.mirror-file", LOCATION_FILE },
        { NULL, LOCATION_FILE } };
    static const struct location any[] = {
        { "**.filename", LOCATION_FILE }, { NULL, LOCATION_FILE } };

    EXPECT(member, "{\"target\": \"/a\", \"x\": 1}", "target=/a;");
    EXPECT(member, "{\"target\": 5}", "");
    EXPECT(member, "{\"other\": {\"target\": \"/no\"}}", "");
    EXPECT(elements, "{\"disks\": [{\"snapshot-file\": \"/s1\", "
                     "\"mirror-file\": \"/m1\"}, {\"snapshot-file\": "
                     "\"/s2\"}]}",
           "snapshot-file=/s1;snapshot-file=/s2;mirror-file=/m1;");
    EXPECT(elements, "{\"disks\": {\"snapshot-file\": \"/x\"}}", "");
    EXPECT(any, "{\"driver\": \"qcow2\", \"file\": {\"driver\": \"file\", "
                "\"filename\": \"/img\"}, \"backing\": {\"file\": "
                "{\"filename\": \"/base\"}}, \"filename\": \"/top\"}",
           "filename=/top;filename=/img;filename=/base;");
    EXPECT(any, "{\"list\": [{\"filename\": \"/in-array\"}]}",
           "filename=/in-array;");
}
END_TEST

START_TEST(test_commands_declare_their_locations)
{
    ck_assert_ptr_nonnull(cmd_locations("blockdev-add"));
    ck_assert_ptr_nonnull(cmd_locations("drive-mirror"));
    ck_assert_ptr_nonnull(cmd_locations("qmproxy-snapshot-mirror"));
    ck_assert_ptr_nonnull(cmd_locations("qmproxy-block-copy"));
    ck_assert_ptr_nonnull(cmd_locations("__com.redhat_drive-reopen"));
    ck_assert_ptr_null(cmd_locations("query-status"));
    ck_assert_ptr_null(cmd_locations("qmproxy-query-chain"));
    EXPECT(cmd_locations("qmproxy-reopen"), "{\"disk\": \"d\", "
                                            "\"file\": \"/f\"}", "file=/f;");
}
END_TEST

static Suite *location_suite(void)
{
    Suite *s = suite_create("location");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_paths);
    tcase_add_test(tc, test_commands_declare_their_locations);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(location_suite)
