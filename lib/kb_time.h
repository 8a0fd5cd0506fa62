/* kb_time.h - clocks and the API's timestamp format (API.md §1.1).
 *
 * Instants are int64 microseconds since the Unix epoch, UTC.
 */
#ifndef KB_TIME_H
#define KB_TIME_H

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

#endif
