/* h_billing_status.c - GET /billing/status: the caller's tier and credits as
 * metering sees them right now (API.md §5.13, §7.16).
 *
 * kb_users_account() creates the account when it is missing and reads it
 * through kb_roll_cycle(), so a cycle that has ended shows as the new cycle
 * (credits reset, new start) exactly as the next metered request would charge
 * it.
 */
#include "app.h"
#include "kb_auth.h"
#include "kb_time.h"
#include "kb_users.h"
#include "kb_banned.h"

kb_err
h_billing_status(const kb_req *req, kb_ctx *ctx)
{
    kb_user user;
    kb_err err = kb_auth_user(req, ctx, &user);
    if (err)
        return err;
    kb_account acc;
    err = kb_users_account(&ctx->w->db, ctx->arena, &user, &acc);
    if (err == KB_E_UNAVAILABLE)
        return kb_fail(ctx, err, "Database unavailable.");
    /* A token user whose email belongs to another account (as for POST /keys). */
    if (err == KB_E_INVALID_API_KEY)
        return kb_fail(ctx, err, "Unknown user for this access token.");
    if (err)
        return kb_fail(ctx, KB_E_INTERNAL, "billing status for user '%s' failed", user.id);

    char start[40];
    kb_time_format(acc.cycle_start_us, start, sizeof(start));
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    kb_jw_key(&w, "tier");
    kb_jw_str(&w, acc.tier);
    kb_jw_key(&w, "credits_total");
    kb_jw_int(&w, acc.credits_total);
    kb_jw_key(&w, "credits_used");
    kb_jw_int(&w, acc.credits_used);
    kb_jw_key(&w, "credits_remaining");
    kb_jw_int(&w, acc.credits_total > acc.credits_used ? acc.credits_total - acc.credits_used : 0);
    kb_jw_key(&w, "payg_enabled");
    kb_jw_bool(&w, acc.payg_enabled);
    kb_jw_key(&w, "billing_cycle_start");
    kb_jw_str(&w, start);
    kb_resp_json_end(ctx, req, &w, false);
    return KB_OK;
}
