/* book.c - orderbook reconstruction, deltas/trades pages and candles; see kb_book.h.
 *
 * Invariants: all SQL is prepared with parameters; timestamps cross into SQL
 * as §1.1 text with an explicit +00:00 and come back as kb_us() microseconds;
 * prices (1/10,000 $) and quantities (1/100 contract) come back as integers
 * and are written by kb_fixed, never through a double; reconstruction is
 * aggregated in Postgres so the rows shipped to the worker do not grow with
 * the number of deltas (at most one row per price level), and it starts from
 * the latest book_checkpoints row of the snapshot window, so the deltas
 * summed per request are bounded by the checkpoint interval.
 */
#include "kb_book.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kb_fixed.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

/* $1 ticker, $2 timestamp, $3 depth (NULL = all). One row iff a snapshot exists. */
static const kb_stmt orderbook_stmt = {
    "book_orderbook",
    "WITH s AS ("
    "  SELECT captured_at, yes_levels, no_levels FROM snapshots"
    "   WHERE market_ticker = $1 AND captured_at <= $2::timestamptz"
    "   ORDER BY captured_at DESC, id DESC LIMIT 1),"
    " lv AS ("
    "  SELECT DISTINCT ON (side, price) side, price, qty FROM ("
    "    SELECT 'yes'::text AS side, (e->>0)::int AS price, (e->>1)::bigint AS qty, o"
    "      FROM s, jsonb_array_elements(s.yes_levels) WITH ORDINALITY AS x(e, o)"
    "    UNION ALL"
    "    SELECT 'no'::text, (e->>0)::int, (e->>1)::bigint, o"
    "      FROM s, jsonb_array_elements(s.no_levels) WITH ORDINALITY AS x(e, o)) l"
    "   ORDER BY side, price, o DESC),"
    " c AS ("
    "  SELECT at, deltas, levels FROM book_checkpoints"
    "   WHERE market_ticker = $1 AND basis = (SELECT captured_at FROM s)"
    "     AND at <= $2::timestamptz"
    "   ORDER BY at DESC LIMIT 1),"
    " dr AS ("
    "  SELECT side, price_e4 AS price, sum(delta_e2)::bigint AS qty, count(*) AS n"
    "    FROM deltas"
    "   WHERE market_ticker = $1"
    "     AND ts > coalesce((SELECT at FROM c), (SELECT captured_at FROM s))"
    "     AND ts <= $2::timestamptz"
    "   GROUP BY side, price_e4),"
    " d AS ("
    "  SELECT side, price, sum(qty)::bigint AS qty FROM ("
    "    SELECT side, price, qty FROM dr"
    "    UNION ALL"
    "    SELECT e->>0, (e->>1)::int, (e->>2)::bigint"
    "      FROM c, jsonb_array_elements(c.levels) AS e) u"
    "   GROUP BY side, price),"
    " b AS ("
    "  SELECT side, price, q,"
    "         row_number() OVER (PARTITION BY side ORDER BY price DESC) AS rn FROM ("
    "    SELECT coalesce(lv.side, d.side) AS side, coalesce(lv.price, d.price) AS price,"
    "           coalesce(lv.qty, 0) + coalesce(d.qty, 0) AS q"
    "      FROM lv FULL JOIN d ON lv.side = d.side AND lv.price = d.price) j"
    "   WHERE q > 0)"
    " SELECT kb_us(s.captured_at),"
    "  (SELECT coalesce(sum(n), 0) FROM dr) + coalesce((SELECT deltas FROM c), 0),"
    "  (SELECT coalesce(string_agg(price || ' ' || q, ',' ORDER BY price DESC), '') FROM b"
    "    WHERE side = 'yes' AND ($3::int IS NULL OR rn <= $3::int)),"
    "  (SELECT coalesce(string_agg(price || ' ' || q, ',' ORDER BY price DESC), '') FROM b"
    "    WHERE side = 'no' AND ($3::int IS NULL OR rn <= $3::int)),"
    /* The recorded orderbook gap the instant lies in, if any (0018_collector.sql). */
    "  g.s, g.e, g.reason"
    " FROM s LEFT JOIN LATERAL ("
    "  SELECT kb_us(start_at) AS s, kb_us(end_at) AS e, reason FROM gaps"
    "   WHERE market_ticker = $1 AND channel = 'orderbook' AND start_at <= $2::timestamptz"
    "     AND (end_at IS NULL OR end_at > $2::timestamptz)"
    "   ORDER BY start_at DESC LIMIT 1) g ON true",
    3, true};

