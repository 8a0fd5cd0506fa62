/* ingest_msg.c - one Kalshi WebSocket v2 message -> exact integer fields (KALSHI.md).
 *
 * kb__ingest_parse_msg reads every form Kalshi has sent: legacy integer cents
 * and whole contracts, `*_dollars` price strings (4 decimals), `*_fp` count
 * strings (2 decimals), `*_dollars_fp` snapshot level arrays, and `ts` as
 * Unix seconds, milliseconds or an ISO string beside `ts_ms`. When a line
 * carries a value in two forms they must agree, or the line is refused:
 * nothing is guessed. Prices become integers in 1/10,000 dollar and
 * quantities in 1/100 contract through kb_fixed (no floating point).
 * The function has no side effects (no database, no batch): the importer
 * and the collector call it alike.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "kb_ingest.h"
#include "kb_fixed.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

const cJSON *
kb__ingest_get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

const char *
kb__ingest_str(const cJSON *o, const char *k)
{
    const cJSON *f = kb__ingest_get(o, k);
    return cJSON_IsString(f) && f->valuestring[0] != '\0' ? f->valuestring : NULL;
}

bool
kb__ingest_int_val(const cJSON *f, int64_t *v)
{
    if (cJSON_IsNumber(f)) {
        double d = f->valuedouble;
        if (!(d >= -9e15 && d <= 9e15) || (double)(int64_t)d != d)
            return false;
        *v = (int64_t)d;
        return true;
    }
    const char *err;
    return cJSON_IsString(f) &&
           kb_parse_i64(kb_str_c(f->valuestring), -9000000000000000LL, 9000000000000000LL, v, &err);
}

/* ---- values in two forms ---- */

/*
 * A value Kalshi sends as member k (legacy integer) and/or k<suffix> (exact
 * decimal text), in stored units:
 *   prices:     k cents (integer) x 100  | k_dollars "0.0550" (4 decimals) -> 1/10,000 $
 *   quantities: k contracts       x 100  | k_fp      "12.50"  (2 decimals) -> 1/100 contract
 * *found is false when neither is present (or both are null); both present
 * must give the same value, and it must lie in [lo, hi].
 */
typedef struct form2 {
    const char *suffix; /* "_dollars" or "_fp" */
    int scale;          /* decimals of the text form */
    int int_scale;      /* whole units -> stored units: 10^int_scale */
    bool neg;
    int64_t lo, hi;
    const char *what; /* "price" or "quantity" (reasons) */
} form2;

static const form2 price_form = {"_dollars", KB_PRICE_SCALE, 2, false, 0, KB_PRICE_DOLLAR, "price"};
static const form2 count_form = {"_fp", KB_QTY_SCALE, 2, false, 0, KB_QTY_MAX, "count"};
static const form2 delta_form = {"_fp", KB_QTY_SCALE, 2, true, -KB_QTY_MAX, KB_QTY_MAX, "quantity"};

static bool
two_forms(kb_arena *a, const cJSON *o, const char *k, const form2 *f, int64_t *v, bool *found,
          const char **reason)
{
    char alt[64];
    snprintf(alt, sizeof(alt), "%s%s", k, f->suffix);
    const cJSON *whole = kb__ingest_get(o, k), *text = kb__ingest_get(o, alt);
    *found = (whole != NULL && !cJSON_IsNull(whole)) || (text != NULL && !cJSON_IsNull(text));
    if (!*found)
        return true;
    int64_t x = 0, y = 0;
    bool hx = whole != NULL && !cJSON_IsNull(whole), hy = text != NULL && !cJSON_IsNull(text);
    if (hx) {
        int64_t n;
        if (!kb__ingest_int_val(whole, &n)) {
            *reason = kb_arena_printf(a, "%s must be a whole number (or use %s)", k, alt);
            return false;
        }
        if (!kb_fixed_scale_int(n, f->int_scale, f->hi > -f->lo ? f->hi : -f->lo, &x)) {
            *reason = kb_arena_printf(a, "%s: out of range", k);
            return false;
        }
    }
    if (hy) {
        const char *why = "must be a decimal string";
        if (!cJSON_IsString(text) ||
            !kb_fixed_parse(text->valuestring, strlen(text->valuestring), f->scale, f->neg,
                            f->hi > -f->lo ? f->hi : -f->lo, &y, &why)) {
            *reason = kb_arena_printf(a, "%s: %s", alt, why);
            return false;
        }
    }
    if (hx && hy && x != y) {
        *reason = kb_arena_printf(a, "%s and %s disagree", k, alt);
        return false;
    }
    *v = hx ? x : y;
    if (*v < f->lo || *v > f->hi) {
        *reason = kb_arena_printf(a, "%s: out of range", k);
        return false;
    }
    return true;
}

