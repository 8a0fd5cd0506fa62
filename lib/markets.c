/* markets.c - markets, events and settlements by id, and the settlements list; see
 * kb_markets.h. The market and event lists are lib/catalog.c.
 *
 * Output columns are fixed per statement; the writers below take the column
 * numbers from the SELECT lists next to them. Timestamps are kb_us() text;
 * settlement values are 1/10,000 dollar, written as cents by kb_book.
 */
#include "kb_markets.h"

#include <string.h>

#include "kb_book.h"
#include "kb_str.h"
#include "kb_banned.h"

#define SUMMARY_COLS                                                                  \
    "m.ticker, m.title, m.event_ticker, m.status, m.category"

static const kb_stmt markets_get_stmt = {
    "markets_get",
    "SELECT " SUMMARY_COLS ", kb_us(st.first_data_at), kb_us(st.last_data_at),"
    "       m.rules, m.strike_price::float8, kb_us(m.discovered_at), m.metadata::text,"
    "       coalesce(st.snapshot_count, 0), coalesce(st.delta_count, 0),"
    "       m.price_level_structure, m.price_ranges::text, m.fractional_trading_enabled"
    "  FROM markets m LEFT JOIN market_stats st ON st.ticker = m.ticker"
    " WHERE m.ticker = $1",
    1, true};

/* One row per gap (or one with NULL gap columns): the market's data span as
 * /markets/{ticker} gives it, then its gaps (0018_collector.sql) by start. */
static const kb_stmt markets_coverage_stmt = {
    "markets_coverage",
    "SELECT m.ticker, kb_us(st.first_data_at), kb_us(st.last_data_at),"
    "       kb_us(g.start_at), kb_us(g.end_at), g.reason, g.channel"
    "  FROM markets m LEFT JOIN market_stats st ON st.ticker = m.ticker"
    "  LEFT JOIN gaps g ON g.market_ticker = m.ticker"
    " WHERE m.ticker = $1"
    " ORDER BY g.start_at, g.channel",
    1, true};

#define EVENT_COLS                                                                    \
    "e.event_ticker, e.series_ticker, e.title, e.sub_title, e.category, "             \
    "e.mutually_exclusive, e.status, "                                                \
    "(SELECT count(*) FROM markets m WHERE m.event_ticker = e.event_ticker)"

static const kb_stmt events_get_stmt = {
    "events_get", "SELECT " EVENT_COLS " FROM events e WHERE e.event_ticker = $1", 1, true};

static const kb_stmt event_markets_stmt = {
    "events_markets",
    "SELECT " SUMMARY_COLS " FROM markets m WHERE m.event_ticker = $1 ORDER BY m.ticker", 1,
    true};

#define SETTLEMENT_COLS                                                               \
    "market_ticker, event_ticker, result, settlement_value_e4, kb_us(determined_at), "\
    "kb_us(settled_at)"

static const kb_stmt settlements_list_stmt = {
    "settlements_list",
    "SELECT " SETTLEMENT_COLS " FROM settlements"
    " WHERE ($1::text IS NULL OR event_ticker = $1) AND ($2::text IS NULL OR result = $2)"
    " ORDER BY determined_at DESC NULLS LAST, market_ticker",
    2, true};

static const kb_stmt settlements_get_stmt = {
    "settlements_get", "SELECT " SETTLEMENT_COLS " FROM settlements WHERE market_ticker = $1",
    1, true};

static const char *
col(const PGresult *r, int row, int c)
{
    return PQgetisnull(r, row, c) ? NULL : PQgetvalue(r, row, c);
}

static void
str_field(kb_jw *w, const char *key, const PGresult *r, int row, int c)
{
    kb_jw_key(w, key);
    kb_jw_str(w, col(r, row, c));
}

static void
raw_field(kb_jw *w, const char *key, const PGresult *r, int row, int c)
{
    kb_jw_key(w, key);
    if (PQgetisnull(r, row, c))
        kb_jw_null(w);
    else
        kb_jw_raw(w, PQgetvalue(r, row, c), (size_t)PQgetlength(r, row, c));
}

static void
bool_field(kb_jw *w, const char *key, const PGresult *r, int row, int c)
{
    kb_jw_key(w, key);
    const char *v = col(r, row, c);
    if (v == NULL)
        kb_jw_null(w);
    else
        kb_jw_bool(w, v[0] == 't');
}

