/* feed.c - the stand-in's markets and their true books: deterministic generation of
 * deltas, trades and lifecycle events, the truth log, message bodies.
 *
 * Truth log lines (text, space-separated; prices in 1/10,000 dollar, quantities in
 * 1/100 contract, times in ms):
 *   M idx ticker ts          a market exists from ts (its L lines follow, same ts)
 *   L idx ts side price qty  a level of its initial book
 *   D idx ts side price d    a change of the book (signed)
 *   C idx ts                 the market closed (no change follows)
 * Replaying every line with ts <= T gives the book of each market at T.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "standin.h"
#include "kb_time.h"
#include "kb_banned.h"

static const char *const series[] = {"KXSIBTC", "KXSIFED", "KXSIRAIN", "KXSICPI", "KXSINBA"};

static const char *const structure_name[] = {"linear_cent", "tapered_deci_cent", "deci_cent"};

void
si_dollars(kb_buf *b, int64_t p)
{
    if (p < 0) {
        kb_buf_putc(b, '-');
        p = -p;
    }
    kb_buf_printf(b, "%" PRId64 ".%04" PRId64, p / 10000, p % 10000);
}

void
si_fp(kb_buf *b, int64_t q)
{
    if (q < 0) {
        kb_buf_putc(b, '-');
        q = -q;
    }
    kb_buf_printf(b, "%" PRId64 ".%02" PRId64, q / 100, q % 100);
}

/* Whether price index i is on m's tick grid. */
static bool
on_grid(const si_market *m, int i)
{
    if (i < 1 || i >= SI_LEVELS)
        return false;
    switch (m->st) {
    case ST_LINEAR_CENT:
        return i % 10 == 0;
    case ST_TAPERED_DECI_CENT:
        return i < 100 || i > 900 || i % 10 == 0;
    default:
        return true;
    }
}

/* The k-th grid price at or below i (at least the lowest grid price). */
static int
grid_down(const si_market *m, int i, int k)
{
    int p = i;
    while (p > 1 && !on_grid(m, p))
        p--;
    for (int n = 0; n < k; n++) {
        int q = p - 1;
        while (q > 1 && !on_grid(m, q))
            q--;
        if (!on_grid(m, q))
            break;
        p = q;
    }
    return on_grid(m, p) ? p : (m->st == ST_LINEAR_CENT ? 10 : 1);
}

