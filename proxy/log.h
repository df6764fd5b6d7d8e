/*
 * log: the proxy's own diagnostics on stderr (not the traffic log).
 */
#ifndef QMPROXY_LOG_H
#define QMPROXY_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

#include <stdbool.h>

void log_set_level(enum log_level level);
/* Start every line with syslog's "<N>" priority (for journald), without
 * the time stamp journald adds itself. */
void log_set_priority_prefix(bool on);
/* Whether standard error is journald's stream (JOURNAL_STREAM matches). */
bool log_stderr_is_journal(void);
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* What stops the proxy before its loop runs (a bad option, a socket that
 * cannot be made): "qmproxy: ..." on stderr, as a command-line tool says
 * it, with the error priority in front when the journal reads stderr. */
void log_startup(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
