/* kb_book.h - market-data queries: orderbook reconstruction, deltas, trades, candles.
 *
 * Every function runs prepared statements on the connection it is given (the
 * read replica for data routes when there is one) and writes its response
 * fields, in API.md order, into an open JSON object writer. Nothing is
 * written when a function fails. Instants are microseconds since the epoch
 * (kb_time.h); all output timestamps follow API.md §1.1.
 *
 * Prices and quantities (API.md §7.19) are stored in 1/10,000 dollar and
 * 1/100 contract (kb_fixed.h). The fields the SDK reads keep their units
 * (cents, contracts) and are JSON integers when whole, exact decimals (5.5,
 * 12.25) otherwise; each object then also carries Kalshi's strings
 * (price_dollars "0.0550", quantity_fp / delta_fp / count_fp "12.50"), after
 * the original fields so a whole-cent answer keeps its old text as a prefix.
 *
 * Failures: KB_E_UNAVAILABLE / KB_E_INTERNAL from the database; the not-found
 * codes named per function, with *msg set to an arena-owned client message.
 */
#ifndef KB_BOOK_H
#define KB_BOOK_H

#include <stdbool.h>
#include <stdint.h>

#include "kb_cursor.h"
#include "kb_db.h"
#include "kb_json.h"

#define KB_PAGE_LIMIT_MIN 1
#define KB_PAGE_LIMIT_MAX 1000
#define KB_PAGE_LIMIT_DEFAULT 100

/* Level fields of POST /orderbook: both forms (default), or with "units":"dollars" only the
 * strings (price_dollars, quantity_fp). */
typedef enum kb_book_units { KB_BOOK_UNITS_DEFAULT, KB_BOOK_UNITS_DOLLARS } kb_book_units;

/*
 * POST /orderbook fields (market_ticker .. no, complete, gap) for ticker at ts_us, in one
 * SQL statement: the latest snapshot S with captured_at <= ts, then per side and
 * price S's quantity (last entry wins for a repeated price) plus SUM of the
 * deltas with S.captured_at < ts <= timestamp; totals <= 0 are dropped, sides
 * are price descending and cut to depth levels (depth < 0: all).
 * Semantics: a running total that goes below zero and comes back is summed,
 * not clamped (DESIGN.md "Data"; pinned by test_data).
 * complete is false when ts lies in a recorded orderbook gap (start <= ts < end, or
 * an open one), which gap names ({start, end (null while open), reason}); else gap null.
 * KB_E_NO_DATA when the ticker has snapshots but none at or before ts;
 * KB_E_MARKET_NOT_FOUND when it has none at all.
 */
kb_err kb_book_orderbook(kb_db *db, kb_arena *a, const char *ticker, int64_t ts_us, int depth,
                         kb_book_units units, kb_jw *w, const char **msg);

/*
 * POST /deltas fields (data, next_cursor, has_more): rows of ticker with
 * start <= ts <= end (end inclusive), after cursor when not NULL, ordered by
 * (ts, id), at most limit (1..1000).
 */
kb_err kb_book_deltas(kb_db *db, kb_arena *a, const char *ticker, int64_t start_us,
                      int64_t end_us, const kb_cursor *cursor, int limit, kb_jw *w);

/* POST /trades fields: as kb_book_deltas with end exclusive (start <= ts < end). */
kb_err kb_book_trades(kb_db *db, kb_arena *a, const char *ticker, int64_t start_us,
                      int64_t end_us, const kb_cursor *cursor, int limit, kb_jw *w);

/* Candle interval names accepted by GET /candles ("1m", "1h", "1d"). */
extern const char *const kb_candle_intervals[];

/* Index of interval in kb_candle_intervals, or -1 when unknown. */
int kb_candle_interval(const char *interval);

/*
 * GET /candles field data: OHLCV of ticker's trades with start <= ts < end,
 * one bucket per minute/hour/day (interval index from kb_candle_interval)
 * that has trades, ascending; ties on ts broken by id.
 */
kb_err kb_book_candles(kb_db *db, kb_arena *a, const char *ticker, int64_t start_us,
                       int64_t end_us, int interval, kb_jw *w);

/* Write the text of a kb_us() column (microseconds) as a §1.1 timestamp, or null. */
void kb_book_jw_ts(kb_jw *w, const char *us_text, bool is_null);

/* A price (1/10,000 $) as a cents number (56, 5.5) / as a dollar string ("0.0550"). */
void kb_book_jw_cents(kb_jw *w, int64_t price);
void kb_book_jw_dollars(kb_jw *w, int64_t price);

/* A quantity (1/100 contract) as a contracts number (12, 12.25) / as a string ("12.25"). */
void kb_book_jw_contracts(kb_jw *w, int64_t qty);
void kb_book_jw_fp(kb_jw *w, int64_t qty);

#endif
