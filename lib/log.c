/* log.c - JSON log lines; see kb_log.h. */
#include "kb_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "kb_time.h"
#include "kb_banned.h"

static const char *log_role = "kb";
static kb_log_level log_min = KB_LOG_INFO;
/* The process's pid, read once per process: a fork's child forgets it. */
static long log_pid;
static bool atfork_set;

/* Lines waiting to be written (kb_log_hold), and when the oldest came. */
static bool hold_on;
static char held[KB_LOG_HOLD_BYTES];
static size_t held_len;
static int64_t held_since_us;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* In a fork's child: its own pid, and the parent's waiting lines are the parent's
 * to write. */
static void
forked(void)
{
    log_pid = 0;
    held_len = 0;
}

static long
pid_now(void)
{
    if (log_pid == 0) {
        if (!atfork_set)
            atfork_set = pthread_atfork(NULL, NULL, forked) == 0;
        log_pid = (long)getpid();
    }
    return log_pid;
}

void
kb_log_init(const char *role, kb_log_level min_level)
{
    log_role = role;
    log_min = min_level;
    (void)pid_now();
}

void
kb_log_set_role(const char *role)
{
    log_role = role;
}

int
kb_log_level_parse(const char *s, kb_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (kb_log_level)i;
            return 1;
        }
    }
    return 0;
}

void
kb_log_begin(kb_buf *b, kb_log_level level)
{
    char ts[40];
    kb_time_format(kb_now_us(), ts, sizeof(ts));
    kb_buf_reset(b);
    kb_buf_printf(b, "{\"ts\":\"%s\",\"level\":\"%s\",\"role\":", ts, level_names[level]);
    kb_buf_json_str(b, log_role, strlen(log_role));
    kb_buf_printf(b, ",\"pid\":%ld", pid_now());
}

static void
write_all(const char *p, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(2, p + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
}

void
kb_log_flush(void)
{
    if (held_len == 0)
        return;
    write_all(held, held_len);
    held_len = 0;
}

/* Line p[0..len) after the waiting ones: with them in one write when it fits. */
static void
write_after_held(const char *p, size_t len)
{
    if (held_len > 0 && held_len + len <= sizeof(held)) {
        memcpy(held + held_len, p, len);
        held_len += len;
        kb_log_flush();
        return;
    }
    kb_log_flush();
    write_all(p, len);
}

void
kb_log_end(kb_buf *b)
{
    kb_buf_puts(b, "}\n");
    write_after_held(b->buf, b->len);
    kb_buf_reset(b);
}

void
kb_log_hold(bool on)
{
    if (!on)
        kb_log_flush();
    hold_on = on;
}

void
kb_log_end_held(kb_buf *b, kb_log_level level)
{
    kb_buf_puts(b, "}\n");
    if (!hold_on || level >= KB_LOG_WARN || b->len > sizeof(held)) {
        write_after_held(b->buf, b->len);
    } else {
        if (held_len + b->len > sizeof(held))
            kb_log_flush();
        if (held_len == 0)
            held_since_us = kb_mono_us();
        memcpy(held + held_len, b->buf, b->len);
        held_len += b->len;
        if (kb_log_due_ms() == 0)
            kb_log_flush();
    }
    kb_buf_reset(b);
}

int
kb_log_due_ms(void)
{
    if (held_len == 0)
        return -1;
    int64_t left = held_since_us + (int64_t)KB_LOG_HOLD_MS * 1000 - kb_mono_us();
    return left <= 0 ? 0 : (int)((left + 999) / 1000);
}

void
kb_log(kb_log_level level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    kb_buf line = KB_BUF_INIT;
    kb_buf msg = KB_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    kb_buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    kb_log_begin(&line, level);
    kb_buf_puts(&line, ",\"msg\":");
    kb_buf_json_str(&line, kb_buf_cstr(&msg), msg.len);
    kb_log_end(&line);
    kb_buf_release(&msg);
    kb_buf_release(&line);
}
