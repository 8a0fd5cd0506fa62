/* ingest_deltas.c - a batch's delta rows into deltas: direct COPY where provably new.
 *
 * Runs inside the batch transaction, after kb_ensure_partitions took the
 * import advisory lock (held to COMMIT, so no other import writes deltas or
 * rebuilds checkpoints meanwhile):
 *  1. one probe asks, per ticker of the batch, for the span [elo, ehi] of
 *     the rows already stored within the batch's span of that ticker;
 *  2. a row outside that span cannot collide with a stored row (the unique
 *     key (ticker, ts, sid, seq) contains ts): it takes the direct route, a
 *     binary COPY into deltas, once repeats within the batch are dropped (the
 *     first in file order stays, as ON CONFLICT DO NOTHING keeps it). Its
 *     market_stats, kb_touched and stale checkpoints are updated by one
 *     statement from per-ticker figures computed here;
 *  3. the other rows take the staged route: COPY into stage_deltas, then
 *     imp_move_deltas (INSERT .. ON CONFLICT DO NOTHING, counting what it
 *     inserted).
 * So every row is stored at most once and counted exactly once, as before;
 * a re-import finds every ticker's span occupied and inserts nothing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kb_ingest.h"
#include "kb_log.h"
#include "kb_time.h"
#include "kb_banned.h"

/* Postgres binary timestamps count µs from 2000-01-01. */
#define PG_EPOCH_US INT64_C(946684800000000)

static const kb_stmt probe_stmt = {
    "imp_probe",
    "SELECT u.i, kb_us(e.lo), kb_us(e.hi)"
    "  FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])"
    "       WITH ORDINALITY AS u(t, lo, hi, i),"
    "  LATERAL (SELECT min(d.ts) AS lo, max(d.ts) AS hi FROM deltas d"
    "            WHERE d.market_ticker = u.t AND d.ts >= u.lo AND d.ts <= u.hi) e"
    " WHERE e.lo IS NOT NULL",
    3, false};

/* The keys stored within a span, at most lim of them (more: the staged route decides).
 * Binary results: the instants arrive as integers, no per-row formatting. */
static const char keys_sql[] =
    "SELECT u.i, x.ts, x.sid, x.seq"
    "  FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int[])"
    "       WITH ORDINALITY AS u(t, lo, hi, lim, i),"
    "  LATERAL (SELECT d.ts, d.sid, d.seq FROM deltas d"
    "            WHERE d.market_ticker = u.t AND d.ts >= u.lo AND d.ts <= u.hi"
    "            LIMIT u.lim) x";

static const kb_stmt direct_stats_stmt = {
    "imp_direct_stats",
    "WITH v AS ("
    "  SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[])"
    "    AS u(t, n, lo, hi)),"
    " k AS ("
    "  INSERT INTO kb_touched AS k (ticker, from_ts, to_ts) SELECT t, lo, hi FROM v"
    "  ON CONFLICT (ticker) DO UPDATE SET from_ts = least(k.from_ts, excluded.from_ts),"
    "   to_ts = greatest(k.to_ts, excluded.to_ts)),"
    " x AS ("
    "  DELETE FROM book_checkpoints b USING v"
    "   WHERE b.market_ticker = v.t AND b.at >= v.lo AND b.basis <= v.hi)"
    " INSERT INTO market_stats AS m (ticker, last_data_at, delta_count)"
    " SELECT t, hi, n FROM v"
    " ON CONFLICT (ticker) DO UPDATE SET"
    "  last_data_at = greatest(m.last_data_at, excluded.last_data_at),"
    "  delta_count = m.delta_count + excluded.delta_count",
    4, false};

/* ---- Postgres binary COPY ---- */

static void
be16(char *p, uint16_t v)
{
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}

static void
be32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)(v >> (24 - 8 * i));
}

static void
be64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (char)(v >> (56 - 8 * i));
}

