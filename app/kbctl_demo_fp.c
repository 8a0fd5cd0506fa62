/* kbctl_demo_fp.c - kbctl demo-data's markets in Kalshi's 2026 fixed-point form.
 *
 * Even markets are tapered_deci_cent (whole contracts, the YES side quoted in
 * $0.001 ticks between 3 and 7 cents, so the NO side sits above $0.90, also
 * in $0.001 ticks); odd markets are linear_cent with
 * fractional_trading_enabled (quantities in 1/100 contract). Every line uses
 * the new fields only: yes_dollars_fp / no_dollars_fp snapshots,
 * price_dollars + delta_fp deltas, yes_price_dollars / no_price_dollars /
 * count_fp trades, with ts (seconds) beside ts_ms. The book is simulated
 * exactly as for the legacy markets (levels >= 0, snapshots = the book, a
 * trade consumes the best bid with a matching delta, never crossed), in
 * integers: prices in 1/10,000 dollar, quantities in 1/100 contract.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbctl.h"
#include "kbctl_demo.h"
#include "kb_arena.h"
#include "kb_fixed.h"
#include "kb_time.h"
#include "kb_banned.h"

#define SERIES "KXRAINNYCM"
#define EVENT "KXRAINNYCM-26JAN"

typedef struct fp_market {
    char ticker[64];
    bool tapered;
    long sid, seq, trade_no;
    int64_t *book[2]; /* [0] yes, [1] no: quantity per price, KB_PRICE_DOLLAR entries */
    int32_t mid;      /* yes mid, 1/10,000 $ */
} fp_market;

/* The tick below price p: $0.001 under $0.10 and above $0.90 on tapered markets, else $0.01. */
static int32_t
tick_below(const fp_market *m, int32_t p)
{
    return m->tapered && (p <= 1000 || p > 9000) ? 10 : 100;
}

static const char *
dollars(int64_t price, char *b)
{
    kb_fixed_format(price, KB_PRICE_SCALE, b);
    return b;
}

static const char *
fp(int64_t qty, char *b)
{
    kb_fixed_format(qty, KB_QTY_SCALE, b);
    return b;
}

static void
meta_lines(FILE *f, const fp_market *m, long n, const demo_opts *o)
{
    char start[KB_TIME_FMT_MAX], end[KB_TIME_FMT_MAX];
    kb_time_format(o->end_us - ((int64_t)o->days + 1) * 86400 * 1000000, start, sizeof(start));
    kb_time_format(o->end_us, end, sizeof(end));
    fprintf(f, "{\"series\":{\"ticker\":\"" SERIES "\",\"title\":\"Rain in NYC this month\","
               "\"frequency\":\"monthly\",\"category\":\"Climate and Weather\",\"tags\":"
               "[\"Climate and Weather\",\"demo\"],\"settlement_sources\":[{\"name\":"
               "\"Demo source\",\"url\":\"https://example.com/" SERIES "\"}]}}\n");
    fprintf(f,
            "{\"event\":{\"event_ticker\":\"" EVENT "\",\"series_ticker\":\"" SERIES "\","
            "\"title\":\"Inches of rain in NYC in January?\",\"sub_title\":\"Jan 2026\","
            "\"category\":\"Climate and Weather\",\"mutually_exclusive\":false,\"status\":"
            "\"open\",\"strike_date\":\"%s\",\"strike_period\":\"monthly\"}}\n",
            end);
    for (long i = 0; i < n; i++) {
        fprintf(f,
                "{\"market\":{\"ticker\":\"%s\",\"event_ticker\":\"" EVENT "\",\"series_ticker\":"
                "\"" SERIES "\",\"title\":\"Rain in NYC in January (%s)\",\"status\":\"active\","
                "\"category\":\"Climate and Weather\",\"rules_primary\":\"If more than %ld inches "
                "of rain fall in Central Park in January 2026, the market resolves to Yes.\","
                "\"floor_strike\":%ld,\"created_time\":\"%s\",\"open_time\":\"%s\","
                "\"close_time\":\"%s\",\"market_type\":\"binary\",\"price_level_structure\":"
                "\"%s\",\"price_ranges\":%s,\"fractional_trading_enabled\":%s,"
                "\"notional_value_dollars\":\"1.0000\"}}\n",
                m[i].ticker, m[i].ticker, 2 + i, 2 + i, start, start, end,
                m[i].tapered ? "tapered_deci_cent" : "linear_cent",
                m[i].tapered ? "[{\"start\":\"0.0000\",\"end\":\"0.1000\",\"step\":\"0.0010\"},"
                               "{\"start\":\"0.1000\",\"end\":\"0.9000\",\"step\":\"0.0100\"},"
                               "{\"start\":\"0.9000\",\"end\":\"1.0000\",\"step\":\"0.0010\"}]"
                             : "[{\"start\":\"0.0000\",\"end\":\"1.0000\",\"step\":\"0.0100\"}]",
                m[i].tapered ? "false" : "true");
    }
}

