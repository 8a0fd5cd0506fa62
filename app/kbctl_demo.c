/* kbctl_demo.c - `kbctl demo-data`: a deterministic, realistic market data set.
 *
 * Writes Kalshi-format JSON lines (the same formats kbctl import reads:
 * series, events and markets as REST objects, lifecycle, snapshots, deltas,
 * trades) and imports them, or only writes them with --out. The same flags
 * always give the same bytes (xorshift64* seeded by --seed; no clock).
 * The book is simulated: deltas keep every level >= 0, snapshots are the
 * exact book after all earlier deltas, and every trade consumes resting
 * quantity at the best bid with a matching delta, so the data is consistent.
 *
 * Two kinds of market: --markets in Kalshi's legacy integer form (cents,
 * whole contracts), and after them --fp-markets in the 2026 fixed-point form
 * (kbctl_demo_fp.c): a tapered_deci_cent market quoted in $0.001 ticks near
 * 5 cents and a fractional-trading market with counts in 1/100 contract.
 * The fixed-point markets draw from their own random stream and are written
 * after every legacy line, so the legacy part of the output does not depend
 * on them (test_data_migration compares it with the pre-fixed-point bytes).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kbctl.h"
#include "kbctl_demo.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

uint64_t
kb_demo_next(kb_demo_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}

long
kb_demo_below(kb_demo_rng *r, long n)
{
    return (long)(kb_demo_next(r) % (uint64_t)n);
}

typedef kb_demo_rng rng;

static long
below(rng *r, long n)
{
    return kb_demo_below(r, n);
}

typedef struct event_def {
    const char *series, *series_title, *category, *frequency, *event, *title, *sub_title;
    bool settled; /* determined at the end of the window */
    int strike0, strike_step;
} event_def;

static const event_def events[] = {
    {"KXBTCD", "Bitcoin daily close", "Crypto", "daily", "KXBTCD-26JAN15",
     "Bitcoin price on Jan 15, 2026?", "Jan 15, 5pm EST", false, 94000, 500},
    {"KXFED", "Fed funds rate", "Economics", "monthly", "KXFED-26JAN", "Fed rate after January?",
     "Jan 2026 meeting", true, 300, 25},
    {"KXHIGHNY", "Highest temperature in NYC", "Climate and Weather", "daily", "KXHIGHNY-26JAN14",
     "Highest temperature in NYC on Jan 14?", "Jan 14, 2026", true, 30, 2},
    {"KXNBAGAME", "NBA game winner", "Sports", "custom", "KXNBAGAME-26JAN15BOSNYK",
     "Celtics vs Knicks winner?", "Jan 15, 2026", false, 0, 0},
};
#define NEVENTS (sizeof(events) / sizeof(events[0]))

typedef struct market {
    char ticker[64];
    const event_def *ev;
    int strike;
    long sid, seq;
    long yes[100], no[100];
    int mid; /* yes mid price, cents */
    long trade_no;
} market;

static void
ts_iso(int64_t us, char *out)
{
    kb_time_format(us, out, KB_TIME_FMT_MAX);
}

static void
meta_lines(FILE *f, market *m, long n, const demo_opts *o)
{
    char start[KB_TIME_FMT_MAX], end[KB_TIME_FMT_MAX];
    int64_t start_us = o->end_us - (int64_t)o->days * 86400 * 1000000;
    ts_iso(start_us - 86400LL * 1000000, start);
    ts_iso(o->end_us, end);
    for (size_t e = 0; e < NEVENTS; e++) {
        const event_def *ev = &events[e];
        fprintf(f,
                "{\"series\":{\"ticker\":\"%s\",\"title\":\"%s\",\"frequency\":\"%s\","
                "\"category\":\"%s\",\"tags\":[\"%s\",\"demo\"],\"settlement_sources\":"
                "[{\"name\":\"Demo source\",\"url\":\"https://example.com/%s\"}]}}\n",
                ev->series, ev->series_title, ev->frequency, ev->category, ev->category,
                ev->series);
        fprintf(f,
                "{\"event\":{\"event_ticker\":\"%s\",\"series_ticker\":\"%s\",\"title\":\"%s\","
                "\"sub_title\":\"%s\",\"category\":\"%s\",\"mutually_exclusive\":%s,"
                "\"status\":\"%s\",\"strike_date\":\"%s\",\"strike_period\":\"%s\"}}\n",
                ev->event, ev->series, ev->title, ev->sub_title, ev->category,
                ev->strike_step ? "true" : "false", ev->settled ? "settled" : "open", end,
                ev->frequency);
    }
    for (long i = 0; i < n; i++) {
        const event_def *ev = m[i].ev;
        fprintf(f,
                "{\"market\":{\"ticker\":\"%s\",\"event_ticker\":\"%s\",\"series_ticker\":\"%s\","
                "\"title\":\"%s (%s)\",\"status\":\"active\",\"category\":\"%s\","
                "\"rules_primary\":\"If the outcome for %s is above %d, the market resolves "
                "to Yes.\",\"floor_strike\":%d,\"created_time\":\"%s\",\"open_time\":\"%s\","
                "\"close_time\":\"%s\",\"market_type\":\"binary\",\"tick_size\":1,"
                "\"response_price_units\":\"usd_cent\"}}\n",
                m[i].ticker, ev->event, ev->series, ev->title, m[i].ticker, ev->category, ev->event,
                m[i].strike, m[i].strike, start, start, end);
    }
}