static void
copy_header(kb_buf *b)
{
    static const char sig[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    kb_buf_append(b, sig, sizeof(sig));
}

static void
copy_trailer(kb_buf *b)
{
    kb_buf_append(b, "\377\377", 2);
}

/* One row: ticker, ts, seq, sid, price_e4 (int4), delta_e2 (int8), side, received_at
 * (NULL when not recorded) [, n]. */
static void
put_row(kb_buf *b, const kb_ingest *im, const kb_ingest_delta *d, bool staged)
{
    const kb_ingest_ticker *t = &im->tickers[d->ticker];
    size_t need = 2 + 4 + t->len + 3 * 12 + 8 + 12 + 4 + 3 + 12 + 12;
    kb_buf_grow(b, need);
    char *p = b->buf + b->len, *start = p;
    be16(p, staged ? 9 : 8), p += 2;
    be32(p, (uint32_t)t->len), p += 4;
    memcpy(p, t->name, t->len), p += t->len;
    be32(p, 8), be64(p + 4, (uint64_t)(d->ts - PG_EPOCH_US)), p += 12;
    be32(p, 8), be64(p + 4, (uint64_t)d->seq), p += 12;
    be32(p, 8), be64(p + 4, (uint64_t)d->sid), p += 12;
    be32(p, 4), be32(p + 4, (uint32_t)d->price), p += 8;
    be32(p, 8), be64(p + 4, (uint64_t)d->amount), p += 12;
    if (d->yes)
        be32(p, 3), memcpy(p + 4, "yes", 3), p += 7;
    else
        be32(p, 2), memcpy(p + 4, "no", 2), p += 6;
    if (d->rcv != KB_INGEST_NO_RCV)
        be32(p, 8), be64(p + 4, (uint64_t)(d->rcv - PG_EPOCH_US)), p += 12;
    else
        be32(p, UINT32_MAX), p += 4; /* NULL: the capture recorded no receive time */
    if (staged)
        be32(p, 8), be64(p + 4, (uint64_t)d->order), p += 12;
    b->len += (size_t)(p - start);
    b->buf[b->len] = '\0';
}

static uint64_t
get64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (unsigned char)p[i];
    return v;
}

/* ---- array parameters ---- */

void
kb__ingest_arr_str(kb_buf *b, const char *s, size_t len)
{
    kb_buf_putc(b, b->len ? ',' : '{');
    kb_buf_putc(b, '"');
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            kb_buf_putc(b, '\\');
        kb_buf_putc(b, s[i]);
    }
    kb_buf_putc(b, '"');
}

void
kb__ingest_arr_int(kb_buf *b, int64_t v)
{
    kb_buf_printf(b, "%c%" PRId64, b->len ? ',' : '{', v);
}

/* An instant as an array element: §1.1 text, exact to the µs for any year. */
void
kb__ingest_arr_ts(kb_buf *b, int64_t us)
{
    char t[KB_TIME_FMT_MAX];
    kb_time_format(us, t, sizeof(t));
    kb_buf_printf(b, "%c\"%s\"", b->len ? ',' : '{', t);
}

const char *
kb__ingest_arr_end(kb_buf *b)
{
    kb_buf_puts(b, b->len ? "}" : "{}");
    return b->buf;
}

/* ---- repeats within the batch ---- */

static uint64_t
key_hash(const kb_ingest_delta *d)
{
    uint64_t h = (uint64_t)d->ticker * 0x9E3779B97F4A7C15u;
    h = (h ^ (uint64_t)d->ts) * 0xBF58476D1CE4E5B9u;
    h = (h ^ (uint64_t)d->sid) * 0x94D049BB133111EBu;
    h = (h ^ (uint64_t)d->seq) * 0x9E3779B97F4A7C15u;
    return h ^ (h >> 31);
}

static bool
same_key(const kb_ingest_delta *a, const kb_ingest_delta *b)
{
    return a->ticker == b->ticker && a->ts == b->ts && a->sid == b->sid && a->seq == b->seq;
}

/* Keep a direct row for the checkpoints (ingest_finish.c), within KB_INGEST_KEEP_MAX. */
static void
keep(kb_ingest *im, const kb_ingest_delta *d)
{
    if (im->kept < 0)
        return;
    if (im->kept >= KB_INGEST_KEEP_MAX) {
        for (uint32_t i = 0; i < im->ntickers; i++) {
            free(im->tickers[i].kept);
            im->tickers[i].kept = NULL;
            im->tickers[i].nkept = im->tickers[i].capkept = 0;
        }
        im->kept = -1;
        return;
    }
    kb_ingest_ticker *k = &im->tickers[d->ticker];
    if (k->nkept == k->capkept) {
        k->capkept = k->capkept ? 2 * k->capkept : 1024;
        k->kept = kb_xrealloc(k->kept, (size_t)k->capkept * sizeof(*k->kept));
    }
    k->kept[k->nkept++] = (kb_ingest_kept){d->ts, d->amount, d->price, d->yes};
    im->kept++;
}

