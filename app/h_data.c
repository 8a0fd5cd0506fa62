/* h_data.c - POST /orderbook, POST /deltas, POST /trades, GET /candles/{ticker}.
 *
 * Order of every handler (API.md §7.2, §7.10): parse and validate the whole
 * request (422 validation_error, 400 invalid_timestamp), then charge once
 * with kb_meter_charge(), then query. Nothing invalid is ever charged; a
 * failure after the charge is refunded by the dispatcher.
 * Data queries go to the read replica when there is one (data_db()).
 *
 * Bodies are parsed by the shared strict parser (kb_json_body) and read with
 * the shared getters (kb_json_get_*), in the data routes' lax Pydantic-style
 * reads (KB_JSON_LAX: integer strings; kb_json_get_time: timestamps as
 * strings or numbers). 422 problems win over 400 timestamp problems.
 */
#include "app.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "kb_book.h"
#include "kb_cursor.h"
#include "kb_json.h"
#include "kb_meter.h"
#include "kb_time.h"
#include "kb_banned.h"

kb_db *
h_data_db(kb_ctx *ctx)
{
    return ctx->w->has_read_replica ? &ctx->w->db_read : &ctx->w->db;
}

kb_err
h_data_fail(kb_ctx *ctx, kb_err err, const char *msg)
{
    if (err == KB_E_UNAVAILABLE)
        return kb_fail(ctx, err, "Database unavailable.");
    if (err == KB_E_INTERNAL)
        return kb_fail(ctx, err, "market data query failed");
    return kb_fail(ctx, err, "%s", msg ? msg : "Not found.");
}

/* ---- POST /orderbook ---- */

kb_err
h_orderbook(const kb_req *req, kb_ctx *ctx)
{
    cJSON *body;
    kb_err err = kb_json_body(req, ctx, &body);
    if (err)
        return err;
    const char *ticker = NULL, *units = NULL;
    int64_t ts = 0, depth = -1;
    kb_json_get_str(ctx, body, "market_ticker", KB_JSON_REQUIRED, 0, &ticker, NULL);
    kb_json_get_time(ctx, body, "timestamp", KB_JSON_REQUIRED, &ts, NULL);
    kb_json_get_int(ctx, body, "depth", KB_JSON_NULLABLE | KB_JSON_LAX, 0, 1000000, &depth, NULL);
    /* null or missing = both forms, "dollars" = Kalshi's strings only */
    if (kb_json_get_str(ctx, body, "units", KB_JSON_NULLABLE, 0, &units, NULL) == KB_OK &&
        units != NULL && strcmp(units, "dollars") != 0)
        kb_json_problem(ctx, "body.units", "Input should be 'dollars'");
    if (ctx->err)
        return ctx->err;
    if ((err = kb_meter_charge(req, ctx, NULL)))
        return err;

    kb_jw w;
    const char *msg = NULL;
    kb_resp_json_begin(ctx, &w);
    err = kb_book_orderbook(h_data_db(ctx), ctx->arena, ticker, ts, (int)depth,
                            units != NULL ? KB_BOOK_UNITS_DOLLARS : KB_BOOK_UNITS_DEFAULT, &w,
                            &msg);
    if (err)
        return h_data_fail(ctx, err, msg);
    kb_resp_json_end(ctx, req, &w, true);
    return KB_OK;
}

/* ---- POST /deltas and POST /trades ---- */

typedef kb_err page_fn(kb_db *db, kb_arena *a, const char *ticker, int64_t start_us, int64_t end_us,
                       const kb_cursor *cursor, int limit, kb_jw *w);

