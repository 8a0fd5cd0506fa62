/* app.h - what the programs in app/ share: the router, the dispatcher, handlers.
 *
 * Includes point app -> lib, never back. Only app/fcgi.c includes fcgiapp.h.
 */
#ifndef KB_APP_H
#define KB_APP_H

#include <stddef.h>

#include "kb_http.h"
#include "kb_worker.h"

typedef kb_err kb_handler_fn(const kb_req *req, kb_ctx *ctx);

typedef struct kb_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/keys/{key_id}/reveal": {..} matches one segment */
    kb_handler_fn *fn;
    int cost;            /* credits per request (API.md §5.0); > 0 = a metered data route:
                          * Authorization must carry a kb- key, the handler charges this */
    kb_err bad_param;    /* the answer, uncharged, when a {param} segment does not decode
                          * (a bad escape, NUL, bytes that are not UTF-8): the route's
                          * not-found code, as for an id that does not exist, or
                          * KB_E_VALIDATION; KB_OK for a route without parameters */
} kb_route;

/* The route table (app/routes.c), literal routes before parameterised ones. */
extern const kb_route kb_routes[];
extern const size_t kb_nroutes;

typedef enum kb_match {
    KB_MATCH_OK,          /* *route set, req->params filled */
    KB_MATCH_NO_PATH,     /* 404 not_found */
    KB_MATCH_BAD_PARAM,   /* *route set, but a {param} segment did not decode: its
                           * req->params entry is the null string; route->bad_param */
    KB_MATCH_BAD_METHOD,  /* 405; allow holds "GET, POST" */
} kb_match;

/*
 * Match req->method and req->path against the table. Path segments are
 * percent-decoded before comparison; decoded parameters go to req->params,
 * and on KB_MATCH_OK each is valid UTF-8 without NUL.
 */
kb_match kb_router_match(const kb_route *routes, size_t n, kb_req *req, const kb_route **route,
                         char *allow, size_t allowsz);

/* Name of the k-th {param} of pattern into out ("ticker"); false when there is none. */
bool kb_router_param_name(const char *pattern, size_t k, char *out, size_t outsz);

/*
 * Route, run the handler and leave a complete response in ctx (never fails);
 * returns the handler's result (or the routing error). For a metered route it
 * parses the API key into req->api_key and sets ctx->cost; the caller then ends
 * the request with kb_meter_end() (lib/kb_meter.h), which sends the answer.
 */
kb_err kb_dispatch(kb_req *req, kb_ctx *ctx);

/* Handlers, one file per API area. */
kb_err h_health(const kb_req *req, kb_ctx *ctx);
kb_err h_webhook(const kb_req *req, kb_ctx *ctx); /* app/h_webhook.c */
kb_err h_billing_checkout(const kb_req *req, kb_ctx *ctx); /* app/h_billing.c */
kb_err h_billing_portal(const kb_req *req, kb_ctx *ctx);
kb_err h_billing_payg(const kb_req *req, kb_ctx *ctx);
kb_err h_metrics(const kb_req *req, kb_ctx *ctx);
kb_err h_auth_signup(const kb_req *req, kb_ctx *ctx);
kb_err h_auth_login(const kb_req *req, kb_ctx *ctx);
kb_err h_keys_create(const kb_req *req, kb_ctx *ctx);
kb_err h_keys_list(const kb_req *req, kb_ctx *ctx);
kb_err h_keys_usage(const kb_req *req, kb_ctx *ctx);
kb_err h_keys_update(const kb_req *req, kb_ctx *ctx);
kb_err h_keys_delete(const kb_req *req, kb_ctx *ctx);
kb_err h_keys_reveal(const kb_req *req, kb_ctx *ctx);
kb_err h_billing_status(const kb_req *req, kb_ctx *ctx);

/* Market data (app/h_data.c, app/h_markets.c): metered, API.md §5.6-5.12. */
kb_err h_orderbook(const kb_req *req, kb_ctx *ctx);
kb_err h_deltas(const kb_req *req, kb_ctx *ctx);
kb_err h_trades(const kb_req *req, kb_ctx *ctx);
kb_err h_candles(const kb_req *req, kb_ctx *ctx);
kb_err h_markets_list(const kb_req *req, kb_ctx *ctx);
kb_err h_market_get(const kb_req *req, kb_ctx *ctx);
kb_err h_market_coverage(const kb_req *req, kb_ctx *ctx);
kb_err h_events_list(const kb_req *req, kb_ctx *ctx);
kb_err h_event_get(const kb_req *req, kb_ctx *ctx);
kb_err h_settlements_list(const kb_req *req, kb_ctx *ctx);
kb_err h_settlement_get(const kb_req *req, kb_ctx *ctx);
/* The connection data queries use: the read replica when configured, else the primary. */
kb_db *h_data_db(kb_ctx *ctx);
/* Record a data-query failure (503/500, or a not-found code with msg). */
kb_err h_data_fail(kb_ctx *ctx, kb_err err, const char *msg);

#endif
