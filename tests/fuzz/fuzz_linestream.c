/*
 * fuzz_linestream: QEMU's side of the monitor (proxy/linestream.c), a
 * message a line with its top-level members found by a lenient scan.
 *
 * Input: four bytes seeding the chunk sizes, then what QEMU would write.
 * It is fed in chunks of random sizes through reserve/commit, with the
 * callback stopping the stream now and then, and whole; checked: every
 * line is inside the buffer and holds no newline, every member offset lies
 * inside its line and in order, the two feedings give the same lines and
 * members, and classifying a line (qmp_classify, js_text_member, which
 * decode keys) stays inside it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "fuzz_text.h"
#include "linestream.h"
#include "log.h"
#include "qmp.h"
#include "util.h"

struct run {
    struct strbuf log;
    uint32_t rng;
    bool may_stop;
};

static void check_text(const struct js_text *t)
{
    FUZZ_ASSERT(t->raw && t->len > 0);
    FUZZ_ASSERT(!t->error && !t->has_value);
    fuzz_touch_text(t);
    FUZZ_ASSERT(!memchr(t->raw, '\n', t->len));
    fuzz_check_members(t);
}

static bool on_line(void *opaque, const struct js_text *t)
{
    struct run *r = opaque;
    struct js_text again;

    check_text(t);
    /* scanning the same bytes on their own gives the same members */
    memset(&again, 0, sizeof(again));
    again.raw = t->raw;
    again.len = t->len;
    linestream_scan_members(&again);
    FUZZ_ASSERT(again.is_object == t->is_object);
    FUZZ_ASSERT(again.nmembers == t->nmembers);
    FUZZ_ASSERT(!memcmp(again.members, t->members,
                        sizeof(t->members[0]) * (size_t)t->nmembers));

    fuzz_log_num(&r->log, t->len);
    strbuf_add(&r->log, t->raw, t->len);
    fuzz_log_num(&r->log, (size_t)t->is_object);
    fuzz_log_num(&r->log, (size_t)t->nmembers);
    fuzz_log_num(&r->log, (size_t)t->members_overflow);
    fuzz_log_num(&r->log, (size_t)qmp_classify(t));
    fuzz_log_members(&r->log, t);
    fuzz_log_num(&r->log, js_text_member(t, "id") != NULL);
    return !(r->may_stop && fuzz_rand(&r->rng) % 8 == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input in = { data, size };
    uint32_t seed = fuzz_u32(&in);
    struct run whole = { STRBUF_INIT, 0, false };
    struct run chunked = { STRBUF_INIT, seed, true };
    struct linestream *ls;
    size_t avail, off = 0;
    char *p;

    ls = linestream_new(on_line, &whole);
    p = linestream_reserve(ls, in.n ? in.n : 1, &avail);
    FUZZ_ASSERT(avail >= in.n);
    memcpy(p, in.p, in.n);
    linestream_commit(ls, in.n);
    linestream_free(ls);

    ls = linestream_new(on_line, &chunked);
    while (off < in.n) {
        size_t n = fuzz_chunk(&chunked.rng, in.n - off);
        p = linestream_reserve(ls, n, &avail);
        FUZZ_ASSERT(avail >= n);
        memcpy(p, in.p + off, n);
        /* a stopped stream goes on at the next commit */
        linestream_commit(ls, n);
        off += n;
    }
    do {
        (void)linestream_reserve(ls, 1, &avail);
    } while (!linestream_commit(ls, 0));
    linestream_free(ls);

    FUZZ_ASSERT(whole.log.len == chunked.log.len);
    FUZZ_ASSERT(!whole.log.len
                || !memcmp(whole.log.buf, chunked.log.buf, whole.log.len));
    strbuf_release(&whole.log);
    strbuf_release(&chunked.log);
    return 0;
}
