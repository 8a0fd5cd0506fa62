/* ingest.c - the top of the ingest module (kb_ingest.h): lines and spool records in,
 * batches out (flush, drain), the staging tables of the connection.
 *
 * Rows wait in memory (ingest_rows.c); a flush creates the partitions the batch
 * spans (taking the import advisory lock until COMMIT), sends the deltas that are
 * provably new by a binary COPY straight into deltas (ingest_deltas.c) and the other
 * rows through temporary staging tables and INSERT .. ON CONFLICT DO NOTHING;
 * market_stats moves by exactly the rows inserted, in the same transaction, and the
 * checkpoints of the windows it touches go (ingest_finish.c rebuilds them). An upsert
 * (lifecycle, REST) or an event first waits for the batch in flight, so the one
 * connection is never used twice at once.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kb_ingest.h"
#include "kb_log.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

static const char stage_sql[] =
    "SET client_min_messages = warning; SET work_mem = '64MB';"
    "SET synchronous_commit = off;" /* a lost tail is re-imported idempotently */
    "CREATE TEMP TABLE IF NOT EXISTS stage_snapshots (market_ticker text, captured_at"
    " timestamptz, sid bigint, seq bigint, yes_levels jsonb, no_levels jsonb,"
    " received_at timestamptz, n bigint) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_deltas (market_ticker text, ts timestamptz,"
    " seq bigint, sid bigint, price_e4 int, delta_e2 bigint, side text,"
    " received_at timestamptz, n bigint) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_trades (trade_id text, market_ticker text,"
    " yes_price_e4 int, no_price_e4 int, count_e2 bigint, taker_side text, ts timestamptz,"
    " received_at timestamptz, n bigint) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS kb_touched (ticker text PRIMARY KEY, from_ts timestamptz,"
    " to_ts timestamptz);";

/* Tickers with new rows and the earliest new instant: their checkpoints from
 * there on are stale (deleted in the same transaction) and rebuilt at the end. */
#define TOUCH(ticker_col, ts_col)                                                                  \
    " t AS ("                                                                                      \
    "  INSERT INTO kb_touched AS k (ticker, from_ts, to_ts)"                                       \
    "  SELECT " ticker_col ", min(" ts_col "), max(" ts_col ") FROM ins GROUP BY 1"                \
    "  ON CONFLICT (ticker) DO UPDATE SET from_ts = least(k.from_ts, excluded.from_ts),"           \
    "   to_ts = greatest(k.to_ts, excluded.to_ts)),"                                               \
    " x AS ("                                                                                      \
    "  DELETE FROM book_checkpoints b USING (SELECT " ticker_col " AS tk, min(" ts_col             \
    ") AS lo, max(" ts_col ") AS hi FROM ins GROUP BY 1) i"                                        \
    "  WHERE b.market_ticker = i.tk AND b.at >= i.lo AND b.basis <= i.hi),"

static const kb_stmt partitions_stmt = {
    "imp_partitions", "SELECT kb_ensure_partitions($1::timestamptz, $2::timestamptz)", 2, false};

/* clang-format off */
static const kb_stmt move_snapshots = {
    "imp_move_snapshots",
    "WITH ins AS ("
    "  INSERT INTO snapshots (market_ticker, captured_at, sid, seq, yes_levels, no_levels)"
    "  SELECT market_ticker, captured_at, sid, seq, yes_levels, no_levels"
    "    FROM stage_snapshots ORDER BY n"
    "  ON CONFLICT DO NOTHING RETURNING market_ticker, captured_at),"
    TOUCH("market_ticker", "captured_at")
    /* A ticker with a book is a market (the original's snapshots -> markets
     * foreign key): a bare row until its metadata arrives. */
    " mk AS ("
    "  INSERT INTO markets (ticker, discovered_at)"
    "  SELECT market_ticker, min(captured_at) FROM ins GROUP BY 1 ON CONFLICT DO NOTHING),"
    " st AS ("
    "  INSERT INTO market_stats AS m (ticker, first_data_at, snapshot_count)"
    "  SELECT market_ticker, min(captured_at), count(*) FROM ins GROUP BY market_ticker"
    "  ON CONFLICT (ticker) DO UPDATE SET"
    "   first_data_at = least(m.first_data_at, excluded.first_data_at),"
    "   snapshot_count = m.snapshot_count + excluded.snapshot_count)"
    " SELECT count(*) FROM ins",
    0, false};
