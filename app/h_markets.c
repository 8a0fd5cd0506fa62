/* h_markets.c - GET /markets, /markets/{ticker}, /markets/{ticker}/coverage, /events,
 * /events/{event_ticker}, /settlements, /settlements/{ticker}: 1 credit each (app/routes.c).
 *
 * No body; query filters are exact-match strings (absent = no filter). Each
 * handler validates, charges once, then queries the data connection.
 */
#include "app.h"

#include "kb_markets.h"
#include "kb_meter.h"
#include "kb_banned.h"

/* Optional query filter: NULL when absent; false (422 recorded) when undecodable. */
static bool
filter(const kb_req *req, kb_ctx *ctx, const char *name, const char **out, kb_err *err)
{
    kb_str v;
    *out = NULL;
    if (!kb_query_get(ctx->arena, req->query, name, &v))
        return true;
    if (v.p == NULL) {
        *err = kb_fail(ctx, KB_E_VALIDATION, "query.%s: invalid percent-encoding", name);
        return false;
    }
    *out = kb_str_dup(ctx->arena, v);
    return true;
}

static kb_err
finish(const kb_req *req, kb_ctx *ctx, kb_jw *w, kb_err err, const char *msg)
{
    if (err)
        return h_data_fail(ctx, err, msg);
    kb_resp_json_end(ctx, req, w, true);
    return KB_OK;
}

/* A by-id lookup of lib/markets.c: writes "data" or returns its not-found code
 * with *msg; and the sending ahead of its first statement. */
typedef kb_err (*get_fn)(kb_db *db, kb_arena *a, const char *id, kb_jw *w, const char **msg);
typedef void (*ahead_fn)(kb_db *db, const char *id);

/*
 * GET /<things>/{id}: charge, look the path parameter up with get, answer.
 * The lookup goes with the charge (kb_meter_ahead): when the data connection
 * is the meter's (no read replica) it rides in the charge's commit round trip,
 * running after the charge has committed, and is not sent when the meter
 * refuses. The heavy data routes never do this.
 */
static kb_err
by_id(const kb_req *req, kb_ctx *ctx, get_fn get, ahead_fn ahead)
{
    const char *id = kb_str_dup(ctx->arena, req->params[0]);
    kb_db *db = h_data_db(ctx);
    kb_meter_ahead lookup = {ahead, id, db};
    kb_err err = kb_meter_charge(req, ctx, &lookup);
    if (err)
        return err;
    const char *msg = NULL;
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    err = get(db, ctx->arena, id, &w, &msg);
    return finish(req, ctx, &w, err, msg);
}

kb_err
h_markets_list(const kb_req *req, kb_ctx *ctx)
{
    kb_err err = kb_meter_charge(req, ctx, NULL);
    if (err)
        return err;
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    return finish(req, ctx, &w, kb_markets_list(h_data_db(ctx), ctx->arena, &w), NULL);
}

kb_err
h_market_get(const kb_req *req, kb_ctx *ctx)
{
    return by_id(req, ctx, kb_markets_get, kb_markets_get_ahead);
}

/* GET /markets/{ticker}/coverage: the by-id shape, with the fields at the top level. */
kb_err
h_market_coverage(const kb_req *req, kb_ctx *ctx)
{
    return by_id(req, ctx, kb_markets_coverage, kb_markets_coverage_ahead);
}

kb_err
h_events_list(const kb_req *req, kb_ctx *ctx)
{
    const char *category, *series, *status;
    kb_err err = KB_OK;
    if (!filter(req, ctx, "category", &category, &err) ||
        !filter(req, ctx, "series_ticker", &series, &err) ||
        !filter(req, ctx, "status", &status, &err))
        return err;
    if ((err = kb_meter_charge(req, ctx, NULL)))
        return err;
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    err = kb_events_list(h_data_db(ctx), ctx->arena, category, series, status, &w);
    return finish(req, ctx, &w, err, NULL);
}

kb_err
h_event_get(const kb_req *req, kb_ctx *ctx)
{
    return by_id(req, ctx, kb_events_get, kb_events_get_ahead);
}

kb_err
h_settlements_list(const kb_req *req, kb_ctx *ctx)
{
    const char *event, *result;
    kb_err err = KB_OK;
    if (!filter(req, ctx, "event_ticker", &event, &err) ||
        !filter(req, ctx, "result", &result, &err))
        return err;
    if ((err = kb_meter_charge(req, ctx, NULL)))
        return err;
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    err = kb_settlements_list(h_data_db(ctx), ctx->arena, event, result, &w);
    return finish(req, ctx, &w, err, NULL);
}

kb_err
h_settlement_get(const kb_req *req, kb_ctx *ctx)
{
    return by_id(req, ctx, kb_settlements_get, kb_settlements_get_ahead);
}