/* One orderbook_delta line and the book change it describes. */
static void
emit_delta(FILE *f, market *m, int64_t ts_ms, bool yes, int price, long amount)
{
    long *lv = yes ? &m->yes[price] : &m->no[price];
    if (*lv + amount < 0)
        amount = -*lv;
    if (amount == 0)
        return;
    *lv += amount;
    fprintf(f,
            "{\"type\":\"orderbook_delta\",\"sid\":%ld,\"seq\":%ld,\"msg\":{\"market_ticker\":"
            "\"%s\",\"price\":%d,\"delta\":%ld,\"side\":\"%s\",\"ts\":%" PRId64 "}}\n",
            m->sid, ++m->seq, m->ticker, price, amount, yes ? "yes" : "no", ts_ms);
}

static void
emit_snapshot(FILE *f, market *m, int64_t ts_ms)
{
    fprintf(f,
            "{\"type\":\"orderbook_snapshot\",\"sid\":%ld,\"seq\":%ld,\"msg\":{"
            "\"market_ticker\":\"%s\",\"yes\":[",
            m->sid, ++m->seq, m->ticker);
    for (int side = 0; side < 2; side++) {
        const long *b = side == 0 ? m->yes : m->no;
        bool first = true;
        for (int p = 1; p <= 99; p++) {
            if (b[p] > 0) {
                fprintf(f, "%s[%d,%ld]", first ? "" : ",", p, b[p]);
                first = false;
            }
        }
        fputs(side == 0 ? "],\"no\":[" : "]", f);
    }
    fprintf(f, ",\"ts\":%" PRId64 "}}\n", ts_ms);
}

/* Price levels near the top of a side: yes bids below mid, no bids below 100 - mid. */
static int
near_top(rng *r, int top)
{
    int p = top - (int)below(r, 8);
    return p < 1 ? 1 : (p > 99 ? 99 : p);
}

static void
seed_book(rng *r, market *m)
{
    m->mid = 20 + (int)below(r, 60);
    for (int i = 0; i < 8; i++) {
        m->yes[near_top(r, m->mid - 1)] += 10 + below(r, 400);
        m->no[near_top(r, 99 - m->mid)] += 10 + below(r, 400);
    }
}

static int
best(const long *b)
{
    for (int p = 99; p >= 1; p--) {
        if (b[p] > 0)
            return p;
    }
    return 0;
}

/* A taker hits the best bid on one side: a trade line plus the matching delta. */
static void
emit_trade(FILE *f, rng *r, market *m, int64_t ts_ms)
{
    bool hit_yes = below(r, 2) == 0; /* a NO taker sells into YES bids */
    long *b = hit_yes ? m->yes : m->no;
    int p = best(b);
    if (p == 0)
        return;
    long count = 1 + below(r, b[p] < 50 ? b[p] : 50);
    int yes_price = hit_yes ? p : 100 - p;
    long no_ = ++m->trade_no;
    fprintf(f,
            "{\"type\":\"trade\",\"sid\":%ld,\"seq\":%ld,\"msg\":{\"trade_id\":\"demo-%s-%ld\","
            "\"market_ticker\":\"%s\",\"yes_price\":%d,\"no_price\":%d,\"count\":%ld,"
            "\"taker_side\":\"%s\",\"ts\":%" PRId64 "}}\n",
            m->sid + 1000, no_, m->ticker, no_, m->ticker, yes_price, 100 - yes_price, count,
            hit_yes ? "no" : "yes", ts_ms);
    emit_delta(f, m, ts_ms, hit_yes, p, -count);
}

