/* kbctl_import_rows.c - Kalshi WebSocket v2 messages and REST objects -> rows (KALSHI.md).
 *
 * Every value is checked before it reaches a COPY buffer (types, price
 * 1..99, side yes/no), so one bad line never fails a whole batch. Dollar
 * strings ("0.5600") and fixed-point counts ("10.00") are converted exactly
 * with integer arithmetic; cents fields win when both are present.
 * Metadata (markets, events, series, settlements) is upserted at once and
 * only written when something changed, so a re-import changes nothing.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kbctl_import.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

static const kb_stmt market_upsert = {
    "imp_market",
    "INSERT INTO markets AS m (ticker, event_ticker, title, status, category, rules,"
    "  strike_price, metadata, series_ticker, discovered_at, last_updated, status_at)"
    " VALUES ($1, $2, $3, coalesce($4, 'active'), $5, $6, $7::numeric, $8::jsonb, $9,"
    "  coalesce($10::timestamptz, now()), now(), $11::timestamptz)"
    " ON CONFLICT (ticker) DO UPDATE SET"
    "  event_ticker = coalesce(excluded.event_ticker, m.event_ticker),"
    "  title = coalesce(excluded.title, m.title),"
    "  status = coalesce($4, m.status),"
    "  category = coalesce(excluded.category, m.category),"
    "  rules = coalesce(excluded.rules, m.rules),"
    "  strike_price = coalesce(excluded.strike_price, m.strike_price),"
    "  metadata = CASE WHEN excluded.metadata IS NULL THEN m.metadata"
    "             ELSE coalesce(m.metadata, '{}'::jsonb) || excluded.metadata END,"
    "  series_ticker = coalesce(excluded.series_ticker, m.series_ticker),"
    "  last_updated = now(), status_at = greatest(m.status_at, excluded.status_at)"
    " WHERE (excluded.status_at IS NULL OR m.status_at IS NULL"
    "        OR excluded.status_at > m.status_at)"
    "   AND (m.event_ticker, m.title, m.status, m.category, m.rules, m.strike_price,"
    "        m.metadata, m.series_ticker) IS DISTINCT FROM"
    "       (coalesce(excluded.event_ticker, m.event_ticker), coalesce(excluded.title, m.title),"
    "        coalesce($4, m.status), coalesce(excluded.category, m.category),"
    "        coalesce(excluded.rules, m.rules), coalesce(excluded.strike_price, m.strike_price),"
    "        CASE WHEN excluded.metadata IS NULL THEN m.metadata"
    "             ELSE coalesce(m.metadata, '{}'::jsonb) || excluded.metadata END,"
    "        coalesce(excluded.series_ticker, m.series_ticker))",
    11, false};

static const kb_stmt settlement_upsert = {
    "imp_settlement",
    "INSERT INTO settlements AS s (market_ticker, event_ticker, result, settlement_value,"
    "  determined_at, settled_at, source, metadata)"
    " VALUES ($1, $2, $3, $4::int, $5::timestamptz, $6::timestamptz, $7, $8::jsonb)"
    " ON CONFLICT (market_ticker) DO UPDATE SET"
    "  event_ticker = coalesce(excluded.event_ticker, s.event_ticker),"
    "  result = coalesce(excluded.result, s.result),"
    "  settlement_value = coalesce(excluded.settlement_value, s.settlement_value),"
    "  determined_at = coalesce(excluded.determined_at, s.determined_at),"
    "  settled_at = coalesce(excluded.settled_at, s.settled_at),"
    "  metadata = coalesce(excluded.metadata, s.metadata), updated_at = now()"
    " WHERE (s.event_ticker, s.result, s.settlement_value, s.determined_at, s.settled_at,"
    "        s.metadata) IS DISTINCT FROM"
    "       (coalesce(excluded.event_ticker, s.event_ticker), coalesce(excluded.result, s.result),"
    "        coalesce(excluded.settlement_value, s.settlement_value),"
    "        coalesce(excluded.determined_at, s.determined_at),"
    "        coalesce(excluded.settled_at, s.settled_at), coalesce(excluded.metadata, s.metadata))",
    8, false};

static const kb_stmt event_upsert = {
    "imp_event",
    "INSERT INTO events AS e (event_ticker, series_ticker, title, sub_title, category,"
    "  mutually_exclusive, status, strike_date, strike_period, metadata, last_updated)"
    " VALUES ($1, $2, $3, $4, $5, $6::bool, $7, $8::timestamptz, $9, $10::jsonb, now())"
    " ON CONFLICT (event_ticker) DO UPDATE SET"
    "  series_ticker = excluded.series_ticker, title = excluded.title,"
    "  sub_title = excluded.sub_title, category = excluded.category,"
    "  mutually_exclusive = excluded.mutually_exclusive, status = excluded.status,"
    "  strike_date = excluded.strike_date, strike_period = excluded.strike_period,"
    "  metadata = excluded.metadata, last_updated = now()"
    " WHERE (e.series_ticker, e.title, e.sub_title, e.category, e.mutually_exclusive,"
    "        e.status, e.strike_date, e.strike_period, e.metadata) IS DISTINCT FROM"
    "       (excluded.series_ticker, excluded.title, excluded.sub_title, excluded.category,"
    "        excluded.mutually_exclusive, excluded.status, excluded.strike_date,"
    "        excluded.strike_period, excluded.metadata)",
    10, false};

static const kb_stmt series_upsert = {
    "imp_series",
    "INSERT INTO series AS s (ticker, title, frequency, category, tags, settlement_sources,"
    "  metadata, last_updated)"
    " VALUES ($1, $2, $3, $4,"
    "  CASE WHEN $5::jsonb IS NULL THEN NULL"
    "       ELSE ARRAY(SELECT jsonb_array_elements_text($5::jsonb)) END,"
    "  $6::jsonb, $7::jsonb, now())"
    " ON CONFLICT (ticker) DO UPDATE SET"
    "  title = excluded.title, frequency = excluded.frequency, category = excluded.category,"
    "  tags = excluded.tags, settlement_sources = excluded.settlement_sources,"
    "  metadata = excluded.metadata, last_updated = now()"
    " WHERE (s.title, s.frequency, s.category, s.tags, s.settlement_sources, s.metadata)"
    "       IS DISTINCT FROM (excluded.title, excluded.frequency, excluded.category,"
    "       excluded.tags, excluded.settlement_sources, excluded.metadata)",
    7, false};

static void
free_json(void *j)
{
    cJSON_Delete(j);
}

static const cJSON *
get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* Non-empty string field or NULL. */
static const char *
str(const cJSON *o, const char *k)
{
    const cJSON *f = get(o, k);
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
static bool
int_field(const cJSON *o, const char *k, int64_t *v)
{
    if (int_val(get(o, k), v))
        return true;
    char alt[64];
    snprintf(alt, sizeof(alt), "%s_dollars", k);
    const char *d = str(o, alt);
    if (d != NULL)
        return decimal_scaled(d, 2, v);
    snprintf(alt, sizeof(alt), "%s_fp", k);
    d = str(o, alt);
    return d != NULL && decimal_scaled(d, 0, v);
}

/* Kalshi ts: Unix seconds, or milliseconds above 1e12; ISO strings accepted too. */
static bool
ts_val(const cJSON *f, int64_t *us)
{
    const char *reason;
    if (cJSON_IsString(f))
        return kb_time_parse(f->valuestring, strlen(f->valuestring), false, us, &reason);
    if (!cJSON_IsNumber(f))
        return false;
    double d = f->valuedouble;
    if (d > 1e12)
        d /= 1000.0;
    if (!(d > -6e10 && d < 2.5e11))
        return false;
    double x = d * 1e6;
    *us = (int64_t)(x >= 0 ? x + 0.5 : x - 0.5);
    return true;
}

static char *
ts_text(kb_arena *a, int64_t us)
{
    char *s = kb_arena_alloc(a, KB_TIME_FMT_MAX);
    kb_time_format(us, s, KB_TIME_FMT_MAX);
    return s;
}

/* ISO/number timestamp field as SQL text, NULL when absent or unreadable. */
static const char *
ts_param(kb_arena *a, const cJSON *o, const char *k)
{
    int64_t us;
    return ts_val(get(o, k), &us) ? ts_text(a, us) : NULL;
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
    const cJSON *arr = get(msg, side);
    bool dollars = false;
    if (arr == NULL) {
        snprintf(k, sizeof(k), "%s_dollars", side);
        arr = get(msg, k);
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
                      ts_text(&im->arena, ts), sid, seq, yes.buf, no.buf, rcv ? rcv : "\\N",
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
      bool has_seq, const char *rcv, const char **reason)
{
    int64_t price, amount;
    const char *side = str(msg, "side");
    if (!has_seq) {
        *reason = "orderbook_delta needs an integer seq";
        return false;
    }
    if (!int_field(msg, "price", &price) || price < 1 || price > 99) {
        *reason = "orderbook_delta price must be 1..99 cents";
        return false;
    }
    if (!int_field(msg, "delta", &amount) || amount < INT32_MIN || amount > INT32_MAX) {
        *reason = "orderbook_delta delta must be an integer";
        return false;
    }
    if (!side_ok(side)) {
        *reason = "orderbook_delta side must be yes or no";
        return false;
    }
    kb_buf *b = &im->deltas;
    copy_str(b, ticker);
    kb_buf_printf(b, "\t%s\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%s\t%s\t%" PRId64
                     "\n",
                  ts_text(&im->arena, ts), seq, sid, price, amount, side, rcv ? rcv : "\\N",
                  im->order);
    im->ndeltas++;
    im->deltas_read++;
    span(im, ts);
    return true;
}

static bool
trade(kb_import *im, const cJSON *msg, const char *ticker, int64_t ts, const char *rcv,
      const char **reason)
{
    const char *id = str(msg, "trade_id"), *taker = str(msg, "taker_side");
    int64_t yes, no, count;
    if (id == NULL) {
        *reason = "trade needs a trade_id";
        return false;
    }
    if (!int_field(msg, "yes_price", &yes) || !int_field(msg, "no_price", &no) || yes < 0 ||
        yes > 100 || no < 0 || no > 100) {
        *reason = "trade yes_price/no_price must be cents 0..100";
        return false;
    }
    if (!int_field(msg, "count", &count) || count < 0 || count > INT32_MAX) {
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
                  no, count, taker, ts_text(&im->arena, ts), rcv ? rcv : "\\N", im->order);
    im->ntrades++;
    im->trades_read++;
    span(im, ts);
    return true;
}

static char *
print_json(kb_arena *a, const cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s == NULL)
        return NULL;
    char *c = kb_arena_strdup(a, s);
    cJSON_free(s);
    return c;
}

static bool
exec_meta(kb_import *im, const kb_stmt *st, const char *const *params, const char **reason)
{
    if (kb_db_exec(&im->db, &im->arena, st, params, NULL)) {
        *reason = kb_arena_printf(&im->arena, "database refused the row (SQLSTATE %s)",
                                  im->db.sqlstate);
        return false;
    }
    im->meta++;
    return true;
}

static bool
settlement(kb_import *im, const cJSON *o, const char *ticker, const char *determined,
           const char *settled, const char *source, const char **reason)
{
    const char *result = str(o, "result");
    if (result == NULL)
        return true;
    static const char *const ok[] = {"yes", "no", "all_yes", "all_no", "void"};
    bool valid = false;
    for (size_t i = 0; i < 5; i++)
        valid = valid || strcmp(result, ok[i]) == 0;
    if (!valid) {
        *reason = "result must be yes, no, all_yes, all_no or void";
        return false;
    }
    int64_t v;
    const char *value = int_field(o, "settlement_value", &v)
                            ? kb_arena_printf(&im->arena, "%" PRId64, v)
                            : NULL;
    const char *params[] = {ticker, str(o, "event_ticker"), result, value, determined, settled,
                            source, print_json(&im->arena, o)};
    return exec_meta(im, &settlement_upsert, params, reason);
}

static const char *
number_text(kb_arena *a, const cJSON *f)
{
    return cJSON_IsNumber(f) ? print_json(a, f) : NULL;
}

/* REST market object. */
static bool
rest_market(kb_import *im, const cJSON *m, const char **reason)
{
    const char *ticker = str(m, "ticker");
    if (!cJSON_IsObject(m) || ticker == NULL) {
        *reason = "market object needs a ticker";
        return false;
    }
    kb_arena *a = &im->arena;
    const char *strike = number_text(a, get(m, "strike_price"));
    if (strike == NULL)
        strike = number_text(a, get(m, "floor_strike"));
    if (strike == NULL)
        strike = number_text(a, get(m, "cap_strike"));
    const char *disc = ts_param(a, m, "created_time");
    if (disc == NULL)
        disc = ts_param(a, m, "open_time");
    const char *params[] = {ticker, str(m, "event_ticker"), str(m, "title"), str(m, "status"),
                            str(m, "category"), str(m, "rules_primary"), strike,
                            print_json(a, m), str(m, "series_ticker"), disc, NULL};
    if (!exec_meta(im, &market_upsert, params, reason))
        return false;
    return settlement(im, m, ticker, ts_param(a, m, "determined_at"),
                      ts_param(a, m, "settled_at"), "rest", reason);
}

static bool
rest_event(kb_import *im, const cJSON *e, const char **reason)
{
    const char *t = str(e, "event_ticker");
    if (!cJSON_IsObject(e) || t == NULL) {
        *reason = "event object needs an event_ticker";
        return false;
    }
    const cJSON *me = get(e, "mutually_exclusive");
    const char *params[] = {t, str(e, "series_ticker"), str(e, "title"), str(e, "sub_title"),
                            str(e, "category"),
                            cJSON_IsBool(me) ? (cJSON_IsTrue(me) ? "t" : "f") : NULL,
                            str(e, "status"), ts_param(&im->arena, e, "strike_date"),
                            str(e, "strike_period"), print_json(&im->arena, e)};
    return exec_meta(im, &event_upsert, params, reason);
}

static bool
rest_series(kb_import *im, const cJSON *s, const char **reason)
{
    const char *t = str(s, "ticker");
    if (!cJSON_IsObject(s) || t == NULL) {
        *reason = "series object needs a ticker";
        return false;
    }
    const cJSON *tags = get(s, "tags"), *src = get(s, "settlement_sources");
    const char *params[] = {t, str(s, "title"), str(s, "frequency"), str(s, "category"),
                            cJSON_IsArray(tags) ? print_json(&im->arena, tags) : NULL,
                            cJSON_IsArray(src) ? print_json(&im->arena, src) : NULL,
                            print_json(&im->arena, s)};
    return exec_meta(im, &series_upsert, params, reason);
}

/* market_lifecycle_v2: status from event_type, other fields into metadata. */
static bool
lifecycle(kb_import *im, const cJSON *msg, const char *ticker, int64_t ts, const char **reason)
{
    const char *ev = str(msg, "event_type");
    static const char *const active[] = {"created", "activated", "close_date_updated"};
    static const char *const terminal[] = {"determined", "settled", "deactivated", "closed"};
    const char *status = NULL;
    for (size_t i = 0; ev && i < 3; i++)
        status = strcmp(ev, active[i]) == 0 ? "active" : status;
    for (size_t i = 0; ev && i < 4; i++)
        status = strcmp(ev, terminal[i]) == 0 ? terminal[i] : status;
    if (status == NULL) {
        *reason = "market_lifecycle event_type is not a known lifecycle word";
        return false;
    }
    kb_arena *a = &im->arena;
    const char *at = ts_text(a, ts);
    const char *params[] = {ticker, str(msg, "event_ticker"), str(msg, "title"), status,
                            str(msg, "category"), str(msg, "rules_primary"),
                            number_text(a, get(msg, "strike_price")), print_json(a, msg),
                            str(msg, "series_ticker"), at, at};
    if (!exec_meta(im, &market_upsert, params, reason))
        return false;
    const char *det = ts_param(a, msg, "determination_ts");
    return settlement(im, msg, ticker, det ? det : (strcmp(ev, "determined") == 0 ? at : NULL),
                      strcmp(ev, "settled") == 0 ? at : ts_param(a, msg, "settled_ts"),
                      "lifecycle", reason);
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
    const cJSON *msg = get(j, "msg");
    if (!cJSON_IsObject(msg)) {
        *reason = "message has no msg object";
        return false;
    }
    const char *ticker = str(msg, "market_ticker");
    if (ticker == NULL) {
        *reason = "msg.market_ticker missing";
        return false;
    }
    int64_t sid = 0, seq = 0, ts;
    (void)int_val(get(j, "sid"), &sid);
    bool has_seq = int_val(get(j, "seq"), &seq);
    const char *rcv = ts_param(&im->arena, j, "received_at");
    if (!ts_val(get(msg, "ts"), &ts)) {
        int64_t r;
        if (get(msg, "ts") != NULL || !ts_val(get(j, "received_at"), &r)) {
            *reason = "msg.ts missing or unreadable and no received_at on the line";
            return false;
        }
        ts = r;
    }
    if (strcmp(type, "orderbook_snapshot") == 0)
        return snapshot(im, msg, ticker, ts, sid, seq, rcv, reason);
    if (strcmp(type, "orderbook_delta") == 0)
        return delta(im, msg, ticker, ts, sid, seq, has_seq, rcv, reason);
    if (is_trade)
        return trade(im, msg, ticker, ts, rcv, reason);
    return lifecycle(im, msg, ticker, ts, reason);
}

/* REST: {"market"}, {"markets": []}, {"event"}, {"events": []}, {"series"}, or bare objects. */
static bool
rest_object(kb_import *im, const cJSON *j, const char **reason)
{
    bool used = false;
    static const struct {
        const char *one, *many;
        bool (*fn)(kb_import *, const cJSON *, const char **);
    } kinds[] = {{"market", "markets", rest_market},
                 {"event", "events", rest_event},
                 {"series", NULL, rest_series}};
    for (size_t k = 0; k < 3; k++) {
        const cJSON *one = get(j, kinds[k].one);
        const cJSON *many = kinds[k].many ? get(j, kinds[k].many) : NULL;
        if (cJSON_IsArray(one))
            many = one, one = NULL; /* "series": [...] is the list response */
        if (cJSON_IsObject(one)) {
            if (!kinds[k].fn(im, one, reason))
                return false;
            used = true;
        }
        if (cJSON_IsArray(many)) {
            for (const cJSON *it = many->child; it != NULL; it = it->next) {
                if (!kinds[k].fn(im, it, reason))
                    return false;
            }
            used = true;
        }
    }
    if (used)
        return true;
    if (str(j, "ticker") != NULL)
        return rest_market(im, j, reason);
    if (str(j, "event_ticker") != NULL)
        return rest_event(im, j, reason);
    *reason = "not a Kalshi WebSocket message or REST market/event/series object";
    return false;
}

bool
kb_import_line(kb_import *im, const char *line, size_t len, const char **reason)
{
    kb_str t = kb_str_trim((kb_str){line, len});
    if (t.len == 0 || t.p[0] == '#') {
        im->skipped++;
        return true;
    }
    cJSON *j = cJSON_ParseWithLength(t.p, t.len);
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
    const char *type = str(j, "type");
    if (type != NULL)
        return ws_message(im, j, type, reason);
    return rest_object(im, j, reason);
}
