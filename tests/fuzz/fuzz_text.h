/*
 * fuzz_text: what the targets of the two stream readers (jsonstream,
 * linestream) check of every text they are handed and how they feed them:
 * the text lies in the buffer, its members are in order and inside it; a
 * log of the members to compare two runs; chunks of a random size.
 */
#ifndef QMPROXY_FUZZ_TEXT_H
#define QMPROXY_FUZZ_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "jsonstream.h"
#include "util.h"

static inline uint32_t fuzz_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* The next chunk to feed: 1 to 64 bytes, no more than are left. */
static inline size_t fuzz_chunk(uint32_t *rng, size_t left)
{
    size_t n = 1 + fuzz_rand(rng) % 64;
    return n < left ? n : left;
}

/* Touch every byte: ASan checks the text lies in the buffer. */
static inline void fuzz_touch_text(const struct js_text *t)
{
    unsigned sum = 0;

    for (size_t i = 0; i < t->len; i++) {
        sum += (unsigned char)t->raw[i];
    }
    volatile unsigned sink = sum;
    (void)sink;
}

/* Members within bounds, in order, each key before its value. */
static inline void fuzz_check_members(const struct js_text *t)
{
    size_t prev_end = 0;

    FUZZ_ASSERT(t->nmembers >= 0 && t->nmembers <= JSONSTREAM_MAX_MEMBERS);
    FUZZ_ASSERT(t->is_object || t->nmembers == 0);
    for (int i = 0; i < t->nmembers; i++) {
        const struct js_member *m = &t->members[i];
        FUZZ_ASSERT(m->key_start >= prev_end);
        FUZZ_ASSERT(m->key_start < m->key_end);
        FUZZ_ASSERT(m->key_end <= m->value_start);
        FUZZ_ASSERT(m->value_start <= m->value_end);
        FUZZ_ASSERT(m->value_end <= t->len);
        prev_end = m->value_end;
    }
}

/*
 * The logs two runs write of what they were handed are only compared with
 * each other, so numbers go in as their bytes: formatting them was a tenth
 * of fuzz_jsonstream's time.
 */
static inline void fuzz_log_num(struct strbuf *log, size_t n)
{
    strbuf_add(log, &n, sizeof(n));
}

/* The members' spans, for comparing what two runs were handed. */
static inline void fuzz_log_members(struct strbuf *log,
                                    const struct js_text *t)
{
    for (int i = 0; i < t->nmembers; i++) {
        strbuf_add(log, &t->members[i], sizeof(t->members[i]));
    }
}

#endif
