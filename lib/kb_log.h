/* kb_log.h - structured JSON log lines on stderr (journald reads them).
 *
 * One line per event, written with a single write(2) so lines from several
 * processes never interleave. Untrusted text is JSON-escaped, so it cannot
 * forge a line. Never pass a secret, a password, a token or a full API key.
 */
#ifndef KB_LOG_H
#define KB_LOG_H

#include "kb_buf.h"

typedef enum kb_log_level {
    KB_LOG_DEBUG,
    KB_LOG_INFO,
    KB_LOG_WARN,
    KB_LOG_ERROR,
} kb_log_level;

/* Set before fork: the role ("master", "worker", "kbctl") and minimum level. */
void kb_log_init(const char *role, kb_log_level min_level);

/* Change the role after fork (the pid is read on every line). */
void kb_log_set_role(const char *role);

/* Parse "debug|info|warn|error"; false when unknown. */
int kb_log_level_parse(const char *s, kb_log_level *out);

/* A line {"ts","level","role","pid","msg"} with msg printf-formatted. */
void kb_log(kb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Start a line in b with ts, level, role and pid, leaving it open for more
 * "key":value members; finish it with kb_log_end().
 */
void kb_log_begin(kb_buf *b, kb_log_level level);

/* Close the object opened by kb_log_begin, write it, reset b. */
void kb_log_end(kb_buf *b);

#define kb_log_info(...) kb_log(KB_LOG_INFO, __VA_ARGS__)
#define kb_log_warn(...) kb_log(KB_LOG_WARN, __VA_ARGS__)
#define kb_log_error(...) kb_log(KB_LOG_ERROR, __VA_ARGS__)
#define kb_log_debug(...) kb_log(KB_LOG_DEBUG, __VA_ARGS__)

#endif