static const kb_stmt first_snapshot_stmt = {
    "book_first_snapshot",
    "SELECT kb_us(captured_at) FROM snapshots WHERE market_ticker = $1"
    " ORDER BY captured_at, id LIMIT 1",
    1, true};

/* $1 ticker, $2 start, $3 end (inclusive), $4/$5 keyset (ts, id), $6 limit + 1. */
static const kb_stmt deltas_stmt = {
    "book_deltas",
    "SELECT id, kb_us(ts), seq, price_e4, delta_e2, side, kb_us(received_at) FROM deltas"
    " WHERE market_ticker = $1 AND ts >= $2::timestamptz AND ts <= $3::timestamptz"
    "   AND ts >= $4::timestamptz AND (ts, id) > ($4::timestamptz, $5::bigint)"
    " ORDER BY ts, id LIMIT $6::int",
    6, true};

/* As deltas_stmt with end exclusive. */
static const kb_stmt trades_stmt = {
    "book_trades",
    "SELECT id, kb_us(ts), trade_id, yes_price_e4, no_price_e4, count_e2, taker_side,"
    "       kb_us(received_at) FROM trades"
    " WHERE market_ticker = $1 AND ts >= $2::timestamptz AND ts < $3::timestamptz"
    "   AND ts >= $4::timestamptz AND (ts, id) > ($4::timestamptz, $5::bigint)"
    " ORDER BY ts, id LIMIT $6::int",
    6, true};

/* $1 ticker, $2 start, $3 end (exclusive), $4 date_trunc field. */
static const kb_stmt candles_stmt = {
    "book_candles",
    "SELECT kb_us(date_trunc($4, ts, 'UTC')) AS b,"
    "       (array_agg(yes_price_e4 ORDER BY ts, id))[1],"
    "       max(yes_price_e4), min(yes_price_e4),"
    "       (array_agg(yes_price_e4 ORDER BY ts DESC, id DESC))[1],"
    "       sum(count_e2)::bigint, count(*)"
    "  FROM trades"
    " WHERE market_ticker = $1 AND ts >= $2::timestamptz AND ts < $3::timestamptz"
    " GROUP BY 1 ORDER BY 1",
    4, true};

const char *const kb_candle_intervals[] = {"1m", "1h", "1d", NULL};
static const char *const candle_fields[] = {"minute", "hour", "day"};

int
kb_candle_interval(const char *interval)
{
    for (int i = 0; kb_candle_intervals[i] != NULL; i++) {
        if (strcmp(interval, kb_candle_intervals[i]) == 0)
            return i;
    }
    return -1;
}

static int64_t
us_of(const char *text)
{
    int64_t v = 0;
    const char *err;
    if (!kb_parse_i64(kb_str_c(text), INT64_MIN, INT64_MAX, &v, &err))
        return 0;
    return v;
}

void
kb_book_jw_ts(kb_jw *w, const char *us_text, bool is_null)
{
    if (is_null) {
        kb_jw_null(w);
        return;
    }
    char ts[KB_TIME_FMT_MAX];
    kb_time_format(us_of(us_text), ts, sizeof(ts));
    kb_jw_str(w, ts);
}

