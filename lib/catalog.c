/* catalog.c - GET /markets and GET /events lists; see kb_catalog.h.
 *
 * One statement per list and per "updated_since given or not": a filter that
 * is not given is a NULL parameter, and `$n IS NULL OR col = $n` folds away
 * when Postgres plans the cursor with the values bound (a DECLARE is planned
 * at each execution, never from a cached generic plan). updated_since has
 * its own text because its candidates are sub-selects, which Postgres turns
 * into joins only when they are not under such an OR. Output columns are
 * fixed per list; the row writers below take the column numbers from the
 * SELECT lists.
 */
#include "kb_catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_book.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

/* Markets: $1 status, $2 event_ticker, $3 series_ticker, $4 category, $5 ticker
 * prefix, $6 and $7 the cursor's discovered_at and ticker, $8 limit (NULL: all),
 * $9 updated_since. */
#define MARKETS_FILTER                                                                             \
    " ($1::text IS NULL OR m.status = $1)"                                                         \
    " AND ($2::text IS NULL OR m.event_ticker = $2)"                                               \
    " AND ($3::text IS NULL OR m.series_ticker = $3)"                                              \
    " AND ($4::text IS NULL OR m.category = $4)"                                                   \
    " AND ($5::text IS NULL OR starts_with(m.ticker, $5))"                                         \
    " AND ($6::timestamptz IS NULL"                                                                \
    "      OR (m.discovered_at <= $6 AND (m.discovered_at < $6 OR m.ticker > $7::text)))"
#define MARKETS_ORDER " ORDER BY m.discovered_at DESC, m.ticker LIMIT $8::bigint"
#define MARKETS_SELECT                                                                             \
    "DECLARE kb_catalog NO SCROLL CURSOR FOR"                                                      \
    " SELECT m.ticker, m.title, m.event_ticker, m.status, m.category,"                             \
    "        kb_us(st.first_data_at), kb_us(st.last_data_at), kb_us(m.discovered_at)"              \
    "   FROM markets m LEFT JOIN market_stats st ON st.ticker = m.ticker"

static const kb_stmt markets_declare = {
    "catalog_markets", MARKETS_SELECT " WHERE" MARKETS_FILTER MARKETS_ORDER, 8, false};

/* A market changed at or after $9 when its row did (discovered, or metadata
 * written: last_updated), or has data then (market_stats). Each of the two is
 * its own ordered, limited sub-select with the filters, so Postgres can read
 * either from its index when few rows qualify, or walk the list's order and
 * stop after a page when many do; their union is at most two pages. (One OR
 * across the join could only ever walk the whole list: 200 ms at 100,000
 * markets when nothing changed.) */
/* clang-format off */
static const kb_stmt markets_since_declare = {
    "catalog_markets_since",
    MARKETS_SELECT
    " WHERE m.ticker IN ("
    "  (SELECT m.ticker FROM markets m"
    "    WHERE" MARKETS_FILTER " AND greatest(m.discovered_at, m.last_updated) >= $9"
    MARKETS_ORDER ")"
    "  UNION ALL"
    "  (SELECT m.ticker FROM markets m JOIN market_stats s ON s.ticker = m.ticker"
    "    WHERE" MARKETS_FILTER " AND greatest(s.first_data_at, s.last_data_at) >= $9"
    MARKETS_ORDER "))"
    MARKETS_ORDER,
    9, false};
/* clang-format on */

/* Events: $1 category, $2 series_ticker, $3 status, $4 prefix, $5 the cursor's
 * event_ticker, $6 limit (NULL: all), $7 updated_since. */
#define EVENTS_FILTER                                                                              \
    " ($1::text IS NULL OR e.category = $1)"                                                       \
    " AND ($2::text IS NULL OR e.series_ticker = $2)"                                              \
    " AND ($3::text IS NULL OR e.status = $3)"                                                     \
    " AND ($4::text IS NULL OR starts_with(e.event_ticker, $4))"                                   \
    " AND ($5::text IS NULL OR e.event_ticker > $5)"
