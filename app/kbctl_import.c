/* kbctl_import.c - `kbctl import FILE...|-`: load Kalshi captures (KALSHI.md).
 *
 * Lines become batch rows in memory; every --batch rows (and at the end of
 * each file) one transaction creates the partitions the batch spans (taking
 * the import lock until COMMIT), sends the deltas that are provably new by
 * a binary COPY straight into deltas (kbctl_import_deltas.c) and the other
 * rows through temporary staging tables and INSERT .. ON CONFLICT DO
 * NOTHING; market_stats moves by exactly the rows inserted, in the same
 * transaction. So a re-import inserts nothing and changes no counter. The
 * COPY streams while the next batch is parsed (non-blocking socket,
 * kb_import_poll); the rest of the batch and its COMMIT follow at the next
 * kb_import_drain. Bad lines are reported as file:line: reason and skipped
 * (--strict stops at the first). Progress goes to stderr when it is a
 * terminal. Statistics and checkpoints are refreshed at the end
 * (kbctl_import_finish.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kbctl.h"
#include "kbctl_import.h"
#include "kb_config.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

#define DEFAULT_BATCH 50000L
#define DEFAULT_CHECKPOINT_EVERY 10000L

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
#define TOUCH(ticker_col, ts_col)                                                             \
    " t AS ("                                                                                 \
    "  INSERT INTO kb_touched AS k (ticker, from_ts, to_ts)"                                 \
    "  SELECT " ticker_col ", min(" ts_col "), max(" ts_col ") FROM ins GROUP BY 1"           \
    "  ON CONFLICT (ticker) DO UPDATE SET from_ts = least(k.from_ts, excluded.from_ts),"     \
    "   to_ts = greatest(k.to_ts, excluded.to_ts)),"                                          \
    " x AS ("                                                                                 \
    "  DELETE FROM book_checkpoints b USING (SELECT " ticker_col " AS tk, min(" ts_col        \
    ") AS lo, max(" ts_col ") AS hi FROM ins GROUP BY 1) i"                                   \
    "  WHERE b.market_ticker = i.tk AND b.at >= i.lo AND b.basis <= i.hi),"

static const kb_stmt partitions_stmt = {
    "imp_partitions", "SELECT kb_ensure_partitions($1::timestamptz, $2::timestamptz)", 2, false};

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
copy_in(kb_import *im, const char *sql, const kb_buf *buf)
{
    PGconn *c = im->db.conn;
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    if (!ok) {
        fprintf(stderr, "kbctl import: %s: %s", sql, PQerrorMessage(c));
        return false;
    }
    ok = PQputCopyData(c, buf->buf, (int)buf->len) == 1;
    ok = PQputCopyEnd(c, ok ? NULL : "client error") == 1 && ok;
    while ((r = PQgetResult(c)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "kbctl import: %s: %s", sql, PQresultErrorMessage(r));
            ok = false;
        }
        PQclear(r);
    }
    return ok;
}

/*
 * Start the direct COPY of buf without waiting for it: libpq holds the data
 * and the non-blocking socket takes what the server reads while the next
 * batch is parsed (kb_import_poll pushes more); kb_import_drain completes it.
 */
static bool
copy_start(kb_import *im, const char *sql, const kb_buf *buf)
{
    PGconn *c = im->db.conn;
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COPY_IN;
    PQclear(r);
    if (!ok) {
        fprintf(stderr, "kbctl import: %s: %s", sql, PQerrorMessage(c));
        return false;
    }
    if (PQsetnonblocking(c, 1) != 0 || PQputCopyData(c, buf->buf, (int)buf->len) != 1 ||
        PQputCopyEnd(c, NULL) != 1) {
        fprintf(stderr, "kbctl import: COPY deltas: %s", PQerrorMessage(c));
        (void)PQsetnonblocking(c, 0);
        (void)PQputCopyEnd(c, "client error"); /* the COPY fails: kb_import_drain sees it */
    }
    im->copying = true;
    return true;
}