static kb_err
page_route(const kb_req *req, kb_ctx *ctx, page_fn *fn)
{
    cJSON *body;
    kb_err err = kb_json_body(req, ctx, &body);
    if (err)
        return err;
    const char *ticker = NULL, *cursor = NULL;
    int64_t start = 0, end = 0, limit = KB_PAGE_LIMIT_DEFAULT;
    bool has_start = false, has_end = false;
    kb_cursor cur;
    kb_json_get_str(ctx, body, "market_ticker", KB_JSON_REQUIRED, 0, &ticker, NULL);
    kb_json_get_time(ctx, body, "start_time", KB_JSON_REQUIRED, &start, &has_start);
    kb_json_get_time(ctx, body, "end_time", KB_JSON_REQUIRED, &end, &has_end);
    kb_json_get_int(ctx, body, "limit", KB_JSON_NULLABLE | KB_JSON_LAX, KB_PAGE_LIMIT_MIN,
                    KB_PAGE_LIMIT_MAX, &limit, NULL);
    if (kb_json_get_str(ctx, body, "cursor", KB_JSON_NULLABLE, 0, &cursor, NULL) == KB_OK &&
        cursor != NULL && !kb_cursor_decode(kb_str_c(cursor), &cur))
        kb_json_problem(ctx, "body.cursor", "invalid pagination cursor");
    if (has_start && has_end && start > end)
        kb_json_time_problem(ctx, "body.start_time", "start_time must not be after end_time");
    if (ctx->err)
        return ctx->err;
    if ((err = kb_meter_charge(req, ctx, NULL)))
        return err;

    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    err = fn(h_data_db(ctx), ctx->arena, ticker, start, end, cursor != NULL ? &cur : NULL,
             (int)limit, &w);
    if (err)
        return h_data_fail(ctx, err, NULL);
    kb_resp_json_end(ctx, req, &w, true);
    return KB_OK;
}

kb_err
h_deltas(const kb_req *req, kb_ctx *ctx)
{
    return page_route(req, ctx, kb_book_deltas);
}

kb_err
h_trades(const kb_req *req, kb_ctx *ctx)
{
    return page_route(req, ctx, kb_book_trades);
}

/* ---- GET /candles/{ticker} ---- */

/* Required query timestamp; a space before the offset is read as '+' (§7.14). */
static bool
query_time(const kb_req *req, kb_ctx *ctx, const char *name, int64_t *us)
{
    kb_str val;
    char loc[64];
    snprintf(loc, sizeof(loc), "query.%s", name);
    if (!kb_query_get(ctx->arena, req->query, name, &val)) {
        kb_json_problem(ctx, loc, "Field required");
        return false;
    }
    const char *reason = "Input should be a valid datetime";
    if (val.p != NULL && kb_time_parse(val.p, val.len, true, us, &reason))
        return true;
    kb_json_time_problem(ctx, loc, "%s", reason);
    return false;
}

kb_err
h_candles(const kb_req *req, kb_ctx *ctx)
{
    int64_t start = 0, end = 0;
    bool ts_ok = query_time(req, ctx, "start_time", &start);
    ts_ok = query_time(req, ctx, "end_time", &end) && ts_ok;
    kb_str iv;
    int interval = 1; /* 1h */
    if (kb_query_get(ctx->arena, req->query, "interval", &iv)) {
        interval = iv.p ? kb_candle_interval(kb_str_dup(ctx->arena, iv)) : -1;
        if (interval < 0)
            kb_json_problem(ctx, "query.interval", "Input should be '1m', '1h' or '1d'");
    }
    if (ts_ok && start > end)
        kb_json_time_problem(ctx, "query.start_time", "start_time must not be after end_time");
    if (ctx->err)
        return ctx->err;
    kb_err err;
    if ((err = kb_meter_charge(req, ctx, NULL)))
        return err;

    const char *ticker = kb_str_dup(ctx->arena, req->params[0]);
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    err = kb_book_candles(h_data_db(ctx), ctx->arena, ticker, start, end, interval, &w);
    if (err)
        return h_data_fail(ctx, err, NULL);
    kb_resp_json_end(ctx, req, &w, true);
    return KB_OK;
}
