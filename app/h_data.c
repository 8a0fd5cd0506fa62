/* h_data.c - POST /orderbook, POST /deltas, POST /trades, GET /candles/{ticker}.
 *
 * Order of every handler (API.md §7.2, §7.10): parse and validate the whole
 * request (422 validation_error, 400 invalid_timestamp), then charge once
 * with kb_meter_charge(), then query. Nothing invalid is ever charged; a
 * failure after the charge is refunded by the dispatcher.
 * Data queries go to the read replica when there is one (data_db()).
 *
 * Bodies are parsed by the shared strict parser (kb_json_body); the body_*
 * getters below add the data routes' lax Pydantic-style reads (numeric
 * strings for integers, timestamps as strings or numbers).
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

/* ---- request validation: 422 problems and 400 timestamp problems, collected ---- */

typedef struct vcheck {
    kb_buf v422; /* "loc: reason" items joined by "; " */
    kb_buf v400;
} vcheck;

static void
vadd(kb_buf *b, const char *loc, const char *reason)
{
    if (b->len)
        kb_buf_puts(b, "; ");
    kb_buf_printf(b, "%s: %s", loc, reason);
}

/* Report what was collected (422 wins over 400); KB_OK when nothing was. */
static kb_err
vfinish(kb_ctx *ctx, vcheck *v)
{
    kb_err err = KB_OK;
    if (v->v422.len)
        err = kb_fail(ctx, KB_E_VALIDATION, "%s", v->v422.buf);
    else if (v->v400.len)
        err = kb_fail(ctx, KB_E_INVALID_TIMESTAMP, "%s", v->v400.buf);
    kb_buf_release(&v->v422);
    kb_buf_release(&v->v400);
    return err;
}

/* API.md §1 "Request bodies", through the one shared parser (kb_json_body:
 * content type, required body, strict JSON, an object, bounded). */
static kb_err
body_object(const kb_req *req, kb_ctx *ctx, const cJSON **out)
{
    cJSON *root = NULL;
    kb_err err = kb_json_body(req, ctx, &root);
    if (err)
        return err;
    *out = root;
    return KB_OK;
}

static const cJSON *
body_get(const cJSON *obj, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(obj, name);
}

/* Required string field. */
static const char *
body_str(vcheck *v, const cJSON *obj, const char *name)
{
    const cJSON *f = body_get(obj, name);
    char loc[64];
    snprintf(loc, sizeof(loc), "body.%s", name);
    if (f == NULL) {
        vadd(&v->v422, loc, "Field required");
        return NULL;
    }
    if (!cJSON_IsString(f)) {
        vadd(&v->v422, loc, "Input should be a valid string");
        return NULL;
    }
    return f->valuestring;
}

/* Required timestamp field (API.md §1.1, §7.10). */
static bool
body_ts(vcheck *v, const cJSON *obj, const char *name, int64_t *us)
{
    const cJSON *f = body_get(obj, name);
    char loc[64];
    snprintf(loc, sizeof(loc), "body.%s", name);
    const char *reason = "Input should be a valid datetime";
    if (f == NULL) {
        vadd(&v->v422, loc, "Field required");
        return false;
    }
    if (cJSON_IsString(f) &&
        kb_time_parse(f->valuestring, strlen(f->valuestring), false, us, &reason))
        return true;
    if (cJSON_IsNumber(f) && kb_time_from_unix(f->valuedouble, us, &reason))
        return true;
    vadd(&v->v400, loc, reason);
    return false;
}

/*
 * Optional integer field in [min, max]; *out = def when missing or null.
 * Integral JSON numbers and integer strings are accepted (lax, as the original).
 */
static void
body_int(vcheck *v, const cJSON *obj, const char *name, int64_t min, int64_t max, int64_t def,
         int64_t *out)
{
    const cJSON *f = body_get(obj, name);
    char loc[64];
    snprintf(loc, sizeof(loc), "body.%s", name);
    *out = def;
    if (f == NULL || cJSON_IsNull(f))
        return;
    int64_t x;
    const char *err;
    if (cJSON_IsNumber(f)) {
        double d = f->valuedouble;
        if (!(d >= -9e15 && d <= 9e15) || (double)(int64_t)d != d) {
            vadd(&v->v422, loc, "Input should be a valid integer");
            return;
        }
        x = (int64_t)d;
    } else if (cJSON_IsString(f) &&
               kb_parse_i64(kb_str_trim(kb_str_c(f->valuestring)), INT64_MIN, INT64_MAX, &x,
                            &err)) {
        /* parsed */
    } else {
        vadd(&v->v422, loc, "Input should be a valid integer");
        return;
    }
    char reason[80];
    if (x < min) {
        snprintf(reason, sizeof(reason), "Input should be greater than or equal to %lld",
                 (long long)min);
        vadd(&v->v422, loc, reason);
    } else if (x > max) {
        snprintf(reason, sizeof(reason), "Input should be less than or equal to %lld",
                 (long long)max);
        vadd(&v->v422, loc, reason);
    } else {
        *out = x;
    }
}

