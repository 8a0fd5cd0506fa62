/* kbctl_import_rows.c - Kalshi WebSocket v2 messages -> COPY rows (KALSHI.md).
 *
 * Every value is checked before it reaches a COPY buffer (types, price
 * 1..99, side yes/no), so one bad line never fails a whole batch. Dollar
 * strings ("0.5600") and fixed-point counts ("10.00") are converted exactly
 * with integer arithmetic; cents fields win when both are present.
 * Shared value readers (kb_imp_*) are used by kbctl_import_meta.c too.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbctl_import.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

static void
free_json(void *j)
{
    cJSON_Delete(j);
}

const cJSON *
kb_imp_get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* Non-empty string field or NULL. */
const char *
kb_imp_str(const cJSON *o, const char *k)
{
    const cJSON *f = kb_imp_get(o, k);
    return cJSON_IsString(f) && f->valuestring[0] != '\0' ? f->valuestring : NULL;
}

/* Integral JSON number (or integer string) into *v. */
static bool
int_val(const cJSON *f, int64_t *v)
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
           kb_parse_i64(kb_str_c(f->valuestring), -9000000000000000LL, 9000000000000000LL, v,
                        &err);
}

/*
 * Exact decimal string "I[.F]" scaled by 10^scale: "0.5600" at scale 2 is 56.
 * Digits beyond the scale must be zeros (no rounding, no floating point).
 */
static bool
decimal_scaled(const char *s, int scale, int64_t *v)
{
    bool neg = *s == '-';
    if (neg)
        s++;
    int64_t ip = 0;
    int n = 0;
    for (; *s >= '0' && *s <= '9'; s++, n++) {
        if (n > 12)
            return false;
        ip = ip * 10 + (*s - '0');
    }
    int64_t fp = 0;
    int f = 0;
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++) {
            if (f < scale) {
                fp = fp * 10 + (*s - '0');
                f++;
            } else if (*s != '0') {
                return false;
            }
            n++;
        }
    }
    if (*s != '\0' || n == 0)
        return false;
    for (; f < scale; f++)
        fp *= 10;
    int64_t mul = 1;
    for (int i = 0; i < scale; i++)
        mul *= 10;
    *v = (ip * mul + fp) * (neg ? -1 : 1);
    return true;
}

/* Integer field k, else the dollar string k_dollars (cents) or fixed-point k_fp. */
bool
kb_imp_int_field(const cJSON *o, const char *k, int64_t *v)
{
    if (int_val(kb_imp_get(o, k), v))
        return true;
    char alt[64];
    snprintf(alt, sizeof(alt), "%s_dollars", k);
    const char *d = kb_imp_str(o, alt);
    if (d != NULL)
        return decimal_scaled(d, 2, v);
    snprintf(alt, sizeof(alt), "%s_fp", k);
    d = kb_imp_str(o, alt);
    return d != NULL && decimal_scaled(d, 0, v);
}

/* Kalshi ts: Unix seconds, or milliseconds above 1e12; ISO strings accepted too. */
static void span(kb_import *im, int64_t us);

static bool
ts_val(const cJSON *f, int64_t *us)
{
    const char *reason;
    if (cJSON_IsString(f))
        return kb_time_parse(f->valuestring, strlen(f->valuestring), false, us, &reason);
    if (!cJSON_IsNumber(f))
        return false;
    return kb_imp_ts_number(f->valuedouble, us);
}

bool
kb_imp_ts_number(double d, int64_t *us)
{
    if (d > 1e12)
        d /= 1000.0;
    if (!(d > -6e10 && d < 2.5e11))
        return false;
    double x = d * 1e6;
    *us = (int64_t)(x >= 0 ? x + 0.5 : x - 0.5);
    return true;
}

static uint32_t
ticker_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

uint32_t
kb_imp_ticker_id(kb_import *im, const char *s, size_t len)
{
    if (2 * (im->ntickers + 1) > im->tindex_cap) {
        uint32_t cap = im->tindex_cap ? 2 * im->tindex_cap : 64;
        uint32_t *ix = kb_xcalloc(cap, sizeof(*ix));
        for (uint32_t i = 0; i < im->ntickers; i++) {
            uint32_t h = ticker_hash(im->tickers[i].name, im->tickers[i].len) & (cap - 1);
            while (ix[h])
                h = (h + 1) & (cap - 1);
            ix[h] = i + 1;
        }
        free(im->tindex);
        im->tindex = ix;
        im->tindex_cap = cap;
    }
    uint32_t h = ticker_hash(s, len) & (im->tindex_cap - 1);
    for (; im->tindex[h]; h = (h + 1) & (im->tindex_cap - 1)) {
        const kb_imp_ticker *t = &im->tickers[im->tindex[h] - 1];
        if (t->len == len && memcmp(t->name, s, len) == 0)
            return im->tindex[h] - 1;
    }
    if (im->ntickers == im->captickers) {
        im->captickers = im->captickers ? 2 * im->captickers : 64;
        im->tickers = kb_xrealloc(im->tickers, im->captickers * sizeof(*im->tickers));
    }
    kb_imp_ticker *t = &im->tickers[im->ntickers];
    memset(t, 0, sizeof(*t));
    t->name = kb_xmalloc(len + 1);
    memcpy(t->name, s, len);
    t->name[len] = '\0';
    t->len = len;
    im->tindex[h] = ++im->ntickers;
    return im->ntickers - 1;
}

