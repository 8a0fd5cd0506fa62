/* kb_fixed.h - exact fixed-point prices and quantities (Kalshi's 2026 fields), no floating point.
 *
 * KalshiBook stores and computes market data as integers:
 *   price    = 1/10,000 dollar ("0.0550" = 550 = 5.5 cents; 0 .. 10000 = $1),
 *   quantity = 1/100 contract  ("12.50" = 1250).
 * Text goes in through kb_fixed_parse (digits, at most `scale` decimals) and
 * comes out through kb_fixed_format (exactly `scale` decimals, Kalshi's
 * strings) or kb_fixed_format_trim (the shortest exact decimal, the API's
 * numbers: 5.5, 12.25, 56). Both directions are digit arithmetic on int64, so
 * every value round-trips exactly.
 */
#ifndef KB_FIXED_H
#define KB_FIXED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KB_PRICE_SCALE 4        /* decimals of a price in dollars */
#define KB_QTY_SCALE 2          /* decimals of a quantity in contracts */
#define KB_PRICE_PER_CENT 100   /* price units in one cent */
#define KB_PRICE_DOLLAR 10000   /* price units in one dollar */
#define KB_QTY_PER_CONTRACT 100 /* quantity units in one contract */

/* Largest magnitude of a stored quantity: INT32_MAX contracts, the old integer bound. */
#define KB_QTY_MAX ((int64_t)2147483647 * KB_QTY_PER_CONTRACT)

/* Room for any formatted value, sign and NUL included. */
#define KB_FIXED_FMT_MAX 32

/*
 * Parse the decimal text s[0..len) into an integer count of 10^-scale
 * (scale 0..9): an optional '-' (only when allow_neg), one or more digits,
 * then optionally '.' and 1..scale digits. Nothing else: no '+', exponent,
 * spaces, or more decimals than scale (even zeros). |value| must not exceed
 * max_abs. On failure returns false with *reason (static text).
 */
bool kb_fixed_parse(const char *s, size_t len, int scale, bool allow_neg, int64_t max_abs,
                    int64_t *out, const char **reason);

/* n whole units (cents, contracts) as n * 10^scale in *out; false when |result| > max_abs. */
bool kb_fixed_scale_int(int64_t n, int scale, int64_t max_abs, int64_t *out);

/*
 * v (a count of 10^-scale) as text with exactly scale decimals: 550 at scale 4
 * is "0.0550", -1250 at scale 2 is "-12.50". out holds KB_FIXED_FMT_MAX bytes;
 * returns the length.
 */
size_t kb_fixed_format(int64_t v, int scale, char *out);

/*
 * v as the shortest exact decimal: trailing zero decimals and a bare point
 * dropped, so whole values are integers. 550 at scale 2 is "5.5", 5600 is
 * "56", -25 is "-0.25". Valid JSON number text. Returns the length.
 */
size_t kb_fixed_format_trim(int64_t v, int scale, char *out);

#endif
