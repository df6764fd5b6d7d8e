/*
 * util: the small pieces every module needs: allocation that cannot fail
 * silently, a growable byte buffer, QEMU's modified UTF-8, and clocks.
 */
#ifndef QMPROXY_UTIL_H
#define QMPROXY_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
/* Replace the owned string in *slot with a copy of s (NULL allowed). */
void str_set(char **slot, const char *s);
/* Replace the owned string in *slot with a formatted one. */
void str_setf(char **slot, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

struct strbuf {
    char *buf;   /* owned; NUL-terminated when non-NULL */
    size_t len, cap;
};
#define STRBUF_INIT { NULL, 0, 0 }

void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addc(struct strbuf *sb, char c);
void strbuf_adds(struct strbuf *sb, const char *s);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void strbuf_release(struct strbuf *sb);
char *strbuf_detach(struct strbuf *sb, size_t *len);

/*
 * QEMU's modified UTF-8 (util/unicode.c): like UTF-8, but U+0000 is
 * "\xC0\x80"; surrogates, noncharacters and overlong forms are invalid.
 * mod_utf8_codepoint returns -1 for an invalid sequence; *used is the number
 * of bytes it covered.  mod_utf8_encode returns the length written to buf
 * (at least 5 bytes), or -1 for an invalid code point.
 */
int mod_utf8_codepoint(const char *s, size_t n, size_t *used);
int mod_utf8_encode(char *buf, int codepoint);

/* Monotonic microseconds, for latencies and timers. */
uint64_t now_monotonic_us(void);

/* FNV-1a: h continued over n bytes (start from FNV1A_START); a cheap
 * fingerprint, not a defence against anyone choosing the bytes. */
#define FNV1A_START 14695981039346656037ULL
uint64_t fnv1a(uint64_t h, const void *bytes, size_t n);
/* RFC 3339 UTC with microseconds into buf (at least 32 bytes). */
void format_rfc3339_us(char *buf, size_t size);

/* Set O_NONBLOCK and FD_CLOEXEC. */
int fd_set_nonblock_cloexec(int fd);
/* Write all of buf to a blocking fd (used only outside the event loop). */
bool write_all(int fd, const void *buf, size_t len);

/* Room for at least min more bytes after the len held in *buf (of *cap
 * bytes, grown by doubling from 4 KiB): where they go, *avail of them.
 * The one growth rule of the stream buffers. */
char *buf_room(char **buf, size_t *cap, size_t len, size_t min,
               size_t *avail);

#endif
