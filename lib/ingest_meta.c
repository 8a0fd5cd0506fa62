/* ingest_meta.c - Kalshi REST objects and lifecycle messages -> metadata upserts.
 *
 * Markets, events, series and settlements are upserted at once (outside the
 * COPY batches) and only written when something changed, so a re-import
 * changes nothing; lifecycle messages older than the newest one applied to
 * a market are ignored (markets.status_at).
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "kb_ingest.h"
#include "kb_banned.h"

static const kb_stmt market_upsert = {
    "imp_market",
    "INSERT INTO markets AS m (ticker, event_ticker, title, status, category, rules,"
    "  strike_price, metadata, series_ticker, discovered_at, last_updated, status_at,"
    "  price_level_structure, price_ranges, fractional_trading_enabled)"
    " VALUES ($1, $2, $3, coalesce($4, 'active'), $5, $6, $7::numeric, $8::jsonb, $9,"
    "  coalesce($10::timestamptz, now()), now(), $11::timestamptz, $12, $13::jsonb, $14::bool)"
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
    "  price_level_structure = coalesce($12, m.price_level_structure),"
    "  price_ranges = coalesce($13::jsonb, m.price_ranges),"
    "  fractional_trading_enabled = coalesce($14::bool, m.fractional_trading_enabled),"
    "  last_updated = now(), status_at = greatest(m.status_at, excluded.status_at)"
    " WHERE (excluded.status_at IS NULL OR m.status_at IS NULL"
    "        OR excluded.status_at > m.status_at)"
    "   AND (m.event_ticker, m.title, m.status, m.category, m.rules, m.strike_price,"
    "        m.metadata, m.series_ticker, m.price_level_structure, m.price_ranges,"
    "        m.fractional_trading_enabled) IS DISTINCT FROM"
    "       (coalesce(excluded.event_ticker, m.event_ticker), coalesce(excluded.title, m.title),"
    "        coalesce($4, m.status), coalesce(excluded.category, m.category),"
    "        coalesce(excluded.rules, m.rules), coalesce(excluded.strike_price, m.strike_price),"
    "        CASE WHEN excluded.metadata IS NULL THEN m.metadata"
    "             ELSE coalesce(m.metadata, '{}'::jsonb) || excluded.metadata END,"
    "        coalesce(excluded.series_ticker, m.series_ticker),"
    "        coalesce($12, m.price_level_structure), coalesce($13::jsonb, m.price_ranges),"
    "        coalesce($14::bool, m.fractional_trading_enabled))",
    14, false};

static const kb_stmt settlement_upsert = {
    "imp_settlement",
    "INSERT INTO settlements AS s (market_ticker, event_ticker, result, settlement_value_e4,"
    "  determined_at, settled_at, source, metadata)"
    " VALUES ($1, $2, $3, $4::int, $5::timestamptz, $6::timestamptz, $7, $8::jsonb)"
    " ON CONFLICT (market_ticker) DO UPDATE SET"
    "  event_ticker = coalesce(excluded.event_ticker, s.event_ticker),"
    "  result = coalesce(excluded.result, s.result),"
    "  settlement_value_e4 = coalesce(excluded.settlement_value_e4, s.settlement_value_e4),"
    "  determined_at = coalesce(excluded.determined_at, s.determined_at),"
    "  settled_at = coalesce(excluded.settled_at, s.settled_at),"
    "  metadata = coalesce(excluded.metadata, s.metadata), updated_at = now()"
    " WHERE (s.event_ticker, s.result, s.settlement_value_e4, s.determined_at, s.settled_at,"
    "        s.metadata) IS DISTINCT FROM"
    "       (coalesce(excluded.event_ticker, s.event_ticker), coalesce(excluded.result, s.result),"
    "        coalesce(excluded.settlement_value_e4, s.settlement_value_e4),"
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

static const char *const envelope_fields[] = {"ts", "ts_ms", "sid", "seq", "received_at"};

char *
kb__ingest_metadata(kb_arena *a, const cJSON *o)
{
    if (o == NULL)
        return NULL;
    bool has = false;
    for (size_t i = 0; i < sizeof(envelope_fields) / sizeof(envelope_fields[0]); i++)
        has = has || kb__ingest_get(o, envelope_fields[i]) != NULL;
    if (!has)
        return print_json(a, o);
    cJSON *c = cJSON_Duplicate(o, true);
    if (c == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(envelope_fields) / sizeof(envelope_fields[0]); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(c, envelope_fields[i]);
    char *s = print_json(a, c);
    cJSON_Delete(c);
    return s;
}

/* price_level_structure, price_ranges, fractional_trading_enabled: params $12..$14. */
static void
price_levels(kb_arena *a, const cJSON *o, const char **params)
{
    const cJSON *pr = kb__ingest_get(o, "price_ranges"),
                *fr = kb__ingest_get(o, "fractional_trading_enabled");
    params[11] = kb__ingest_str(o, "price_level_structure");
    params[12] = cJSON_IsArray(pr) ? print_json(a, pr) : NULL;
    params[13] = cJSON_IsBool(fr) ? (cJSON_IsTrue(fr) ? "t" : "f") : NULL;
}