/* One orderbook_delta line and the book change it describes (levels never go below 0). */
static void
emit_delta(FILE *f, fp_market *m, int64_t ms, int side, int32_t price, int64_t amount)
{
    int64_t *lv = &m->book[side][price];
    if (*lv + amount < 0)
        amount = -*lv;
    if (amount == 0)
        return;
    *lv += amount;
    char p[KB_FIXED_FMT_MAX], q[KB_FIXED_FMT_MAX];
    fprintf(f,
            "{\"type\":\"orderbook_delta\",\"sid\":%ld,\"seq\":%ld,\"msg\":{\"market_ticker\":"
            "\"%s\",\"price_dollars\":\"%s\",\"delta_fp\":\"%s\",\"side\":\"%s\",\"ts\":%" PRId64
            ",\"ts_ms\":%" PRId64 "}}\n",
            m->sid, ++m->seq, m->ticker, dollars(price, p), fp(amount, q), side ? "no" : "yes",
            ms / 1000, ms);
}

static void
emit_snapshot(FILE *f, fp_market *m, int64_t ms)
{
    fprintf(f,
            "{\"type\":\"orderbook_snapshot\",\"sid\":%ld,\"seq\":%ld,\"msg\":{"
            "\"market_ticker\":\"%s\",",
            m->sid, ++m->seq, m->ticker);
    for (int side = 0; side < 2; side++) {
        fputs(side ? "],\"no_dollars_fp\":[" : "\"yes_dollars_fp\":[", f);
        bool first = true;
        for (int32_t p = 1; p < KB_PRICE_DOLLAR; p++) {
            if (m->book[side][p] > 0) {
                char a[KB_FIXED_FMT_MAX], b[KB_FIXED_FMT_MAX];
                fprintf(f, "%s[\"%s\",\"%s\"]", first ? "" : ",", dollars(p, a),
                        fp(m->book[side][p], b));
                first = false;
            }
        }
    }
    fprintf(f, "],\"ts\":%" PRId64 ",\"ts_ms\":%" PRId64 "}}\n", ms / 1000, ms);
}

/* A price k ticks below the top of a side (yes bids below mid, no bids below 1 - mid). */
static int32_t
near_top(kb_demo_rng *r, const fp_market *m, int side)
{
    int32_t p = side == 0 ? m->mid : KB_PRICE_DOLLAR - m->mid;
    for (long k = 1 + kb_demo_below(r, 8); k > 0 && p > 100; k--)
        p -= tick_below(m, p);
    return p;
}

static int64_t
some_quantity(kb_demo_rng *r, const fp_market *m, long max_contracts)
{
    if (m->tapered)
        return (1 + kb_demo_below(r, max_contracts)) * KB_QTY_PER_CONTRACT;
    return 1 + kb_demo_below(r, max_contracts * KB_QTY_PER_CONTRACT);
}

static int32_t
best(const fp_market *m, int side)
{
    for (int32_t p = KB_PRICE_DOLLAR - 1; p >= 1; p--) {
        if (m->book[side][p] > 0)
            return p;
    }
    return 0;
}

/* A taker hits the best bid on one side: a trade line plus the matching delta. */
static void
emit_trade(FILE *f, kb_demo_rng *r, fp_market *m, int64_t ms)
{
    int side = (int)kb_demo_below(r, 2); /* 0: a NO taker sells into YES bids */
    int32_t p = best(m, side);
    if (p == 0)
        return;
    int64_t level = m->book[side][p], cap = 50 * KB_QTY_PER_CONTRACT;
    int64_t count = some_quantity(r, m, (level < cap ? level : cap) / KB_QTY_PER_CONTRACT + 1);
    if (count > level)
        count = level;
    int32_t yes = side == 0 ? p : KB_PRICE_DOLLAR - p;
    char y[KB_FIXED_FMT_MAX], n[KB_FIXED_FMT_MAX], c[KB_FIXED_FMT_MAX];
    long no_ = ++m->trade_no;
    fprintf(f,
            "{\"type\":\"trade\",\"sid\":%ld,\"seq\":%ld,\"msg\":{\"trade_id\":\"demo-%s-%ld\","
            "\"market_ticker\":\"%s\",\"yes_price_dollars\":\"%s\",\"no_price_dollars\":\"%s\","
            "\"count_fp\":\"%s\",\"taker_side\":\"%s\",\"ts\":%" PRId64 ",\"ts_ms\":%" PRId64
            "}}\n",
            m->sid + 1000, no_, m->ticker, no_, m->ticker, dollars(yes, y),
            dollars(KB_PRICE_DOLLAR - yes, n), fp(count, c), side == 0 ? "no" : "yes", ms / 1000,
            ms);
    emit_delta(f, m, ms, side, p, -count);
}