/* Ask the server which part of each ticker's span already holds rows. */
static bool
probe(kb_ingest *im, const uint32_t *used, uint32_t nused)
{
    kb_buf t = KB_BUF_INIT, lo = KB_BUF_INIT, hi = KB_BUF_INIT;
    for (uint32_t i = 0; i < nused; i++) {
        const kb_ingest_ticker *k = &im->tickers[used[i]];
        kb__ingest_arr_str(&t, k->name, k->len);
        kb__ingest_arr_ts(&lo, k->lo);
        kb__ingest_arr_ts(&hi, k->hi);
    }
    const char *p[] = {kb__ingest_arr_end(&t), kb__ingest_arr_end(&lo), kb__ingest_arr_end(&hi)};
    PGresult *r;
    bool ok = kb_db_exec(im->db, &im->arena, &probe_stmt, p, &r) == KB_OK;
    for (int row = 0; ok && row < PQntuples(r); row++) {
        long i = strtol(PQgetvalue(r, row, 0), NULL, 10) - 1;
        if (i < 0 || i >= (long)nused) {
            ok = false;
            break;
        }
        kb_ingest_ticker *k = &im->tickers[used[i]];
        k->elo = strtoll(PQgetvalue(r, row, 1), NULL, 10);
        k->ehi = strtoll(PQgetvalue(r, row, 2), NULL, 10);
    }
    if (!ok)
        kb_log_error("ingest: probing stored deltas failed");
    kb_buf_release(&t);
    kb_buf_release(&lo);
    kb_buf_release(&hi);
    return ok;
}

static bool
direct_stats(kb_ingest *im, const uint32_t *used, uint32_t nused)
{
    kb_buf t = KB_BUF_INIT, n = KB_BUF_INIT, lo = KB_BUF_INIT, hi = KB_BUF_INIT;
    for (uint32_t i = 0; i < nused; i++) {
        const kb_ingest_ticker *k = &im->tickers[used[i]];
        if (k->fast_n == 0)
            continue;
        kb__ingest_arr_str(&t, k->name, k->len);
        kb__ingest_arr_int(&n, k->fast_n);
        kb__ingest_arr_ts(&lo, k->fast_lo);
        kb__ingest_arr_ts(&hi, k->fast_hi);
    }
    const char *p[] = {kb__ingest_arr_end(&t), kb__ingest_arr_end(&n), kb__ingest_arr_end(&lo),
                       kb__ingest_arr_end(&hi)};
    bool ok = kb_db_exec(im->db, &im->arena, &direct_stats_stmt, p, NULL) == KB_OK;
    if (!ok)
        kb_log_error("ingest: updating market_stats failed");
    kb_buf_release(&t);
    kb_buf_release(&n);
    kb_buf_release(&lo);
    kb_buf_release(&hi);
    return ok;
}

typedef struct keyset {
    kb_ingest_delta *k; /* ticker, ts, sid, seq of the stored rows fetched */
    long n, cap;
    uint32_t *slot; /* open addressing: index + 1 */
    uint32_t nslot;
} keyset;

static bool
keyset_has(const keyset *ks, const kb_ingest_delta *d)
{
    if (ks->nslot == 0)
        return false;
    for (uint32_t h = (uint32_t)key_hash(d) & (ks->nslot - 1); ks->slot[h];
         h = (h + 1) & (ks->nslot - 1)) {
        if (same_key(&ks->k[ks->slot[h] - 1], d))
            return true;
    }
    return false;
}

/*
 * Fetch the stored keys within the span of the batch rows that fall inside
 * [elo, ehi] (a re-import, or a file overlapping stored data): those rows
 * are dropped when stored and sent directly otherwise. A ticker with more
 * stored rows there than 4x its rows (+64) is left to the staged route
 * (k->ehi stays, fast_n = -1 marks it), which bounds the work by the batch.
 */