/* clang-format on */

/* clang-format off */
static const kb_stmt move_deltas = {
    "imp_move_deltas",
    "WITH ins AS ("
    "  INSERT INTO deltas (market_ticker, ts, seq, sid, price_e4, delta_e2, side, received_at)"
    "  SELECT market_ticker, ts, seq, sid, price_e4, delta_e2, side, received_at"
    "    FROM stage_deltas ORDER BY n"
    "  ON CONFLICT DO NOTHING RETURNING market_ticker, ts),"
    TOUCH("market_ticker", "ts")
    " st AS ("
    "  INSERT INTO market_stats AS m (ticker, last_data_at, delta_count)"
    "  SELECT market_ticker, max(ts), count(*) FROM ins GROUP BY market_ticker"
    "  ON CONFLICT (ticker) DO UPDATE SET"
    "   last_data_at = greatest(m.last_data_at, excluded.last_data_at),"
    "   delta_count = m.delta_count + excluded.delta_count)"
    " SELECT count(*) FROM ins",
    0, false};
/* clang-format on */

static const kb_stmt move_trades = {
    "imp_move_trades",
    "WITH ins AS ("
    "  INSERT INTO trades (trade_id, market_ticker, yes_price_e4, no_price_e4, count_e2,"
    "                      taker_side, ts, received_at)"
    "  SELECT trade_id, market_ticker, yes_price_e4, no_price_e4, count_e2, taker_side, ts,"
    "         received_at"
    "    FROM stage_trades ORDER BY n"
    "  ON CONFLICT DO NOTHING RETURNING market_ticker),"
    " st AS ("
    "  INSERT INTO market_stats AS m (ticker, trade_count)"
    "  SELECT market_ticker, count(*) FROM ins GROUP BY market_ticker"
    "  ON CONFLICT (ticker) DO UPDATE SET trade_count = m.trade_count + excluded.trade_count)"
    " SELECT count(*) FROM ins",
    0, false};

/* COPY buf (text, or binary when the SQL says so) in; false on failure (logged). */
static bool
copy_in(kb_ingest *im, const char *sql, const kb_buf *buf)
{
    PGconn *c = im->db->conn;
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    if (!ok) {
        kb_log_error("ingest: %s: %s", sql, PQerrorMessage(c));
        return false;
    }
    ok = PQputCopyData(c, buf->buf, (int)buf->len) == 1;
    ok = PQputCopyEnd(c, ok ? NULL : "client error") == 1 && ok;
    while ((r = PQgetResult(c)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            kb_log_error("ingest: %s: %s", sql, PQresultErrorMessage(r));
            ok = false;
        }
        PQclear(r);
    }
    return ok;
}

/*
 * Start the direct COPY of buf without waiting for it: libpq holds the data
 * and the non-blocking socket takes what the server reads while the next
 * batch is parsed (kb_ingest_poll pushes more); kb_ingest_drain completes it.
 */
static bool
copy_start(kb_ingest *im, const char *sql, const kb_buf *buf)
{
    PGconn *c = im->db->conn;
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    if (!ok) {
        kb_log_error("ingest: %s: %s", sql, PQerrorMessage(c));
        return false;
    }
    if (PQsetnonblocking(c, 1) != 0 || PQputCopyData(c, buf->buf, (int)buf->len) != 1 ||
        PQputCopyEnd(c, NULL) != 1) {
        kb_log_error("ingest: COPY deltas: %s", PQerrorMessage(c));
        (void)PQsetnonblocking(c, 0);
        (void)PQputCopyEnd(c, "client error"); /* the COPY fails: kb_ingest_drain sees it */
    }
    im->copying = true;
    return true;
}

