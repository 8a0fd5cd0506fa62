/* meter.c - charge, refund and credit headers around kb_meter_slot(); see kb_meter.h.
 *
 * The success path is exactly one statement. Refunds happen only on the
 * error path, through kb_meter_refund(), which also removes the request's
 * outbox row unless the reporter already claimed it.
 */
#include "kb_meter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_crypto.h"
#include "kb_journal.h"
#include "kb_log.h"
#include "kb_metrics.h"
#include "kb_time.h"
#include "kb_banned.h"

/* $4 is the worker's journal slot (NULL without the journal: nothing recorded). */
static const kb_stmt meter_stmt = {
    "meter",
    "SELECT outcome, user_id, key_id, key_prefix, credits_total, credits_used, cost,"
    " rl_limit, rl_remaining, extract(epoch FROM rl_reset)::bigint, retry_after, cycle_start,"
    " outbox_id"
    " FROM kb_meter_slot($1, $2::integer, $3, $4, $5)",
    5, false};

/* Refund a slot's charge if it committed and stands. Idempotent. */
static const kb_stmt settle_stmt = {"meter_settle", "SELECT kb_meter_settle($1, $2)", 2, true};

/* Idempotent per request id, so it may be re-sent after a lost connection. */
static const kb_stmt refund_stmt = {
    "meter_refund",
    "SELECT credits_total, credits_used FROM kb_meter_refund($1, $2::uuid, $3::uuid,"
    " $4::integer, $5, $6::timestamptz, $7::bigint)",
    7, true};

bool
kb_meter_parse_key(kb_str h, kb_str *key, const char **reason)
{
    if (h.p == NULL) {
        *reason = "Missing Authorization header. Send 'Authorization: Bearer kb-...'.";
        return false;
    }
    if (h.len < 7 || !kb_str_eq_nocase((kb_str){h.p, 6}, "bearer") ||
        (h.p[6] != ' ' && h.p[6] != '\t')) {
        *reason = "Authorization header must use the Bearer scheme.";
        return false;
    }
    kb_str k = kb_str_trim((kb_str){h.p + 7, h.len - 7});
    if (!kb_str_has_prefix(k, "kb-")) {
        *reason = "API key must start with 'kb-'. User tokens are not accepted on data routes.";
        return false;
    }
    *key = k;
    return true;
}

static int64_t
col_i64(const PGresult *r, int col)
{
    if (PQgetisnull(r, 0, col))
        return 0;
    return strtoll(PQgetvalue(r, 0, col), NULL, 10);
}

static void
col_copy(const PGresult *r, int col, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s", PQgetisnull(r, 0, col) ? "" : PQgetvalue(r, 0, col));
}

/* Settle one journal entry in Postgres. False when the database did not answer. */
static bool
settle(kb_worker *w, kb_arena *arena, const char *slot, const char *request_id)
{
    const char *params[] = {slot, request_id};
    PGresult *r = NULL;
    if (kb_db_exec(&w->db, arena, &settle_stmt, params, &r) != KB_OK || PQntuples(r) != 1)
        return false;
    if (strcmp(PQgetvalue(r, 0, 0), "t") == 0) {
        kb_metrics_add(KB_M_CHARGES_SETTLED, 1);
        kb_log_warn("refunded the charge of request %s (slot %s): it got no 2xx answer", request_id,
                    slot);
    }
    return true;
}

/* Settle the caller's own journal entry when it is pending. False when the database
 * did not answer. */
static bool
settle_own(kb_worker *w, kb_arena *arena)
{
    if (kb_journal_state() == KB_J_IDLE)
        return true;
    char rid[KB_JOURNAL_REQUEST_ID_MAX];
    snprintf(rid, sizeof(rid), "%s", kb_journal_request_id());
    if (!settle(w, arena, kb_journal_key(), rid))
        return false;
    kb_journal_set(KB_J_IDLE, NULL);
    return true;
}

bool
kb_meter_settle_pending(kb_worker *w, kb_arena *arena)
{
    if (!settle_own(w, arena))
        return false;
    char key[KB_JOURNAL_KEY_MAX], rid[KB_JOURNAL_REQUEST_ID_MAX];
    int i;
    while ((i = kb_journal_claim(key, sizeof(key), rid, sizeof(rid))) >= 0) {
        bool ok = settle(w, arena, key, rid);
        kb_journal_release(i, ok);
        if (!ok)
            return false;
    }
    return true;
}

void
kb_meter_answered(const kb_ctx *ctx)
{
    const kb_charge *c = &ctx->charge;
    if (kb_journal_state() == KB_J_CHARGED && c->charged && !c->refund_failed &&
        ctx->resp.status < 400)
        kb_journal_set(KB_J_IDLE, NULL);
}

