/*
 * The image size worker: reads that hang (a FIFO without a writer, which
 * keeps a plain open() waiting just as an NFS hard mount whose server is
 * gone does) neither block the caller nor hold an answer past the bound;
 * requests made while a read runs share the next read; freeing the worker
 * while a read hangs returns; and sizes of images the real qemu-img makes
 * and resizes come back right.
 *
 * No assertion is on time: a caller that blocked, or a bound that never
 * answered, would hang the test until ctest's timeout, and the loops that
 * wait for answers are bounded in rounds.
 */
#include <check.h>

#include "check_main.h"
#include <event2/event.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-size.h"
#include "image-size-worker.h"
#include "util.h"

static char dir[] = "/tmp/qmproxy-size-worker-XXXXXX";
static struct event_base *base;
static atomic_int reads_started, reads_ended, qcow2_reads, raw_reads;

static char *in_dir(const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

static void qemu_img(const char *args)
{
    char *cmd = xasprintf("cd %s && qemu-img %s >/dev/null", dir, args);
    ck_assert_msg(system(cmd) == 0, "qemu-img %s failed", args);
    free(cmd);
}

/* image_file_size() behind a plain blocking open(), as a file system that
 * waits for its server would make it: on a FIFO it waits for a writer. */
static int64_t blocking_read_size(const char *path, const char *format)
{
    int fd;

    atomic_fetch_add(&reads_started, 1);
    if (strstr(path, ".qcow2")) {
        atomic_fetch_add(&qcow2_reads, 1);
    } else if (strstr(path, ".raw")) {
        atomic_fetch_add(&raw_reads, 1);
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
    }
    atomic_fetch_add(&reads_ended, 1);
    return image_file_size(path, format);
}

struct answer {
    int calls;
    enum size_answer answer;
    int n;
    char *first_path;
    int64_t first_size, second_size;
    int64_t rest[2];      /* the third and fourth sizes */
};

static void on_done(void *opaque, enum size_answer a,
                    const struct image_ref *refs, const int64_t *sizes, int n)
{
    struct answer *ans = opaque;

    ans->calls++;
    ans->answer = a;
    ans->n = n;
    free(ans->first_path);
    ans->first_path = n > 0 ? xstrdup(refs[0].path) : NULL;
    ans->first_size = n > 0 ? sizes[0] : -2;
    ans->second_size = n > 1 ? sizes[1] : -2;
    ans->rest[0] = n > 2 ? sizes[2] : -2;
    ans->rest[1] = n > 3 ? sizes[3] : -2;
}

/* Run the loop until ans is answered: at most rounds turns of 100 ms. */
static void wait_for(struct answer *ans, int rounds)
{
    struct timeval tick = { 0, 100 * 1000 };

    for (int i = 0; i < rounds && ans->calls == 0; i++) {
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
    }
    ck_assert_msg(ans->calls == 1, "answered %d times", ans->calls);
}

/* Open the FIFO's writing end once the worker waits at its reading end
 * (until then O_NONBLOCK's open fails with ENXIO), which lets it go on. */
static int release_fifo(const char *fifo)
{
    int fd = -1;

    for (int i = 0; i < 1000 && fd < 0; i++) {
        fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            usleep(10 * 1000);
        }
    }
    ck_assert_int_ge(fd, 0);
    return fd;
}