static bool
fetch_keys(kb_ingest *im, const uint32_t *used, uint32_t nused, keyset *ks)
{
    kb_buf t = KB_BUF_INIT, lo = KB_BUF_INIT, hi = KB_BUF_INIT, lim = KB_BUF_INIT;
    uint32_t *which = kb_xmalloc(sizeof(*which) * (nused ? nused : 1));
    uint32_t nw = 0;
    for (uint32_t i = 0; i < nused; i++) {
        kb_ingest_ticker *k = &im->tickers[used[i]];
        if (k->elo > k->ehi || k->in_n == 0)
            continue;
        which[nw++] = used[i];
        kb__ingest_arr_str(&t, k->name, k->len);
        kb__ingest_arr_ts(&lo, k->in_lo);
        kb__ingest_arr_ts(&hi, k->in_hi);
        kb__ingest_arr_int(&lim, 4 * k->in_n + 64);
    }
    bool ok = true;
    if (nw > 0) {
        const char *p[] = {kb__ingest_arr_end(&t), kb__ingest_arr_end(&lo), kb__ingest_arr_end(&hi),
                           kb__ingest_arr_end(&lim)};
        PGresult *r = PQexecParams(im->db->conn, keys_sql, 4, NULL, p, NULL, NULL, 1);
        ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQnfields(r) == 4;
        int rows = ok ? PQntuples(r) : 0;
        long *got = kb_xcalloc(nw, sizeof(*got));
        ks->cap = rows > 0 ? rows : 1;
        ks->k = kb_xmalloc(sizeof(*ks->k) * (size_t)ks->cap);
        for (int row = 0; ok && row < rows; row++) {
            for (int col = 0; col < 4; col++)
                ok = ok && PQgetlength(r, row, col) == 8;
            long i = ok ? (long)get64(PQgetvalue(r, row, 0)) - 1 : -1;
            if (i < 0 || i >= (long)nw) {
                ok = false;
                break;
            }
            got[i]++;
            kb_ingest_delta *d = &ks->k[ks->n++];
            d->ticker = which[i];
            d->ts = (int64_t)get64(PQgetvalue(r, row, 1)) + PG_EPOCH_US;
            d->sid = (int64_t)get64(PQgetvalue(r, row, 2));
            d->seq = (int64_t)get64(PQgetvalue(r, row, 3));
        }
        PQclear(r);
        for (uint32_t i = 0; ok && i < nw; i++) {
            kb_ingest_ticker *k = &im->tickers[which[i]];
            k->overflow = got[i] >= 4 * k->in_n + 64;
        }
        free(got);
        ks->nslot = 1024;
        while (ks->nslot < 2 * (uint64_t)ks->n)
            ks->nslot *= 2;
        ks->slot = kb_xcalloc(ks->nslot, sizeof(*ks->slot));
        for (long i = 0; i < ks->n; i++) {
            uint32_t h = (uint32_t)key_hash(&ks->k[i]) & (ks->nslot - 1);
            while (ks->slot[h])
                h = (h + 1) & (ks->nslot - 1);
            ks->slot[h] = (uint32_t)i + 1;
        }
    }
    if (!ok)
        kb_log_error("ingest: reading stored delta keys failed: %s", PQerrorMessage(im->db->conn));
    free(which);
    kb_buf_release(&t);
    kb_buf_release(&lo);
    kb_buf_release(&hi);
    kb_buf_release(&lim);
    return ok;
}