void
kb_imp_add_delta(kb_import *im, const kb_imp_delta *d)
{
    if (im->ndeltas == im->capdeltas) {
        im->capdeltas = im->capdeltas ? 2 * im->capdeltas : 4096;
        im->deltas = kb_xrealloc(im->deltas, (size_t)im->capdeltas * sizeof(*im->deltas));
    }
    kb_imp_delta *r = &im->deltas[im->ndeltas++];
    *r = *d;
    r->order = im->order;
    im->deltas_read++;
    span(im, d->ts);
}

char *
kb_imp_ts_text(kb_arena *a, int64_t us)
{
    char *s = kb_arena_alloc(a, KB_TIME_FMT_MAX);
    kb_time_format(us, s, KB_TIME_FMT_MAX);
    return s;
}

/* ISO/number timestamp field as SQL text, NULL when absent or unreadable. */
const char *
kb_imp_ts_param(kb_arena *a, const cJSON *o, const char *k)
{
    int64_t us;
    return ts_val(kb_imp_get(o, k), &us) ? kb_imp_ts_text(a, us) : NULL;
}

/* COPY text format: escape backslash, tab, newline, carriage return. */
static void
copy_str(kb_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\\': kb_buf_puts(b, "\\\\"); break;
        case '\t': kb_buf_puts(b, "\\t"); break;
        case '\n': kb_buf_puts(b, "\\n"); break;
        case '\r': kb_buf_puts(b, "\\r"); break;
        default: kb_buf_putc(b, *s); break;
        }
    }
}

static void
span(kb_import *im, int64_t us)
{
    if (us < im->min_us)
        im->min_us = us;
    if (us > im->max_us)
        im->max_us = us;
}

static bool
side_ok(const char *s)
{
    return s != NULL && (strcmp(s, "yes") == 0 || strcmp(s, "no") == 0);
}

/* [[price, qty], ...] (cents) or the _dollars form into normalized JSON; false if malformed. */
static bool
levels(const cJSON *msg, const char *side, kb_buf *out)
{
    char k[32];
    const cJSON *arr = kb_imp_get(msg, side);
    bool dollars = false;
    if (arr == NULL) {
        snprintf(k, sizeof(k), "%s_dollars", side);
        arr = kb_imp_get(msg, k);
        dollars = arr != NULL;
    }
    kb_buf_putc(out, '[');
    if (arr == NULL || cJSON_IsNull(arr)) {
        kb_buf_putc(out, ']');
        return true;
    }
    if (!cJSON_IsArray(arr))
        return false;
    int i = 0;
    for (const cJSON *lv = arr->child; lv != NULL; lv = lv->next, i++) {
        if (!cJSON_IsArray(lv) || cJSON_GetArraySize(lv) < 2)
            return false;
        const cJSON *p = cJSON_GetArrayItem(lv, 0), *q = cJSON_GetArrayItem(lv, 1);
        int64_t price, qty;
        bool ok = dollars && cJSON_IsString(p) ? decimal_scaled(p->valuestring, 2, &price)
                                               : int_val(p, &price);
        if (!ok || price < 1 || price > 99)
            return false;
        if (!int_val(q, &qty) &&
            !(cJSON_IsString(q) && decimal_scaled(q->valuestring, 0, &qty)))
            return false;
        kb_buf_printf(out, "%s[%" PRId64 ",%" PRId64 "]", i ? "," : "", price, qty);
    }
    kb_buf_putc(out, ']');
    return true;
}

static bool
snapshot(kb_import *im, const cJSON *msg, const char *ticker, int64_t ts, int64_t sid,
         int64_t seq, const char *rcv, const char **reason)
{
    kb_buf yes = KB_BUF_INIT, no = KB_BUF_INIT;
    bool ok = levels(msg, "yes", &yes) && levels(msg, "no", &no);
    if (!ok) {
        *reason = "snapshot levels must be [[price 1..99, quantity], ...]";
    } else {
        kb_buf *b = &im->snaps;
        copy_str(b, ticker);
        kb_buf_printf(b, "\t%s\t%" PRId64 "\t%" PRId64 "\t%s\t%s\t%s\t%" PRId64 "\n",
                      kb_imp_ts_text(&im->arena, ts), sid, seq, yes.buf, no.buf, rcv ? rcv : "\\N",
                      im->order);
        im->nsnaps++;
        im->snaps_read++;
        span(im, ts);
    }
    kb_buf_release(&yes);
    kb_buf_release(&no);
    return ok;
}

