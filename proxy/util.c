/*
 * util: allocation helpers, byte buffers, modified UTF-8 and clocks.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void out_of_memory(void)
{
    static const char msg[] = "qmproxy: out of memory\n";
    ssize_t r = write(2, msg, sizeof(msg) - 1);
    (void)r;
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        out_of_memory();
    }
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        out_of_memory();
    }
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        out_of_memory();
    }
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void str_set(char **slot, const char *s)
{
    char *copy = s ? xstrdup(s) : NULL;
    free(*slot);
    *slot = copy;
}

char *xvasprintf(const char *fmt, va_list ap)
{
    char *s;

    if (vasprintf(&s, fmt, ap) < 0) {
        out_of_memory();
    }
    return s;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = xvasprintf(fmt, ap);
    va_end(ap);
    return s;
}

void str_setf(char **slot, const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = xvasprintf(fmt, ap);
    va_end(ap);
    free(*slot);
    *slot = s;
}

static void strbuf_grow(struct strbuf *sb, size_t more)
{
    if (sb->len + more + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 64;
        while (cap < sb->len + more + 1) {
            cap *= 2;
        }
        sb->buf = xrealloc(sb->buf, cap);
        sb->cap = cap;
    }
}

void strbuf_add(struct strbuf *sb, const void *data, size_t len)
{
    strbuf_grow(sb, len);
    memcpy(sb->buf + sb->len, data, len);
    sb->len += len;
    sb->buf[sb->len] = 0;
}

void strbuf_addc(struct strbuf *sb, char c)
{
    strbuf_grow(sb, 1);
    sb->buf[sb->len++] = c;
    sb->buf[sb->len] = 0;
}

void strbuf_adds(struct strbuf *sb, const char *s)
{
    strbuf_add(sb, s, strlen(s));
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    strbuf_grow(sb, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

void strbuf_release(struct strbuf *sb)
{
    free(sb->buf);
    sb->buf = NULL;
    sb->len = sb->cap = 0;
}

char *strbuf_detach(struct strbuf *sb, size_t *len)
{
    char *s;

    if (!sb->buf) {
        strbuf_grow(sb, 0);
        sb->buf[0] = 0;
    }
    s = sb->buf;
    if (len) {
        *len = sb->len;
    }
    sb->buf = NULL;
    sb->len = sb->cap = 0;
    return s;
}

static bool is_valid_codepoint(int cp)
{
    if (cp < 0 || cp > 0x10FFFF) {
        return false;
    }
    if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) {
        return false;  /* noncharacter */
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) {
        return false;  /* surrogate */
    }
    return true;
}

int mod_utf8_codepoint(const char *s, size_t n, size_t *used)
{
    static const int min_cp[5] = { 0x80, 0x800, 0x10000, 0x200000,
                                   0x4000000 };
    const unsigned char *p = (const unsigned char *)s;
    unsigned byte, mask, len;
    int cp;

    if (n > 6) {
        n = 6;
    }
    if (n == 0 || *p == 0) {
        *used = 0;
        return -1;
    }
    byte = *p++;
    if (byte < 0x80) {
        cp = (int)byte;
    } else if (byte >= 0xFE) {
        cp = -1;
    } else if ((byte & 0x40) == 0) {
        cp = -1;  /* unexpected continuation byte */
    } else {
        len = 0;
        for (mask = 0x80; byte & mask; mask >>= 1) {
            len++;
        }
        cp = (int)(byte & (mask - 1));
        for (unsigned i = 1; i < len; i++) {
            byte = i < n ? *p : 0;
            if ((byte & 0xC0) != 0x80) {
                cp = -1;  /* continuation byte missing */
                goto out;
            }
            p++;
            cp = (cp << 6) | (int)(byte & 0x3F);
        }
        if (!is_valid_codepoint(cp)) {
            cp = -1;
        } else if (cp < min_cp[len - 2] && !(cp == 0 && len == 2)) {
            cp = -1;  /* overlong, and not the \xC0\x80 form of NUL */
        }
    }
out:
    *used = (size_t)(p - (const unsigned char *)s);
    return cp;
}

int mod_utf8_encode(char *buf, int cp)
{
    if (!is_valid_codepoint(cp)) {
        return -1;
    }
    if (cp > 0 && cp <= 0x7F) {
        buf[0] = (char)cp;
        buf[1] = 0;
        return 1;
    }
    if (cp <= 0x7FF) {
        buf[0] = (char)(0xC0 | ((cp >> 6) & 0x1F));
        buf[1] = (char)(0x80 | (cp & 0x3F));
        buf[2] = 0;
        return 2;
    }
    if (cp <= 0xFFFF) {
        buf[0] = (char)(0xE0 | ((cp >> 12) & 0x0F));
        buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (cp & 0x3F));
        buf[3] = 0;
        return 3;
    }
    buf[0] = (char)(0xF0 | ((cp >> 18) & 0x07));
    buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = (char)(0x80 | (cp & 0x3F));
    buf[4] = 0;
    return 4;
}

uint64_t now_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void format_rfc3339_us(char *buf, size_t size)
{
    struct timeval tv;
    struct tm tm;
    char date[32];

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%06ldZ", date, (long)tv.tv_usec);
}

int fd_set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        return -1;
    }
    fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) {
        return -1;
    }
    return 0;
}

bool write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

char *buf_room(char **buf, size_t *cap, size_t len, size_t min,
               size_t *avail)
{
    if (*cap - len < min) {
        size_t grown = *cap ? *cap : 4096;
        while (grown - len < min) {
            grown *= 2;
        }
        *buf = xrealloc(*buf, grown);
        *cap = grown;
    }
    *avail = *cap - len;
    return *buf + len;
}

uint64_t fnv1a(uint64_t h, const void *bytes, size_t n)
{
    const unsigned char *b = bytes;

    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 1099511628211ULL;
    }
    return h;
}
