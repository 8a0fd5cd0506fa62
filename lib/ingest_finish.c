/* ingest_finish.c - after the load: planner statistics and checkpoint rebuilds.
 *
 * For the markets that got new rows (kb_touched, a temporary table of the
 * import's connection) the checkpoints of the snapshot windows they touched
 * are rebuilt exactly as kb_rebuild_checkpoints (0011) would:
 *  - locally, when a window holds exactly the rows this run sent by the
 *    direct COPY (kept in memory, up to KB_INGEST_KEEP_MAX): under the import
 *    lock (shared), the server counts the window's rows, and equal counts
 *    mean equal sets, since every kept row is stored. Nothing is read back;
 *  - otherwise by kb_rebuild_checkpoints, one statement per market, on the
 *    import's connection and a second one at once (rebuilds hold the lock
 *    in shared mode, so they run side by side and never interleave with a
 *    batch, which holds it exclusively).
 * The second connection first refreshes the statistics of the partitions
 * loaded (kb_analyze_partitions) while the local rebuilds run.
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kb_ingest.h"
#include "kb_log.h"
#include "kb_fixed.h"
#include "kb_time.h"
#include "kb_banned.h"

static const kb_stmt touched_stmt = {"imp_touched",
                                     "SELECT ticker, kb_us(from_ts), kb_us(to_ts) FROM kb_touched"
                                     " ORDER BY to_ts - from_ts DESC, ticker",
                                     0, false};

static const char analyze_sql[] = "SELECT kb_analyze_partitions($1::timestamptz, $2::timestamptz)";

/* The windows kb_rebuild_checkpoints would rebuild for each market, and their row counts. */
static const char windows_sql[] =
    "WITH t AS (SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])"
    "             WITH ORDINALITY AS t(tk, lo, hi, i)),"
    " s AS (SELECT t.*, coalesce((SELECT max(captured_at) FROM snapshots"
    "                              WHERE market_ticker = t.tk AND captured_at <= t.lo),"
    "                             (SELECT min(captured_at) FROM snapshots"
    "                              WHERE market_ticker = t.tk)) AS s0 FROM t)"
    " SELECT s.i, kb_us(s.s0), kb_us(w.basis), kb_us(w.next_at),"
    "        (SELECT count(*) FROM deltas d WHERE d.market_ticker = s.tk AND d.ts > w.basis"
    "            AND d.ts < coalesce(w.next_at, 'infinity'))"
    "   FROM s, LATERAL (SELECT basis, next_at FROM ("
    "          SELECT captured_at AS basis, lead(captured_at) OVER (ORDER BY captured_at)"
    "                 AS next_at"
    "            FROM (SELECT DISTINCT captured_at FROM snapshots"
    "                   WHERE market_ticker = s.tk AND captured_at >= s.s0) a) b"
    "         WHERE basis <= s.hi) w"
    "  ORDER BY s.i, w.basis";

static const char delete_sql[] =
    "DELETE FROM book_checkpoints"
    " WHERE market_ticker = $1 AND basis >= $2::timestamptz AND basis <= $3::timestamptz";

static const char insert_sql[] =
    "WITH i AS (INSERT INTO book_checkpoints (market_ticker, basis, at, deltas, levels)"
    "  SELECT $1, $2::timestamptz, a, n, l::jsonb"
    "    FROM unnest($3::timestamptz[], $4::bigint[], $5::text[]) AS u(a, n, l)"
    "  ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT count(*) FROM i";

static const char rebuild_sql[] =
    "SELECT kb_rebuild_checkpoints($1, $2::timestamptz, $3::timestamptz, $4::int)";

typedef struct lane {
    PGconn *c;
    bool busy, counts; /* a statement is running; its result is a checkpoint count */
} lane;

/* Collect a finished statement's result; false if it failed. */
static bool
lane_collect(lane *l, long *made)
{
    PGresult *r;
    bool ok = true;
    while ((r = PQgetResult(l->c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_TUPLES_OK && l->counts && PQntuples(r) == 1)
            *made += strtol(PQgetvalue(r, 0, 0), NULL, 10);
        else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            kb_log_error("ingest: %s", PQresultErrorMessage(r));
            ok = false;
        }
        PQclear(r);
    }
    l->busy = false;
    return ok;
}

