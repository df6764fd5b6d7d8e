/*
 * Unit tests for beneath: in a scratch folder holding an allowed folder
 * and a forbidden one, no symbolic link (dangling at the last component,
 * a linked middle folder), no "..", no absolute path gets an open or a
 * create outside the allowed folder; creating is exclusive.  Each case
 * runs through openat2 and through the fallback walk.
 */
#include <check.h>

#include "check_main.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"

typedef int (*open_fn)(int, const char *, int, mode_t);
static const open_fn ways[] = { beneath_open, beneath_walk };

static char scratch[64];
static int allowed = -1;

static void path_in(char *buf, const char *rel)
{
    snprintf(buf, PATH_MAX, "%s/%s", scratch, rel);
}

static void setup(void)
{
    char p[PATH_MAX];

    snprintf(scratch, sizeof(scratch), "/tmp/qmproxy-beneath-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(scratch));
    path_in(p, "allowed");
    ck_assert_int_eq(mkdir(p, 0700), 0);
    path_in(p, "allowed/sub");
    ck_assert_int_eq(mkdir(p, 0700), 0);
    path_in(p, "forbidden");
    ck_assert_int_eq(mkdir(p, 0700), 0);
    path_in(p, "forbidden/old.img");
    close(open(p, O_CREAT | O_WRONLY, 0600));
    path_in(p, "allowed");
    allowed = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(allowed, 0);
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];

    close(allowed);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
    ck_assert_int_eq(system(cmd), 0);
}

static bool exists(const char *rel)
{
    char p[PATH_MAX];
    struct stat st;

    path_in(p, rel);
    return lstat(p, &st) == 0;
}

static void link_in(const char *target, const char *rel)
{
    char p[PATH_MAX], t[PATH_MAX];

    path_in(p, rel);
    if (target[0] == '/') {
        snprintf(t, sizeof(t), "%s", target);
    } else {
        path_in(t, target);
    }
    ck_assert_int_eq(symlink(t, p), 0);
}

/* fn(relpath, flags) fails with one of the two errnos and leaves nothing
 * behind it. */
#define REFUSED(way, rel, flags, e1, e2)                                  \
    do {                                                                  \
        errno = 0;                                                        \
        int fd_ = ways[way](allowed, rel, flags, 0600);                   \
        int err_ = errno;                                                 \
        ck_assert_msg(fd_ < 0, "way %d: %s was opened", way, rel);        \
        ck_assert_msg(err_ == (e1) || err_ == (e2),                       \
                      "way %d: %s: %s", way, rel, strerror(err_));        \
    } while (0)

START_TEST(test_creates_beneath_and_exclusively)
{
    int fd = ways[_i](allowed, "sub/new.img", O_CREAT | O_EXCL | O_RDWR,
                      0600);

    ck_assert_int_ge(fd, 0);
    ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    ck_assert_int_eq(write(fd, "x", 1), 1);
    close(fd);
    ck_assert(exists("allowed/sub/new.img"));
    /* a second create of the same name: refused, the file untouched */
    REFUSED(_i, "sub/new.img", O_CREAT | O_EXCL | O_RDWR, EEXIST, EEXIST);
    /* an existing file opens as it is */
    fd = ways[_i](allowed, "sub/new.img", O_RDWR, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(lseek(fd, 0, SEEK_END), 1);
    close(fd);
    /* ".." that stays inside is fine */
    fd = ways[_i](allowed, "sub/../sub/./new.img", O_RDONLY, 0);
    ck_assert_int_ge(fd, 0);
    close(fd);
}
END_TEST

START_TEST(test_dangling_link_at_the_end)
{
    /* allowed/x.img -> forbidden/x.img, which does not exist yet: the
     * issue's first hole */
    link_in("forbidden/x.img", "allowed/x.img");
    REFUSED(_i, "x.img", O_CREAT | O_EXCL | O_RDWR, EEXIST, ELOOP);
    REFUSED(_i, "x.img", O_CREAT | O_RDWR, ELOOP, ELOOP);
    REFUSED(_i, "x.img", O_RDWR, ELOOP, ELOOP);
    ck_assert(!exists("forbidden/x.img"));
}
END_TEST

START_TEST(test_link_to_an_existing_file)
{
    link_in("forbidden/old.img", "allowed/old.img");
    REFUSED(_i, "old.img", O_RDWR, ELOOP, ELOOP);
    /* even one that points inside: no link is followed at all */
    link_in("allowed/sub", "allowed/inside");
    REFUSED(_i, "inside/new.img", O_CREAT | O_EXCL | O_RDWR, ELOOP, ELOOP);
    ck_assert(!exists("allowed/sub/new.img"));
}
END_TEST

START_TEST(test_linked_middle_folder)
{
    link_in("forbidden", "allowed/dir");
    REFUSED(_i, "dir/new.img", O_CREAT | O_EXCL | O_RDWR, ELOOP, ELOOP);
    REFUSED(_i, "dir/old.img", O_RDWR, ELOOP, ELOOP);
    ck_assert(!exists("forbidden/new.img"));
    /* an absolute link in the middle, deeper down */
    link_in("/", "allowed/sub/root");
    REFUSED(_i, "sub/root/etc/passwd", O_RDONLY, ELOOP, ELOOP);
}
END_TEST

START_TEST(test_dotdot_and_absolute)
{
    char abs[PATH_MAX];

    REFUSED(_i, "../forbidden/new.img", O_CREAT | O_EXCL | O_RDWR, EXDEV,
            EXDEV);
    REFUSED(_i, "sub/../../forbidden/old.img", O_RDWR, EXDEV, EXDEV);
    REFUSED(_i, "..", O_RDONLY, EXDEV, EXDEV);
    path_in(abs, "allowed/abs.img");
    REFUSED(_i, abs, O_CREAT | O_EXCL | O_RDWR, EXDEV, EXDEV);
    ck_assert(!exists("forbidden/new.img"));
    ck_assert(!exists("allowed/abs.img"));
    REFUSED(_i, "", O_RDONLY, ENOENT, ENOENT);
}
END_TEST

START_TEST(test_magic_links)
{
    /* /proc/self/fd/N names whatever is open; reached through a link it is
     * a link like any other */
    link_in("/proc/self/fd", "allowed/fds");
    REFUSED(_i, "fds/0", O_RDONLY, ELOOP, ELOOP);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("beneath");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    /* _i: 0 openat2 (or its fallback on an old kernel), 1 the walk */
    tcase_add_loop_test(tc, test_creates_beneath_and_exclusively, 0, 2);
    tcase_add_loop_test(tc, test_dangling_link_at_the_end, 0, 2);
    tcase_add_loop_test(tc, test_link_to_an_existing_file, 0, 2);
    tcase_add_loop_test(tc, test_linked_middle_folder, 0, 2);
    tcase_add_loop_test(tc, test_dotdot_and_absolute, 0, 2);
    tcase_add_loop_test(tc, test_magic_links, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