static void
simulate(FILE *f, market *m, long n, const demo_opts *o, rng *r)
{
    int64_t end_ms = o->end_us / 1000;
    int64_t start_ms = end_ms - (int64_t)o->days * 86400000;
    int64_t snap_ms = (int64_t)o->snap_minutes * 60000;
    for (long i = 0; i < n; i++) {
        fprintf(f,
                "{\"type\":\"market_lifecycle_v2\",\"sid\":%ld,\"seq\":1,\"msg\":{"
                "\"market_ticker\":\"%s\",\"event_ticker\":\"%s\",\"event_type\":"
                "\"activated\",\"ts\":%" PRId64 "}}\n",
                m[i].sid + 2000, m[i].ticker, m[i].ev->event, start_ms / 1000);
        emit_snapshot(f, &m[i], start_ms);
    }
    /* Per snapshot interval: deltas and trades at distinct instants strictly inside it. */
    long deltas = o->deltas_per_hour * o->snap_minutes / 60;
    long trades = o->trades_per_hour * o->snap_minutes / 60;
    if (deltas < 1)
        deltas = 1;
    for (int64_t t = start_ms; t < end_ms; t += snap_ms) {
        for (long i = 0; i < n; i++) {
            market *mk = &m[i];
            long events_n = deltas + trades;
            for (long k = 0; k < events_n; k++) {
                int64_t ts = t + 1 + (snap_ms - 2) * k / events_n + below(r, 5);
                if (k % (deltas / (trades ? trades : 1) + 1) == 0 && trades > 0) {
                    emit_trade(f, r, mk, ts);
                    continue;
                }
                if (below(r, 20) == 0) { /* slow random walk of the mid */
                    mk->mid += below(r, 2) ? 1 : -1;
                    mk->mid = mk->mid < 3 ? 3 : (mk->mid > 97 ? 97 : mk->mid);
                    /* Orders that would cross the new mid are cancelled: the book
                     * never crosses (best yes + best no < 100). */
                    for (int p = mk->mid; p <= 99; p++)
                        emit_delta(f, mk, ts, true, p, -mk->yes[p]);
                    for (int p = 100 - mk->mid; p <= 99; p++)
                        emit_delta(f, mk, ts, false, p, -mk->no[p]);
                }
                bool yes = below(r, 2) == 0;
                int p = near_top(r, yes ? mk->mid - 1 : 99 - mk->mid);
                long amount = below(r, 3) == 0 ? -(1 + below(r, 200)) : 1 + below(r, 150);
                emit_delta(f, mk, ts, yes, p, amount);
            }
            if (t + snap_ms <= end_ms)
                emit_snapshot(f, mk, t + snap_ms);
        }
    }
    /* Settled events: determined at the end, one market above the outcome says yes. */
    for (long i = 0; i < n; i++) {
        if (!m[i].ev->settled)
            continue;
        bool yes = m[i].mid >= 50;
        fprintf(f,
                "{\"type\":\"market_lifecycle_v2\",\"sid\":%ld,\"seq\":2,\"msg\":{"
                "\"market_ticker\":\"%s\",\"event_ticker\":\"%s\",\"event_type\":"
                "\"determined\",\"result\":\"%s\",\"settlement_value\":%d,\"ts\":%" PRId64 "}}\n",
                m[i].sid + 2000, m[i].ticker, m[i].ev->event, yes ? "yes" : "no", yes ? 100 : 0,
                end_ms / 1000);
        fprintf(f,
                "{\"type\":\"market_lifecycle_v2\",\"sid\":%ld,\"seq\":3,\"msg\":{"
                "\"market_ticker\":\"%s\",\"event_ticker\":\"%s\",\"event_type\":"
                "\"settled\",\"result\":\"%s\",\"settlement_value\":%d,\"ts\":%" PRId64 "}}\n",
                m[i].sid + 2000, m[i].ticker, m[i].ev->event, yes ? "yes" : "no", yes ? 100 : 0,
                end_ms / 1000 + 600);
    }
}

static bool
opt_long(const char *v, long min, long max, long *out, const char *name)
{
    int64_t x;
    const char *e;
    if (!kb_parse_i64(kb_str_c(v), min, max, &x, &e)) {
        fprintf(stderr, "kbctl demo-data: %s must be %ld..%ld\n", name, min, max);
        return false;
    }
    *out = (long)x;
    return true;
}

