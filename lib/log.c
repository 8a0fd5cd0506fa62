/* log.c - JSON log lines; see kb_log.h. */
#include "kb_log.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "kb_time.h"
#include "kb_banned.h"

static const char *log_role = "kb";
static kb_log_level log_min = KB_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void
kb_log_init(const char *role, kb_log_level min_level)
{
    log_role = role;
    log_min = min_level;
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
    kb_buf_printf(b, ",\"pid\":%ld", (long)getpid());
}

void
kb_log_end(kb_buf *b)
{
    kb_buf_puts(b, "}\n");
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(2, b->buf + off, b->len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    kb_buf_reset(b);
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