void
kb_import_poll(kb_import *im)
{
    if (im->copying)
        (void)PQflush(im->db.conn);
}

/* Collect the results of the query in flight; false if any failed. */
static bool
collect(kb_import *im)
{
    PGresult *r;
    int i = 0;
    bool ok = true;
    while ((r = PQgetResult(im->db.conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_TUPLES_OK && i < im->npending) {
            *im->pending[i++] += strtol(PQgetvalue(r, 0, 0), NULL, 10);
        } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            fprintf(stderr, "kbctl import: batch failed: %s", PQresultErrorMessage(r));
            ok = false;
        }
        PQclear(r);
    }
    return ok;
}

/*
 * Pipelining: a batch's direct COPY, then its INSERT .. SELECT statements and
 * COMMIT (one asynchronous query) run on the server while the next batch is
 * parsed. kb_import_drain() waits for the outcome; it runs before anything
 * else uses the connection (the next flush, a metadata upsert, the end).
 */
bool
kb_import_drain(kb_import *im)
{
    if (!im->inflight)
        return true;
    PGconn *c = im->db.conn;
    bool ok = true;
    if (im->copying) {
        im->copying = false;
        ok = collect(im); /* the COPY's own result (PQgetResult sends what is left) */
        ok = PQsetnonblocking(c, 0) == 0 && ok;
        if (ok && PQsendQuery(c, im->after_copy) != 1) {
            fprintf(stderr, "kbctl import: %s", PQerrorMessage(c));
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
        (void)kb_db_command(&im->db, "ROLLBACK");
        return false;
    }
    im->deltas_new += im->direct_pending;
    im->direct_pending = 0;
    return true;
}

/* Queue st (no parameters) into the pipelined query; its count goes to *added. */
static void
queue_move(kb_import *im, kb_buf *q, const kb_stmt *st, long *added)
{
    kb_buf_puts(q, st->sql);
    kb_buf_puts(q, ";\n");
    im->pending[im->npending++] = added;
}

/* Write the pending batch in one transaction (it completes asynchronously). */
static bool
flush(kb_import *im)
{
    if (im->nsnaps + im->ndeltas + im->ntrades == 0)
        return true;
    if (!kb_import_drain(im))
        return false;
    char lo[KB_TIME_FMT_MAX], hi[KB_TIME_FMT_MAX];
    kb_time_format(im->min_us, lo, sizeof(lo));
    kb_time_format(im->max_us, hi, sizeof(hi));
    const char *p[] = {lo, hi};
    kb_buf direct = KB_BUF_INIT, staged = KB_BUF_INIT;
    long ndirect = 0, nstaged = 0;
    bool ok = kb_db_command(&im->db, "BEGIN") == KB_OK &&
              kb_db_exec(&im->db, &im->arena, &partitions_stmt, p, NULL) == KB_OK &&
              (im->nsnaps == 0 || copy_in(im, "COPY stage_snapshots FROM STDIN", &im->snaps)) &&
              (im->ntrades == 0 || copy_in(im, "COPY stage_trades FROM STDIN", &im->trades)) &&
              kb_imp_deltas_prepare(im, &direct, &staged, &ndirect, &nstaged) &&
              (nstaged == 0 ||
               copy_in(im, "COPY stage_deltas FROM STDIN (FORMAT binary)", &staged));
    if (ok) {
        kb_buf q = KB_BUF_INIT;
        if (im->nsnaps)
            queue_move(im, &q, &move_snapshots, &im->snaps_new);
        if (nstaged)
            queue_move(im, &q, &move_deltas, &im->deltas_new);
        if (im->ntrades)
            queue_move(im, &q, &move_trades, &im->trades_new);
        kb_buf_puts(&q, "COMMIT");
        im->inflight = true;
        im->direct_rows += ndirect;
        im->staged_rows += nstaged;
        if (ndirect) {
            im->direct_pending = ndirect;
            im->after_copy = kb_buf_detach(&q, NULL);
            ok = copy_start(im,
                            "COPY deltas (market_ticker, ts, seq, sid, price_e4, delta_e2, side,"
                            " received_at) FROM STDIN (FORMAT binary)",
                            &direct);
            if (!ok) {
                free(im->after_copy);
                im->after_copy = NULL;
                im->npending = 0;
                im->direct_pending = 0;
                im->inflight = false;
            }
        } else if (PQsendQuery(im->db.conn, q.buf) != 1) {
            fprintf(stderr, "kbctl import: %s", PQerrorMessage(im->db.conn));
            im->npending = 0;
            im->inflight = false;
            ok = false;
        }
        kb_buf_release(&q);
    }
    if (!ok && !im->inflight)
        (void)kb_db_command(&im->db, "ROLLBACK");
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

static void
progress(const kb_import *im, const char *name, long bytes, long size, int64_t t0, bool done)
{
    double secs = (double)(kb_mono_us() - t0) / 1e6;
    double lps = secs > 0 ? (double)im->lines / secs : 0;
    long rows = im->snaps_read + im->deltas_read + im->trades_read;
    fprintf(stderr, "\r%s: %ld lines, %ld rows, %.0f lines/s", name, im->lines, rows, lps);
    if (size > 0 && bytes > 0 && !done) {
        double eta = secs * (double)(size - bytes) / (double)bytes;
        fprintf(stderr, ", %3.0f%%, ETA %.0fs   ", 100.0 * (double)bytes / (double)size, eta);
    }
    if (done)
        fprintf(stderr, "%20s\n", "");
}

/* Import one file ("-" = stdin). Returns false on a database failure or --strict stop. */
static bool
import_file(kb_import *im, const char *path, long batch, bool strict, bool tty)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "kbctl import: %s: %s\n", path, strerror(errno));
        im->bad++;
        return !strict;
    }
    struct stat sb;
    long size = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) ? (long)sb.st_size : 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0, bytes = 0;
    int64_t t0 = kb_mono_us(), last = t0;
    bool ok = true;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        im->lines++;
        bytes += n;
        const char *reason = NULL;
        if (!kb_import_line(im, line, (size_t)n, &reason)) {
            fprintf(stderr, "%s%s:%ld: %s\n", tty ? "\n" : "", path, lineno, reason);
            im->bad++;
            if (strict) {
                ok = false;
                break;
            }
        }
        if (im->nsnaps + im->ndeltas + im->ntrades >= batch) {
            if (!flush(im)) {
                ok = false;
                break;
            }
        } else if (im->nsnaps + im->ndeltas + im->ntrades == 0) {
            kb_arena_reset(&im->arena);
        }
        if ((lineno & 127) == 0)
            kb_import_poll(im);
        if (tty && kb_mono_us() - last > 500000) {
            last = kb_mono_us();
            progress(im, path, bytes, size, t0, false);
        }
    }
    free(line);
    if (f != stdin)
        fclose(f);
    if (!flush(im) || !kb_import_drain(im))
        ok = false;
    if (tty)
        progress(im, path, bytes, size, t0, true);
    return ok;
}