bool
kb__ingest_deltas_prepare(kb_ingest *im, kb_buf *direct, kb_buf *staged, long *ndirect,
                          long *nstaged)
{
    *ndirect = *nstaged = 0;
    if (im->ndeltas == 0)
        return true;
    /* the batch's tickers and their spans */
    uint32_t *used = kb_xmalloc(sizeof(*used) * (size_t)(im->ntickers ? im->ntickers : 1));
    uint32_t nused = 0;
    for (uint32_t i = 0; i < im->ntickers; i++)
        im->tickers[i].n = 0;
    for (long i = 0; i < im->ndeltas; i++) {
        const kb_ingest_delta *d = &im->deltas[i];
        kb_ingest_ticker *k = &im->tickers[d->ticker];
        if (k->n++ == 0) {
            used[nused++] = d->ticker;
            k->lo = k->hi = d->ts;
            k->elo = INT64_MAX;
            k->ehi = INT64_MIN;
            k->fast_n = 0;
            k->in_n = 0;
            k->overflow = false;
            k->fast_lo = INT64_MAX;
            k->fast_hi = INT64_MIN;
        }
        k->lo = d->ts < k->lo ? d->ts : k->lo;
        k->hi = d->ts > k->hi ? d->ts : k->hi;
    }
    bool ok = probe(im, used, nused);
    for (long i = 0; ok && i < im->ndeltas; i++) { /* the rows inside stored spans */
        const kb_ingest_delta *d = &im->deltas[i];
        kb_ingest_ticker *k = &im->tickers[d->ticker];
        if (d->ts < k->elo || d->ts > k->ehi)
            continue;
        if (k->in_n++ == 0)
            k->in_lo = k->in_hi = d->ts;
        k->in_lo = d->ts < k->in_lo ? d->ts : k->in_lo;
        k->in_hi = d->ts > k->in_hi ? d->ts : k->in_hi;
    }
    keyset ks = {0};
    ok = ok && fetch_keys(im, used, nused, &ks);
    uint32_t cap = 1024;
    while (cap < 2 * (uint64_t)im->ndeltas)
        cap *= 2;
    uint32_t *slot = ok ? kb_xcalloc(cap, sizeof(*slot)) : NULL;
    uint32_t *order = kb_xmalloc(sizeof(*order) * (size_t)im->ndeltas);
    for (long i = 0; ok && i < im->ndeltas; i++) {
        const kb_ingest_delta *d = &im->deltas[i];
        kb_ingest_ticker *k = &im->tickers[d->ticker];
        if (d->ts >= k->elo && d->ts <= k->ehi && keyset_has(&ks, d))
            continue; /* stored already */
        if (d->ts >= k->elo && d->ts <= k->ehi && k->overflow) {
            if (*nstaged == 0)
                copy_header(staged);
            put_row(staged, im, d, true);
            (*nstaged)++;
            continue;
        }
        uint32_t h = (uint32_t)key_hash(d) & (cap - 1);
        bool repeat = false;
        for (; slot[h]; h = (h + 1) & (cap - 1)) {
            if (same_key(&im->deltas[slot[h] - 1], d)) {
                repeat = true;
                break;
            }
        }
        if (repeat)
            continue;
        slot[h] = (uint32_t)i + 1;
        order[(*ndirect)++] = (uint32_t)i;
        k->fast_n++;
        k->fast_lo = d->ts < k->fast_lo ? d->ts : k->fast_lo;
        k->fast_hi = d->ts > k->fast_hi ? d->ts : k->fast_hi;
    }
    if (*nstaged)
        copy_trailer(staged);
    if (ok && *ndirect) {
        /* Grouped by ticker (file order within each): each market's index entries and
         * heap rows end up together, which the index inserts and later range scans like. */
        long *start = kb_xcalloc(nused + 1, sizeof(*start));
        for (uint32_t u = 0; u < nused; u++)
            start[u + 1] = start[u] + im->tickers[used[u]].fast_n;
        for (uint32_t u = 0; u < nused; u++)
            im->tickers[used[u]].n = start[u]; /* reused as the write position */
        uint32_t *grouped = kb_xmalloc(sizeof(*grouped) * (size_t)*ndirect);
        for (long j = 0; j < *ndirect; j++)
            grouped[im->tickers[im->deltas[order[j]].ticker].n++] = order[j];
        copy_header(direct);
        for (long j = 0; j < *ndirect; j++) {
            put_row(direct, im, &im->deltas[grouped[j]], false);
            keep(im, &im->deltas[grouped[j]]);
        }
        copy_trailer(direct);
        free(grouped);
        free(start);
    }
    /* Counted before the rows arrive: same transaction, so both or neither commit. */
    if (ok && *ndirect)
        ok = direct_stats(im, used, nused);
    free(slot);
    free(order);
    free(used);
    free(ks.k);
    free(ks.slot);
    return ok;
}
