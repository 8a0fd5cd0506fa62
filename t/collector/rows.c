/* rows.c - nothing stored twice, nothing spooled lost.
 *
 * dups:  the book changes of the truth log go to a temporary table; per (market, ms,
 *        side, price, change) the database may hold no more rows than the truth has
 *        events (a duplicate or an invented row fails), and no trade_id twice. Only the
 *        stand-in's markets (every market of the truth log) count: the two-host chaos run
 *        (t/chaos/collector.sh) shares its database with the demo data of its load.
 * spool: every orderbook_delta, orderbook_snapshot and trade message in the spools goes
 *        to temporary tables by its key; each must be in deltas / snapshots / trades. A
 *        book change a leader received after it lost the lead while cut off from Postgres
 *        (a Postgres restart under two collectors) and after the new leader's first
 *        snapshot of the market is stored once, under the new leader's sid
 *        (docs/collector.md "Leadership"): a delta not stored under its own (sid, seq)
 *        counts as stored when the market has, at that instant, as many deltas as the
 *        truth log has book changes (so every change of that instant is stored; dups
 *        says none twice), or when it came at the very instant of a snapshot of the
 *        market (the new leader's first: it holds the change, since the stand-in's events
 *        after a snapshot are strictly later, and the delta is left out so the change is
 *        not counted twice); how many did each is printed. Needs cc_check_dups's truth_d.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "kb_buf.h"
#include "kb_spool.h"
#include "kb_banned.h"

static void
copy_in(PGconn *db, const char *copy, const kb_buf *rows)
{
    PQclear(cc_sql(db, copy, 0, NULL));
    if (PQputCopyData(db, rows->buf ? rows->buf : "", (int)rows->len) != 1 ||
        PQputCopyEnd(db, NULL) != 1) {
        fprintf(stderr, "collector-check: COPY failed: %s", PQerrorMessage(db));
        exit(2);
    }
    PGresult *r = PQgetResult(db);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "collector-check: COPY failed: %s", PQerrorMessage(db));
        exit(2);
    }
    PQclear(r);
    while ((r = PQgetResult(db)) != NULL)
        PQclear(r);
}

static long
one_long(PGconn *db, const char *sql)
{
    PGresult *r = cc_sql(db, sql, 0, NULL);
    long v = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? strtol(PQgetvalue(r, 0, 0), NULL, 10)
                                                        : -1;
    PQclear(r);
    return v;
}

void
cc_check_dups(PGconn *db, cc_truth *t)
{
    kb_buf rows = KB_BUF_INIT;
    long events = 0;
    for (int i = 0; i < t->nm; i++) {
        const cc_market *m = &t->m[i];
        /* The initial levels (at creation) are no deltas. */
        for (long k = m->ninit; k < m->nev; k++) {
            const cc_event *e = &m->ev[k];
            kb_buf_printf(&rows, "%s\t%" PRId64 "\t%s\t%d\t%" PRId64 "\n", m->ticker, e->ts,
                          e->yes ? "yes" : "no", e->price, e->d);
            events++;
        }
    }
    PQclear(cc_sql(db,
                   "CREATE TEMP TABLE truth_d (market_ticker text, ms bigint, side text,"
                   " price_e4 integer, delta_e2 bigint)",
                   0, NULL));
    copy_in(db, "COPY truth_d FROM STDIN", &rows);
    kb_buf_release(&rows);
    kb_buf tickers = KB_BUF_INIT;
    for (int i = 0; i < t->nm; i++)
        kb_buf_printf(&tickers, "%s\n", t->m[i].ticker);
    PQclear(cc_sql(db, "CREATE TEMP TABLE truth_m (market_ticker text PRIMARY KEY)", 0, NULL));
    copy_in(db, "COPY truth_m FROM STDIN", &tickers);
    kb_buf_release(&tickers);
    long extra = one_long(
        db,
        "SELECT coalesce(sum(d.n - coalesce(t.n, 0)), 0) FROM"
        " (SELECT market_ticker, kb_us(ts) / 1000 AS ms, side, price_e4, delta_e2, count(*) AS n"
        "    FROM deltas JOIN truth_m USING (market_ticker) GROUP BY 1, 2, 3, 4, 5) d"
        " LEFT JOIN (SELECT market_ticker, ms, side, price_e4, delta_e2, count(*) AS n"
        "    FROM truth_d GROUP BY 1, 2, 3, 4, 5) t"
        " USING (market_ticker, ms, side, price_e4, delta_e2) WHERE d.n > coalesce(t.n, 0)");
    long stored = one_long(db, "SELECT count(*) FROM deltas JOIN truth_m USING (market_ticker)");
    long trades2 = one_long(db, "SELECT count(*) FROM (SELECT trade_id FROM trades"
                                " JOIN truth_m USING (market_ticker) GROUP BY 1"
                                " HAVING count(*) > 1) x");
    long snaps2 = one_long(db, "SELECT count(*) FROM (SELECT market_ticker, captured_at FROM "
                               "snapshots JOIN truth_m USING (market_ticker) GROUP BY 1, 2"
                               " HAVING count(*) > 1) x");
    cc_verdict("dups", extra == 0 && trades2 == 0 && snaps2 == 0 && stored > 0,
               "%ld delta rows for %ld true book changes: %ld rows beyond the truth; %ld "
               "trade_ids and %ld (market, instant) snapshots stored twice",
               stored, events, extra, trades2, snaps2);
}

