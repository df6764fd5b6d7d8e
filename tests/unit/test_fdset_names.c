/*
 * Unit tests for fdset-names: the proxy's fd set ids stay in their own
 * range below INT_MAX (QEMU parses /dev/fdset/N as an int), a name QEMU
 * gives an image the proxy handed over reads back as its path, and
 * anything else (another set, a malformed name, a path) is not
 * translated; the chain model's plain file name uses it, also inside
 * json: names.
 */
#include <check.h>

#include "check_main.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "chain-model.h"
#include "fdset-names.h"

START_TEST(test_ids_in_their_own_range)
{
    int64_t first = fdset_names_next_id(0xabc);

    for (int i = 0; i < 70000; i++) {
        int64_t id = fdset_names_next_id(0xfff);
        ck_assert_int_ge(id, FDSET_NAMES_FIRST);
        ck_assert_int_le(id, INT_MAX);
    }
    ck_assert_int_ge(first, FDSET_NAMES_FIRST + ((int64_t)0xabc << 16));
    /* two runs (tags) never share an id */
    ck_assert_int_ne(fdset_names_next_id(1) >> 16, fdset_names_next_id(2) >> 16);
}
END_TEST

START_TEST(test_names_read_back)
{
    fdset_names_set(1073807361, "/vms/copy.qcow2");
    fdset_names_set(1073807362, "/vms/other.qcow2");
    ck_assert_str_eq(fdset_names_path("/dev/fdset/1073807361"), "/vms/copy.qcow2");
    fdset_names_set(1073807361, "/vms/again.qcow2");   /* replaced */
    ck_assert_str_eq(fdset_names_path("/dev/fdset/1073807361"), "/vms/again.qcow2");
    ck_assert_int_eq(fdset_names_count(), 2);
    ck_assert_ptr_null(fdset_names_path("/dev/fdset/3"));        /* a client's */
    ck_assert_ptr_null(fdset_names_path("/dev/fdset/"));
    ck_assert_ptr_null(fdset_names_path("/dev/fdset/1073807361x"));
    ck_assert_ptr_null(fdset_names_path("/vms/copy.qcow2"));
    ck_assert_ptr_null(fdset_names_path(NULL));
    fdset_names_clear();
    ck_assert_ptr_null(fdset_names_path("/dev/fdset/1073807362"));
}
END_TEST

START_TEST(test_chain_model_plain_names)
{
    char *plain;

    fdset_names_set(1073807363, "/vms/top.qcow2");
    plain = ch_plain_filename("/dev/fdset/1073807363");
    ck_assert_str_eq(plain, "/vms/top.qcow2");
    free(plain);
    plain = ch_plain_filename("json:{\"driver\": \"qcow2\", \"file\": {\"driver\": "
                              "\"file\", \"filename\": \"/dev/fdset/1073807363\"}}");
    ck_assert_str_eq(plain, "/vms/top.qcow2");
    free(plain);
    plain = ch_plain_filename("/dev/fdset/7");
    ck_assert_str_eq(plain, "/dev/fdset/7");
    free(plain);
    fdset_names_clear();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fdset-names");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_ids_in_their_own_range);
    tcase_add_test(tc, test_names_read_back);
    tcase_add_test(tc, test_chain_model_plain_names);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
