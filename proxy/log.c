/*
 * log: one line per diagnostic on stderr, with a UTC time stamp, or
 * under journald with its "<N>" priority prefix.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static enum log_level current = LOG_WARN;
static bool priority_prefix;

void log_set_priority_prefix(bool on)
{
    priority_prefix = on;
}

bool log_stderr_is_journal(void)
{
    const char *stream = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    /* "DEV:INO" of the journal's stream; standard error is it only when
     * they match (it may have been redirected since) */
    if (!stream || sscanf(stream, "%llu:%llu", &dev, &ino) != 2
        || fstat(STDERR_FILENO, &st) < 0) {
        return false;
    }
    return (unsigned long long)st.st_dev == dev
           && (unsigned long long)st.st_ino == ino;
}

void log_set_level(enum log_level level)
{
    current = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "error", "warning", "info",
                                         "debug" };
    /* syslog's priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
    static const int syslog_priority[] = { 3, 4, 6, 7 };
    char when[40], line[2048];
    va_list ap;

    if (level > current) {
        return;
    }
    format_rfc3339_us(when, sizeof(when));
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (priority_prefix) {
        /* journald reads "<N>" as the line's priority, and stamps the
         * time itself */
        fprintf(stderr, "<%d>%s: %s\n", syslog_priority[level], names[level],
                line);
        return;
    }
    fprintf(stderr, "%s qmproxy %s: %s\n", when, names[level], line);
}

void log_startup(const char *fmt, ...)
{
    va_list ap;

    if (priority_prefix) {
        fputs("<3>", stderr);
    }
    fputs("qmproxy: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}
