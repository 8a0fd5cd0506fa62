/* kb_buf.h - growable byte buffer (after git's strbuf).
 *
 * Invariants: len < cap whenever buf is non-NULL, and buf[len] == '\0', so a
 * kb_buf is always a valid C string as well as binary-safe bytes. A zeroed
 * kb_buf (KB_BUF_INIT) is an empty, usable buffer that owns nothing.
 */
#ifndef KB_BUF_H
#define KB_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct kb_buf {
    char *buf;
    size_t len;
    size_t cap;
} kb_buf;

#define KB_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Make room for extra more bytes (plus the NUL). */
void kb_buf_grow(kb_buf *b, size_t extra);

/* Append bytes. */
void kb_buf_append(kb_buf *b, const void *data, size_t len);

/* Append a NUL-terminated string. */
void kb_buf_puts(kb_buf *b, const char *s);

/* Append one byte. */
void kb_buf_putc(kb_buf *b, char c);

/* Append formatted text. */
void kb_buf_printf(kb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kb_buf_vprintf(kb_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Append s as a JSON string literal, quotes included. Control characters
 * and invalid UTF-8 bytes are escaped (\u00XX / U+FFFD) so the output is
 * always valid JSON and can never break a log line. */
void kb_buf_json_str(kb_buf *b, const char *s, size_t len);

/* Empty the buffer, keeping its memory. */
void kb_buf_reset(kb_buf *b);

/* Free the memory; the buffer is KB_BUF_INIT again. */
void kb_buf_release(kb_buf *b);

/* Hand the string to the caller (who frees it) and reset b. Never NULL. */
char *kb_buf_detach(kb_buf *b, size_t *len);

/* The contents as a C string ("" when empty). */
const char *kb_buf_cstr(const kb_buf *b);

#endif
