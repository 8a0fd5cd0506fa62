/* dispatch.c - request -> route -> handler -> response, independent of FastCGI. */
#include "app.h"

#include <string.h>

#include "kb_config.h"
#include "kb_meter.h"
#include "kb_banned.h"

/*
 * A path parameter that does not decode can name nothing that exists, and no
 * byte of it may reach a handler or the database: the route's own answer for
 * that (its not-found code), before the handler, so nothing is charged.
 */
static kb_err
bad_param(const kb_req *req, kb_ctx *ctx, const kb_route *route)
{
    char name[32] = "param";
    for (size_t k = 0; k < req->nparams; k++) {
        if (req->params[k].p == NULL) {
            kb_router_param_name(route->pattern, k, name, sizeof(name));
            break;
        }
    }
    kb_err err = route->bad_param != KB_OK ? route->bad_param : KB_E_NOT_FOUND;
    return kb_fail(ctx, err, "path.%s: Input should be a valid percent-encoded UTF-8 string", name);
}

kb_err
kb_dispatch(kb_req *req, kb_ctx *ctx)
{
    const kb_route *route = NULL;
    char allow[128];
    kb_err err;

    if (req->body_too_large) {
        err = kb_fail(ctx, KB_E_PAYLOAD_TOO_LARGE, "Request body exceeds %ld bytes.",
                      kb_cfg.max_body);
    } else {
        kb_match m = kb_router_match(kb_routes, kb_nroutes, req, &route, allow, sizeof(allow));
        switch (m) {
        case KB_MATCH_OK:
        case KB_MATCH_BAD_PARAM: {
            ctx->route = route->pattern;
            ctx->route_index = (int)(route - kb_routes);
            ctx->cost = route->cost;
            /* API.md §2 order: a missing or malformed key is 401 before any
             * validation; only the meter can tell an unknown key. The key is
             * parsed here, once, for the meter. */
            const char *why;
            if (route->cost > 0 &&
                !kb_meter_parse_key(kb_req_header(req, "authorization"), &req->api_key, &why))
                err = kb_fail(ctx, KB_E_INVALID_API_KEY, "%s", why);
            else if (m == KB_MATCH_BAD_PARAM)
                err = bad_param(req, ctx, route);
            else
                err = route->fn(req, ctx);
            break;
        }
        case KB_MATCH_BAD_METHOD:
            kb_resp_header(ctx, "Allow", "%s", allow);
            err = kb_fail(ctx, KB_E_METHOD_NOT_ALLOWED, "Method not allowed. Allowed: %s.", allow);
            break;
        default:
            err = kb_fail(ctx, KB_E_NOT_FOUND, "No route for this path.");
            break;
        }
    }
    /* The error envelope is built here, before kb_meter_end() may refund, so a
     * refund cannot alter its body. */
    if (err != KB_OK)
        kb_resp_error(ctx, req, err);
    return err;
}