kb_err
kb_meter_charge(const kb_req *req, kb_ctx *ctx, int cost)
{
    kb_str key;
    const char *reason;
    if (!kb_meter_parse_key(kb_req_header(req, "authorization"), &key, &reason))
        return kb_fail(ctx, KB_E_INVALID_API_KEY, "%s", reason);

    /* The previous charge of this worker must be settled before the next one
     * can take its journal entry; if that is impossible the database is down. */
    if (!settle_own(ctx->w, ctx->arena))
        return kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");

    char hash[KB_SHA256_HEX_LEN + 1], costs[16];
    kb_sha256_hex(key.p, key.len, hash);
    snprintf(costs, sizeof(costs), "%d", cost);
    const char *params[] = {hash, costs, ctx->route ? ctx->route : "unknown", kb_journal_key(),
                            req->request_id};
    PGresult *r = NULL;
    /* From here until the outcome is known, a lost reply leaves the charge in
     * doubt: the journal entry says so, and settling resolves it. */
    kb_journal_set(KB_J_METERING, req->request_id);
    kb_err err = kb_db_exec(&ctx->w->db, ctx->arena, &meter_stmt, params, &r);
    if (err == KB_E_UNAVAILABLE)
        return kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");
    if (err)
        return kb_fail(ctx, KB_E_INTERNAL, "meter statement failed");
    if (PQntuples(r) != 1)
        return kb_fail(ctx, KB_E_INTERNAL, "meter returned %d rows", PQntuples(r));

    const char *outcome = PQgetvalue(r, 0, 0);
    kb_journal_set(strcmp(outcome, "ok") == 0 ? KB_J_CHARGED : KB_J_IDLE, NULL);
    if (strcmp(outcome, "invalid_key") == 0)
        return kb_fail(ctx, KB_E_INVALID_API_KEY, "Invalid or revoked API key.");

    kb_charge *c = &ctx->charge;
    col_copy(r, 1, c->user_id, sizeof(c->user_id));
    col_copy(r, 2, c->key_id, sizeof(c->key_id));
    ctx->user_id = kb_arena_strdup(ctx->arena, c->user_id);
    ctx->key_prefix = kb_arena_strdup(ctx->arena, PQgetvalue(r, 0, 3));
    c->credits_total = col_i64(r, 4);
    c->credits_used = col_i64(r, 5);
    c->rl_limit = col_i64(r, 7);
    c->rl_remaining = col_i64(r, 8);
    c->rl_reset = col_i64(r, 9);
    c->have_limits = true;

    if (strcmp(outcome, "rate_limited") == 0) {
        kb_metrics_add(KB_M_RATE_LIMITED, 1);
        /* Seconds to the next window by the database's clock (kb_now()). */
        int64_t wait = col_i64(r, 10);
        ctx->retry_after = wait < 1 ? 1 : wait > 60 ? 60 : (int)wait;
        return kb_fail(ctx, KB_E_RATE_LIMITED,
                       "Rate limit of %" PRId64 " requests per minute exceeded. Retry after %d "
                       "seconds.",
                       c->rl_limit, ctx->retry_after);
    }
    if (strcmp(outcome, "exhausted") == 0) {
        kb_metrics_add(KB_M_CREDITS_EXHAUSTED, 1);
        return kb_fail(ctx, KB_E_CREDITS_EXHAUSTED,
                       "Credits exhausted for this billing cycle (%" PRId64 " of %" PRId64
                       " used, this request costs %d). Enable pay-as-you-go with POST "
                       "/billing/payg or upgrade with POST /billing/checkout.",
                       c->credits_used, c->credits_total, cost);
    }
    if (strcmp(outcome, "ok") != 0)
        return kb_fail(ctx, KB_E_INTERNAL, "meter outcome '%s'", outcome);

    c->charged = true;
    c->cost = col_i64(r, 6);
    col_copy(r, 11, c->cycle_start, sizeof(c->cycle_start));
    col_copy(r, 12, c->outbox_id, sizeof(c->outbox_id));
    ctx->credits = c->cost;
    return KB_OK;
}

static void
refund(const kb_req *req, kb_ctx *ctx)
{
    kb_charge *c = &ctx->charge;
    char costs[24];
    snprintf(costs, sizeof(costs), "%" PRId64, c->cost);
    const char *params[] = {req->request_id, c->user_id,     c->key_id,
                            costs,           ctx->route ? ctx->route : "unknown",
                            c->cycle_start,  c->outbox_id[0] ? c->outbox_id : NULL};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(&ctx->w->db, ctx->arena, &refund_stmt, params, &r);
    if (err || PQntuples(r) != 1) {
        /* The charge stands; say so loudly (no secret in this line). */
        kb_log_error("unable to refund %" PRId64 " credits to user '%s'", c->cost, c->user_id);
        c->refund_failed = true;
        return;
    }
    kb_journal_set(KB_J_IDLE, NULL);
    kb_metrics_add(KB_M_REFUNDS, 1);
    kb_metrics_add(KB_M_CREDITS_REFUNDED, (uint64_t)c->cost);
    c->charged = false;
    c->refunded = true;
    c->credits_total = col_i64(r, 0);
    c->credits_used = col_i64(r, 1);
    c->cost = 0;
    ctx->credits = 0;
}

void
kb_meter_finish(const kb_req *req, kb_ctx *ctx, kb_err err)
{
    kb_charge *c = &ctx->charge;
    if (c->charged && err != KB_OK)
        refund(req, ctx);
    if (c->charged)
        kb_metrics_add(KB_M_CREDITS_CHARGED, (uint64_t)c->cost);
    if (c->have_limits) {
        kb_resp_header(ctx, "X-RateLimit-Limit", "%" PRId64, c->rl_limit);
        kb_resp_header(ctx, "X-RateLimit-Remaining", "%" PRId64, c->rl_remaining);
        kb_resp_header(ctx, "X-RateLimit-Reset", "%" PRId64, c->rl_reset);
    }
    if ((c->charged || c->refunded) && !c->refund_failed) {
        int64_t remaining = c->credits_total - c->credits_used;
        kb_resp_header(ctx, "X-Credits-Remaining", "%" PRId64, remaining > 0 ? remaining : 0);
        kb_resp_header(ctx, "X-Credits-Used", "%" PRId64, c->credits_used);
        kb_resp_header(ctx, "X-Credits-Total", "%" PRId64, c->credits_total);
        kb_resp_header(ctx, "X-Credits-Cost", "%" PRId64, c->cost);
    }
}