static int
usage(void)
{
    printf("usage: kbctl import [--strict] [--batch N] [--checkpoint-every N] [--quiet] FILE...|-\n\n"
           "Loads Kalshi WebSocket v2 messages (orderbook_snapshot, orderbook_delta, trade,\n"
           "market_lifecycle_v2) and Kalshi REST market/event/series objects, one JSON\n"
           "object per line (t/data/README.md), in every form Kalshi has sent: integer\n"
           "cents and counts, *_dollars prices (4 decimals), *_fp counts (2 decimals),\n"
           "*_dollars_fp level arrays, ts (seconds, ms or ISO) and ts_ms, stored exactly\n"
           "(1/10,000 dollar, 1/100 contract); a value given in two forms that disagree\n"
           "refuses the line. A top-level received_at is kept as the receive time.\n"
           "Idempotent: importing a file twice changes nothing. Bad lines are reported as\n"
           "FILE:LINE: reason and skipped; --strict stops at the first one. Exit 0 when\n"
           "every line was good, 1 otherwise.\n"
           "Afterwards, orderbook reconstruction checkpoints are rebuilt for the markets\n"
           "that got new rows, one every N deltas of a snapshot window (default 10000;\n"
           "0 = skip: stale ones are still removed, so answers stay exact, only slower).\n");
    return KBCTL_OK;
}