typedef struct keys {
    kb_buf d, s, t;
    long nd, ns, nt, bad;
    int spool; /* which --spool the records come from */
} keys;

static const char *
str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t
num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

static void
record(keys *k, const kb_spool_rec *r)
{
    if (r->kind != 'F')
        return;
    cJSON *j = cJSON_ParseWithLength(r->data, r->len);
    const char *type = str(j, "type");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "msg");
    const char *tk = str(msg, "market_ticker");
    int64_t ms = num(msg, "ts_ms"), sid = num(j, "sid"), seq = num(j, "seq");
    if (type == NULL || tk == NULL) {
        k->bad += j == NULL;
    } else if (strcmp(type, "orderbook_delta") == 0) {
        kb_buf_printf(&k->d, "%s\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%d\t%" PRId64 "\n", tk, ms,
                      sid, seq, k->spool, r->wall_ns / 1000000);
        k->nd++;
    } else if (strcmp(type, "orderbook_snapshot") == 0) {
        /* Without ts the receive time is the snapshot's. */
        if (ms < 0)
            ms = r->wall_ns / 1000000;
        kb_buf_printf(&k->s, "%s\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\n", tk, ms, sid, seq);
        k->ns++;
    } else if (strcmp(type, "trade") == 0 && str(msg, "trade_id") != NULL) {
        kb_buf_printf(&k->t, "%s\t%d\t%" PRId64 "\n", str(msg, "trade_id"), k->spool,
                      r->wall_ns / 1000000);
        k->nt++;
    }
    cJSON_Delete(j);
}