void
kb_ingest_poll(kb_ingest *im)
{
    if (im->copying)
        (void)PQflush(im->db->conn);
}

/* Collect the results of the query in flight; false if any failed. */
static bool
collect(kb_ingest *im)
{
    PGresult *r;
    int i = 0;
    bool ok = true;
    while ((r = PQgetResult(im->db->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_TUPLES_OK && i < im->npending) {
            *im->pending[i++] += strtol(PQgetvalue(r, 0, 0), NULL, 10);
        } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            kb_log_error("ingest: batch failed: %s", PQresultErrorMessage(r));
            ok = false;
        }
        PQclear(r);
    }
    return ok;
}

/*
 * Pipelining: a batch's direct COPY, then its INSERT .. SELECT statements and
 * COMMIT (one asynchronous query) run on the server while the next batch is
 * parsed. kb_ingest_drain() waits for the outcome; it runs before anything
 * else uses the connection (the next flush, a metadata upsert, the end).
 */
bool
kb_ingest_drain(kb_ingest *im)
{
    if (!im->inflight)
        return true;
    PGconn *c = im->db->conn;
    bool ok = true;
    if (im->copying) {
        im->copying = false;
        ok = collect(im); /* the COPY's own result (PQgetResult sends what is left) */
        ok = PQsetnonblocking(c, 0) == 0 && ok;
        if (ok && PQsendQuery(c, im->after_copy) != 1) {
            kb_log_error("ingest: %s", PQerrorMessage(c));
            ok = false;
        }
        free(im->after_copy);
        im->after_copy = NULL;
    }
    ok = ok && collect(im);
    im->npending = 0;
    im->inflight = false;
    if (!ok || PQstatus(c) != CONNECTION_OK) {
        im->direct_pending = 0;
        (void)kb_db_command(im->db, "ROLLBACK");
        return false;
    }
    im->deltas_new += im->direct_pending;
    im->direct_pending = 0;
    return true;
}

/* Queue st (no parameters) into the pipelined query; its count goes to *added. */
static void
queue_move(kb_ingest *im, kb_buf *q, const kb_stmt *st, long *added)
{
    kb_buf_puts(q, st->sql);
    kb_buf_puts(q, ";\n");
    im->pending[im->npending++] = added;
}

static bool prepare(kb_ingest *im);

/*
 * Write the pending batch: in its own transaction, completing asynchronously (the
 * direct COPY streams, then the moves and COMMIT run while the next batch is parsed);
 * or, in_tx, synchronously inside the caller's transaction.
 */
