/*
 * log: one line per diagnostic on stderr, with a UTC time stamp.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

#include "util.h"

static enum log_level current = LOG_WARN;

void log_set_level(enum log_level level)
{
    current = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "error", "warning", "info",
                                         "debug" };
    char when[40], line[2048];
    va_list ap;

    if (level > current) {
        return;
    }
    format_rfc3339_us(when, sizeof(when));
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s qmproxy %s: %s\n", when, names[level], line);
}