void
cc_check_spool(PGconn *db, const cc_args *a)
{
    keys k = {KB_BUF_INIT, KB_BUF_INIT, KB_BUF_INIT, 0, 0, 0, 0, 0};
    long files = 0, damaged = 0;
    for (int i = 0; i < a->nspool; i++) {
        k.spool = i;
        long max = kb_spool_max_no(a->spool[i]);
        for (long f = 1; f <= max; f++) {
            char *path = kb_spool_find(a->spool[i], f);
            kb_spool_reader rd;
            if (path == NULL || !kb_spool_reader_open(&rd, path, 0)) {
                free(path);
                continue;
            }
            files++;
            kb_spool_rec rec;
            int64_t end;
            int rc;
            while ((rc = kb_spool_reader_next(&rd, &rec, &end)) == 1)
                record(&k, &rec);
            /* A record cut by a SIGKILL ends a file; it never reached the writer. */
            damaged += rc < 0;
            kb_spool_reader_close(&rd);
            free(path);
        }
    }
    PQclear(cc_sql(db,
                   "CREATE TEMP TABLE spool_d (market_ticker text, ms bigint, sid bigint,"
                   " seq bigint, spool int, rcv bigint)",
                   0, NULL));
    PQclear(cc_sql(db,
                   "CREATE TEMP TABLE spool_s (market_ticker text, ms bigint, sid bigint,"
                   " seq bigint)",
                   0, NULL));
    PQclear(
        cc_sql(db, "CREATE TEMP TABLE spool_t (trade_id text, spool int, rcv bigint)", 0, NULL));
    copy_in(db, "COPY spool_d FROM STDIN", &k.d);
    copy_in(db, "COPY spool_s FROM STDIN", &k.s);
    copy_in(db, "COPY spool_t FROM STDIN", &k.t);
    PQclear(cc_sql(db,
                   "CREATE TEMP TABLE spool_d_lost AS SELECT * FROM spool_d s WHERE NOT EXISTS"
                   " (SELECT 1 FROM deltas d WHERE d.market_ticker = s.market_ticker AND"
                   " d.sid = s.sid AND d.seq = s.seq AND"
                   " d.ts = 'epoch'::timestamptz + s.ms * interval '1 ms')",
                   0, NULL));
    /* Not under its own sid: stored once under the next leader's (see the top), when the
     * market has, at that instant, every book change the truth has there (truth_d, made by
     * cc_check_dups on this connection). */
    PQclear(cc_sql(db,
                   "CREATE TEMP TABLE spool_d_other AS SELECT s.* FROM spool_d_lost s,"
                   " LATERAL (SELECT count(*) AS n FROM truth_d t WHERE t.market_ticker ="
                   "  s.market_ticker AND t.ms = s.ms) t WHERE t.n > 0 AND"
                   " (SELECT count(*) FROM deltas d WHERE d.market_ticker = s.market_ticker AND"
                   "  d.ts = 'epoch'::timestamptz + s.ms * interval '1 ms') >= t.n",
                   0, NULL));
    long other_sid = one_long(db, "SELECT count(*) FROM spool_d_other");
    PQclear(cc_sql(db,
                   "DELETE FROM spool_d_lost s USING spool_d_other o WHERE"
                   " (s.market_ticker, s.ms, s.sid, s.seq, s.spool) ="
                   " (o.market_ticker, o.ms, o.sid, o.seq, o.spool)",
                   0, NULL));
    /* Or at the very instant of the new leader's first snapshot of the market: the snapshot
     * holds it (the stand-in's events after a snapshot are strictly later), and the delta
     * is left out so the change is not counted twice. */
    long in_snap = one_long(db, "WITH x AS (DELETE FROM spool_d_lost s WHERE EXISTS (SELECT 1"
                                " FROM snapshots n WHERE n.market_ticker = s.market_ticker AND"
                                " n.captured_at = 'epoch'::timestamptz + s.ms * interval '1 ms')"
                                " RETURNING 1) SELECT count(*) FROM x");
    long md = one_long(db, "SELECT count(*) FROM spool_d_lost");
    long ms = one_long(db, "SELECT count(*) FROM spool_s s WHERE NOT EXISTS (SELECT 1 FROM"
                           " snapshots d WHERE d.market_ticker = s.market_ticker AND d.sid = s.sid"
                           " AND d.seq = s.seq"
                           " AND d.captured_at = 'epoch'::timestamptz + s.ms * interval '1 ms')");
    long mt = one_long(db, "SELECT count(*) FROM spool_t s WHERE NOT EXISTS (SELECT 1 FROM trades t"
                           " WHERE t.trade_id = s.trade_id)");
    if (md > 0 || mt > 0) {
        /* Where the missing ones come from: per spool, how many, received when. */
        PGresult *w = cc_sql(
            db,
            "SELECT string_agg(format('spool %s: %s deltas received %s..%s ms', spool, n, lo, hi),"
            "                  '; ' ORDER BY spool)"
            "  FROM (SELECT spool, count(*) n, min(rcv) lo, max(rcv) hi FROM spool_d_lost"
            "         GROUP BY spool) x",
            0, NULL);
        fprintf(stderr, "collector-check: missing: %s\n", PQgetvalue(w, 0, 0));
        PQclear(w);
        /* The first few: what the database and the truth have at that instant, and the
         * orderbook gaps of the market around it. */
        w = cc_sql(
            db,
            "SELECT format('%s at %s (sid %s seq %s, spool %s, received %s): stored there %s,"
            "  true changes there %s; gaps: %s', s.market_ticker, s.ms, s.sid, s.seq, s.spool,"
            "  s.rcv, (SELECT count(*) FROM deltas d WHERE d.market_ticker = s.market_ticker"
            "    AND d.ts = 'epoch'::timestamptz + s.ms * interval '1 ms'),"
            "  (SELECT count(*) FROM truth_d t WHERE t.market_ticker = s.market_ticker"
            "    AND t.ms = s.ms),"
            "  (SELECT coalesce(string_agg(format('%s..%s %s %s', kb_us(g.start_at) / 1000,"
            "     coalesce((kb_us(g.end_at) / 1000)::text, 'open'), g.reason, g.source), '; '"
            "     ORDER BY g.start_at), 'none') FROM gaps g WHERE g.market_ticker ="
            "     s.market_ticker AND g.channel = 'orderbook' AND g.start_at <="
            "     'epoch'::timestamptz + (s.ms + 30000) * interval '1 ms' AND"
            "     coalesce(g.end_at, 'infinity') >= 'epoch'::timestamptz + (s.ms - 30000)"
            "     * interval '1 ms'))"
            " FROM spool_d_lost s ORDER BY s.rcv LIMIT 5",
            0, NULL);
        for (int i = 0; i < PQntuples(w); i++)
            fprintf(stderr, "collector-check: missing delta %s\n", PQgetvalue(w, i, 0));
        PQclear(w);
    }
    cc_verdict(
        "spool", md == 0 && ms == 0 && mt == 0 && damaged == 0 && k.nd > 0,
        "%ld spool files: %ld deltas (%ld stored under the next leader's sid, %ld held by its "
        "snapshot of that instant), %ld snapshots, %ld trades (%ld frames not JSON); missing "
        "from the database: %ld deltas, %ld snapshots, %ld trades; %ld damaged files",
        files, k.nd, other_sid, in_snap, k.ns, k.nt, k.bad, md, ms, mt, damaged);
    kb_buf_release(&k.d);
    kb_buf_release(&k.s);
    kb_buf_release(&k.t);
}