static void
ts_field(kb_jw *w, const char *key, const PGresult *r, int row, int c)
{
    kb_jw_key(w, key);
    kb_book_jw_ts(w, PQgetvalue(r, row, c), c < 0 || PQgetisnull(r, row, c));
}

/* Writes one row of r as a JSON value. */
typedef void (*row_fn)(kb_jw *w, const PGresult *r, int row);

/* "data": [rows of s(params), each written by row]. */
static kb_err
list_rows(kb_db *db, kb_arena *a, const kb_stmt *s, const char *const *params, row_fn row,
          kb_jw *w)
{
    PGresult *r;
    kb_err err = kb_db_exec(db, a, s, params, &r);
    if (err)
        return err;
    kb_jw_key(w, "data");
    kb_jw_arr(w);
    for (int i = 0, n = PQntuples(r); i < n; i++)
        row(w, r, i);
    kb_jw_arr_end(w);
    return KB_OK;
}

/*
 * The row of s for one key, in *out; not_found with *msg = "<what> '<key>' not found." when
 * there is none. Nothing is written to w.
 */
static kb_err
get_row(kb_db *db, kb_arena *a, const kb_stmt *s, const char *key, kb_err not_found,
        const char *what, PGresult **out, const char **msg)
{
    const char *params[] = {key};
    kb_err err = kb_db_exec(db, a, s, params, out);
    if (err)
        return err;
    if (PQntuples(*out) == 0) {
        *msg = kb_arena_printf(a, "%s '%s' not found.", what, key);
        return not_found;
    }
    return KB_OK;
}

/* Send get_row()'s statement for key ahead on db (kb_db_send_ahead). */
static void
send_ahead(kb_db *db, const kb_stmt *s, const char *key)
{
    const char *params[] = {key};
    kb_db_send_ahead(db, s, params);
}

void
kb_markets_get_ahead(kb_db *db, const char *ticker)
{
    send_ahead(db, &markets_get_stmt, ticker);
}

void
kb_markets_coverage_ahead(kb_db *db, const char *ticker)
{
    send_ahead(db, &markets_coverage_stmt, ticker);
}

void
kb_events_get_ahead(kb_db *db, const char *event_ticker)
{
    send_ahead(db, &events_get_stmt, event_ticker);
}

void
kb_settlements_get_ahead(kb_db *db, const char *ticker)
{
    send_ahead(db, &settlements_get_stmt, ticker);
}

/* MarketSummary fields (cols 0-4, then first/last at cols 5/6 or null when -1). */
static void
summary_fields(kb_jw *w, const PGresult *r, int row, bool with_data_times)
{
    str_field(w, "ticker", r, row, 0);
    str_field(w, "title", r, row, 1);
    str_field(w, "event_ticker", r, row, 2);
    str_field(w, "status", r, row, 3);
    str_field(w, "category", r, row, 4);
    if (with_data_times) {
        ts_field(w, "first_data_at", r, row, 5);
        ts_field(w, "last_data_at", r, row, 6);
    } else {
        kb_jw_key(w, "first_data_at");
        kb_jw_null(w);
        kb_jw_key(w, "last_data_at");
        kb_jw_null(w);
    }
}

/* A float8 as a JSON float: "50000" -> 50000.0, like Python's float repr. */
static void
float_field(kb_jw *w, const char *key, const PGresult *r, int row, int c, kb_arena *a)
{
    kb_jw_key(w, key);
    const char *v = col(r, row, c);
    if (v == NULL || strpbrk(v, "nN") != NULL) { /* NaN, Infinity are not JSON */
        kb_jw_null(w);
        return;
    }
    if (strpbrk(v, ".eE") == NULL)
        v = kb_arena_printf(a, "%s.0", v);
    kb_jw_raw(w, v, strlen(v));
}

kb_err
kb_markets_get(kb_db *db, kb_arena *a, const char *ticker, kb_jw *w, const char **msg)
{
    PGresult *r;
    kb_err err =
        get_row(db, a, &markets_get_stmt, ticker, KB_E_MARKET_NOT_FOUND, "Market", &r, msg);
    if (err)
        return err;
    kb_jw_key(w, "data");
    kb_jw_obj(w);
    summary_fields(w, r, 0, true);
    str_field(w, "rules", r, 0, 7);
    float_field(w, "strike_price", r, 0, 8, a);
    ts_field(w, "discovered_at", r, 0, 9);
    raw_field(w, "metadata", r, 0, 10);
    raw_field(w, "snapshot_count", r, 0, 11);
    raw_field(w, "delta_count", r, 0, 12);
    str_field(w, "price_level_structure", r, 0, 13);
    raw_field(w, "price_ranges", r, 0, 14);
    bool_field(w, "fractional_trading_enabled", r, 0, 15);
    kb_jw_obj_end(w);
    return KB_OK;
}

