/* kb_markets.h - market, event and settlement metadata queries (API.md §5.10-5.12);
 * the market and event lists are kb_catalog.h.
 *
 * Like kb_book.h: each function runs on the connection it is given, writes
 * the response field "data" into an open JSON object writer, and writes
 * nothing when it fails. Coverage and counts come from market_stats, which
 * kbctl import maintains, so no request counts data rows.
 * Not-found codes set *msg (arena-owned).
 */
#ifndef KB_MARKETS_H
#define KB_MARKETS_H

#include "kb_db.h"
#include "kb_json.h"

/* GET /markets/{ticker}: MarketDetail, or KB_E_MARKET_NOT_FOUND. */
kb_err kb_markets_get(kb_db *db, kb_arena *a, const char *ticker, kb_jw *w, const char **msg);

/*
 * GET /markets/{ticker}/coverage fields (no "data" wrapper, API.md §7 item 20):
 * market_ticker, first_data_at (its first snapshot), last_data_at (its newest delta or
 * snapshot), gaps [{start, end (null while open), reason, channel}] by start; or
 * KB_E_MARKET_NOT_FOUND as for GET /markets/{ticker}.
 */
kb_err kb_markets_coverage(kb_db *db, kb_arena *a, const char *ticker, kb_jw *w,
                           const char **msg);

/* GET /events/{event_ticker}: EventDetail, or KB_E_EVENT_NOT_FOUND. */
kb_err kb_events_get(kb_db *db, kb_arena *a, const char *event_ticker, kb_jw *w,
                     const char **msg);

/* GET /settlements: filters may be NULL; determined_at descending, nulls last. */
kb_err kb_settlements_list(kb_db *db, kb_arena *a, const char *event_ticker, const char *result,
                           kb_jw *w);

/* GET /settlements/{ticker}: the record, or KB_E_SETTLEMENT_NOT_FOUND. */
kb_err kb_settlements_get(kb_db *db, kb_arena *a, const char *ticker, kb_jw *w,
                          const char **msg);

/*
 * The first lookup of kb_markets_get, kb_markets_coverage, kb_events_get or kb_settlements_get for
 * that id, sent ahead on db (kb_db_send_ahead) so it rides with the next
 * statement, the meter's: the get then answers from it without a round trip.
 */
void kb_markets_get_ahead(kb_db *db, const char *ticker);
void kb_markets_coverage_ahead(kb_db *db, const char *ticker);
void kb_events_get_ahead(kb_db *db, const char *event_ticker);
void kb_settlements_get_ahead(kb_db *db, const char *ticker);

#endif