bool
kb__ingest_price(kb_arena *a, const cJSON *o, const char *k, bool *found, int64_t *v,
                 const char **reason)
{
    return two_forms(a, o, k, &price_form, v, found, reason);
}

/* ---- time ---- */

/* Precision in µs of an ISO time as written: 1 s, 1 ms or 1 µs by its fraction digits. */
int64_t
kb__ingest_iso_precision(const char *s, size_t len)
{
    const char *dot = memchr(s, '.', len);
    size_t n = 0;
    while (dot != NULL && dot + 1 + n < s + len && dot[1 + n] >= '0' && dot[1 + n] <= '9')
        n++;
    return n == 0 ? 1000000 : n <= 3 ? 1000 : 1;
}

/* Precision in µs of a Kalshi ts value as written: whole seconds, milliseconds or finer. */
static int64_t
ts_precision(const cJSON *f, int64_t us)
{
    if (cJSON_IsString(f))
        return kb__ingest_iso_precision(f->valuestring, strlen(f->valuestring));
    double d = f->valuedouble;
    if ((double)(int64_t)d == d)
        return d > 1e12 ? 1000 : 1000000;
    return us % 1000 == 0 ? 1000 : 1;
}

static int64_t
floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

bool
kb__ingest_ts_agree(int64_t ts, int64_t ts_prec, int64_t ms_us, int64_t *out)
{
    int64_t p = ts_prec > 1000 ? ts_prec : 1000;
    if (floor_div(ts, p) != floor_div(ms_us, p))
        return false;
    *out = ts_prec < 1000 ? ts : ms_us;
    return true;
}

bool
kb__ingest_ms_to_us(int64_t ms, int64_t *us)
{
    if (ms < -6000000000000LL || ms > 250000000000000LL)
        return false;
    *us = ms * 1000;
    return true;
}

bool
kb__ingest_ts_val(const cJSON *f, int64_t *us)
{
    const char *reason;
    if (cJSON_IsString(f))
        return kb_time_parse(f->valuestring, strlen(f->valuestring), false, us, &reason);
    return cJSON_IsNumber(f) && kb__ingest_ts_number(f->valuedouble, us);
}

bool
kb__ingest_ts_number(double d, int64_t *us)
{
    if (d > 1e12)
        d /= 1000.0;
    if (!(d > -6e10 && d < 2.5e11))
        return false;
    double x = d * 1e6;
    *us = (int64_t)(x >= 0 ? x + 0.5 : x - 0.5);
    return true;
}

/*
 * The exchange time of msg: ts (s, ms or ISO) and/or ts_ms, which must agree
 * to the coarser precision of the two (Kalshi's ts is whole seconds beside a
 * ts_ms); the finer one is kept. Neither: the line's receive time, if any.
 */
static bool
msg_time(const cJSON *msg, const kb_ingest_msg *m, int64_t *ts, const char **reason)
{
    const cJSON *t = kb__ingest_get(msg, "ts"), *tm = kb__ingest_get(msg, "ts_ms");
    bool ht = t != NULL && !cJSON_IsNull(t), hm = tm != NULL && !cJSON_IsNull(tm);
    int64_t tu = 0, mu = 0, ms;
    if (ht && !kb__ingest_ts_val(t, &tu)) {
        *reason = "msg.ts is not a readable time";
        return false;
    }
    if (hm && !(kb__ingest_int_val(tm, &ms) && kb__ingest_ms_to_us(ms, &mu))) {
        *reason = "msg.ts_ms must be integer milliseconds";
        return false;
    }
    if (ht && hm) {
        if (!kb__ingest_ts_agree(tu, ts_precision(t, tu), mu, ts)) {
            *reason = "msg.ts and msg.ts_ms disagree";
            return false;
        }
        return true;
    }
    if (ht || hm) {
        *ts = ht ? tu : mu;
        return true;
    }
    if (m->rcv == KB_INGEST_NO_RCV) {
        *reason = "msg.ts missing or unreadable and no received_at on the line";
        return false;
    }
    *ts = m->rcv;
    return true;
}

