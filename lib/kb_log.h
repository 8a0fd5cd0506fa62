/* kb_log.h - structured JSON log lines on stderr (journald reads them).
 *
 * One line per event, written with a single write(2) so lines from several
 * processes never interleave. Untrusted text is JSON-escaped, so it cannot
 * forge a line. Never pass a secret, a password, a token or a full API key.
 */
#ifndef KB_LOG_H
#define KB_LOG_H

#include <stdbool.h>

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

/*
 * Per-request lines may wait in a per-process buffer (a busy worker writes ten or
 * so in one write(2) instead of one each). kb_log_hold(true) turns it on; then
 * kb_log_end_held() keeps a line of level below warn, and writes it with the others
 * when they would pass KB_LOG_HOLD_BYTES (each write stays whole lines of at most
 * PIPE_BUF bytes, so lines of several processes never interleave), when a line is
 * written through kb_log_end()/kb_log() (after them: the order is kept), at
 * kb_log_flush(), and when the oldest has waited KB_LOG_HOLD_MS. The caller flushes
 * whenever it goes idle (app/fcgi/worker.c), so at rest nothing waits. Off (the
 * default), kb_log_end_held() is kb_log_end().
 */
#define KB_LOG_HOLD_BYTES 4096
#define KB_LOG_HOLD_MS 1000
void kb_log_hold(bool on);
void kb_log_end_held(kb_buf *b, kb_log_level level);
void kb_log_flush(void);
/* Milliseconds until the oldest waiting line is due (0: now), or -1 when none waits. */
int kb_log_due_ms(void);

#define kb_log_info(...) kb_log(KB_LOG_INFO, __VA_ARGS__)
#define kb_log_warn(...) kb_log(KB_LOG_WARN, __VA_ARGS__)
#define kb_log_error(...) kb_log(KB_LOG_ERROR, __VA_ARGS__)
#define kb_log_debug(...) kb_log(KB_LOG_DEBUG, __VA_ARGS__)

#endif
