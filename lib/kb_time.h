/* kb_time.h - clocks and the API's timestamp format (API.md §1.1).
 *
 * Instants are int64 microseconds since the Unix epoch, UTC.
 */
#ifndef KB_TIME_H
#define KB_TIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wall clock, microseconds since the epoch. */
int64_t kb_now_us(void);

/* Monotonic clock, microseconds; for durations and deadlines only. */
int64_t kb_mono_us(void);

/*
 * Write us as YYYY-MM-DDTHH:MM:SS+00:00, or with .ffffff before the offset
 * when the microseconds are non-zero (Python's isoformat()). out needs 33
 * bytes. Returns the length written.
 */
size_t kb_time_format(int64_t us, char *out, size_t outsz);

/* Same without the offset (candle buckets: "2026-02-14T10:00:00"). */
size_t kb_time_format_naive(int64_t us, char *out, size_t outsz);

/* Room for any kb_time_format output. */
#define KB_TIME_FMT_MAX 40

/*
 * Parse a timestamp as the API accepts it (API.md §1.1, §7.10, §7.14):
 *   YYYY-MM-DD[T| ]HH:MM[:SS[.f{1,9}]][Z|z|±HH[:]MM]   (no offset = UTC;
 *   digits beyond microseconds are truncated), a bare YYYY-MM-DD (midnight
 *   UTC), or Unix seconds as a decimal number string (values above 2e10 are
 *   milliseconds). With query_rules, a space where the offset sign belongs is
 *   read as '+' (an unencoded '+' in a query string).
 * Years 0001..9999. On failure returns false and sets *reason to a static
 * phrase for the "<loc>: <reason>" message.
 */
bool kb_time_parse(const char *s, size_t len, bool query_rules, int64_t *us, const char **reason);

/* A JSON number of Unix seconds (ms above 2e10) to microseconds; false when out of range. */
bool kb_time_from_unix(double v, int64_t *us, const char **reason);

/* A calendar date exactly "YYYY-MM-DD" (years 0001..9999) as days since
 * 1970-01-01; false for anything else. */
bool kb_time_parse_date(const char *s, size_t len, int64_t *days);

#endif