/* ---- snapshots ---- */

/* One side in one form: "yes" (cents), "yes_dollars", "yes_dollars_fp"; NULL when absent. */
static bool
side_levels(kb_arena *a, const cJSON *arr, bool dollars, kb_ingest_level **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!cJSON_IsArray(arr))
        return false;
    size_t cap = (size_t)cJSON_GetArraySize(arr);
    kb_ingest_level *lv = kb_arena_alloc(a, (cap ? cap : 1) * sizeof(*lv));
    for (const cJSON *e = arr->child; e != NULL; e = e->next) {
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) < 2)
            return false;
        const cJSON *p = cJSON_GetArrayItem(e, 0), *q = cJSON_GetArrayItem(e, 1);
        int64_t price, qty;
        const char *why;
        if (dollars) {
            if (!cJSON_IsString(p) ||
                !kb_fixed_parse(p->valuestring, strlen(p->valuestring), KB_PRICE_SCALE, false,
                                KB_PRICE_DOLLAR, &price, &why))
                return false;
        } else {
            int64_t cents;
            if (!kb__ingest_int_val(p, &cents) || cents < 0 || cents > 100)
                return false;
            price = cents * KB_PRICE_PER_CENT;
        }
        if (price < 1 || price >= KB_PRICE_DOLLAR)
            return false;
        if (cJSON_IsString(q)) {
            if (!kb_fixed_parse(q->valuestring, strlen(q->valuestring), KB_QTY_SCALE, true,
                                KB_QTY_MAX, &qty, &why))
                return false;
        } else {
            int64_t c;
            if (!kb__ingest_int_val(q, &c) || !kb_fixed_scale_int(c, 2, KB_QTY_MAX, &qty))
                return false;
        }
        lv[*n] = (kb_ingest_level){(int32_t)price, qty};
        (*n)++;
    }
    *out = lv;
    return true;
}

static bool
snapshot(kb_arena *a, const cJSON *msg, kb_ingest_msg *m, const char **reason)
{
    static const char *const sides[2] = {"yes", "no"};
    for (int s = 0; s < 2; s++) {
        static const char *const suffix[3] = {"", "_dollars", "_dollars_fp"};
        bool have = false;
        for (int f = 0; f < 3; f++) {
            char k[32];
            snprintf(k, sizeof(k), "%s%s", sides[s], suffix[f]);
            const cJSON *arr = kb__ingest_get(msg, k);
            if (arr == NULL || cJSON_IsNull(arr))
                continue;
            kb_ingest_level *lv;
            size_t n;
            if (!side_levels(a, arr, f > 0, &lv, &n)) {
                *reason = kb_arena_printf(a,
                                          "snapshot %s must be [[price, quantity], ...] "
                                          "with prices $0.0001..$0.9999",
                                          k);
                return false;
            }
            bool same = !have || n == m->nlevels[s];
            for (size_t i = 0; have && same && i < n; i++)
                same = lv[i].price == m->levels[s][i].price && lv[i].qty == m->levels[s][i].qty;
            if (!same) {
                *reason = kb_arena_printf(a,
                                          "snapshot %s disagrees with another form of the "
                                          "%s side",
                                          k, sides[s]);
                return false;
            }
            have = true;
            m->levels[s] = lv;
            m->nlevels[s] = n;
        }
    }
    return true;
}

/* ---- deltas and trades ---- */

static bool
side_val(const char *s, bool *yes)
{
    if (s == NULL || (strcmp(s, "yes") != 0 && strcmp(s, "no") != 0))
        return false;
    *yes = s[0] == 'y';
    return true;
}