/* Optional "units": null or missing = both forms, "dollars" = Kalshi's strings only. */
static kb_book_units
body_units(vcheck *v, const cJSON *obj)
{
    const cJSON *f = body_get(obj, "units");
    if (f == NULL || cJSON_IsNull(f))
        return KB_BOOK_UNITS_DEFAULT;
    if (cJSON_IsString(f) && strcmp(f->valuestring, "dollars") == 0)
        return KB_BOOK_UNITS_DOLLARS;
    vadd(&v->v422, "body.units", "Input should be 'dollars'");
    return KB_BOOK_UNITS_DEFAULT;
}

/* ---- POST /orderbook ---- */

kb_err
h_orderbook(const kb_req *req, kb_ctx *ctx)
{
    const cJSON *body;
    kb_err err = body_object(req, ctx, &body);
    if (err)
        return err;
    vcheck v = {KB_BUF_INIT, KB_BUF_INIT};
    int64_t ts = 0, depth;
    const char *ticker = body_str(&v, body, "market_ticker");
    body_ts(&v, body, "timestamp", &ts);
    body_int(&v, body, "depth", 0, 1000000, -1, &depth);
    kb_book_units units = body_units(&v, body);
    if ((err = vfinish(ctx, &v)))
        return err;
    if ((err = kb_meter_charge(req, ctx, NULL)))
        return err;

    kb_jw w;
    const char *msg = NULL;
    kb_resp_json_begin(ctx, &w);
    err = kb_book_orderbook(h_data_db(ctx), ctx->arena, ticker, ts, (int)depth, units, &w,
                            &msg);
    if (err)
        return h_data_fail(ctx, err, msg);
    kb_resp_json_end(ctx, req, &w, true);
    return KB_OK;
}

/* ---- POST /deltas and POST /trades ---- */

typedef kb_err page_fn(kb_db *db, kb_arena *a, const char *ticker, int64_t start_us,
                       int64_t end_us, const kb_cursor *cursor, int limit, kb_jw *w);

static kb_err
page_route(const kb_req *req, kb_ctx *ctx, page_fn *fn)
{
    const cJSON *body;
    kb_err err = body_object(req, ctx, &body);
    if (err)
        return err;
    vcheck v = {KB_BUF_INIT, KB_BUF_INIT};
    int64_t start = 0, end = 0, limit;
    kb_cursor cur;
    bool has_cursor = false;
    const char *ticker = body_str(&v, body, "market_ticker");
    bool ts_ok = body_ts(&v, body, "start_time", &start);
    ts_ok = body_ts(&v, body, "end_time", &end) && ts_ok;
    body_int(&v, body, "limit", KB_PAGE_LIMIT_MIN, KB_PAGE_LIMIT_MAX, KB_PAGE_LIMIT_DEFAULT,
             &limit);
    const cJSON *c = body_get(body, "cursor");
    if (c != NULL && !cJSON_IsNull(c)) {
        if (!cJSON_IsString(c))
            vadd(&v.v422, "body.cursor", "Input should be a valid string");
        else if (!kb_cursor_decode(kb_str_c(c->valuestring), &cur))
            vadd(&v.v422, "body.cursor", "invalid pagination cursor");
        else
            has_cursor = true;
    }
    if (ts_ok && start > end)
        vadd(&v.v400, "body.start_time", "start_time must not be after end_time");
    if ((err = vfinish(ctx, &v)))
        return err;
    if ((err = kb_meter_charge(req, ctx, NULL)))
        return err;

    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    err = fn(h_data_db(ctx), ctx->arena, ticker, start, end, has_cursor ? &cur : NULL,
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
query_ts(const kb_req *req, kb_ctx *ctx, vcheck *v, const char *name, int64_t *us)
{
    kb_str val;
    char loc[64];
    snprintf(loc, sizeof(loc), "query.%s", name);
    if (!kb_query_get(ctx->arena, req->query, name, &val)) {
        vadd(&v->v422, loc, "Field required");
        return false;
    }
    const char *reason = "Input should be a valid datetime";
    if (val.p != NULL && kb_time_parse(val.p, val.len, true, us, &reason))
        return true;
    vadd(&v->v400, loc, reason);
    return false;
}

kb_err
h_candles(const kb_req *req, kb_ctx *ctx)
{
    vcheck v = {KB_BUF_INIT, KB_BUF_INIT};
    int64_t start = 0, end = 0;
    bool ts_ok = query_ts(req, ctx, &v, "start_time", &start);
    ts_ok = query_ts(req, ctx, &v, "end_time", &end) && ts_ok;
    kb_str iv;
    int interval = 1; /* 1h */
    if (kb_query_get(ctx->arena, req->query, "interval", &iv)) {
        interval = iv.p ? kb_candle_interval(kb_str_dup(ctx->arena, iv)) : -1;
        if (interval < 0)
            vadd(&v.v422, "query.interval", "Input should be '1m', '1h' or '1d'");
    }
    if (ts_ok && start > end)
        vadd(&v.v400, "query.start_time", "start_time must not be after end_time");
    kb_err err = vfinish(ctx, &v);
    if (err)
        return err;
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