kb_err
kb_markets_coverage(kb_db *db, kb_arena *a, const char *ticker, kb_jw *w, const char **msg)
{
    PGresult *r;
    kb_err err =
        get_row(db, a, &markets_coverage_stmt, ticker, KB_E_MARKET_NOT_FOUND, "Market", &r, msg);
    if (err)
        return err;
    str_field(w, "market_ticker", r, 0, 0);
    ts_field(w, "first_data_at", r, 0, 1);
    ts_field(w, "last_data_at", r, 0, 2);
    kb_jw_key(w, "gaps");
    kb_jw_arr(w);
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetisnull(r, i, 3))
            continue;
        kb_jw_obj(w);
        ts_field(w, "start", r, i, 3);
        ts_field(w, "end", r, i, 4);
        str_field(w, "reason", r, i, 5);
        str_field(w, "channel", r, i, 6);
        kb_jw_obj_end(w);
    }
    kb_jw_arr_end(w);
    return KB_OK;
}

static void
event_fields(kb_jw *w, const PGresult *r, int row)
{
    str_field(w, "event_ticker", r, row, 0);
    str_field(w, "series_ticker", r, row, 1);
    str_field(w, "title", r, row, 2);
    str_field(w, "sub_title", r, row, 3);
    str_field(w, "category", r, row, 4);
    bool_field(w, "mutually_exclusive", r, row, 5);
    str_field(w, "status", r, row, 6);
}

kb_err
kb_events_get(kb_db *db, kb_arena *a, const char *event_ticker, kb_jw *w, const char **msg)
{
    PGresult *r, *m;
    const char *params[] = {event_ticker};
    kb_err err = get_row(db, a, &events_get_stmt, event_ticker, KB_E_EVENT_NOT_FOUND, "Event",
                         &r, msg);
    if (err)
        return err;
    err = kb_db_exec(db, a, &event_markets_stmt, params, &m);
    if (err)
        return err;
    kb_jw_key(w, "data");
    kb_jw_obj(w);
    event_fields(w, r, 0);
    kb_jw_key(w, "market_count");
    kb_jw_int(w, PQntuples(m));
    kb_jw_key(w, "markets");
    kb_jw_arr(w);
    for (int i = 0, n = PQntuples(m); i < n; i++) {
        kb_jw_obj(w);
        summary_fields(w, m, i, false);
        kb_jw_obj_end(w);
    }
    kb_jw_arr_end(w);
    kb_jw_obj_end(w);
    return KB_OK;
}

static void
settlement(kb_jw *w, const PGresult *r, int row)
{
    kb_jw_obj(w);
    str_field(w, "market_ticker", r, row, 0);
    str_field(w, "event_ticker", r, row, 1);
    str_field(w, "result", r, row, 2);
    const char *v = col(r, row, 3);
    int64_t value = 0;
    const char *why;
    bool has_value = v != NULL && kb_parse_i64(kb_str_c(v), INT64_MIN, INT64_MAX, &value, &why);
    kb_jw_key(w, "settlement_value");
    if (has_value)
        kb_book_jw_cents(w, value);
    else
        kb_jw_null(w);
    ts_field(w, "determined_at", r, row, 4);
    ts_field(w, "settled_at", r, row, 5);
    kb_jw_key(w, "settlement_value_dollars");
    if (has_value)
        kb_book_jw_dollars(w, value);
    else
        kb_jw_null(w);
    kb_jw_obj_end(w);
}

kb_err
kb_settlements_list(kb_db *db, kb_arena *a, const char *event_ticker, const char *result,
                    kb_jw *w)
{
    const char *params[] = {event_ticker, result};
    return list_rows(db, a, &settlements_list_stmt, params, settlement, w);
}

kb_err
kb_settlements_get(kb_db *db, kb_arena *a, const char *ticker, kb_jw *w, const char **msg)
{
    PGresult *r;
    kb_err err = get_row(db, a, &settlements_get_stmt, ticker, KB_E_SETTLEMENT_NOT_FOUND,
                         "Settlement for", &r, msg);
    if (err)
        return err;
    kb_jw_key(w, "data");
    settlement(w, r, 0);
    return KB_OK;
}
