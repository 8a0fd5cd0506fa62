/* kbctl_import.c - `kbctl import FILE...|-`: load Kalshi captures (KALSHI.md).
 *
 * Lines become COPY rows in memory; every --batch rows (and at the end of
 * each file) one transaction creates the partitions the batch spans, COPYs
 * it into temporary staging tables and moves it with INSERT .. ON CONFLICT
 * DO NOTHING, updating market_stats from the rows actually inserted in the
 * same statement. So a re-import inserts nothing and changes no counter.
 * Bad lines are reported as file:line: reason and skipped (--strict stops
 * at the first). Progress goes to stderr when it is a terminal.
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
    " seq bigint, sid bigint, price_cents int, delta_amount int, side text,"
    " received_at timestamptz, n bigint) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_trades (trade_id text, market_ticker text,"
    " yes_price int, no_price int, count int, taker_side text, ts timestamptz,"
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

static const kb_stmt analyze_stmt = {
    "imp_analyze",
    "SELECT kb_analyze_partitions(min(from_ts), max(to_ts)) FROM kb_touched"
    " HAVING count(*) > 0",
    0, false};

static const kb_stmt rebuild_stmt = {
    "imp_rebuild",
    "SELECT coalesce(sum(kb_rebuild_checkpoints(ticker, from_ts, to_ts, $1::int)), 0)"
    " FROM kb_touched",
    1, false};

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
    "  INSERT INTO deltas (market_ticker, ts, seq, sid, price_cents, delta_amount, side,"
    "                      received_at)"
    "  SELECT market_ticker, ts, seq, sid, price_cents, delta_amount, side,"
    "         coalesce(received_at, ts)"
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
    "  INSERT INTO trades (trade_id, market_ticker, yes_price, no_price, count, taker_side,"
    "                      ts, received_at)"
    "  SELECT trade_id, market_ticker, yes_price, no_price, count, taker_side, ts,"
    "         coalesce(received_at, ts)"
    "    FROM stage_trades ORDER BY n"
    "  ON CONFLICT DO NOTHING RETURNING market_ticker),"
    " st AS ("
    "  INSERT INTO market_stats AS m (ticker, trade_count)"
    "  SELECT market_ticker, count(*) FROM ins GROUP BY market_ticker"
    "  ON CONFLICT (ticker) DO UPDATE SET trade_count = m.trade_count + excluded.trade_count)"
    " SELECT count(*) FROM ins",
    0, false};

/* COPY buf into table; false on failure (logged). */
static bool
copy_in(kb_import *im, const char *table, const kb_buf *buf)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "COPY %s FROM STDIN", table);
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
            fprintf(stderr, "kbctl import: COPY %s: %s", table, PQresultErrorMessage(r));
            ok = false;
        }
        PQclear(r);
    }
    return ok;
}

/*
 * Pipelining: a batch's INSERT .. SELECT statements and its COMMIT are sent
 * as one asynchronous query, and the next batch is parsed while the server
 * runs them. kb_import_drain() collects the outcome; it runs before anything
 * else uses the connection (the next flush, a metadata upsert, the end).
 */
bool
kb_import_drain(kb_import *im)
{
    if (im->npending == 0)
        return true;
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
    im->npending = 0;
    if (!ok || PQstatus(im->db.conn) != CONNECTION_OK) {
        (void)kb_db_command(&im->db, "ROLLBACK");
        return false;
    }
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

/* Write the pending batch in one transaction (its commit completes asynchronously). */
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
    bool ok = kb_db_command(&im->db, "BEGIN") == KB_OK &&
              kb_db_exec(&im->db, &im->arena, &partitions_stmt, p, NULL) == KB_OK &&
              (im->nsnaps == 0 || copy_in(im, "stage_snapshots", &im->snaps)) &&
              (im->ndeltas == 0 || copy_in(im, "stage_deltas", &im->deltas)) &&
              (im->ntrades == 0 || copy_in(im, "stage_trades", &im->trades));
    if (ok) {
        kb_buf q = KB_BUF_INIT;
        if (im->nsnaps)
            queue_move(im, &q, &move_snapshots, &im->snaps_new);
        if (im->ndeltas)
            queue_move(im, &q, &move_deltas, &im->deltas_new);
        if (im->ntrades)
            queue_move(im, &q, &move_trades, &im->trades_new);
        kb_buf_puts(&q, "COMMIT");
        ok = PQsendQuery(im->db.conn, q.buf) == 1;
        if (!ok) {
            fprintf(stderr, "kbctl import: %s", PQerrorMessage(im->db.conn));
            im->npending = 0;
        }
        kb_buf_release(&q);
    }
    if (!ok)
        (void)kb_db_command(&im->db, "ROLLBACK");
    kb_arena_reset(&im->arena);
    kb_buf_reset(&im->snaps);
    kb_buf_reset(&im->deltas);
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
           "object per line (t/data/README.md). Idempotent: importing a file twice changes\n"
           "nothing. Bad lines are reported as FILE:LINE: reason and skipped; --strict stops\n"
           "at the first one. Exit 0 when every line was good, 1 otherwise.\n"
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
    /* Statistics first: the checkpoint rebuild and the first requests plan on them. */
    if (ok && kb_db_exec(&im->db, &im->arena, &analyze_stmt, NULL, NULL) != KB_OK) {
        fprintf(stderr, "kbctl import: refreshing planner statistics failed\n");
        ok = false;
    }
    if (ok && every > 0) {
        PGresult *r;
        char ev[24];
        snprintf(ev, sizeof(ev), "%ld", every);
        const char *p[] = {ev};
        if (kb_db_command(&im->db, "BEGIN") || kb_db_exec(&im->db, &im->arena, &rebuild_stmt, p, &r) ||
            kb_db_command(&im->db, "TRUNCATE kb_touched") || kb_db_command(&im->db, "COMMIT")) {
            (void)kb_db_command(&im->db, "ROLLBACK");
            fprintf(stderr, "kbctl import: building reconstruction checkpoints failed\n");
            ok = false;
        } else {
            checkpoints = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        }
        kb_arena_reset(&im->arena);
    }
    double secs = (double)(kb_mono_us() - t0) / 1e6;
    if (!quiet)
        printf("imported %ld lines in %.2fs: snapshots %ld (%ld new), deltas %ld (%ld new), "
               "trades %ld (%ld new), metadata %ld, skipped %ld, bad %ld, checkpoints %ld\n",
               im->lines, secs, im->snaps_read, im->snaps_new, im->deltas_read, im->deltas_new,
               im->trades_read, im->trades_new, im->meta, im->skipped, im->bad, checkpoints);
    rc = ok && im->bad == 0 ? KBCTL_OK : KBCTL_FAIL;
out:
    kb_buf_release(&im->snaps);
    kb_buf_release(&im->deltas);
    kb_buf_release(&im->trades);
    kb_arena_release(&im->arena);
    kb_db_release(&im->db);
    free(im);
    return rc;
}
