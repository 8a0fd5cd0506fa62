/* str.c - kb_str helpers; see kb_str.h. */
#include "kb_str.h"

#include <string.h>
#include <strings.h>

#include "kb_banned.h"

kb_str
kb_str_c(const char *s)
{
    kb_str r = {s, s != NULL ? strlen(s) : 0};
    return r;
}

bool
kb_str_eq(kb_str s, const char *c)
{
    size_t n = strlen(c);
    return s.p != NULL && s.len == n && memcmp(s.p, c, n) == 0;
}

bool
kb_str_eq_nocase(kb_str s, const char *c)
{
    size_t n = strlen(c);
    return s.p != NULL && s.len == n && strncasecmp(s.p, c, n) == 0;
}

bool
kb_str_has_prefix(kb_str s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.p != NULL && s.len >= n && memcmp(s.p, prefix, n) == 0;
}

kb_str
kb_str_trim(kb_str s)
{
    while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

char *
kb_str_dup(kb_arena *a, kb_str s)
{
    return kb_arena_strndup(a, s.p != NULL ? s.p : "", s.len);
}

bool
kb_parse_i64(kb_str s, int64_t min, int64_t max, int64_t *out, const char **errstr)
{
    size_t i = 0;
    bool neg = false;
    uint64_t v = 0;
    /* |INT64_MIN| fits in uint64_t; the limit depends on the sign. */
    uint64_t limit;

    *errstr = "invalid";
    if (s.p == NULL || s.len == 0)
        return false;
    if (s.p[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == s.len)
        return false;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < s.len; i++) {
        char c = s.p[i];
        if (c < '0' || c > '9')
            return false;
        unsigned d = (unsigned)(c - '0');
        if (v > (limit - d) / 10) {
            *errstr = neg ? "too small" : "too large";
            return false;
        }
        v = v * 10 + d;
    }
    int64_t r = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    if (r < min) {
        *errstr = "too small";
        return false;
    }
    if (r > max) {
        *errstr = "too large";
        return false;
    }
    *errstr = NULL;
    *out = r;
    return true;
}

int
kb_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool
kb_str_unescape(kb_arena *a, kb_str s, bool plus_is_space, kb_str *out)
{
    char *d = kb_arena_alloc(a, kb_st_add(s.len, 1));
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (c == '%') {
            if (i + 2 >= s.len)
                return false;
            int hi = kb_hexval(s.p[i + 1]), lo = kb_hexval(s.p[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = (char)(hi * 16 + lo);
            if (c == '\0')
                return false;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        } else if (c == '\0') {
            return false;
        }
        d[n++] = c;
    }
    /* Every value we decode ends up as Postgres text or in a JSON answer, both
     * UTF-8: bytes that are not (a lone %FF, an overlong, a surrogate) are as
     * malformed as a bad escape, and are refused here, once, for paths and
     * queries alike. */
    if (!kb_utf8_valid(d, n))
        return false;
    d[n] = '\0';
    out->p = d;
    out->len = n;
    return true;
}

bool
kb_query_get(kb_arena *a, kb_str query, const char *name, kb_str *out)
{
    size_t nlen = strlen(name);
    size_t i = 0;
    while (query.p != NULL && i < query.len) {
        size_t end = i;
        while (end < query.len && query.p[end] != '&')
            end++;
        kb_str pair = {query.p + i, end - i};
        size_t eq = 0;
        while (eq < pair.len && pair.p[eq] != '=')
            eq++;
        kb_str key = {pair.p, eq};
        kb_str dkey;
        if (kb_str_unescape(a, key, true, &dkey) && dkey.len == nlen &&
            memcmp(dkey.p, name, nlen) == 0) {
            kb_str raw = eq < pair.len ? (kb_str){pair.p + eq + 1, pair.len - eq - 1}
                                       : (kb_str){pair.p + pair.len, 0};
            if (!kb_str_unescape(a, raw, true, out))
                *out = KB_STR_NULL;
            return true;
        }
        i = end + 1;
    }
    return false;
}

size_t
kb_utf8_seq(const char *s, size_t left)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char c = p[0];
    size_t n;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

bool
kb_utf8_valid(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = kb_utf8_seq(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

size_t
kb_utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}
