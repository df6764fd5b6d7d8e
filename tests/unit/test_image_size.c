/*
 * image_file_size() against images the real qemu-img makes and resizes:
 * qcow2's header size, raw's length, what it does not read (other formats,
 * no local file, something that is no image), and a backing file's
 * string rewritten by qemu-img rebase -u, which leaves the size alone.
 */
#include <check.h>

#include "check_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-size.h"
#include "util.h"

static char dir[] = "/tmp/qmproxy-image-size-XXXXXX";

static void qemu_img(const char *args)
{
    char *cmd = xasprintf("cd %s && qemu-img %s >/dev/null", dir, args);
    ck_assert_msg(system(cmd) == 0, "qemu-img %s failed", args);
    free(cmd);
}

static char *in_dir(const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

static void setup(void)
{
    strcpy(dir, "/tmp/qmproxy-image-size-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char *cmd = xasprintf("rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

START_TEST(test_qcow2_header_follows_resize)
{
    char *top = in_dir("top.qcow2"), *base = in_dir("base.qcow2");

    qemu_img("create -q -f qcow2 base.qcow2 64M");
    qemu_img("create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2");
    ck_assert_int_eq(image_file_size(top, "qcow2"), 64 << 20);
    qemu_img("resize -q top.qcow2 96M");
    ck_assert_int_eq(image_file_size(top, "qcow2"), 96 << 20);
    ck_assert_int_eq(image_file_size(base, "qcow2"), 64 << 20);
    /* the backing string rewritten: the size stays */
    qemu_img("rebase -q -u -b base.qcow2 -F qcow2 top.qcow2");
    ck_assert_int_eq(image_file_size(top, "qcow2"), 96 << 20);
    free(top);
    free(base);
}
END_TEST

START_TEST(test_raw_is_its_length)
{
    char *raw = in_dir("disk.raw");

    qemu_img("create -q -f raw disk.raw 3M");
    ck_assert_int_eq(image_file_size(raw, "raw"), 3 << 20);
    qemu_img("resize -q -f raw disk.raw 5M");
    ck_assert_int_eq(image_file_size(raw, "raw"), 5 << 20);
    free(raw);
}
END_TEST

START_TEST(test_what_it_does_not_read)
{
    char *vmdk = in_dir("disk.vmdk"), *raw = in_dir("disk.raw");
    char *missing = in_dir("missing.qcow2");

    qemu_img("create -q -f vmdk disk.vmdk 8M");
    qemu_img("create -q -f raw disk.raw 1M");
    /* a format that keeps its size elsewhere */
    ck_assert_int_eq(image_file_size(vmdk, "vmdk"), -1);
    /* no qcow2 header: not a size */
    ck_assert_int_eq(image_file_size(raw, "qcow2"), -1);
    ck_assert_int_eq(image_file_size(missing, "qcow2"), -1);
    /* what QEMU names that is no local file */
    ck_assert_int_eq(image_file_size("nbd+unix:///e?socket=/x", "raw"), -1);
    ck_assert_int_eq(image_file_size("json:{\"driver\": \"null-co\"}", "raw"), -1);
    ck_assert_int_eq(image_file_size(dir, "raw"), -1);  /* a folder */
    ck_assert_int_eq(image_file_size(NULL, "qcow2"), -1);
    ck_assert_int_eq(image_file_size(raw, NULL), -1);
    free(vmdk);
    free(raw);
    free(missing);
}
END_TEST

static Suite *image_size_suite(void)
{
    Suite *s = suite_create("image_size");
    TCase *tc = tcase_create("image_size");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_qcow2_header_follows_resize);
    tcase_add_test(tc, test_raw_is_its_length);
    tcase_add_test(tc, test_what_it_does_not_read);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(image_size_suite)
