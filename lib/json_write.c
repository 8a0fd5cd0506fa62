/* json_write.c - the JSON writer (kb_jw_*); see kb_json.h.
 *
 * Our own rather than cJSON_Print: it streams into the response buffer with no tree per
 * response, writes exact integers and decimals we format ourselves (cJSON prints numbers
 * from doubles), and escapes invalid UTF-8 instead of passing it through.
 *
 * Appends to a kb_buf and tracks commas itself, so handlers emit fields in API.md order;
 * nesting deeper than KB_JW_MAX_DEPTH is a programming error (assert).
 */
#include "kb_json.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "kb_banned.h"

void
kb_jw_init(kb_jw *w, kb_buf *b)
{
    memset(w, 0, sizeof(*w));
    w->b = b;
}

/* Comma before a value or key, unless it follows a key. */
static void
sep(kb_jw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth > 0) {
        if (w->need_comma[w->depth])
            kb_buf_putc(w->b, ',');
        w->need_comma[w->depth] = true;
    }
}

static void
open_(kb_jw *w, char c)
{
    sep(w);
    kb_buf_putc(w->b, c);
    assert(w->depth + 1 < KB_JW_MAX_DEPTH);
    w->depth++;
    w->need_comma[w->depth] = false;
}

static void
close_(kb_jw *w, char c)
{
    assert(w->depth > 0);
    w->depth--;
    kb_buf_putc(w->b, c);
}

void
kb_jw_obj(kb_jw *w)
{
    open_(w, '{');
}

void
kb_jw_obj_end(kb_jw *w)
{
    close_(w, '}');
}

void
kb_jw_arr(kb_jw *w)
{
    open_(w, '[');
}

void
kb_jw_arr_end(kb_jw *w)
{
    close_(w, ']');
}

void
kb_jw_key(kb_jw *w, const char *name)
{
    sep(w);
    kb_buf_json_str(w->b, name, strlen(name));
    kb_buf_putc(w->b, ':');
    w->after_key = true;
}

void
kb_jw_strn(kb_jw *w, const char *s, size_t n)
{
    sep(w);
    if (s == NULL)
        kb_buf_puts(w->b, "null");
    else
        kb_buf_json_str(w->b, s, n);
}

void
kb_jw_str(kb_jw *w, const char *s)
{
    kb_jw_strn(w, s, s ? strlen(s) : 0);
}

void
kb_jw_int(kb_jw *w, int64_t v)
{
    sep(w);
    kb_buf_printf(w->b, "%" PRId64, v);
}

void
kb_jw_double(kb_jw *w, double v, int decimals)
{
    sep(w);
    if (!isfinite(v)) {
        kb_buf_puts(w->b, "null");
        return;
    }
    kb_buf_printf(w->b, "%.*f", decimals, v);
}

void
kb_jw_bool(kb_jw *w, bool v)
{
    sep(w);
    kb_buf_puts(w->b, v ? "true" : "false");
}

void
kb_jw_null(kb_jw *w)
{
    sep(w);
    kb_buf_puts(w->b, "null");
}

void
kb_jw_raw(kb_jw *w, const char *json, size_t n)
{
    sep(w);
    kb_buf_append(w->b, json, n);
}