static void truth(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
truth(const char *fmt, ...)
{
    if (S.truth == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    kb_buf_vprintf(&S.truthbuf, fmt, ap);
    va_end(ap);
    if (S.truthbuf.len > (1u << 20))
        si_truth_flush();
}

void
si_truth_flush(void)
{
    if (S.truth == NULL || S.truthbuf.len == 0)
        return;
    fwrite(S.truthbuf.buf, 1, S.truthbuf.len, S.truth);
    fflush(S.truth);
    kb_buf_reset(&S.truthbuf);
}

static int64_t
qty_unit(const si_market *m)
{
    /* Fractional markets move by cents of a contract, the others by whole contracts. */
    return m->fractional ? (int64_t)(1 + si_rand() % 5000) : (int64_t)(100 * (1 + si_rand() % 200));
}

static si_market *
market_new(int idx, int subpenny, int fractional, int big, int64_t now)
{
    if (S.nm == S.capm) {
        S.capm = S.capm ? S.capm * 2 : 64;
        S.m = realloc(S.m, sizeof(*S.m) * (size_t)S.capm);
        if (S.m == NULL)
            abort();
    }
    si_market *m = &S.m[S.nm];
    memset(m, 0, sizeof(*m));
    const char *s = series[idx % 5];
    snprintf(m->event, sizeof(m->event), "%s-26DEC%02d", s, idx / 5 % 28 + 1);
    snprintf(m->ticker, sizeof(m->ticker), "%s-T%05d", m->event, idx);
    int r = (int)(si_rand() % 100);
    m->st = r < subpenny ? (r % 2 ? ST_TAPERED_DECI_CENT : ST_DECI_CENT) : ST_LINEAR_CENT;
    m->fractional = (int)(si_rand() % 100) < fractional;
    m->legacy = m->st == ST_LINEAR_CENT && !m->fractional && si_rand() % 2 == 0;
    m->big = big > 0;
    m->status = MK_OPEN;
    m->mid = grid_down(m, 150 + (int)(si_rand() % 700), 0);
    m->open_ms = now;
    m->close_ms = now + 86400000LL * 30;
    int n = S.nm++;
    truth("M %d %s %" PRId64 "\n", n, m->ticker, now);
    /* Initial book: a few levels below the mid on YES and below (1 - mid) on NO. */
    for (int k = 0; k < 8; k++) {
        int py = grid_down(m, m->mid - 1, k * 2), pn = grid_down(m, SI_LEVELS - m->mid - 1, k * 2);
        int64_t qy = qty_unit(m), qn = qty_unit(m);
        if (m->yes[py] == 0) {
            m->yes[py] = (int32_t)qy;
            truth("L %d %" PRId64 " y %d %" PRId64 "\n", n, now, py * 10, qy);
        }
        if (m->no[pn] == 0) {
            m->no[pn] = (int32_t)qn;
            truth("L %d %" PRId64 " n %d %" PRId64 "\n", n, now, pn * 10, qn);
        }
    }
    return m;
}

void
si_feed_init(int markets, int subpenny, int fractional, int big)
{
    int64_t now = si_now_ms();
    for (int i = 0; i < markets; i++)
        market_new(i, subpenny, fractional, i < big, now);
    S.next_market_no = markets;
}

si_market *
si_market_find(const char *ticker, size_t len)
{
    /* Tickers end in -T<index>: O(1) lookup, verified by the full name. */
    const char *t = len > 6 ? ticker + len - 6 : NULL;
    if (t != NULL && t[0] == 'T') {
        int idx = 0;
        for (int i = 1; i < 6; i++) {
            if (t[i] < '0' || t[i] > '9')
                return NULL;
            idx = idx * 10 + (t[i] - '0');
        }
        if (idx < S.nm && strlen(S.m[idx].ticker) == len &&
            memcmp(S.m[idx].ticker, ticker, len) == 0)
            return &S.m[idx];
    }
    return NULL;
}

static void
market_fields(const si_market *m, kb_buf *b)
{
    kb_buf_printf(b, "\"market_ticker\":\"%s\",\"market_id\":\"00000000-0000-4000-8000-%012d\"",
                  m->ticker, (int)(m - S.m));
}

static void
levels(const si_market *m, kb_buf *b, bool yes_side, bool use_yes_price, bool legacy)
{
    const int32_t *lv = yes_side ? m->yes : m->no;
    bool first = true;
    for (int i = 1; i < SI_LEVELS; i++) {
        if (lv[i] <= 0)
            continue;
        int64_t p = (int64_t)i * 10;
        if (!yes_side && use_yes_price)
            p = 10000 - p;
        kb_buf_puts(b, first ? "[" : ",[");
        first = false;
        if (legacy) {
            kb_buf_printf(b, "%" PRId64 ",%" PRId32 "]", p / 100, lv[i] / 100);
        } else {
            kb_buf_putc(b, '"');
            si_dollars(b, p);
            kb_buf_puts(b, "\",\"");
            si_fp(b, lv[i]);
            kb_buf_puts(b, "\"]");
        }
    }
}

void
si_feed_snapshot_body(si_market *m, kb_buf *b, bool use_yes_price, int64_t *ts_out)
{
    /* At or after every delta it contains; every later delta comes strictly after it. */
    int64_t ts = si_now_ms();
    if (ts < S.last_ts)
        ts = S.last_ts;
    S.last_ts = S.snap_ts = ts;
    *ts_out = ts;
    kb_buf_putc(b, '{');
    market_fields(m, b);
    /* Kalshi leaves out a side without levels. */
    bool any_yes = false, any_no = false;
    for (int i = 1; i < SI_LEVELS; i++) {
        any_yes = any_yes || m->yes[i] > 0;
        any_no = any_no || m->no[i] > 0;
    }
    if (any_yes) {
        kb_buf_puts(b, ",\"yes_dollars_fp\":[");
        levels(m, b, true, use_yes_price, false);
        kb_buf_putc(b, ']');
    }
    if (any_no) {
        kb_buf_puts(b, ",\"no_dollars_fp\":[");
        levels(m, b, false, use_yes_price, false);
        kb_buf_putc(b, ']');
    }
    if (m->legacy) {
        kb_buf_puts(b, ",\"yes\":[");
        levels(m, b, true, use_yes_price, true);
        kb_buf_puts(b, "],\"no\":[");
        levels(m, b, false, use_yes_price, true);
        kb_buf_putc(b, ']');
    }
    if (m->big) {
        /* A multi-MB frame: per-order detail Kalshi does not send, which a client must
         * carry through (and ignore) like any unknown member. */
        kb_buf_puts(b, ",\"orders\":[");
        for (int i = 0; i < 60000; i++)
            kb_buf_printf(b,
                          "%s{\"id\":\"o%07d\",\"price_dollars\":\"0.5000\",\"count_fp\":\"1.00\"}",
                          i ? "," : "", i);
        kb_buf_putc(b, ']');
    }
    kb_buf_printf(b, ",\"ts_ms\":%" PRId64 "}", ts);
}

/* Every subscription (of channel ch) that receives m's messages. */
static void
fanout(si_market *m, si_channel ch, const char *type, const kb_buf *body, const kb_buf *body_yes)
{
    for (int i = 0; i < m->nsubs; i++) {
        si_sub *s = m->subs[i];
        if (s->ch != ch)
            continue;
        const kb_buf *b = s->use_yes_price && body_yes != NULL ? body_yes : body;
        si_ws_send(s, type, b->buf, b->len);
    }
    for (int c = 0; c < S.nconns; c++) {
        si_conn *k = S.conns[c];
        for (int i = 0; i < k->nsubs; i++) {
            si_sub *s = k->subs[i];
            if (s->all && s->ch == ch)
                si_ws_send(s, type, body->buf, body->len);
        }
    }
}

/*
 * One exchange clock for every market: times never go back in the order messages
 * are made (so a subscription's seq and ts grow together, whatever markets it
 * mixes), and an event after a snapshot is strictly later than it. The clock runs
 * ahead of the wall clock by 1 ms at most, right after snapshots.
 */
static int64_t
event_ts(void)
{
    int64_t ts = si_now_ms();
    if (ts < S.last_ts)
        ts = S.last_ts;
    if (ts <= S.snap_ts)
        ts = S.snap_ts + 1;
    S.last_ts = ts;
    return ts;
}

static void
delta_body(si_market *m, kb_buf *b, bool yes, int price, int64_t d, int64_t ts, bool use_yes)
{
    int64_t p = (int64_t)price;
    if (!yes && use_yes)
        p = 10000 - p;
    kb_buf_putc(b, '{');
    market_fields(m, b);
    kb_buf_puts(b, ",\"price_dollars\":\"");
    si_dollars(b, p);
    kb_buf_puts(b, "\",\"delta_fp\":\"");
    si_fp(b, d);
    kb_buf_printf(b, "\",\"side\":\"%s\"", yes ? "yes" : "no");
    if (m->legacy)
        kb_buf_printf(b, ",\"price\":%" PRId64 ",\"delta\":%" PRId64, p / 100, d / 100);
    kb_buf_printf(b, ",\"ts_ms\":%" PRId64 "}", ts);
}

static void
one_delta(si_market *m)
{
    bool yes = si_rand() % 2 == 0;
    int base = yes ? m->mid - 1 : SI_LEVELS - m->mid - 1;
    int idx = grid_down(m, base, (int)(si_rand() % 16));
    int32_t *lv = yes ? m->yes : m->no;
    int64_t d = qty_unit(m);
    if (lv[idx] > 0 && si_rand() % 100 < 45)
        d = -(d < lv[idx] ? d : lv[idx]);
    lv[idx] += (int32_t)d;
    int64_t ts = event_ts();
    int mi = (int)(m - S.m);
    truth("D %d %" PRId64 " %c %d %" PRId64 "\n", mi, ts, yes ? 'y' : 'n', idx * 10, d);
    if (m->nsubs == 0)
        return;
    kb_buf b = KB_BUF_INIT, by = KB_BUF_INIT;
    delta_body(m, &b, yes, idx * 10, d, ts, false);
    if (!yes)
        delta_body(m, &by, yes, idx * 10, d, ts, true);
    fanout(m, CH_ORDERBOOK, "orderbook_delta", &b, yes ? NULL : &by);
    kb_buf_release(&b);
    kb_buf_release(&by);
}

static void
one_trade(si_market *m)
{
    static uint64_t trade_no;
    int64_t ts = event_ts();
    int64_t yes_p = (int64_t)grid_down(m, m->mid, (int)(si_rand() % 3)) * 10;
    int64_t count = qty_unit(m);
    bool any = m->nsubs > 0;
    for (int c = 0; c < S.nconns && !any; c++) {
        for (int i = 0; i < S.conns[c]->nsubs; i++)
            any = any || (S.conns[c]->subs[i]->all && S.conns[c]->subs[i]->ch == CH_TRADE);
    }
    trade_no++;
    if (!any)
        return;
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b, "{\"trade_id\":\"5a1e0000-0000-4000-8000-%012" PRIu64 "\",", trade_no);
    market_fields(m, &b);
    kb_buf_puts(&b, ",\"yes_price_dollars\":\"");
    si_dollars(&b, yes_p);
    kb_buf_puts(&b, "\",\"no_price_dollars\":\"");
    si_dollars(&b, 10000 - yes_p);
    kb_buf_puts(&b, "\",\"count_fp\":\"");
    si_fp(&b, count);
    kb_buf_printf(&b, "\",\"taker_side\":\"%s\"", si_rand() % 2 ? "yes" : "no");
    if (m->legacy)
        kb_buf_printf(&b, ",\"yes_price\":%" PRId64 ",\"no_price\":%" PRId64 ",\"count\":%" PRId64,
                      yes_p / 100, (10000 - yes_p) / 100, count / 100);
    kb_buf_printf(&b, ",\"ts\":%" PRId64 ",\"ts_ms\":%" PRId64 "}", ts / 1000, ts);
    fanout(m, CH_TRADE, "trade", &b, NULL);
    kb_buf_release(&b);
}

/* Open markets, by index, for picking one at random. */
static int *open_idx;
static int nopen, capopen;
static bool open_dirty = true;

static void
refresh_open(void)
{
    if (!open_dirty)
        return;
    nopen = 0;
    for (int i = 0; i < S.nm; i++) {
        if (S.m[i].status != MK_OPEN)
            continue;
        if (nopen == capopen) {
            capopen = capopen ? capopen * 2 : 64;
            open_idx = realloc(open_idx, sizeof(*open_idx) * (size_t)capopen);
            if (open_idx == NULL)
                abort();
        }
        open_idx[nopen++] = i;
    }
    open_dirty = false;
}

void
si_feed_tick(void)
{
    if (!S.running || S.mps <= 0) {
        S.t0_us = si_mono_us();
        S.generated = 0;
        return;
    }
    refresh_open();
    if (nopen == 0)
        return;
    int64_t el = si_mono_us() - S.t0_us;
    int64_t due = el * S.mps / 1000000 - S.generated;
    /* A loop turn that fell far behind does not burst: the shortfall is dropped. */
    if (due > S.mps / 10 + 100) {
        S.generated += due - (S.mps / 10 + 100);
        due = S.mps / 10 + 100;
    }
    for (int64_t i = 0; i < due; i++) {
        si_market *m = &S.m[open_idx[si_rand() % (uint64_t)nopen]];
        if ((int)(si_rand() % 1000) < S.trade_permille)
            one_trade(m);
        else
            one_delta(m);
    }
    S.generated += due;
}

/* ---- lifecycle ----------------------------------------------------------------------- */

void
si_market_json(const si_market *m, kb_buf *b)
{
    char open_s[KB_TIME_FMT_MAX], close_s[KB_TIME_FMT_MAX];
    kb_time_format(m->open_ms * 1000, open_s, sizeof(open_s));
    kb_time_format(m->close_ms * 1000, close_s, sizeof(close_s));
    static const char *const status[] = {"active", "inactive", "settled"};
    kb_buf_printf(b,
                  "{\"ticker\":\"%s\",\"event_ticker\":\"%s\",\"market_type\":\"binary\","
                  "\"title\":\"Stand-in market %d\",\"status\":\"%s\",\"open_time\":\"%s\","
                  "\"close_time\":\"%s\",\"price_level_structure\":\"%s\","
                  "\"fractional_trading_enabled\":%s,\"price_ranges\":",
                  m->ticker, m->event, (int)(m - S.m), status[m->status], open_s, close_s,
                  structure_name[m->st], m->fractional ? "true" : "false");
    switch (m->st) {
    case ST_LINEAR_CENT:
        kb_buf_puts(b, "[{\"start\":\"0.0000\",\"end\":\"1.0000\",\"step\":\"0.0100\"}]");
        break;
    case ST_TAPERED_DECI_CENT:
        kb_buf_puts(b, "[{\"start\":\"0.0000\",\"end\":\"0.1000\",\"step\":\"0.0010\"},"
                       "{\"start\":\"0.1000\",\"end\":\"0.9000\",\"step\":\"0.0100\"},"
                       "{\"start\":\"0.9000\",\"end\":\"1.0000\",\"step\":\"0.0010\"}]");
        break;
    default:
        kb_buf_puts(b, "[{\"start\":\"0.0000\",\"end\":\"1.0000\",\"step\":\"0.0010\"}]");
    }
    kb_buf_printf(b, ",\"result\":\"%s\"}", m->status == MK_CLOSED ? "yes" : "");
}

static void
lifecycle(si_market *m, const char *event_type, const char *extra)
{
    int64_t ts = si_now_ms();
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b,
                  "{\"market_ticker\":\"%s\",\"event_ticker\":\"%s\",\"event_type\":\"%s\","
                  "\"open_ts\":%" PRId64 ",\"close_ts\":%" PRId64 "%s%s,\"ts_ms\":%" PRId64,
                  m->ticker, m->event, event_type, m->open_ms / 1000, m->close_ms / 1000,
                  extra ? "," : "", extra ? extra : "", ts);
    if (strcmp(event_type, "created") == 0) {
        kb_buf_printf(&b,
                      ",\"additional_metadata\":{\"name\":\"Stand-in market %d\","
                      "\"title\":\"Stand-in market %d\",\"event_ticker\":\"%s\","
                      "\"price_level_structure\":\"%s\",\"fractional_trading_enabled\":%s}",
                      (int)(m - S.m), (int)(m - S.m), m->event, structure_name[m->st],
                      m->fractional ? "true" : "false");
    }
    kb_buf_putc(&b, '}');
    for (int c = 0; c < S.nconns; c++) {
        si_conn *k = S.conns[c];
        for (int i = 0; i < k->nsubs; i++) {
            si_sub *s = k->subs[i];
            if (s->ch == CH_LIFECYCLE && (s->all || si_sub_has(s, (int)(m - S.m))))
                si_ws_send(s, "market_lifecycle_v2", b.buf, b.len);
        }
    }
    kb_buf_release(&b);
}