int
kbctl_demo_data(int argc, char **argv)
{
    demo_opts o = {20, 7, 10, 120, 12, 2, 1, 0};
    const char *out = NULL, *end = "2026-01-15T00:00:00Z";
    long seed = 1;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "--help") == 0) {
            printf("usage: kbctl demo-data [--markets N] [--fp-markets N] [--days N]\n"
                   "         [--snapshot-minutes N] [--deltas-per-hour N] [--trades-per-hour N]\n"
                   "         [--seed N] [--end ISO-TIME] [--out FILE|-]\n\n"
                   "Generates a deterministic data set (defaults: 20 markets in 4 events in\n"
                   "Kalshi's legacy integer form, then 2 markets in its 2026 fixed-point form:\n"
                   "a tapered_deci_cent market with $0.001 ticks and a fractional-trading\n"
                   "market; 7 days ending 2026-01-15T00:00:00Z, a snapshot every 10 minutes,\n"
                   "120 deltas and 12 trades per market-hour, settlements for 2 events) and\n"
                   "loads it with kbctl import, or writes the JSON lines to --out.\n");
            return KBCTL_OK;
        } else if (v == NULL) {
            ok = false;
        } else if (strcmp(a, "--markets") == 0) {
            ok = opt_long(v, 0, 1000, &o.markets, a);
        } else if (strcmp(a, "--fp-markets") == 0) {
            ok = opt_long(v, 0, 100, &o.fp_markets, a);
        } else if (strcmp(a, "--days") == 0) {
            ok = opt_long(v, 1, 366, &o.days, a);
        } else if (strcmp(a, "--snapshot-minutes") == 0) {
            ok = opt_long(v, 1, 1440, &o.snap_minutes, a);
        } else if (strcmp(a, "--deltas-per-hour") == 0) {
            ok = opt_long(v, 1, 1000000, &o.deltas_per_hour, a);
        } else if (strcmp(a, "--trades-per-hour") == 0) {
            ok = opt_long(v, 0, 100000, &o.trades_per_hour, a);
        } else if (strcmp(a, "--seed") == 0) {
            ok = opt_long(v, 1, 2147483647, &seed, a);
        } else if (strcmp(a, "--end") == 0) {
            end = v;
        } else if (strcmp(a, "--out") == 0) {
            out = v;
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "kbctl demo-data: bad option '%s' (see --help)\n", a);
            return KBCTL_USAGE;
        }
    }
    const char *reason;
    if (o.markets + o.fp_markets == 0) {
        fprintf(stderr, "kbctl demo-data: --markets and --fp-markets are both 0\n");
        return KBCTL_USAGE;
    }
    if (!kb_time_parse(end, strlen(end), false, &o.end_us, &reason)) {
        fprintf(stderr, "kbctl demo-data: --end: %s\n", reason);
        return KBCTL_USAGE;
    }
    o.end_us -= o.end_us % 60000000; /* whole minutes */
    o.seed = (uint64_t)seed * 0x9E3779B97F4A7C15ULL;
    /* Writing a file needs no configuration; loading the set does, checked before it is made. */
    int rc;
    if (out == NULL && (rc = kbctl_load_config("demo-data")) != KBCTL_OK)
        return rc;

    char tmp[] = "/tmp/kbdemo.XXXXXX";
    FILE *f;
    if (out != NULL && strcmp(out, "-") == 0) {
        f = stdout;
    } else if (out != NULL) {
        f = fopen(out, "w");
    } else {
        int fd = mkstemp(tmp);
        f = fd >= 0 ? fdopen(fd, "w") : NULL;
    }
    if (f == NULL) {
        fprintf(stderr, "kbctl demo-data: %s: %s\n", out ? out : tmp, strerror(errno));
        return KBCTL_FAIL;
    }
    market *m = kb_xcalloc((size_t)(o.markets ? o.markets : 1), sizeof(*m));
    rng r = {o.seed};
    for (long i = 0; i < o.markets; i++) {
        const event_def *ev = &events[(size_t)i % NEVENTS];
        long k = i / (long)NEVENTS;
        m[i].ev = ev;
        m[i].strike = ev->strike0 + (int)k * ev->strike_step;
        if (ev->strike_step)
            snprintf(m[i].ticker, sizeof(m[i].ticker), "%s-T%d", ev->event, m[i].strike);
        else
            snprintf(m[i].ticker, sizeof(m[i].ticker), "%s-%c%ld", ev->event, 'A' + (int)(k % 26),
                     k / 26);
        m[i].sid = 100 + i;
        seed_book(&r, &m[i]);
    }
    if (o.markets > 0) {
        meta_lines(f, m, o.markets, &o);
        simulate(f, m, o.markets, &o, &r);
    }
    free(m);
    kb_demo_fp(f, &o);
    bool werr = ferror(f) != 0;
    if (f != stdout)
        werr = fclose(f) != 0 || werr;
    else
        werr = fflush(f) != 0 || werr;
    if (werr) {
        fprintf(stderr, "kbctl demo-data: write failed\n");
        return KBCTL_FAIL;
    }
    if (out != NULL)
        return KBCTL_OK;
    char arg0[] = "import";
    char *args[] = {arg0, tmp, NULL};
    rc = kbctl_import(2, args);
    unlink(tmp);
    return rc;
}