/* Move the mid one tick and cancel the orders that would cross it. */
static void
walk_mid(FILE *f, kb_demo_rng *r, fp_market *m, int64_t ms)
{
    int32_t lo = m->tapered ? 300 : 2000, hi = m->tapered ? 700 : 8000;
    int32_t step = m->tapered ? 10 : 100, old = m->mid;
    m->mid += kb_demo_below(r, 2) ? step : -step;
    m->mid = m->mid < lo ? lo : (m->mid > hi ? hi : m->mid);
    /* Every YES bid is below the old mid and every NO bid below 1 - old mid: only the
     * prices between the old and the new bound can cross. */
    for (int32_t p = m->mid; p < old; p++)
        emit_delta(f, m, ms, 0, p, -m->book[0][p]);
    for (int32_t p = KB_PRICE_DOLLAR - m->mid; p < KB_PRICE_DOLLAR - old; p++)
        emit_delta(f, m, ms, 1, p, -m->book[1][p]);
}

static void
simulate(FILE *f, fp_market *m, long n, const demo_opts *o, kb_demo_rng *r)
{
    int64_t end_ms = o->end_us / 1000;
    int64_t start_ms = end_ms - (int64_t)o->days * 86400000;
    int64_t snap_ms = (int64_t)o->snap_minutes * 60000;
    for (long i = 0; i < n; i++) {
        fprintf(f,
                "{\"type\":\"market_lifecycle_v2\",\"sid\":%ld,\"seq\":1,\"msg\":{"
                "\"market_ticker\":\"%s\",\"event_ticker\":\"" EVENT "\",\"event_type\":"
                "\"activated\",\"ts\":%" PRId64 "}}\n",
                m[i].sid + 2000, m[i].ticker, start_ms / 1000);
        emit_snapshot(f, &m[i], start_ms);
    }
    long deltas = o->deltas_per_hour * o->snap_minutes / 60;
    long trades = o->trades_per_hour * o->snap_minutes / 60;
    if (deltas < 1)
        deltas = 1;
    for (int64_t t = start_ms; t < end_ms; t += snap_ms) {
        for (long i = 0; i < n; i++) {
            fp_market *mk = &m[i];
            long events_n = deltas + trades;
            for (long k = 0; k < events_n; k++) {
                int64_t ts = t + 1 + (snap_ms - 2) * k / events_n + kb_demo_below(r, 5);
                if (k % (deltas / (trades ? trades : 1) + 1) == 0 && trades > 0) {
                    emit_trade(f, r, mk, ts);
                    continue;
                }
                if (kb_demo_below(r, 20) == 0)
                    walk_mid(f, r, mk, ts);
                int side = (int)kb_demo_below(r, 2);
                int32_t p = near_top(r, mk, side);
                int64_t amount = kb_demo_below(r, 3) == 0 ? -some_quantity(r, mk, 200)
                                                          : some_quantity(r, mk, 150);
                emit_delta(f, mk, ts, side, p, amount);
            }
            if (t + snap_ms <= end_ms)
                emit_snapshot(f, mk, t + snap_ms);
        }
    }
}

void
kb_demo_fp(FILE *f, const demo_opts *o)
{
    long n = o->fp_markets;
    if (n <= 0)
        return;
    kb_demo_rng r = {o->seed ^ 0xD1B54A32D192ED03ULL};
    fp_market *m = kb_xcalloc((size_t)n, sizeof(*m));
    for (long i = 0; i < n; i++) {
        snprintf(m[i].ticker, sizeof(m[i].ticker), EVENT "-T%ld", 2 + i);
        m[i].tapered = i % 2 == 0;
        m[i].sid = 900 + i;
        m[i].mid = m[i].tapered ? 450 : 5000;
        for (int s = 0; s < 2; s++)
            m[i].book[s] = kb_xcalloc(KB_PRICE_DOLLAR, sizeof(*m[i].book[s]));
        for (int k = 0; k < 8; k++) {
            for (int s = 0; s < 2; s++)
                m[i].book[s][near_top(&r, &m[i], s)] += some_quantity(&r, &m[i], 400);
        }
    }
    meta_lines(f, m, n, o);
    simulate(f, m, n, o, &r);
    for (long i = 0; i < n; i++) {
        free(m[i].book[0]);
        free(m[i].book[1]);
    }
    free(m);
}