bool
kb_ingest_flush(kb_ingest *im)
{
    if (im->nsnaps + im->ndeltas + im->ntrades == 0)
        return true;
    if (!kb_ingest_drain(im) || !prepare(im))
        return false;
    char lo[KB_TIME_FMT_MAX], hi[KB_TIME_FMT_MAX];
    kb_time_format(im->min_us, lo, sizeof(lo));
    kb_time_format(im->max_us, hi, sizeof(hi));
    const char *p[] = {lo, hi};
    kb_buf direct = KB_BUF_INIT, staged = KB_BUF_INIT;
    long ndirect = 0, nstaged = 0;
    bool ok = (im->in_tx || kb_db_command(im->db, "BEGIN") == KB_OK) &&
              kb_db_exec(im->db, &im->arena, &partitions_stmt, p, NULL) == KB_OK &&
              (im->nsnaps == 0 || copy_in(im, "COPY stage_snapshots FROM STDIN", &im->snaps)) &&
              (im->ntrades == 0 || copy_in(im, "COPY stage_trades FROM STDIN", &im->trades)) &&
              kb__ingest_deltas_prepare(im, &direct, &staged, &ndirect, &nstaged) &&
              (nstaged == 0 ||
               copy_in(im, "COPY stage_deltas FROM STDIN (FORMAT binary)", &staged));
    static const char direct_copy[] =
        "COPY deltas (market_ticker, ts, seq, sid, price_e4, delta_e2, side,"
        " received_at) FROM STDIN (FORMAT binary)";
    if (ok) {
        kb_buf q = KB_BUF_INIT;
        if (im->nsnaps)
            queue_move(im, &q, &move_snapshots, &im->snaps_new);
        if (nstaged)
            queue_move(im, &q, &move_deltas, &im->deltas_new);
        if (im->ntrades)
            queue_move(im, &q, &move_trades, &im->trades_new);
        im->direct_rows += ndirect;
        im->staged_rows += nstaged;
        if (im->in_tx) {
            /* The caller's transaction: everything now, in order. */
            ok = (ndirect == 0 || copy_in(im, direct_copy, &direct)) &&
                 (q.len == 0 || PQsendQuery(im->db->conn, q.buf) == 1) &&
                 (q.len == 0 || collect(im));
            im->npending = 0;
            if (ok)
                im->deltas_new += ndirect;
        } else {
            kb_buf_puts(&q, "COMMIT");
            im->inflight = true;
            if (ndirect) {
                im->direct_pending = ndirect;
                im->after_copy = kb_buf_detach(&q, NULL);
                ok = copy_start(im, direct_copy, &direct);
                if (!ok) {
                    free(im->after_copy);
                    im->after_copy = NULL;
                    im->npending = 0;
                    im->direct_pending = 0;
                    im->inflight = false;
                }
            } else if (PQsendQuery(im->db->conn, q.buf) != 1) {
                kb_log_error("ingest: %s", PQerrorMessage(im->db->conn));
                im->npending = 0;
                im->inflight = false;
                ok = false;
            }
        }
        kb_buf_release(&q);
    }
    if (!ok && !im->inflight && !im->in_tx)
        (void)kb_db_command(im->db, "ROLLBACK");
    kb_buf_release(&direct);
    kb_buf_release(&staged);
    kb_arena_reset(&im->arena);
    kb_buf_reset(&im->snaps);
    kb_buf_reset(&im->trades);
    im->nsnaps = im->ndeltas = im->ntrades = 0;
    im->min_us = INT64_MAX;
    im->max_us = INT64_MIN;
    return ok;
}

/* The staging tables and session settings, once per connection (a reconnect loses them). */
static bool
prepare(kb_ingest *im)
{
    if (im->prepared && im->db->conn == im->prepared_on)
        return true;
    if (kb_db_connect(im->db) != KB_OK || kb_db_command(im->db, stage_sql) != KB_OK) {
        kb_log_error("ingest: unable to prepare the database connection");
        return false;
    }
    im->prepared = true;
    im->prepared_on = im->db->conn;
    return true;
}

void
kb_ingest_init(kb_ingest *im, kb_db *db)
{
    memset(im, 0, sizeof(*im));
    im->db = db;
    kb_arena_init(&im->arena, 0);
    im->min_us = INT64_MAX;
    im->max_us = INT64_MIN;
    im->start_reason = "restart";
}

void
kb_ingest_release(kb_ingest *im)
{
    kb_buf_release(&im->snaps);
    kb_buf_release(&im->trades);
    free(im->deltas);
    for (uint32_t i = 0; i < im->ntickers; i++) {
        free(im->tickers[i].name);
        free(im->tickers[i].kept);
    }
    free(im->tickers);
    free(im->tindex);
    free(im->after_copy);
    kb_arena_release(&im->arena);
    memset(im, 0, sizeof(*im));
}

long
kb_ingest_pending(const kb_ingest *im)
{
    return im->nsnaps + im->ndeltas + im->ntrades;
}

static void
free_json(void *j)
{
    cJSON_Delete(j);
}

/*
 * Inside the caller's transaction an upsert the database refuses must not fail the
 * rest: each metadata line and event runs under a savepoint (kbctl import's own
 * upserts commit one by one anyway).
 */
static bool
guard_begin(kb_ingest *im)
{
    return !im->in_tx || kb_db_command(im->db, "SAVEPOINT kb_ingest") == KB_OK;
}

static bool
guard_end(kb_ingest *im, bool ok)
{
    if (im->in_tx)
        (void)kb_db_command(im->db,
                            ok ? "RELEASE SAVEPOINT kb_ingest" : "ROLLBACK TO SAVEPOINT kb_ingest");
    return ok;
}

