/* h_markets.c - GET /markets, /markets/{ticker}, /markets/{ticker}/coverage, /events,
 * /events/{event_ticker}, /settlements, /settlements/{ticker}: 1 credit each (app/fcgi/routes.c).
 *
 * No body; query filters are exact-match strings (absent = no filter). Each
 * handler validates, charges once, then queries the data connection.
 *
 * GET /markets and GET /events (lib/kb_catalog.h) take filters and paging.
 * The rule for a client: paging is on exactly when `limit` or `cursor` is in
 * the query. Then the answer is one page with next_cursor and has_more, as on
 * /deltas. Without either, the answer is every matching row in the same order
 * and shape as before paging existed ({data, request_id, response_time}), so
 * the SDK's list_markets() and list_events(filters) keep working unchanged;
 * filters narrow a list, they never page it. That whole-list form is streamed:
 * the charge and the first rows come before the first byte (so credit headers
 * and any early failure are ordinary), then rows follow piece by piece. A
 * database failure after the first byte cuts the connection (the client sees
 * an incomplete transfer, never a short document), and the charge is refunded
 * from the journal (kb_resp_send_body, kb_meter_end).
 */
#include "app.h"

#include <stdio.h>
#include <string.h>

#include "kb_book.h"
#include "kb_catalog.h"
#include "kb_markets.h"
#include "kb_meter.h"
#include "kb_time.h"
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
        *err = kb_fail(ctx, KB_E_VALIDATION, "query.%s: invalid percent-encoding or UTF-8", name);
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
 * is the meter's (no read replica) it rides in the charge's first round trip,
 * in its transaction (its failure aborts the charge; a refusal throws its
 * result away), or for a key the worker has not seen, in the commit's round
 * trip once charged (lib/meter.c). The heavy data routes never do this.
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

/* ---- GET /markets and GET /events ---- */

/* Validation problems: "loc: reason" items joined by "; " (422), and bad
 * timestamps (400 invalid_timestamp; 422 wins when both). */
typedef struct problems {
    kb_buf v422;
    kb_buf v400;
} problems;

static void
problem(kb_buf *b, const char *name, const char *reason)
{
    if (b->len)
        kb_buf_puts(b, "; ");
    kb_buf_printf(b, "query.%s: %s", name, reason);
}

/* A query parameter as text: false when absent or recorded as a problem. A
 * value that does not decode (a bad escape, or bytes that are not UTF-8:
 * kb_str_unescape refuses both) is a bad timestamp for updated_since (400, as
 * every timestamp) and a 422 for the others. */
static bool
query_text(const kb_req *req, kb_ctx *ctx, problems *pr, const char *name, kb_str *out)
{
    if (!kb_query_get(ctx->arena, req->query, name, out))
        return false;
    if (out->p == NULL) {
        if (strcmp(name, "updated_since") == 0)
            problem(&pr->v400, name, "Input should be a valid datetime");
        else
            problem(&pr->v422, name, "invalid percent-encoding or UTF-8");
        return false;
    }
    return true;
}

/* An optional exact-match filter: NULL when absent. */
static const char *
query_filter(const kb_req *req, kb_ctx *ctx, problems *pr, const char *name)
{
    kb_str v;
    return query_text(req, ctx, pr, name, &v) ? kb_str_dup(ctx->arena, v) : NULL;
}

