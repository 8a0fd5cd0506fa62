/* time.c - clocks and timestamp formatting; see kb_time.h. */
#include "kb_time.h"

#include <stdio.h>
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
