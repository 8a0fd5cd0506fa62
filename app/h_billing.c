/* h_billing.c - POST /billing/checkout, /billing/portal, /billing/payg (API.md §5.13, §7.4-7.6).
 *
 * Thin HTTP wrappers over lib/billing.c: authenticate the user token, make
 * sure the user and billing rows exist (token users from an outside issuer
 * get a users row on first use, as POST /keys does), call the billing
 * function, and map its result to the wire. Stripe failures are 502
 * stripe_error (detail in the log), no STRIPE_SECRET_KEY is 503
 * billing_not_configured. 0 credits: these routes are never metered.
 */
#include "app.h"

#include <string.h>

#include "kb_auth.h"
#include "kb_billing.h"
#include "kb_config.h"
#include "kb_users.h"
#include "kb_banned.h"

/* Make sure the authenticated user has users + billing_accounts rows. */
static kb_err
ensure_rows(kb_ctx *ctx, const kb_user *u)
{
    kb_err err = kb_users_ensure_account(&ctx->w->db, ctx->arena, u);
    if (err == KB_E_INVALID_API_KEY)
        return kb_fail(ctx, err, "Unknown user for this access token.");
    if (err)
        return kb_fail(ctx, err, "billing: unable to create the account");
    return KB_OK;
}

/* Authenticated user with users + billing_accounts rows. */
static kb_err
billing_user(const kb_req *req, kb_ctx *ctx, kb_user *u)
{
    kb_err err = kb_auth_user(req, ctx, u);
    return err ? err : ensure_rows(ctx, u);
}

/* The client-facing answer for a billing function's error. */
static kb_err
billing_fail(kb_ctx *ctx, kb_err err, const char *what)
{
    switch (err) {
    case KB_E_BILLING_NOT_CONFIGURED:
        return kb_fail(ctx, err, "Billing is not configured on this server.");
    case KB_E_ALREADY_SUBSCRIBED:
        return kb_fail(ctx, err,
                       "You already have an active Project subscription. Manage it "
                       "with POST /billing/portal.");
    case KB_E_NO_BILLING_ACCOUNT:
        return kb_fail(ctx, err,
                       "No billing account found. Subscribe first with POST "
                       "/billing/checkout.");
    case KB_E_STRIPE:
        return kb_fail(ctx, err, "The payment provider failed during %s. Please try again.", what);
    case KB_E_UNAVAILABLE:
        return kb_fail(ctx, err, "Database unavailable.");
    default:
        return kb_fail(ctx, KB_E_INTERNAL, "billing: %s failed", what);
    }
}

/* A billing function that makes a Stripe-hosted page for the user (checkout, portal). */
typedef kb_err (*url_fn)(kb_worker *w, kb_arena *a, const char *user_id, const char **url);

/* Authenticate, make the page with fn and answer {"<field>": url}; what names it in errors. */
static kb_err
url_route(const kb_req *req, kb_ctx *ctx, url_fn fn, const char *what, const char *field)
{
    kb_user u;
    kb_err err = billing_user(req, ctx, &u);
    if (err)
        return err;
    const char *url = NULL;
    err = fn(ctx->w, ctx->arena, u.id, &url);
    if (err)
        return billing_fail(ctx, err, what);
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    kb_jw_key(&w, field);
    kb_jw_str(&w, url);
    kb_resp_json_end(ctx, req, &w, false);
    return KB_OK;
}

kb_err
h_billing_checkout(const kb_req *req, kb_ctx *ctx)
{
    return url_route(req, ctx, kb_billing_checkout, "checkout", "checkout_url");
}

kb_err
h_billing_portal(const kb_req *req, kb_ctx *ctx)
{
    return url_route(req, ctx, kb_billing_portal, "portal", "portal_url");
}

/* Body {"enable": bool, "overage_cap": int|null (optional)}. */
kb_err
h_billing_payg(const kb_req *req, kb_ctx *ctx)
{
    cJSON *body = NULL;
    kb_user u;
    kb_err err = kb_json_body(req, ctx, &body);
    if (!err)
        err = kb_auth_user(req, ctx, &u);
    if (err)
        return err;
    bool enable = false, cap_set = false;
    int64_t cap = -1;
    kb_json_get_bool(ctx, body, "enable", KB_JSON_REQUIRED, &enable, NULL);
    kb_json_get_int(ctx, body, "overage_cap", KB_JSON_NULLABLE, 0, INT32_MAX, &cap, &cap_set);
    if (ctx->err)
        return ctx->err;
    if (kb_json_is_null(body, "overage_cap"))
        cap = 0; /* null removes the cap */
    else if (!cap_set)
        cap = enable && kb_cfg.payg_overage_cap > 0 ? kb_cfg.payg_overage_cap : -1;
    if ((err = ensure_rows(ctx, &u)) != KB_OK)
        return err;
    kb_payg_result r;
    err = kb_billing_payg(ctx->w, ctx->arena, u.id, enable, (long)cap, &r);
    if (err)
        return billing_fail(ctx, err, "pay-as-you-go setup");
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    kb_jw_key(&w, "payg_enabled");
    kb_jw_bool(&w, r.enabled);
    kb_jw_key(&w, "message");
    kb_jw_str(&w, r.message);
    kb_jw_key(&w, "checkout_url");
    kb_jw_str(&w, r.checkout_url);
    kb_resp_json_end(ctx, req, &w, false);
    return KB_OK;
}