/* Wait until one busy lane has its result; false on a connection failure. */
static bool
lane_wait(lane *lanes, int n)
{
    struct pollfd pf[2];
    int map[2], k = 0;
    for (int i = 0; i < n; i++) {
        if (lanes[i].busy && PQisBusy(lanes[i].c)) {
            pf[k] = (struct pollfd){.fd = PQsocket(lanes[i].c), .events = POLLIN};
            map[k++] = i;
        } else if (lanes[i].busy) {
            return true; /* already complete */
        }
    }
    if (k == 0)
        return true;
    if (poll(pf, (nfds_t)k, -1) < 0)
        return false;
    for (int j = 0; j < k; j++) {
        if ((pf[j].revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(lanes[map[j]].c)) {
            kb_log_error("ingest: %s", PQerrorMessage(lanes[map[j]].c));
            return false;
        }
    }
    return true;
}

static int
kept_cmp(const void *a, const void *b)
{
    int64_t x = ((const kb_ingest_kept *)a)->ts, y = ((const kb_ingest_kept *)b)->ts;
    return (x > y) - (x < y);
}

/* First kept row with ts > us (n if none); rows sorted by ts. */
static long
after(const kb_ingest_kept *r, long n, int64_t us)
{
    long lo = 0, hi = n;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (r[mid].ts <= us)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool
exec_ok(PGconn *c, const char *sql, int n, const char *const *p, long *count)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        kb_log_error("ingest: %s", PQresultErrorMessage(r));
    else if (count != NULL && st == PGRES_TUPLES_OK && PQntuples(r) == 1)
        *count += strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return ok;
}

typedef struct cp_out {
    kb_buf at, cnt, lv;
    long n;
} cp_out;

static bool
cp_flush(PGconn *c, const char *ticker, const char *basis, cp_out *o, long *made)
{
    if (o->n == 0)
        return true;
    const char *p[] = {ticker, basis, kb__ingest_arr_end(&o->at), kb__ingest_arr_end(&o->cnt),
                       kb__ingest_arr_end(&o->lv)};
    bool ok = exec_ok(c, insert_sql, 5, p, made);
    kb_buf_reset(&o->at);
    kb_buf_reset(&o->cnt);
    kb_buf_reset(&o->lv);
    o->n = 0;
    return ok;
}

/* Checkpoints of one window from rows r[0..n) (sorted, all inside it): as 0011 defines. */
static bool
window_local(PGconn *c, const char *ticker, int64_t basis_us, const kb_ingest_kept *r, long n,
             long every, long *made)
{
    char basis[KB_TIME_FMT_MAX];
    kb_time_format(basis_us, basis, sizeof(basis));
    /* per side and price (1/10,000 $, 1..9999): the running sum and whether it was touched */
    int64_t(*sum)[KB_PRICE_DOLLAR] = kb_xcalloc(2, sizeof(*sum));
    bool(*seen)[KB_PRICE_DOLLAR] = kb_xcalloc(2, sizeof(*seen));
    cp_out o = {KB_BUF_INIT, KB_BUF_INIT, KB_BUF_INIT, 0};
    kb_buf levels = KB_BUF_INIT;
    bool ok = true;
    long cnt = 0;
    for (long i = 0; ok && i < n;) {
        int64_t t = r[i].ts;
        long m = cnt + 1;
        for (; i < n && r[i].ts == t; i++, cnt++) {
            sum[r[i].yes][r[i].price] += r[i].amount;
            seen[r[i].yes][r[i].price] = true;
        }
        if (cnt / every < (m + every - 1) / every)
            continue; /* no multiple of every within this instant's rows */
        kb_buf_reset(&levels);
        kb_buf_putc(&levels, '[');
        for (int side = 1; side >= 0; side--) {
            for (int p = 1; p < KB_PRICE_DOLLAR; p++) {
                if (seen[side][p])
                    kb_buf_printf(&levels, "%s[\"%s\",%d,%" PRId64 "]", levels.len > 1 ? "," : "",
                                  side ? "yes" : "no", p, sum[side][p]);
            }
        }
        kb_buf_putc(&levels, ']');
        kb__ingest_arr_ts(&o.at, t);
        kb__ingest_arr_int(&o.cnt, cnt);
        kb__ingest_arr_str(&o.lv, levels.buf, levels.len);
        if (++o.n >= 2000 || o.lv.len > ((size_t)4 << 20))
            ok = cp_flush(c, ticker, basis, &o, made);
    }
    ok = ok && cp_flush(c, ticker, basis, &o, made);
    kb_buf_release(&o.at);
    kb_buf_release(&o.cnt);
    kb_buf_release(&o.lv);
    kb_buf_release(&levels);
    free(sum);
    free(seen);
    return ok;
}

/*
 * Rebuild locally every market whose windows hold exactly its kept rows;
 * done[i] is set for those (and for markets without a snapshot: nothing to
 * rebuild). One transaction under the shared import lock.
 */
static bool
rebuild_local(kb_ingest *im, PGresult *t, long every, bool *done, long *made)
{
    int nt = PQntuples(t);
    kb_buf tk = KB_BUF_INIT, lo = KB_BUF_INIT, hi = KB_BUF_INIT;
    for (int i = 0; i < nt; i++) {
        kb__ingest_arr_str(&tk, PQgetvalue(t, i, 0), (size_t)PQgetlength(t, i, 0));
        kb__ingest_arr_ts(&lo, strtoll(PQgetvalue(t, i, 1), NULL, 10));
        kb__ingest_arr_ts(&hi, strtoll(PQgetvalue(t, i, 2), NULL, 10));
    }
    const char *p[] = {kb__ingest_arr_end(&tk), kb__ingest_arr_end(&lo), kb__ingest_arr_end(&hi)};
    PGconn *c = im->db->conn;
    bool ok = exec_ok(c, "BEGIN", 0, NULL, NULL) &&
              exec_ok(c, "SELECT pg_advisory_xact_lock_shared(7274810004)", 0, NULL, NULL);
    PGresult *w = ok ? PQexecParams(c, windows_sql, 3, NULL, p, NULL, NULL, 0) : NULL;
    ok = ok && PQresultStatus(w) == PGRES_TUPLES_OK;
    if (w != NULL && !ok)
        kb_log_error("ingest: %s", PQresultErrorMessage(w));
    int nw = ok ? PQntuples(w) : 0;
    for (int i = 0; i < nt; i++)
        done[i] = ok; /* no window: nothing to rebuild */
    for (int row = 0; ok && row < nw;) {
        long i = strtol(PQgetvalue(w, row, 0), NULL, 10) - 1;
        int first = row;
        while (row < nw && strtol(PQgetvalue(w, row, 0), NULL, 10) - 1 == i)
            row++;
        if (i < 0 || i >= nt) {
            ok = false;
            break;
        }
        const char *name = PQgetvalue(t, (int)i, 0);
        kb_ingest_ticker *k = im->kept < 0
                                  ? NULL
                                  : &im->tickers[kb__ingest_ticker_id(im, name, strlen(name))];
        bool sorted = true;
        for (long j = 1; k != NULL && j < k->nkept && sorted; j++)
            sorted = k->kept[j - 1].ts <= k->kept[j].ts;
        if (k != NULL && !sorted)
            qsort(k->kept, (size_t)k->nkept, sizeof(*k->kept), kept_cmp);
        /* local only when every window's stored count is what this run sent there */
        bool local = k != NULL;
        for (int x = first; local && x < row; x++) {
            int64_t b = strtoll(PQgetvalue(w, x, 2), NULL, 10);
            int64_t e = PQgetisnull(w, x, 3) ? INT64_MAX : strtoll(PQgetvalue(w, x, 3), NULL, 10);
            long from = after(k->kept, k->nkept, b);
            long to = e == INT64_MAX ? k->nkept : after(k->kept, k->nkept, e - 1);
            local = to - from == strtol(PQgetvalue(w, x, 4), NULL, 10);
        }
        done[i] = local;
        if (!local)
            continue;
        char s0[KB_TIME_FMT_MAX], to[KB_TIME_FMT_MAX];
        kb_time_format(strtoll(PQgetvalue(w, first, 1), NULL, 10), s0, sizeof(s0));
        kb_time_format(strtoll(PQgetvalue(t, (int)i, 2), NULL, 10), to, sizeof(to));
        const char *dp[] = {name, s0, to};
        ok = exec_ok(c, delete_sql, 3, dp, NULL);
        for (int x = first; ok && x < row; x++) {
            int64_t b = strtoll(PQgetvalue(w, x, 2), NULL, 10);
            int64_t e = PQgetisnull(w, x, 3) ? INT64_MAX : strtoll(PQgetvalue(w, x, 3), NULL, 10);
            long from = after(k->kept, k->nkept, b);
            long upto = e == INT64_MAX ? k->nkept : after(k->kept, k->nkept, e - 1);
            /* no kept deltas (a snapshot alone): no pointer arithmetic on NULL */
            ok = window_local(c, name, b, upto > from ? k->kept + from : NULL, upto - from, every,
                              made);
        }
    }
    PQclear(w);
    ok = exec_ok(c, ok ? "COMMIT" : "ROLLBACK", 0, NULL, NULL) && ok;
    kb_buf_release(&tk);
    kb_buf_release(&lo);
    kb_buf_release(&hi);
    return ok;
}

bool
kb_ingest_finish(kb_ingest *im, long every, long *checkpoints)
{
    PGresult *t;
    /* No batch on this connection: nothing touched (the staging tables come with one). */
    if (!im->prepared || im->prepared_on != im->db->conn)
        return true;
    if (kb_db_exec(im->db, &im->arena, &touched_stmt, NULL, &t) != KB_OK) {
        kb_log_error("ingest: reading the markets to rebuild failed");
        return false;
    }
    int ntouched = PQntuples(t);
    if (ntouched == 0)
        return true;
    kb_db second;
    int nlanes = 2;
    kb_db_init(&second, im->db->conninfo, im->db->app_name, im->db->connect_timeout_s, 0);
    if (kb_db_connect(&second) != KB_OK ||
        kb_db_command(&second, "SET client_min_messages = warning; SET work_mem = '64MB'") != KB_OK)
        nlanes = 1; /* one connection still does it all */
    lane lanes[2] = {{im->db->conn, false, false},
                     {nlanes == 2 ? second.conn : NULL, false, false}};
    /* Statistics of the span loaded, on the second connection while this one rebuilds. */
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (int i = 0; i < ntouched; i++) {
        int64_t a = strtoll(PQgetvalue(t, i, 1), NULL, 10),
                b = strtoll(PQgetvalue(t, i, 2), NULL, 10);
        lo = a < lo ? a : lo;
        hi = b > hi ? b : hi;
    }
    char los[KB_TIME_FMT_MAX], his[KB_TIME_FMT_MAX];
    kb_time_format(lo, los, sizeof(los));
    kb_time_format(hi, his, sizeof(his));
    const char *ap[] = {los, his};
    lane *al = &lanes[nlanes - 1];
    bool ok = PQsendQueryParams(al->c, analyze_sql, 2, NULL, ap, NULL, NULL, 0) == 1;
    al->busy = ok;
    bool *done = kb_xcalloc((size_t)ntouched, sizeof(*done));
    if (ok && nlanes == 1)
        ok = lane_collect(al, checkpoints); /* one connection: statistics first */
    if (ok && every > 0)
        ok = rebuild_local(im, t, every, done, checkpoints);
    int next = 0;
    char ev[24];
    snprintf(ev, sizeof(ev), "%ld", every);
    while (every > 0 && next < ntouched && done[next])
        next++;
    while (ok && (lanes[0].busy || lanes[1].busy || (every > 0 && next < ntouched))) {
        for (int i = 0; ok && i < nlanes; i++) {
            lane *l = &lanes[i];
            if (l->busy && !PQisBusy(l->c))
                ok = lane_collect(l, checkpoints);
            if (ok && !l->busy && every > 0 && next < ntouched) {
                char a[KB_TIME_FMT_MAX], b[KB_TIME_FMT_MAX];
                kb_time_format(strtoll(PQgetvalue(t, next, 1), NULL, 10), a, sizeof(a));
                kb_time_format(strtoll(PQgetvalue(t, next, 2), NULL, 10), b, sizeof(b));
                const char *p[] = {PQgetvalue(t, next, 0), a, b, ev};
                next++;
                while (next < ntouched && done[next])
                    next++;
                ok = PQsendQueryParams(l->c, rebuild_sql, 4, NULL, p, NULL, NULL, 0) == 1;
                l->busy = l->counts = ok;
                if (!ok)
                    kb_log_error("ingest: %s", PQerrorMessage(l->c));
            }
        }
        if (ok && (lanes[0].busy || lanes[1].busy))
            ok = lane_wait(lanes, nlanes);
    }
    for (int i = 0; i < nlanes; i++) {
        if (lanes[i].busy)
            (void)lane_collect(&lanes[i], checkpoints);
    }
    free(done);
    if (ok && kb_db_command(im->db, "TRUNCATE kb_touched") != KB_OK)
        ok = false;
    kb_db_release(&second);
    if (!ok)
        kb_log_error("ingest: statistics or reconstruction checkpoints failed");
    return ok;
}