#define EVENTS_ORDER " ORDER BY e.event_ticker LIMIT $6::bigint"
#define EVENTS_SELECT                                                                              \
    "DECLARE kb_catalog NO SCROLL CURSOR FOR"                                                      \
    " SELECT e.event_ticker, e.series_ticker, e.title, e.sub_title, e.category,"                   \
    "        e.mutually_exclusive, e.status,"                                                      \
    "        (SELECT count(*) FROM markets m WHERE m.event_ticker = e.event_ticker)"               \
    "   FROM events e"

static const kb_stmt events_declare = {"catalog_events",
                                       EVENTS_SELECT " WHERE" EVENTS_FILTER EVENTS_ORDER, 6, false};

/* An event changed at or after $7 when its row did, or one of its markets
 * changed or has data then (as for markets; the same three-way union). */
/* clang-format off */
static const kb_stmt events_since_declare = {
    "catalog_events_since",
    EVENTS_SELECT
    " WHERE e.event_ticker IN ("
    "  (SELECT e.event_ticker FROM events e"
    "    WHERE" EVENTS_FILTER " AND greatest(e.discovered_at, e.last_updated) >= $7"
    EVENTS_ORDER ")"
    "  UNION ALL"
    "  (SELECT e.event_ticker FROM events e"
    "    WHERE" EVENTS_FILTER " AND EXISTS (SELECT 1 FROM markets m"
    "     WHERE m.event_ticker = e.event_ticker"
    "       AND greatest(m.discovered_at, m.last_updated) >= $7)"
    EVENTS_ORDER ")"
    "  UNION ALL"
    "  (SELECT e.event_ticker FROM events e"
    "    WHERE" EVENTS_FILTER " AND EXISTS (SELECT 1 FROM markets m"
    "     JOIN market_stats s ON s.ticker = m.ticker WHERE m.event_ticker = e.event_ticker"
    "       AND greatest(s.first_data_at, s.last_data_at) >= $7)"
    EVENTS_ORDER "))"
    EVENTS_ORDER,
    7, false};
/* clang-format on */

#define STR_(x) #x
#define STR(x) STR_(x)
static const kb_stmt fetch_stmt = {"catalog_fetch",
                                   "FETCH " STR(KB_CATALOG_PIECE) " FROM kb_catalog", 0, false};

struct kb_catalog_stream {
    kb_db *db;
    kb_catalog_list list;
    kb_arena piece_arena; /* the current piece's result; reset for each FETCH */
    PGresult *rows;       /* the current piece, not yet written */
    bool last;            /* rows is the last piece (fewer rows than a FETCH asks) */
    bool failed;
};

const char *
kb_catalog_cursor_name(kb_catalog_list list)
{
    return list == KB_CATALOG_MARKETS ? "markets" : "events";
}

bool
kb_catalog_cursor_has_at(kb_catalog_list list)
{
    return list == KB_CATALOG_MARKETS;
}

/* ---- rows ---- */

static void
str_field(kb_jw *w, const char *key, const PGresult *r, int row, int c)
{
    kb_jw_key(w, key);
    kb_jw_str(w, PQgetisnull(r, row, c) ? NULL : PQgetvalue(r, row, c));
}

static void
ts_field(kb_jw *w, const char *key, const PGresult *r, int row, int c)
{
    kb_jw_key(w, key);
    kb_book_jw_ts(w, PQgetvalue(r, row, c), PQgetisnull(r, row, c));
}

/* MarketSummary (API.md §5.10) from markets_declare's columns. */
static void
market_row(kb_jw *w, const PGresult *r, int row)
{
    kb_jw_obj(w);
    str_field(w, "ticker", r, row, 0);
    str_field(w, "title", r, row, 1);
    str_field(w, "event_ticker", r, row, 2);
    str_field(w, "status", r, row, 3);
    str_field(w, "category", r, row, 4);
    ts_field(w, "first_data_at", r, row, 5);
    ts_field(w, "last_data_at", r, row, 6);
    kb_jw_obj_end(w);
}