void
si_feed_churn(int create, int quiet, int pause, int resume, int close)
{
    int64_t now = si_now_ms();
    for (int i = 0; i < create; i++) {
        si_market *m = market_new((int)S.next_market_no++, 25, 25, 0, now);
        lifecycle(m, "created", NULL);
        lifecycle(m, "activated", "\"is_deactivated\":false");
    }
    for (int i = 0; i < quiet; i++)
        market_new((int)S.next_market_no++, 25, 25, 0, now);
    for (int n = 0; n < pause + resume + close; n++) {
        bool want_paused = n >= pause && n < pause + resume;
        /* A random market in the state the action needs (a bounded search). */
        si_market *m = NULL;
        for (int tries = 0; tries < 4 * S.nm && m == NULL; tries++) {
            si_market *c = &S.m[si_rand() % (uint64_t)S.nm];
            if (want_paused ? c->status == MK_PAUSED : c->status == MK_OPEN)
                m = c;
        }
        if (m == NULL)
            continue;
        char extra[128];
        if (n < pause) {
            m->status = MK_PAUSED;
            lifecycle(m, "deactivated", "\"is_deactivated\":true");
        } else if (want_paused) {
            m->status = MK_OPEN;
            lifecycle(m, "activated", "\"is_deactivated\":false");
        } else {
            m->status = MK_CLOSED;
            m->close_ms = now;
            snprintf(extra, sizeof(extra), "\"result\":\"yes\",\"determination_ts\":%" PRId64,
                     now / 1000);
            lifecycle(m, "determined", extra);
            snprintf(extra, sizeof(extra), "\"settled_ts\":%" PRId64, now / 1000);
            lifecycle(m, "settled", extra);
            truth("C %d %" PRId64 "\n", (int)(m - S.m), event_ts());
        }
    }
    open_dirty = true;
}
