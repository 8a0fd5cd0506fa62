/* buf.c - kb_buf; see kb_buf.h. */
#include "kb_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_arena.h"
#include "kb_str.h"
#include "kb_banned.h"

void
kb_buf_grow(kb_buf *b, size_t extra)
{
    size_t need = kb_st_add(kb_st_add(b->len, extra), 1);
    if (b->buf != NULL && need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = kb_st_mult(cap, 2);
    b->buf = kb_xrealloc(b->buf, cap);
    if (b->cap == 0)
        b->buf[0] = '\0';
    b->cap = cap;
}

void
kb_buf_append(kb_buf *b, const void *data, size_t len)
{
    kb_buf_grow(b, len);
    if (len)
        memcpy(b->buf + b->len, data, len);
    b->len += len;
    b->buf[b->len] = '\0';
}

void
kb_buf_puts(kb_buf *b, const char *s)
{
    kb_buf_append(b, s, strlen(s));
}

void
kb_buf_putc(kb_buf *b, char c)
{
    kb_buf_grow(b, 1);
    b->buf[b->len++] = c;
    b->buf[b->len] = '\0';
}

void
kb_buf_vprintf(kb_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    kb_buf_grow(b, 64);
    va_copy(cp, ap);
    int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, cp);
    va_end(cp);
    if (n < 0)
        return;
    if ((size_t)n >= b->cap - b->len) {
        kb_buf_grow(b, (size_t)n);
        n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        if (n < 0) {
            b->buf[b->len] = '\0';
            return;
        }
    }
    b->len += (size_t)n;
}

void
kb_buf_printf(kb_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kb_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void
kb_buf_json_str(kb_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    kb_buf_grow(b, kb_st_add(len, 2));
    kb_buf_putc(b, '"');
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            kb_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            kb_buf_append(b, esc, 6);
            i++;
        } else if (c < 0x80) {
            kb_buf_putc(b, (char)c);
            i++;
        } else {
            size_t n = kb_utf8_seq(s + i, len - i);
            if (n == 0) {
                kb_buf_puts(b, "\\ufffd");
                i++;
            } else {
                kb_buf_append(b, p + i, n);
                i += n;
            }
        }
    }
    kb_buf_putc(b, '"');
}

void
kb_buf_reset(kb_buf *b)
{
    b->len = 0;
    if (b->buf != NULL)
        b->buf[0] = '\0';
}

void
kb_buf_release(kb_buf *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = 0;
    b->cap = 0;
}

char *
kb_buf_detach(kb_buf *b, size_t *len)
{
    if (b->buf == NULL)
        kb_buf_grow(b, 0);
    char *s = b->buf;
    if (len != NULL)
        *len = b->len;
    b->buf = NULL;
    b->len = 0;
    b->cap = 0;
    return s;
}

const char *
kb_buf_cstr(const kb_buf *b)
{
    return b->buf != NULL ? b->buf : "";
}