static bool
exec_meta(kb_ingest *im, const kb_stmt *st, const char *const *params, const char **reason)
{
    if (kb_db_exec(im->db, &im->arena, st, params, NULL)) {
        *reason = kb_arena_printf(&im->arena, "database refused the row (SQLSTATE %s)",
                                  im->db->sqlstate);
        return false;
    }
    im->meta++;
    return true;
}

static bool
settlement(kb_ingest *im, const cJSON *o, const char *ticker, const char *determined,
           const char *settled, const char *source, const char **reason)
{
    const char *result = kb__ingest_str(o, "result");
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
    bool found;
    if (!kb__ingest_price(&im->arena, o, "settlement_value", &found, &v, reason))
        return false;
    const char *value = found ? kb_arena_printf(&im->arena, "%" PRId64, v) : NULL;
    const char *params[] = {ticker,     kb__ingest_str(o, "event_ticker"),
                            result,     value,
                            determined, settled,
                            source,     kb__ingest_metadata(&im->arena, o)};
    return exec_meta(im, &settlement_upsert, params, reason);
}

static const char *
number_text(kb_arena *a, const cJSON *f)
{
    return cJSON_IsNumber(f) ? print_json(a, f) : NULL;
}

/* REST market object. */
static bool
rest_market(kb_ingest *im, const cJSON *m, const char **reason)
{
    const char *ticker = kb__ingest_str(m, "ticker");
    if (!cJSON_IsObject(m) || ticker == NULL) {
        *reason = "market object needs a ticker";
        return false;
    }
    kb_arena *a = &im->arena;
    const char *strike = number_text(a, kb__ingest_get(m, "strike_price"));
    if (strike == NULL)
        strike = number_text(a, kb__ingest_get(m, "floor_strike"));
    if (strike == NULL)
        strike = number_text(a, kb__ingest_get(m, "cap_strike"));
    const char *disc = kb__ingest_ts_param(a, m, "created_time");
    if (disc == NULL)
        disc = kb__ingest_ts_param(a, m, "open_time");
    const char *params[14] = {ticker,
                              kb__ingest_str(m, "event_ticker"),
                              kb__ingest_str(m, "title"),
                              kb__ingest_str(m, "status"),
                              kb__ingest_str(m, "category"),
                              kb__ingest_str(m, "rules_primary"),
                              strike,
                              kb__ingest_metadata(a, m),
                              kb__ingest_str(m, "series_ticker"),
                              disc,
                              NULL};
    price_levels(a, m, params);
    if (!exec_meta(im, &market_upsert, params, reason))
        return false;
    return settlement(im, m, ticker, kb__ingest_ts_param(a, m, "determined_at"),
                      kb__ingest_ts_param(a, m, "settled_at"), "rest", reason);
}

static bool
rest_event(kb_ingest *im, const cJSON *e, const char **reason)
{
    const char *t = kb__ingest_str(e, "event_ticker");
    if (!cJSON_IsObject(e) || t == NULL) {
        *reason = "event object needs an event_ticker";
        return false;
    }
    const cJSON *me = kb__ingest_get(e, "mutually_exclusive");
    const char *params[] = {t,
                            kb__ingest_str(e, "series_ticker"),
                            kb__ingest_str(e, "title"),
                            kb__ingest_str(e, "sub_title"),
                            kb__ingest_str(e, "category"),
                            cJSON_IsBool(me) ? (cJSON_IsTrue(me) ? "t" : "f") : NULL,
                            kb__ingest_str(e, "status"),
                            kb__ingest_ts_param(&im->arena, e, "strike_date"),
                            kb__ingest_str(e, "strike_period"),
                            print_json(&im->arena, e)};
    return exec_meta(im, &event_upsert, params, reason);
}