/* Column text as a JSON integer (the column is an SQL integer type). */
static void
jw_int_col(kb_jw *w, const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        kb_jw_null(w);
    else
        kb_jw_raw(w, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static int64_t
i64_col(const PGresult *r, int row, int col)
{
    return us_of(PQgetvalue(r, row, col));
}

void
kb_book_jw_cents(kb_jw *w, int64_t price)
{
    char b[KB_FIXED_FMT_MAX];
    kb_jw_raw(w, b, kb_fixed_format_trim(price, 2, b));
}

void
kb_book_jw_dollars(kb_jw *w, int64_t price)
{
    char b[KB_FIXED_FMT_MAX];
    kb_fixed_format(price, KB_PRICE_SCALE, b);
    kb_jw_str(w, b);
}

void
kb_book_jw_contracts(kb_jw *w, int64_t qty)
{
    char b[KB_FIXED_FMT_MAX];
    kb_jw_raw(w, b, kb_fixed_format_trim(qty, KB_QTY_SCALE, b));
}

void
kb_book_jw_fp(kb_jw *w, int64_t qty)
{
    char b[KB_FIXED_FMT_MAX];
    kb_fixed_format(qty, KB_QTY_SCALE, b);
    kb_jw_str(w, b);
}

static void
dollars_field(kb_jw *w, const char *key, int64_t price)
{
    kb_jw_key(w, key);
    kb_book_jw_dollars(w, price);
}

/* Integer at *p (an optional '-', digits); *p moves past it. False when there is none. */
static bool
next_int(const char **p, int64_t *v)
{
    const char *q = *p;
    bool neg = *q == '-';
    if (neg)
        q++;
    if (*q < '0' || *q > '9')
        return false;
    uint64_t u = 0;
    for (; *q >= '0' && *q <= '9'; q++) {
        if (u > (uint64_t)INT64_MAX / 10)
            return false;
        u = u * 10 + (uint64_t)(*q - '0');
    }
    if (u > (uint64_t)INT64_MAX)
        return false;
    *v = neg ? -(int64_t)u : (int64_t)u;
    *p = q;
    return true;
}

/*
 * One side's levels from the statement's "price qty,price qty" text (price
 * descending) as [{price, quantity, price_dollars, quantity_fp}] or, in
 * dollars units, [{price_dollars, quantity_fp}].
 */
static void
levels(kb_jw *w, const char *text, kb_book_units units)
{
    kb_jw_arr(w);
    const char *p = text;
    int64_t price, qty;
    while (next_int(&p, &price) && *p == ' ' && (p++, next_int(&p, &qty))) {
        kb_jw_obj(w);
        if (units == KB_BOOK_UNITS_DEFAULT) {
            kb_jw_key(w, "price");
            kb_book_jw_cents(w, price);
            kb_jw_key(w, "quantity");
            kb_book_jw_contracts(w, qty);
        }
        kb_jw_key(w, "price_dollars");
        kb_book_jw_dollars(w, price);
        kb_jw_key(w, "quantity_fp");
        kb_book_jw_fp(w, qty);
        kb_jw_obj_end(w);
        if (*p != ',')
            break;
        p++;
    }
    kb_jw_arr_end(w);
}

static char *
ts_param(kb_arena *a, int64_t us)
{
    char *s = kb_arena_alloc(a, KB_TIME_FMT_MAX);
    kb_time_format(us, s, KB_TIME_FMT_MAX);
    return s;
}

kb_err
kb_book_orderbook(kb_db *db, kb_arena *a, const char *ticker, int64_t ts_us, int depth,
                  kb_book_units units, kb_jw *w, const char **msg)
{
    const char *params[3] = {ticker, ts_param(a, ts_us),
                             depth >= 0 ? kb_arena_printf(a, "%d", depth) : NULL};
    PGresult *r;
    kb_err err = kb_db_exec(db, a, &orderbook_stmt, params, &r);
    if (err)
        return err;
    if (PQntuples(r) == 0) {
        PGresult *f;
        err = kb_db_exec(db, a, &first_snapshot_stmt, params, &f);
        if (err)
            return err;
        if (PQntuples(f) == 0) {
            *msg = kb_arena_printf(a, "Market '%s' not found.", ticker);
            return KB_E_MARKET_NOT_FOUND;
        }
        char first[KB_TIME_FMT_MAX];
        kb_time_format(us_of(PQgetvalue(f, 0, 0)), first, sizeof(first));
        *msg = kb_arena_printf(a,
                               "No data available for '%s' at or before %s. "
                               "Earliest snapshot: %s.",
                               ticker, params[1], first);
        return KB_E_NO_DATA;
    }
    kb_jw_key(w, "market_ticker");
    kb_jw_str(w, ticker);
    kb_jw_key(w, "timestamp");
    kb_jw_str(w, params[1]);
    kb_jw_key(w, "snapshot_basis");
    kb_book_jw_ts(w, PQgetvalue(r, 0, 0), false);
    kb_jw_key(w, "deltas_applied");
    jw_int_col(w, r, 0, 1);
    static const char *const sides[] = {"yes", "no"};
    for (int s = 0; s < 2; s++) {
        kb_jw_key(w, sides[s]);
        levels(w, PQgetvalue(r, 0, 2 + s), units);
    }
    /* complete: false inside a recorded gap (messages lost, collector down), named. */
    bool in_gap = !PQgetisnull(r, 0, 4);
    kb_jw_key(w, "complete");
    kb_jw_bool(w, !in_gap);
    kb_jw_key(w, "gap");
    if (in_gap) {
        kb_jw_obj(w);
        kb_jw_key(w, "start");
        kb_book_jw_ts(w, PQgetvalue(r, 0, 4), false);
        kb_jw_key(w, "end");
        kb_book_jw_ts(w, PQgetvalue(r, 0, 5), PQgetisnull(r, 0, 5));
        kb_jw_key(w, "reason");
        kb_jw_str(w, PQgetvalue(r, 0, 6));
        kb_jw_obj_end(w);
    } else {
        kb_jw_null(w);
    }
    return KB_OK;
}

typedef void row_writer(kb_jw *w, const PGresult *r, int row, const char *ticker);

static void
delta_row(kb_jw *w, const PGresult *r, int row, const char *ticker)
{
    kb_jw_obj(w);
    kb_jw_key(w, "market_ticker");
    kb_jw_str(w, ticker);
    kb_jw_key(w, "ts");
    kb_book_jw_ts(w, PQgetvalue(r, row, 1), false);
    kb_jw_key(w, "seq");
    jw_int_col(w, r, row, 2);
    int64_t price = i64_col(r, row, 3), amount = i64_col(r, row, 4);
    kb_jw_key(w, "price_cents");
    kb_book_jw_cents(w, price);
    kb_jw_key(w, "delta_amount");
    kb_book_jw_contracts(w, amount);
    kb_jw_key(w, "side");
    kb_jw_str(w, PQgetvalue(r, row, 5));
    kb_jw_key(w, "price_dollars");
    kb_book_jw_dollars(w, price);
    kb_jw_key(w, "delta_fp");
    kb_book_jw_fp(w, amount);
    kb_jw_key(w, "received_at");
    kb_book_jw_ts(w, PQgetvalue(r, row, 6), PQgetisnull(r, row, 6));
    kb_jw_obj_end(w);
}

static void
trade_row(kb_jw *w, const PGresult *r, int row, const char *ticker)
{
    kb_jw_obj(w);
    kb_jw_key(w, "trade_id");
    kb_jw_str(w, PQgetvalue(r, row, 2));
    kb_jw_key(w, "market_ticker");
    kb_jw_str(w, ticker);
    int64_t yes = i64_col(r, row, 3), no = i64_col(r, row, 4), count = i64_col(r, row, 5);
    kb_jw_key(w, "yes_price");
    kb_book_jw_cents(w, yes);
    kb_jw_key(w, "no_price");
    kb_book_jw_cents(w, no);
    kb_jw_key(w, "count");
    kb_book_jw_contracts(w, count);
    kb_jw_key(w, "taker_side");
    kb_jw_str(w, PQgetvalue(r, row, 6));
    kb_jw_key(w, "ts");
    kb_book_jw_ts(w, PQgetvalue(r, row, 1), false);
    dollars_field(w, "yes_price_dollars", yes);
    dollars_field(w, "no_price_dollars", no);
    kb_jw_key(w, "count_fp");
    kb_book_jw_fp(w, count);
    kb_jw_key(w, "received_at");
    kb_book_jw_ts(w, PQgetvalue(r, row, 7), PQgetisnull(r, row, 7));
    kb_jw_obj_end(w);
}

/* Shared keyset pagination (API.md §5.7): fetch limit + 1, cursor from the last row. */
static kb_err
page(kb_db *db, kb_arena *a, const kb_stmt *st, row_writer *fn, const char *ticker,
     int64_t start_us, int64_t end_us, const kb_cursor *cursor, int limit, kb_jw *w)
{
    const char *params[6] = {
        ticker,
        ts_param(a, start_us),
        ts_param(a, end_us),
        ts_param(a, cursor ? cursor->ts_us : start_us),
        cursor ? kb_arena_printf(a, "%" PRId64, cursor->id) : "-9223372036854775808",
        kb_arena_printf(a, "%d", limit + 1),
    };
    PGresult *r;
    kb_err err = kb_db_exec(db, a, st, params, &r);
    if (err)
        return err;
    int n = PQntuples(r);
    bool more = n > limit;
    if (more)
        n = limit;
    kb_jw_key(w, "data");
    kb_jw_arr(w);
    for (int i = 0; i < n; i++)
        fn(w, r, i, ticker);
    kb_jw_arr_end(w);
    kb_jw_key(w, "next_cursor");
    if (more) {
        int64_t id = us_of(PQgetvalue(r, n - 1, 0));
        kb_jw_str(w, kb_cursor_encode(a, us_of(PQgetvalue(r, n - 1, 1)), id));
    } else {
        kb_jw_null(w);
    }
    kb_jw_key(w, "has_more");
    kb_jw_bool(w, more);
    return KB_OK;
}

kb_err
kb_book_deltas(kb_db *db, kb_arena *a, const char *ticker, int64_t start_us, int64_t end_us,
               const kb_cursor *cursor, int limit, kb_jw *w)
{
    return page(db, a, &deltas_stmt, delta_row, ticker, start_us, end_us, cursor, limit, w);
}

kb_err
kb_book_trades(kb_db *db, kb_arena *a, const char *ticker, int64_t start_us, int64_t end_us,
               const kb_cursor *cursor, int limit, kb_jw *w)
{
    return page(db, a, &trades_stmt, trade_row, ticker, start_us, end_us, cursor, limit, w);
}

kb_err
kb_book_candles(kb_db *db, kb_arena *a, const char *ticker, int64_t start_us, int64_t end_us,
                int interval, kb_jw *w)
{
    if (interval < 0 || interval > 2)
        return KB_E_INTERNAL;
    const char *params[4] = {ticker, ts_param(a, start_us), ts_param(a, end_us),
                             candle_fields[interval]};
    PGresult *r;
    kb_err err = kb_db_exec(db, a, &candles_stmt, params, &r);
    if (err)
        return err;
    kb_jw_key(w, "data");
    kb_jw_arr(w);
    for (int i = 0, n = PQntuples(r); i < n; i++) {
        char b[KB_TIME_FMT_MAX];
        kb_time_format_naive(us_of(PQgetvalue(r, i, 0)), b, sizeof(b));
        kb_jw_obj(w);
        kb_jw_key(w, "bucket");
        kb_jw_str(w, b);
        kb_jw_key(w, "market_ticker");
        kb_jw_str(w, ticker);
        static const char *const ohlc[] = {"open", "high", "low", "close"};
        static const char *const ohlc_dollars[] = {"open_dollars", "high_dollars",
                                                   "low_dollars", "close_dollars"};
        for (int c = 0; c < 4; c++) {
            kb_jw_key(w, ohlc[c]);
            kb_book_jw_cents(w, i64_col(r, i, 1 + c));
        }
        kb_jw_key(w, "volume");
        kb_book_jw_contracts(w, i64_col(r, i, 5));
        kb_jw_key(w, "trade_count");
        jw_int_col(w, r, i, 6);
        for (int c = 0; c < 4; c++)
            dollars_field(w, ohlc_dollars[c], i64_col(r, i, 1 + c));
        kb_jw_key(w, "volume_fp");
        kb_book_jw_fp(w, i64_col(r, i, 5));
        kb_jw_obj_end(w);
    }
    kb_jw_arr_end(w);
    return KB_OK;
}
