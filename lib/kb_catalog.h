/* kb_catalog.h - the market catalogue lists: GET /markets and GET /events (API.md §5.10-5.11).
 *
 * A list query has optional exact-match filters, a ticker prefix and an
 * updated_since instant, and reads either one keyset page (limit, cursor) or
 * the whole list. The order never depends on the filters: markets by
 * discovered_at descending then ticker, events by event_ticker; both keys are
 * immutable, so the pages of one query concatenate to the whole list, and
 * paging while rows are added returns every row that existed when it started
 * exactly once (a row added meanwhile at most once).
 *
 * Every list runs as a cursor (DECLARE ... FETCH) in a read-only transaction
 * on the connection given, so Postgres plans it for the filters actually given
 * (never a generic plan that would scan every market for a selective filter),
 * and a whole list is read KB_CATALOG_PIECE rows at a time: no call holds more
 * than one piece of rows or output, whatever the size of the catalogue.
 * first_data_at/last_data_at come from market_stats, which the ingest
 * statements maintain with the rows they insert: no request counts data rows.
 * Nothing is left open on the connection when a function returns, except by
 * kb_catalog_open(), until kb_catalog_close().
 */
#ifndef KB_CATALOG_H
#define KB_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include "kb_cursor.h"
#include "kb_db.h"
#include "kb_json.h"

/* Rows per FETCH: one page at most (limit + 1), one piece of a whole list. */
#define KB_CATALOG_PIECE 1001

typedef enum kb_catalog_list {
    KB_CATALOG_MARKETS, /* MarketSummary rows; cursor "markets" with at = discovered_at */
    KB_CATALOG_EVENTS,  /* EventSummary rows; cursor "events" */
} kb_catalog_list;

/* A list query. String filters: NULL = not given, else an exact match (the prefix:
 * a byte prefix of the ticker, case-sensitive). */
typedef struct kb_catalog_query {
    kb_catalog_list list;
    const char *status;
    const char *event_ticker; /* markets only */
    const char *series_ticker;
    const char *category;
    const char *ticker_prefix;    /* markets: ticker; events: event_ticker */
    bool has_since;               /* updated_since given: */
    int64_t since_us;             /* rows changed or with data at or after this instant */
    int limit;                    /* 1..1000: one page; 0: the whole list */
    const kb_list_cursor *cursor; /* a page after this row; NULL: from the start */
} kb_catalog_query;

/* The cursor name of a list ("markets", "events") and whether it carries an instant. */
const char *kb_catalog_cursor_name(kb_catalog_list list);
bool kb_catalog_cursor_has_at(kb_catalog_list list);

/*
 * One page (q->limit > 0): writes the fields "data", "next_cursor" and
 * "has_more" into w (next_cursor is non-null exactly when has_more). Nothing
 * is written on failure (KB_E_UNAVAILABLE, KB_E_INTERNAL).
 */
kb_err kb_catalog_page(kb_db *db, kb_arena *a, const kb_catalog_query *q, kb_jw *w);

/* A whole list being read (q->limit == 0). */
typedef struct kb_catalog_stream kb_catalog_stream;

/*
 * Begin the whole list: opens the transaction and its cursor and fetches the
 * first piece, so a database that fails now fails before anything is sent.
 * On success *out (arena-owned) holds the cursor open on db until
 * kb_catalog_close(); on failure nothing is left open.
 */
kb_err kb_catalog_open(kb_db *db, kb_arena *a, const kb_catalog_query *q, kb_catalog_stream **out);

/*
 * Write the rows of the next piece into w as array elements (w is inside the
 * "data" array) and fetch the one after; *done once the last row is written.
 * Memory per call is one piece. On failure (the database went away or failed
 * mid-list) returns its code; the caller still calls kb_catalog_close().
 */
kb_err kb_catalog_next(kb_catalog_stream *s, kb_jw *w, bool *done);

/* End the transaction (commit when complete, else roll back; a lost connection
 * is left dropped) and free the current piece. s may be NULL. */
void kb_catalog_close(kb_catalog_stream *s);

#endif