static bool
rest_series(kb_ingest *im, const cJSON *s, const char **reason)
{
    const char *t = kb__ingest_str(s, "ticker");
    if (!cJSON_IsObject(s) || t == NULL) {
        *reason = "series object needs a ticker";
        return false;
    }
    const cJSON *tags = kb__ingest_get(s, "tags"), *src = kb__ingest_get(s, "settlement_sources");
    const char *params[] = {t,
                            kb__ingest_str(s, "title"),
                            kb__ingest_str(s, "frequency"),
                            kb__ingest_str(s, "category"),
                            cJSON_IsArray(tags) ? print_json(&im->arena, tags) : NULL,
                            cJSON_IsArray(src) ? print_json(&im->arena, src) : NULL,
                            print_json(&im->arena, s)};
    return exec_meta(im, &series_upsert, params, reason);
}

/* market_lifecycle_v2: status from event_type, other fields (not the envelope's) into
 * metadata. price_level_structure_updated and metadata_updated leave the status. */
bool
kb__ingest_lifecycle(kb_ingest *im, const cJSON *msg, const char *ticker, int64_t ts,
                     const char **reason)
{
    const char *ev = kb__ingest_str(msg, "event_type");
    static const char *const active[] = {"created", "activated", "close_date_updated"};
    static const char *const terminal[] = {"determined", "settled", "deactivated", "closed"};
    static const char *const keep[] = {"price_level_structure_updated", "metadata_updated"};
    const char *status = NULL;
    bool known = false;
    for (size_t i = 0; ev && i < 3; i++)
        status = strcmp(ev, active[i]) == 0 ? "active" : status;
    for (size_t i = 0; ev && i < 4; i++)
        status = strcmp(ev, terminal[i]) == 0 ? terminal[i] : status;
    for (size_t i = 0; ev && i < 2; i++)
        known = known || strcmp(ev, keep[i]) == 0;
    if (status == NULL && !known) {
        *reason = "market_lifecycle event_type is not a known lifecycle word";
        return false;
    }
    kb_arena *a = &im->arena;
    const char *at = kb__ingest_ts_text(a, ts);
    const char *params[14] = {ticker,
                              kb__ingest_str(msg, "event_ticker"),
                              kb__ingest_str(msg, "title"),
                              status,
                              kb__ingest_str(msg, "category"),
                              kb__ingest_str(msg, "rules_primary"),
                              number_text(a, kb__ingest_get(msg, "strike_price")),
                              kb__ingest_metadata(a, msg),
                              kb__ingest_str(msg, "series_ticker"),
                              at,
                              at};
    price_levels(a, msg, params);
    if (!exec_meta(im, &market_upsert, params, reason))
        return false;
    const char *det = kb__ingest_ts_param(a, msg, "determination_ts");
    return settlement(im, msg, ticker, det ? det : (strcmp(ev, "determined") == 0 ? at : NULL),
                      strcmp(ev, "settled") == 0 ? at : kb__ingest_ts_param(a, msg, "settled_ts"),
                      "lifecycle", reason);
}

bool
kb__ingest_rest(kb_ingest *im, const cJSON *j, const char **reason)
{
    bool used = false;
    static const struct {
        const char *one, *many;
        bool (*fn)(kb_ingest *, const cJSON *, const char **);
    } kinds[] = {{"market", "markets", rest_market},
                 {"event", "events", rest_event},
                 {"series", NULL, rest_series}};
    for (size_t k = 0; k < 3; k++) {
        const cJSON *one = kb__ingest_get(j, kinds[k].one);
        const cJSON *many = kinds[k].many ? kb__ingest_get(j, kinds[k].many) : NULL;
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
    if (kb__ingest_str(j, "ticker") != NULL)
        return rest_market(im, j, reason);
    if (kb__ingest_str(j, "event_ticker") != NULL)
        return rest_event(im, j, reason);
    *reason = "not a Kalshi WebSocket message or REST market/event/series object";
    return false;
}