int
kbctl_import(int argc, char **argv)
{
    bool strict = false, quiet = false;
    long batch = DEFAULT_BATCH, every = DEFAULT_CHECKPOINT_EVERY, checkpoints = 0;
    int first = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            return usage();
        } else if (strcmp(argv[i], "--strict") == 0) {
            strict = true;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(argv[i], "--checkpoint-every") == 0 && i + 1 < argc) {
            int64_t v;
            const char *e;
            if (!kb_parse_i64(kb_str_c(argv[++i]), 0, 100000000, &v, &e)) {
                fprintf(stderr, "kbctl import: --checkpoint-every must be 0..100000000\n");
                return KBCTL_USAGE;
            }
            every = (long)v;
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            int64_t v;
            const char *e;
            if (!kb_parse_i64(kb_str_c(argv[++i]), 1, 10000000, &v, &e)) {
                fprintf(stderr, "kbctl import: --batch must be 1..10000000\n");
                return KBCTL_USAGE;
            }
            batch = (long)v;
        } else if (strcmp(argv[i], "-") == 0 || argv[i][0] != '-') {
            first = i;
            break;
        } else {
            fprintf(stderr, "kbctl import: unknown option '%s'\n", argv[i]);
            return KBCTL_USAGE;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "kbctl import: no input files (use - for stdin)\n");
        return KBCTL_USAGE;
    }
    kb_buf problems = KB_BUF_INIT;
    if (kb_config_load(&kb_cfg, &problems)) {
        fprintf(stderr, "kbctl import: invalid configuration:\n%s", kb_buf_cstr(&problems));
        kb_buf_release(&problems);
        return KBCTL_CONFIG;
    }
    kb_buf_release(&problems);

    kb_import *im = kb_xcalloc(1, sizeof(*im));
    kb_db_init(&im->db, kb_cfg.database_url, "kbctl-import", kb_cfg.db_connect_timeout_s, 0);
    kb_arena_init(&im->arena, 0);
    im->min_us = INT64_MAX;
    im->max_us = INT64_MIN;
    int rc = KBCTL_FAIL;
    if (kb_db_connect(&im->db) || kb_db_command(&im->db, stage_sql)) {
        fprintf(stderr, "kbctl import: unable to prepare the database connection\n");
        goto out;
    }
    bool tty = !quiet && isatty(STDERR_FILENO);
    int64_t t0 = kb_mono_us();
    bool ok = true;
    for (int i = first; i < argc && ok; i++)
        ok = import_file(im, argv[i], batch, strict, tty);
    if (ok && !kb_import_finish(im, every, &checkpoints))
        ok = false;
    kb_arena_reset(&im->arena);
    double secs = (double)(kb_mono_us() - t0) / 1e6;
    if (!quiet)
        printf("imported %ld lines in %.2fs: snapshots %ld (%ld new), deltas %ld (%ld new), "
               "trades %ld (%ld new), metadata %ld, skipped %ld, bad %ld, checkpoints %ld\n",
               im->lines, secs, im->snaps_read, im->snaps_new, im->deltas_read, im->deltas_new,
               im->trades_read, im->trades_new, im->meta, im->skipped, im->bad, checkpoints);
    rc = ok && im->bad == 0 ? KBCTL_OK : KBCTL_FAIL;
out:
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
    kb_db_release(&im->db);
    free(im);
    return rc;
}