static bool
delta(kb_import *im, const cJSON *msg, const char *ticker, int64_t ts, int64_t sid, int64_t seq,
      bool has_seq, int64_t rcv, const char **reason)
{
    int64_t price, amount;
    const char *side = kb_imp_str(msg, "side");
    if (!has_seq) {
        *reason = "orderbook_delta needs an integer seq";
        return false;
    }
    if (!kb_imp_int_field(msg, "price", &price) || price < 1 || price > 99) {
        *reason = "orderbook_delta price must be 1..99 cents";
        return false;
    }
    if (!kb_imp_int_field(msg, "delta", &amount) || amount < INT32_MIN || amount > INT32_MAX) {
        *reason = "orderbook_delta delta must be an integer";
        return false;
    }
    if (!side_ok(side)) {
        *reason = "orderbook_delta side must be yes or no";
        return false;
    }
    kb_imp_delta d = {.ts = ts, .rcv = rcv, .sid = sid, .seq = seq, .price = (int32_t)price,
                      .amount = (int32_t)amount, .yes = strcmp(side, "yes") == 0,
                      .ticker = kb_imp_ticker_id(im, ticker, strlen(ticker))};
    kb_imp_add_delta(im, &d);
    return true;
}

static bool
trade(kb_import *im, const cJSON *msg, const char *ticker, int64_t ts, const char *rcv,
      const char **reason)
{
    const char *id = kb_imp_str(msg, "trade_id"), *taker = kb_imp_str(msg, "taker_side");
    int64_t yes, no, count;
    if (id == NULL) {
        *reason = "trade needs a trade_id";
        return false;
    }
    if (!kb_imp_int_field(msg, "yes_price", &yes) || !kb_imp_int_field(msg, "no_price", &no) || yes < 0 ||
        yes > 100 || no < 0 || no > 100) {
        *reason = "trade yes_price/no_price must be cents 0..100";
        return false;
    }
    if (!kb_imp_int_field(msg, "count", &count) || count < 0 || count > INT32_MAX) {
        *reason = "trade count must be a non-negative integer";
        return false;
    }
    if (!side_ok(taker)) {
        *reason = "trade taker_side must be yes or no";
        return false;
    }
    kb_buf *b = &im->trades;
    copy_str(b, id);
    kb_buf_putc(b, '\t');
    copy_str(b, ticker);
    kb_buf_printf(b, "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%s\t%s\t%s\t%" PRId64 "\n", yes,
                  no, count, taker, kb_imp_ts_text(&im->arena, ts), rcv ? rcv : "\\N", im->order);
    im->ntrades++;
    im->trades_read++;
    span(im, ts);
    return true;
}

static bool
ws_message(kb_import *im, const cJSON *j, const char *type, const char **reason)
{
    bool book = strcmp(type, "orderbook_snapshot") == 0 || strcmp(type, "orderbook_delta") == 0;
    bool is_trade = strcmp(type, "trade") == 0;
    bool life = strcmp(type, "market_lifecycle_v2") == 0 || strcmp(type, "market_lifecycle") == 0;
    if (!book && !is_trade && !life) {
        im->skipped++; /* subscribed, ok, error, other channels */
        return true;
    }
    const cJSON *msg = kb_imp_get(j, "msg");
    if (!cJSON_IsObject(msg)) {
        *reason = "message has no msg object";
        return false;
    }
    const char *ticker = kb_imp_str(msg, "market_ticker");
    if (ticker == NULL) {
        *reason = "msg.market_ticker missing";
        return false;
    }
    int64_t sid = 0, seq = 0, ts;
    (void)int_val(kb_imp_get(j, "sid"), &sid);
    bool has_seq = int_val(kb_imp_get(j, "seq"), &seq);
    int64_t rcv_us;
    bool has_rcv = ts_val(kb_imp_get(j, "received_at"), &rcv_us);
    const char *rcv = has_rcv ? kb_imp_ts_text(&im->arena, rcv_us) : NULL;
    if (!ts_val(kb_imp_get(msg, "ts"), &ts)) {
        if (kb_imp_get(msg, "ts") != NULL || !has_rcv) {
            *reason = "msg.ts missing or unreadable and no received_at on the line";
            return false;
        }
        ts = rcv_us;
    }
    if (strcmp(type, "orderbook_snapshot") == 0)
        return snapshot(im, msg, ticker, ts, sid, seq, rcv, reason);
    if (strcmp(type, "orderbook_delta") == 0)
        return delta(im, msg, ticker, ts, sid, seq, has_seq, has_rcv ? rcv_us : KB_IMP_NO_RCV,
                     reason);
    if (is_trade)
        return trade(im, msg, ticker, ts, rcv, reason);
    return kb_import_lifecycle(im, msg, ticker, ts, reason);
}

/* REST: {"market"}, {"markets": []}, {"event"}, {"events": []}, {"series"}, or bare objects. */
bool
kb_import_line(kb_import *im, const char *line, size_t len, const char **reason)
{
    kb_str t = kb_str_trim((kb_str){line, len});
    if (t.len == 0 || t.p[0] == '#') {
        im->skipped++;
        return true;
    }
    if (!im->no_fast && kb_imp_fast_line(im, t.p, t.len))
        return true;
    cJSON *j = kb_imp_parse_whole(t.p, t.len);
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
    const char *type = kb_imp_str(j, "type");
    if (type != NULL)
        return ws_message(im, j, type, reason);
    return kb_import_rest(im, j, reason);
}
