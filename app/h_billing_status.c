/* h_billing_status.c - GET /billing/status: the caller's tier and credits as
 * metering sees them right now (API.md §5.13, §7.16).
 *
 * One statement creates the account when it is missing and reads it through
 * kb_roll_cycle(), so a cycle that has ended shows as the new cycle (credits
 * reset, new start) exactly as the next metered request would charge it.
 */
#include <stdlib.h>

#include "app.h"
#include "kb_auth.h"
#include "kb_time.h"
#include "kb_banned.h"

static const kb_stmt status_stmt = {
    "billing_status",
    "WITH u AS (INSERT INTO users (id, email, password_hash)"
    "   VALUES ($1::uuid, lower(coalesce(nullif($2, ''), $1 || '@external.invalid')),"
    "           '!external') ON CONFLICT DO NOTHING),"
    " ins AS (INSERT INTO billing_accounts (user_id) VALUES ($1::uuid)"
    "   ON CONFLICT DO NOTHING RETURNING *),"
    " acc AS (SELECT * FROM billing_accounts WHERE user_id = $1::uuid"
    "   UNION ALL SELECT * FROM ins),"
    " r AS (SELECT (kb_roll_cycle(acc, kb_now())).* FROM acc)"
    " SELECT r.tier, coalesce(r.credits_override, t.credits_per_cycle), r.credits_used,"
    "        r.payg_enabled, (extract(epoch FROM r.billing_cycle_start) * 1000000)::bigint"
    " FROM r JOIN tiers t ON t.name = r.tier",
    2, false};

kb_err
h_billing_status(const kb_req *req, kb_ctx *ctx)
{
    kb_user user;
    kb_err err = kb_auth_user(req, ctx, &user);
    if (err)
        return err;
    const char *params[] = {user.id, user.email};
    PGresult *r = NULL;
    err = kb_db_exec(&ctx->w->db, ctx->arena, &status_stmt, params, &r);
    if (err == KB_E_UNAVAILABLE)
        return kb_fail(ctx, err, "Database unavailable.");
    if (err || PQntuples(r) != 1)
        return kb_fail(ctx, KB_E_INTERNAL, "billing status for user '%s' failed", user.id);

    int64_t total = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    int64_t used = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    char start[40];
    kb_time_format(strtoll(PQgetvalue(r, 0, 4), NULL, 10), start, sizeof(start));

    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    kb_jw_key(&w, "tier");
    kb_jw_str(&w, PQgetvalue(r, 0, 0));
    kb_jw_key(&w, "credits_total");
    kb_jw_int(&w, total);
    kb_jw_key(&w, "credits_used");
    kb_jw_int(&w, used);
    kb_jw_key(&w, "credits_remaining");
    kb_jw_int(&w, total > used ? total - used : 0);
    kb_jw_key(&w, "payg_enabled");
    kb_jw_bool(&w, PQgetvalue(r, 0, 3)[0] == 't');
    kb_jw_key(&w, "billing_cycle_start");
    kb_jw_str(&w, start);
    kb_resp_json_end(ctx, req, &w, false);
    return KB_OK;
}