/* Read the query of a list: filters, updated_since, limit and cursor. */
static kb_err
list_query(const kb_req *req, kb_ctx *ctx, kb_catalog_query *q)
{
    problems pr = {KB_BUF_INIT, KB_BUF_INIT};
    kb_str v;
    q->status = query_filter(req, ctx, &pr, "status");
    if (q->list == KB_CATALOG_MARKETS)
        q->event_ticker = query_filter(req, ctx, &pr, "event_ticker");
    q->series_ticker = query_filter(req, ctx, &pr, "series_ticker");
    q->category = query_filter(req, ctx, &pr, "category");
    q->ticker_prefix = query_filter(req, ctx, &pr, "ticker_prefix");
    if (query_text(req, ctx, &pr, "updated_since", &v)) {
        const char *why = "Input should be a valid datetime";
        q->has_since = kb_time_parse(v.p, v.len, true, &q->since_us, &why);
        if (!q->has_since)
            problem(&pr.v400, "updated_since", why);
    }
    bool paged = false;
    if (query_text(req, ctx, &pr, "limit", &v)) {
        int64_t n = 0;
        const char *why;
        char reason[64];
        paged = true;
        if (!kb_parse_i64(v, INT64_MIN, INT64_MAX, &n, &why)) {
            problem(&pr.v422, "limit", "Input should be a valid integer");
        } else if (n < KB_PAGE_LIMIT_MIN || n > KB_PAGE_LIMIT_MAX) {
            snprintf(reason, sizeof(reason), "Input should be %s %d",
                     n < KB_PAGE_LIMIT_MIN ? "greater than or equal to" : "less than or equal to",
                     n < KB_PAGE_LIMIT_MIN ? KB_PAGE_LIMIT_MIN : KB_PAGE_LIMIT_MAX);
            problem(&pr.v422, "limit", reason);
        } else {
            q->limit = (int)n;
        }
    }
    if (query_text(req, ctx, &pr, "cursor", &v)) {
        paged = true;
        /* An empty cursor= asks for the first page. */
        if (v.len > 0) {
            kb_list_cursor *c = kb_arena_calloc(ctx->arena, 1, sizeof(*c));
            if (kb_cursor_list_decode(ctx->arena, v, kb_catalog_cursor_name(q->list),
                                      kb_catalog_cursor_has_at(q->list), c))
                q->cursor = c;
            else
                problem(&pr.v422, "cursor", "invalid pagination cursor");
        }
    }
    if (paged && q->limit == 0)
        q->limit = KB_PAGE_LIMIT_DEFAULT;
    kb_err err = KB_OK;
    if (pr.v422.len)
        err = kb_fail(ctx, KB_E_VALIDATION, "%s", kb_buf_cstr(&pr.v422));
    else if (pr.v400.len)
        err = kb_fail(ctx, KB_E_INVALID_TIMESTAMP, "%s", kb_buf_cstr(&pr.v400));
    kb_buf_release(&pr.v422);
    kb_buf_release(&pr.v400);
    return err;
}

/* A whole list as the response stream (kb_resp_stream). */
typedef struct list_stream {
    kb_catalog_stream *rows;
    const kb_req *req;
    kb_jw w; /* inside "data" */
} list_stream;

static kb_err
list_next(void *ud, kb_ctx *ctx, kb_buf *out, bool *done)
{
    list_stream *ls = ud;
    ls->w.b = out;
    kb_err err = kb_catalog_next(ls->rows, &ls->w, done);
    if (err)
        return h_data_fail(ctx, err, NULL);
    if (*done) {
        kb_jw_arr_end(&ls->w);
        kb_resp_json_end(ctx, ls->req, &ls->w, true);
    }
    return KB_OK;
}

static void
list_close(void *ud, kb_ctx *ctx)
{
    (void)ctx;
    list_stream *ls = ud;
    kb_catalog_close(ls->rows);
    ls->rows = NULL;
}

/* Validate, charge, then one page or the whole list streamed. */
static kb_err
list_route(const kb_req *req, kb_ctx *ctx, kb_catalog_list list)
{
    kb_catalog_query q = {.list = list};
    kb_err err = list_query(req, ctx, &q);
    if (err)
        return err;
    if ((err = kb_meter_charge(req, ctx, NULL)))
        return err;
    kb_db *db = h_data_db(ctx);
    if (q.limit > 0) {
        kb_jw w;
        kb_resp_json_begin(ctx, &w);
        return finish(req, ctx, &w, kb_catalog_page(db, ctx->arena, &q, &w), NULL);
    }
    list_stream *ls = kb_arena_calloc(ctx->arena, 1, sizeof(*ls));
    if ((err = kb_catalog_open(db, ctx->arena, &q, &ls->rows)))
        return h_data_fail(ctx, err, NULL);
    ls->req = req;
    kb_resp_json_begin(ctx, &ls->w);
    kb_jw_key(&ls->w, "data");
    kb_jw_arr(&ls->w);
    kb_resp_stream *s = kb_arena_calloc(ctx->arena, 1, sizeof(*s));
    *s = (kb_resp_stream){list_next, list_close, ls};
    kb_resp_stream_set(ctx, s);
    return KB_OK;
}

kb_err
h_markets_list(const kb_req *req, kb_ctx *ctx)
{
    return list_route(req, ctx, KB_CATALOG_MARKETS);
}

kb_err
h_events_list(const kb_req *req, kb_ctx *ctx)
{
    return list_route(req, ctx, KB_CATALOG_EVENTS);
}