static bool
delta(kb_arena *a, const cJSON *msg, kb_ingest_msg *m, const char **reason)
{
    bool found;
    int64_t v;
    if (!m->has_seq) {
        *reason = "orderbook_delta needs an integer seq";
        return false;
    }
    if (!two_forms(a, msg, "price", &price_form, &v, &found, reason))
        return false;
    if (!found || v < 1 || v >= KB_PRICE_DOLLAR) {
        *reason = "orderbook_delta price must be $0.0001..$0.9999 (price or price_dollars)";
        return false;
    }
    m->price = (int32_t)v;
    if (!two_forms(a, msg, "delta", &delta_form, &m->amount, &found, reason))
        return false;
    if (!found) {
        *reason = "orderbook_delta needs delta or delta_fp";
        return false;
    }
    if (!side_val(kb__ingest_str(msg, "side"), &m->yes)) {
        *reason = "orderbook_delta side must be yes or no";
        return false;
    }
    return true;
}

static bool
trade(kb_arena *a, const cJSON *msg, kb_ingest_msg *m, const char **reason)
{
    bool fy, fn, fc;
    int64_t y = 0, n = 0;
    m->trade_id = kb__ingest_str(msg, "trade_id");
    if (m->trade_id == NULL) {
        *reason = "trade needs a trade_id";
        return false;
    }
    if (!two_forms(a, msg, "yes_price", &price_form, &y, &fy, reason) ||
        !two_forms(a, msg, "no_price", &price_form, &n, &fn, reason))
        return false;
    if (!fy || !fn) {
        *reason = "trade needs yes_price and no_price (or their _dollars forms), $0..$1";
        return false;
    }
    m->yes_price = (int32_t)y;
    m->no_price = (int32_t)n;
    if (!two_forms(a, msg, "count", &count_form, &m->count, &fc, reason))
        return false;
    if (!fc) {
        *reason = "trade needs count or count_fp";
        return false;
    }
    if (!side_val(kb__ingest_str(msg, "taker_side"), &m->yes)) {
        *reason = "trade taker_side must be yes or no";
        return false;
    }
    return true;
}

bool
kb__ingest_parse_msg(kb_arena *a, const cJSON *j, const char *type, kb_ingest_msg *m,
                     const char **reason)
{
    memset(m, 0, sizeof(*m));
    m->rcv = KB_INGEST_NO_RCV;
    if (strcmp(type, "orderbook_snapshot") == 0)
        m->kind = KB_INGEST_SNAPSHOT;
    else if (strcmp(type, "orderbook_delta") == 0)
        m->kind = KB_INGEST_DELTA;
    else if (strcmp(type, "trade") == 0)
        m->kind = KB_INGEST_TRADE;
    else if (strcmp(type, "market_lifecycle_v2") == 0 || strcmp(type, "market_lifecycle") == 0)
        m->kind = KB_INGEST_LIFECYCLE;
    else
        return true; /* KB_INGEST_SKIP: subscribed, ok, error, other channels */
    const cJSON *msg = kb__ingest_get(j, "msg");
    if (!cJSON_IsObject(msg)) {
        *reason = "message has no msg object";
        return false;
    }
    m->msg = msg;
    m->ticker = kb__ingest_str(msg, "market_ticker");
    if (m->ticker == NULL) {
        *reason = "msg.market_ticker missing";
        return false;
    }
    (void)kb__ingest_int_val(kb__ingest_get(j, "sid"), &m->sid);
    m->has_seq = kb__ingest_int_val(kb__ingest_get(j, "seq"), &m->seq);
    const cJSON *rcv = kb__ingest_get(j, "received_at");
    if (rcv != NULL && !cJSON_IsNull(rcv) && !kb__ingest_ts_val(rcv, &m->rcv)) {
        *reason = "received_at is not a readable time";
        return false;
    }
    if (!msg_time(msg, m, &m->ts, reason))
        return false;
    switch (m->kind) {
    case KB_INGEST_SNAPSHOT:
        return snapshot(a, msg, m, reason);
    case KB_INGEST_DELTA:
        return delta(a, msg, m, reason);
    case KB_INGEST_TRADE:
        return trade(a, msg, m, reason);
    default:
        return true;
    }
}
