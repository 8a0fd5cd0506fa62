/* fixed.c - exact decimal parse and format for prices and quantities; see kb_fixed.h.
 *
 * Invariants: only integer arithmetic; every bound is checked before the
 * multiplication that could pass it, so no input overflows int64.
 */
#include "kb_fixed.h"

#include <string.h>

#include "kb_banned.h"

static const int64_t pow10_tab[] = {1,      10,      100,      1000,      10000,
                                    100000, 1000000, 10000000, 100000000, 1000000000};

bool
kb_fixed_parse(const char *s, size_t len, int scale, bool allow_neg, int64_t max_abs, int64_t *out,
               const char **reason)
{
    size_t i = 0;
    bool neg = false;
    *reason = "not a decimal number";
    if (scale < 0 || scale > 9 || max_abs < 0 || s == NULL || len == 0)
        return false;
    if (s[0] == '-') {
        if (!allow_neg) {
            *reason = "must not be negative";
            return false;
        }
        neg = true;
        i = 1;
    }
    uint64_t v = 0, lim = (uint64_t)max_abs;
    size_t digits = 0;
    int decimals = -1; /* -1: no point yet */
    for (; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (decimals >= 0 || digits == 0)
                return false;
            decimals = 0;
            continue;
        }
        if (c < '0' || c > '9')
            return false;
        if (decimals >= 0 && ++decimals > scale) {
            *reason = scale == 0 ? "must be a whole number" : "too many decimals";
            return false;
        }
        unsigned d = (unsigned)(c - '0');
        if (v > (lim - d) / 10) {
            *reason = "out of range";
            return false;
        }
        v = v * 10 + d;
        digits++;
    }
    if (digits == 0 || decimals == 0)
        return false; /* "", "-", "1." */
    for (int k = decimals < 0 ? 0 : decimals; k < scale; k++) {
        if (v > lim / 10) {
            *reason = "out of range";
            return false;
        }
        v *= 10;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

bool
kb_fixed_scale_int(int64_t n, int scale, int64_t max_abs, int64_t *out)
{
    if (scale < 0 || scale > 9)
        return false;
    int64_t m = pow10_tab[scale];
    if (n > max_abs / m || n < -(max_abs / m))
        return false;
    *out = n * m;
    return true;
}

/* Digits of u (nonzero or zero) right-aligned into the end of buf; returns the first. */
static char *
utoa_back(uint64_t u, char *end)
{
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return end;
}

static size_t
format(int64_t v, int scale, bool trim, char *out)
{
    if (scale < 0 || scale > 9)
        scale = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    uint64_t m = (uint64_t)pow10_tab[scale];
    uint64_t ip = u / m, fp = u % m;
    char tmp[KB_FIXED_FMT_MAX];
    char *p = out;
    if (v < 0)
        *p++ = '-';
    char *d = utoa_back(ip, tmp + sizeof(tmp));
    size_t n = (size_t)(tmp + sizeof(tmp) - d);
    memcpy(p, d, n);
    p += n;
    int keep = scale;
    if (trim) {
        while (keep > 0 && fp % 10 == 0) {
            fp /= 10;
            keep--;
        }
    }
    if (keep > 0) {
        *p++ = '.';
        for (int k = keep - 1; k >= 0; k--) {
            p[k] = (char)('0' + fp % 10);
            fp /= 10;
        }
        p += keep;
    }
    *p = '\0';
    return (size_t)(p - out);
}

size_t
kb_fixed_format(int64_t v, int scale, char *out)
{
    return format(v, scale, false, out);
}

size_t
kb_fixed_format_trim(int64_t v, int scale, char *out)
{
    return format(v, scale, true, out);
}