/* EventSummary (API.md §5.11) from events_declare's columns. */
static void
event_row(kb_jw *w, const PGresult *r, int row)
{
    kb_jw_obj(w);
    str_field(w, "event_ticker", r, row, 0);
    str_field(w, "series_ticker", r, row, 1);
    str_field(w, "title", r, row, 2);
    str_field(w, "sub_title", r, row, 3);
    str_field(w, "category", r, row, 4);
    kb_jw_key(w, "mutually_exclusive");
    if (PQgetisnull(r, row, 5))
        kb_jw_null(w);
    else
        kb_jw_bool(w, PQgetvalue(r, row, 5)[0] == 't');
    str_field(w, "status", r, row, 6);
    kb_jw_key(w, "market_count");
    kb_jw_raw(w, PQgetvalue(r, row, 7), (size_t)PQgetlength(r, row, 7));
    kb_jw_obj_end(w);
}

static void
write_rows(kb_catalog_list list, kb_jw *w, const PGresult *r, int n)
{
    for (int i = 0; i < n; i++) {
        if (list == KB_CATALOG_MARKETS)
            market_row(w, r, i);
        else
            event_row(w, r, i);
    }
}

/* ---- the cursor's transaction ---- */

/* A statement that finds no transaction or cursor ran on a new connection: the
 * one that held them was lost between two statements. */
static kb_err
lost_if_reconnected(kb_db *db, kb_err err)
{
    if (err == KB_E_INTERNAL && (kb_db_sqlstate_is(db, "25P01") || kb_db_sqlstate_is(db, "34000")))
        return KB_E_UNAVAILABLE;
    return err;
}

/* End the transaction: commit after success, roll back otherwise. A connection
 * that is gone (or that cannot end it) is dropped, which ends it too. */
static void
end_transaction(kb_db *db, bool ok)
{
    if (db->conn == NULL)
        return;
    if (kb_db_command(db, ok ? "COMMIT" : "ROLLBACK") != KB_OK)
        kb_db_disconnect(db);
}

/* BEGIN and DECLARE the cursor of q (limit: rows, 0 = all). */
static kb_err
declare(kb_db *db, kb_arena *a, const kb_catalog_query *q, long limit)
{
    char lim[24], at[KB_TIME_FMT_MAX], since[KB_TIME_FMT_MAX];
    const char *lim_p = NULL, *at_p = NULL, *key_p = NULL, *since_p = NULL;
    if (limit > 0) {
        snprintf(lim, sizeof(lim), "%ld", limit);
        lim_p = lim;
    }
    if (q->cursor != NULL) {
        key_p = q->cursor->key;
        if (kb_catalog_cursor_has_at(q->list)) {
            kb_time_format(q->cursor->at_us, at, sizeof(at));
            at_p = at;
        }
    }
    if (q->has_since) {
        kb_time_format(q->since_us, since, sizeof(since));
        since_p = since;
    }
    const kb_stmt *st;
    const char *p[9];
    if (q->list == KB_CATALOG_MARKETS) {
        const char *mp[9] = {
            q->status, q->event_ticker, q->series_ticker, q->category, q->ticker_prefix, at_p,
            key_p,     lim_p,           since_p};
        memcpy(p, mp, sizeof(p));
        st = q->has_since ? &markets_since_declare : &markets_declare;
    } else {
        const char *ep[9] = {
            q->category, q->series_ticker, q->status, q->ticker_prefix, key_p, lim_p, since_p, NULL,
            NULL};
        memcpy(p, ep, sizeof(p));
        st = q->has_since ? &events_since_declare : &events_declare;
    }
    /* A cursor is planned for its first tenth by default (cursor_tuple_fraction):
     * right for a page (its LIMIT says so anyway), but a whole list is read to
     * the end, and planned for that it is ~20% faster (100,000 markets: a hash
     * join and one sort instead of 100,000 index probes). */
    kb_err err = kb_db_command(db, limit > 0 ? "BEGIN READ ONLY"
                                             : "BEGIN READ ONLY;"
                                               " SET LOCAL cursor_tuple_fraction = 1");
    if (!err)
        err = lost_if_reconnected(db, kb_db_exec(db, a, st, p, NULL));
    if (err)
        end_transaction(db, false); /* also after a BEGIN that ran and a SET that failed */
    return err;
}