static bool
ws_message(kb_ingest *im, const cJSON *j, const char *type, int64_t rcv_us, const char **reason)
{
    kb_ingest_msg m;
    if (!kb__ingest_parse_msg(&im->arena, j, type, &m, reason))
        return false;
    if (rcv_us != KB_INGEST_NO_RCV)
        m.rcv = rcv_us;
    switch (m.kind) {
    case KB_INGEST_SKIP:
        im->skipped++;
        return true;
    case KB_INGEST_SNAPSHOT:
        kb__ingest_add_snapshot(im, &m);
        return true;
    case KB_INGEST_DELTA: {
        kb_ingest_delta d = {.ts = m.ts,
                             .rcv = m.rcv,
                             .sid = m.sid,
                             .seq = m.seq,
                             .price = m.price,
                             .amount = m.amount,
                             .yes = m.yes,
                             .ticker = kb__ingest_ticker_id(im, m.ticker, strlen(m.ticker))};
        kb__ingest_add_delta(im, &d);
        return true;
    }
    case KB_INGEST_TRADE:
        kb__ingest_add_trade(im, &m);
        return true;
    case KB_INGEST_LIFECYCLE:
        if (!kb_ingest_drain(im)) {
            *reason = "the previous batch failed";
            return false;
        }
        if (!guard_begin(im)) {
            *reason = "the database connection failed";
            return false;
        }
        return guard_end(im, kb__ingest_lifecycle(im, m.msg, m.ticker, m.ts, reason));
    }
    return true;
}

/* REST: {"market"}, {"markets": []}, {"event"}, {"events": []}, {"series"}, or bare objects. */
bool
kb_ingest_line(kb_ingest *im, const char *line, size_t len, int64_t rcv_us, const char **reason)
{
    kb_str t = kb_str_trim((kb_str){line, len});
    if (t.len == 0 || t.p[0] == '#') {
        im->skipped++;
        return true;
    }
    kb_ingest_delta d;
    const char *tk;
    size_t tlen;
    if (!im->no_fast && kb__ingest_fast_delta(t.p, t.len, rcv_us, &d, &tk, &tlen)) {
        d.ticker = kb__ingest_ticker_id(im, tk, tlen);
        im->order++;
        im->fast_lines++;
        kb__ingest_add_delta(im, &d);
        return true;
    }
    cJSON *j = kb__ingest_parse_whole(t.p, t.len);
    if (j == NULL) {
        *reason = "malformed JSON";
        return false;
    }
    kb_arena_on_reset(&im->arena, free_json, j);
    if (!cJSON_IsObject(j)) {
        *reason = "a line must be one JSON object";
        return false;
    }
    im->order++;
    const char *type = kb__ingest_str(j, "type");
    if (type != NULL)
        return ws_message(im, j, type, rcv_us, reason);
    if (!kb_ingest_drain(im) || !guard_begin(im)) {
        *reason = "the previous batch failed";
        return false;
    }
    return guard_end(im, kb__ingest_rest(im, j, reason));
}

bool
kb_ingest_spool(kb_ingest *im, const kb_spool_rec *r, const char *source, const char **reason)
{
    if (r->kind == 'F' || r->kind == 'R') {
        /* A frame is one message: a newline inside would not be one line. */
        return kb_ingest_line(im, r->data, r->len,
                              r->kind == 'F' ? r->wall_ns / 1000 : KB_INGEST_NO_RCV, reason);
    }
    /* An event uses the connection: the batch in flight ends first; before a "start"
     * event the pending rows are stored too (its restart gaps start after them). */
    bool start = memmem(r->data, r->len, "\"kb\":\"start\"", 12) != NULL;
    if ((start && !kb_ingest_flush(im)) || !kb_ingest_drain(im) || !guard_begin(im)) {
        *reason = "the batch before a collector event failed";
        return false;
    }
    return guard_end(im, kb__ingest_event(im, r->data, r->len, r->wall_ns / 1000, source, reason));
}