static void setup(void)
{
    strcpy(dir, "/tmp/qmproxy-size-worker-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    base = event_base_new();
    atomic_store(&reads_started, 0);
    atomic_store(&reads_ended, 0);
    atomic_store(&qcow2_reads, 0);
    atomic_store(&raw_reads, 0);
}

static void teardown(void)
{
    char *cmd = xasprintf("rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
    event_base_free(base);
}

START_TEST(test_hanging_read_answers_at_the_bound_and_coalesces)
{
    char *fifo = in_dir("hang"), *qcow2 = in_dir("disk.qcow2");
    char *raw = in_dir("disk.raw");
    struct size_worker *w = size_worker_new(base, blocking_read_size, 200);
    struct answer hung = { 0 }, stuck = { 0 }, first = { 0 }, newest = { 0 };
    struct image_ref hang_ref[] = { { fifo, "raw" } };
    struct image_ref raw_ref[] = { { raw, "raw" } };
    struct image_ref qcow2_ref[] = { { qcow2, "qcow2" } };
    int wfd;

    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    qemu_img("create -q -f qcow2 disk.qcow2 64M");
    qemu_img("create -q -f raw disk.raw 3M");

    /* returns although the read it starts waits for a writer that is not
     * there: the caller (the loop) goes on */
    size_worker_read(w, hang_ref, 1, true, on_done, &hung);
    ck_assert_int_eq(hung.calls, 0);  /* never from within the call */
    wait_for(&hung, 300);
    ck_assert_int_eq(hung.answer, SIZES_LATE);
    ck_assert_int_eq(atomic_load(&reads_ended), 0);  /* still hanging */

    /* while it hangs past the bound, a bounded request is answered
     * without waiting for it, and unbounded ones wait for the next read,
     * which all of them share with the newest list */
    size_worker_read(w, raw_ref, 1, false, on_done, &first);
    size_worker_read(w, hang_ref, 1, true, on_done, &stuck);
    size_worker_read(w, qcow2_ref, 1, false, on_done, &newest);
    wait_for(&stuck, 300);
    ck_assert_int_eq(stuck.answer, SIZES_LATE);
    ck_assert_int_eq(first.calls, 0);
    ck_assert_int_eq(atomic_load(&reads_started), 1);  /* none in parallel */
    ck_assert_uint_eq(size_worker_late(w), 2);

    wfd = release_fifo(fifo);
    wait_for(&first, 300);
    wait_for(&newest, 300);
    close(wfd);
    ck_assert_int_eq(first.answer, SIZES_READ);
    ck_assert_int_eq(newest.answer, SIZES_READ);
    ck_assert_str_eq(first.first_path, qcow2);
    ck_assert_str_eq(newest.first_path, qcow2);
    ck_assert_int_eq(first.first_size, 64 << 20);
    ck_assert_int_eq(newest.first_size, 64 << 20);
    ck_assert_int_eq(atomic_load(&qcow2_reads), 1);  /* one read for both */
    ck_assert_int_eq(atomic_load(&raw_reads), 0);    /* replaced unread */
    ck_assert_int_eq(hung.calls + stuck.calls, 2);   /* never twice */

    size_worker_free(w);
    free(first.first_path);
    free(newest.first_path);
    free(fifo);
    free(qcow2);
    free(raw);
}
END_TEST

START_TEST(test_sizes_of_real_images)
{
    char *qcow2 = in_dir("top.qcow2"), *raw = in_dir("disk.raw");
    char *fifo = in_dir("fifo"), *missing = in_dir("missing.qcow2");
    /* image_file_size() itself: a FIFO does not block its open */
    struct size_worker *w = size_worker_new(base, image_file_size, 60000);
    struct image_ref refs[] = { { qcow2, "qcow2" }, { raw, "raw" },
                                { fifo, "raw" }, { missing, "qcow2" } };
    struct answer a = { 0 }, b = { 0 };

    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    qemu_img("create -q -f qcow2 base.qcow2 64M");
    qemu_img("create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2");
    qemu_img("create -q -f raw disk.raw 3M");

    size_worker_read(w, refs, 4, true, on_done, &a);
    wait_for(&a, 600);
    ck_assert_int_eq(a.answer, SIZES_READ);
    ck_assert_int_eq(a.n, 4);
    ck_assert_int_eq(a.first_size, 64 << 20);
    ck_assert_int_eq(a.second_size, 3 << 20);
    ck_assert_int_eq(a.rest[0], -1);  /* a FIFO: no image, and no wait */
    ck_assert_int_eq(a.rest[1], -1);  /* no file */

    qemu_img("resize -q top.qcow2 96M");
    qemu_img("resize -q -f raw disk.raw 5M");
    size_worker_read(w, refs, 4, true, on_done, &b);
    wait_for(&b, 600);
    ck_assert_int_eq(b.answer, SIZES_READ);
    ck_assert_int_eq(b.first_size, 96 << 20);
    ck_assert_int_eq(b.second_size, 5 << 20);

    size_worker_free(w);  /* idle: the thread is joined */
    free(a.first_path);
    free(b.first_path);
    free(qcow2);
    free(raw);
    free(fifo);
    free(missing);
}
END_TEST

START_TEST(test_free_while_a_read_hangs)
{
    char *fifo = in_dir("hang");
    struct size_worker *w = size_worker_new(base, blocking_read_size, 200);
    struct image_ref hang_ref[] = { { fifo, "raw" } };
    struct answer waiting = { 0 };
    int wfd;

    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    size_worker_read(w, hang_ref, 1, false, on_done, &waiting);
    for (int i = 0; i < 1000 && atomic_load(&reads_started) == 0; i++) {
        usleep(10 * 1000);
    }
    ck_assert_int_eq(atomic_load(&reads_started), 1);
    /* returns, and tells the request it will not be answered */
    size_worker_free(w);
    ck_assert_int_eq(waiting.calls, 1);
    ck_assert_int_eq(waiting.answer, SIZES_DROPPED);

    /* the hanging read ends later; the thread cleans up after itself */
    wfd = release_fifo(fifo);
    for (int i = 0; i < 1000 && atomic_load(&reads_ended) == 0; i++) {
        usleep(10 * 1000);
    }
    ck_assert_int_eq(atomic_load(&reads_ended), 1);
    usleep(100 * 1000);  /* its last free, before the process exits */
    close(wfd);
    free(fifo);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("image-size-worker");
    TCase *tc = tcase_create("core");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_hanging_read_answers_at_the_bound_and_coalesces);
    tcase_add_test(tc, test_sizes_of_real_images);
    tcase_add_test(tc, test_free_while_a_read_hangs);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(suite)