/* FETCH the next piece into *out (registered on a). */
static kb_err
fetch(kb_db *db, kb_arena *a, PGresult **out)
{
    return lost_if_reconnected(db, kb_db_exec(db, a, &fetch_stmt, NULL, out));
}

/* ---- one page ---- */

/* The cursor of row `row` of r (the last row of a page). */
static const char *
row_cursor(kb_arena *a, kb_catalog_list list, const PGresult *r, int row)
{
    int64_t at = 0;
    if (kb_catalog_cursor_has_at(list)) {
        const char *why;
        /* discovered_at is NOT NULL and kb_us() prints an integer. */
        if (!kb_parse_i64(kb_str_c(PQgetvalue(r, row, 7)), INT64_MIN, INT64_MAX, &at, &why))
            at = 0;
    }
    return kb_cursor_list_encode(a, kb_catalog_cursor_name(list), kb_catalog_cursor_has_at(list),
                                 at, PQgetvalue(r, row, 0));
}

kb_err
kb_catalog_page(kb_db *db, kb_arena *a, const kb_catalog_query *q, kb_jw *w)
{
    PGresult *r = NULL;
    kb_err err = declare(db, a, q, (long)q->limit + 1);
    if (err)
        return err;
    err = fetch(db, a, &r);
    end_transaction(db, err == KB_OK);
    if (err)
        return err;
    int n = PQntuples(r);
    bool more = n > q->limit;
    if (more)
        n = q->limit;
    kb_jw_key(w, "data");
    kb_jw_arr(w);
    write_rows(q->list, w, r, n);
    kb_jw_arr_end(w);
    kb_jw_key(w, "next_cursor");
    kb_jw_str(w, more ? row_cursor(a, q->list, r, n - 1) : NULL);
    kb_jw_key(w, "has_more");
    kb_jw_bool(w, more);
    return KB_OK;
}

/* ---- the whole list ---- */

/* Fetch the next piece into s->rows (the previous one is freed first). */
static kb_err
next_piece(kb_catalog_stream *s)
{
    s->rows = NULL;
    kb_arena_reset(&s->piece_arena);
    kb_err err = fetch(s->db, &s->piece_arena, &s->rows);
    if (err) {
        s->failed = true;
        return err;
    }
    s->last = PQntuples(s->rows) < KB_CATALOG_PIECE;
    return KB_OK;
}

kb_err
kb_catalog_open(kb_db *db, kb_arena *a, const kb_catalog_query *q, kb_catalog_stream **out)
{
    kb_err err = declare(db, a, q, 0);
    if (err)
        return err;
    kb_catalog_stream *s = kb_arena_calloc(a, 1, sizeof(*s));
    s->db = db;
    s->list = q->list;
    kb_arena_init(&s->piece_arena, 0);
    if ((err = next_piece(s)) != KB_OK) {
        kb_catalog_close(s);
        return err;
    }
    *out = s;
    return KB_OK;
}

kb_err
kb_catalog_next(kb_catalog_stream *s, kb_jw *w, bool *done)
{
    *done = false;
    if (s->rows == NULL)
        return KB_E_INTERNAL; /* a failed piece: kb_catalog_close() is all that is left */
    write_rows(s->list, w, s->rows, PQntuples(s->rows));
    if (s->last) {
        s->rows = NULL;
        *done = true;
        return KB_OK;
    }
    return next_piece(s);
}

void
kb_catalog_close(kb_catalog_stream *s)
{
    if (s == NULL)
        return;
    s->rows = NULL;
    kb_arena_release(&s->piece_arena);
    end_transaction(s->db, !s->failed);
}
