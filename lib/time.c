/* time.c - clocks, timestamp formatting and parsing; see kb_time.h.
 *
 * Our own rather than strptime/timegm: libc parses no ISO 8601 offsets or
 * fractions the way Pydantic does (API.md §1.1), and its calendar state is
 * TZ-dependent. Parsing is pure arithmetic on the proleptic Gregorian
 * calendar (no libc time zone state), so it is thread-safe and independent of TZ.
 */
#include "kb_time.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kb_banned.h"

int64_t
kb_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
kb_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

size_t
kb_time_format(int64_t us, char *out, size_t outsz)
{
    /* Floor division so instants before 1970 format correctly too. */
    int64_t sec = us / 1000000;
    int64_t frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        sec -= 1;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    int n;
    if (gmtime_r(&t, &tm) == NULL) {
        n = snprintf(out, outsz, "1970-01-01T00:00:00+00:00");
    } else if (frac != 0) {
        n = snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld+00:00", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)frac);
    } else {
        n = snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d+00:00", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    }
    if (n < 0 || (size_t)n >= outsz) {
        if (outsz)
            out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

size_t
kb_time_format_naive(int64_t us, char *out, size_t outsz)
{
    char full[KB_TIME_FMT_MAX];
    size_t n = kb_time_format(us, full, sizeof(full));
    if (n < 6 || n - 6 >= outsz) {
        if (outsz)
            out[0] = '\0';
        return 0;
    }
    memcpy(out, full, n - 6); /* drop "+00:00" */
    out[n - 6] = '\0';
    return n - 6;
}

/* Instants the API accepts: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z. */
#define TIME_MIN_US (-62135596800LL * 1000000)
#define TIME_MAX_US (253402300800LL * 1000000 - 1)

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool
is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* A calendar date of years 0001..9999. */
static bool
valid_date(int64_t y, int64_t mo, int64_t d)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return y >= 1 && y <= 9999 && mo >= 1 && mo <= 12 && d >= 1 &&
           d <= mdays[mo - 1] + (mo == 2 && is_leap(y) ? 1 : 0);
}

/* Exactly n digits at s[*i] into *v. */
static bool
digits(const char *s, size_t len, size_t *i, int n, int64_t *v)
{
    int64_t x = 0;
    for (int k = 0; k < n; k++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9')
            return false;
        x = x * 10 + (s[*i] - '0');
        (*i)++;
    }
    *v = x;
    return true;
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Unix seconds (or ms above 2e10) as a decimal string. */
static bool
parse_unix_string(const char *s, size_t len, int64_t *us, const char **reason)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && (s[i] == '-' || s[i] == '+')) {
        neg = s[i] == '-';
        i++;
    }
    int64_t ip = 0, frac = 0;
    int nint = 0, nfrac = 0;
    while (i < len && is_digit(s[i])) {
        if (nint >= 16) {
            *reason = "timestamp out of range";
            return false;
        }
        ip = ip * 10 + (s[i] - '0');
        nint++;
        i++;
    }
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && is_digit(s[i])) {
            if (nfrac < 9) {
                frac = frac * 10 + (s[i] - '0');
                nfrac++;
            }
            i++;
        }
    }
    if (i != len || nint == 0) {
        *reason = "invalid datetime format";
        return false;
    }
    for (int k = nfrac; k < 9; k++)
        frac *= 10; /* nanoseconds */
    int64_t v;
    if (ip > TIME_MAX_US / 1000) { /* 16 digits of ms would overflow the multiplication */
        *reason = "timestamp out of range";
        return false;
    }
    if (ip > 20000000000LL) /* milliseconds */
        v = ip * 1000 + frac / 1000000;
    else
        v = ip * 1000000 + frac / 1000;
    v = neg ? -v : v;
    if (v < TIME_MIN_US || v > TIME_MAX_US) {
        *reason = "timestamp out of range";
        return false;
    }
    *us = v;
    return true;
}

bool
kb_time_from_unix(double v, int64_t *us, const char **reason)
{
    if (!isfinite(v) || v > 1e17 || v < -1e17) {
        *reason = "timestamp out of range";
        return false;
    }
    if (v > 2e10)
        v /= 1000.0;
    double x = v * 1e6;
    if (x < (double)TIME_MIN_US || x > (double)TIME_MAX_US) {
        *reason = "timestamp out of range";
        return false;
    }
    *us = x >= 0 ? (int64_t)(x + 0.5) : -(int64_t)(-x + 0.5); /* no libm */
    return true;
}

bool
kb_time_parse(const char *s, size_t len, bool query_rules, int64_t *us, const char **reason)
{
    *reason = "invalid datetime format";
    if (s == NULL || len == 0) {
        *reason = "input is empty";
        return false;
    }
    if (len < 5 || s[4] != '-')
        return parse_unix_string(s, len, us, reason);

    size_t i = 0;
    int64_t y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
    if (!digits(s, len, &i, 4, &y) || s[i++] != '-' || !digits(s, len, &i, 2, &mo) || i >= len ||
        s[i++] != '-' || !digits(s, len, &i, 2, &d))
        return false;
    if (i < len) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
            return false;
        i++;
        if (!digits(s, len, &i, 2, &h) || i >= len || s[i++] != ':' || !digits(s, len, &i, 2, &mi))
            return false;
        if (i < len && s[i] == ':') {
            i++;
            if (!digits(s, len, &i, 2, &sec))
                return false;
            if (i < len && (s[i] == '.' || s[i] == ',')) {
                i++;
                int n = 0;
                while (i < len && is_digit(s[i])) {
                    if (n < 6) {
                        frac = frac * 10 + (s[i] - '0');
                    }
                    n++;
                    i++;
                }
                if (n == 0)
                    return false;
                for (int k = n; k < 6; k++)
                    frac *= 10;
            }
        }
    }
    int64_t off_s = 0;
    if (i < len) {
        char c = s[i];
        if ((c == 'Z' || c == 'z') && i + 1 == len) {
            i++;
        } else if (c == '+' || c == '-' || (c == ' ' && query_rules)) {
            int sign = c == '-' ? -1 : 1;
            int64_t oh, om = 0;
            i++;
            if (!digits(s, len, &i, 2, &oh))
                return false;
            if (i < len && s[i] == ':')
                i++;
            if (!digits(s, len, &i, 2, &om))
                return false;
            if (oh > 23 || om > 59) {
                *reason = "timezone offset out of range";
                return false;
            }
            off_s = sign * (oh * 3600 + om * 60);
        } else {
            return false;
        }
    }
    if (i != len)
        return false;
    if (!valid_date(y, mo, d)) {
        *reason = "date out of range";
        return false;
    }
    if (h > 23 || mi > 59 || sec > 59) {
        *reason = "time out of range";
        return false;
    }
    int64_t v = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) - off_s) * 1000000 +
                frac;
    if (v < TIME_MIN_US || v > TIME_MAX_US) {
        *reason = "timestamp out of range";
        return false;
    }
    *us = v;
    return true;
}

bool
kb_time_parse_date(const char *s, size_t len, int64_t *days)
{
    size_t i = 0;
    int64_t y, mo, d;
    if (s == NULL || len != 10 || !digits(s, len, &i, 4, &y) || s[i++] != '-' ||
        !digits(s, len, &i, 2, &mo) || s[i++] != '-' || !digits(s, len, &i, 2, &d) ||
        !valid_date(y, mo, d))
        return false;
    *days = days_from_civil(y, mo, d);
    return true;
}
