/* meter_end.c - the end of every request: refund a charge whose request failed, the
 * credit and rate-limit headers, and the mark that a 2xx answer went out
 * (kb_meter_end(), kb_meter_answered(), kb_meter_cut(); kb_meter.h). */
#include "kb_meter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_host.h"
#include "kb_journal.h"
#include "kb_log.h"
#include "kb_metrics.h"
#include "kb_worker.h"
#include "kb_banned.h"

/* Idempotent per request id, so it may be re-sent after a lost connection. */
static const kb_stmt refund_stmt = {
    "meter_refund",
    "SELECT credits_total, credits_used FROM kb_meter_refund($1, $2::uuid, $3::uuid,"
    " $4::integer, $5, $6::timestamptz, $7::date, $8::bigint)",
    8, true};

/* ---- the end of the request ---- */

static void
refund(const kb_req *req, kb_ctx *ctx, kb_charge *c)
{
    char costs[24], outbox[24];
    snprintf(costs, sizeof(costs), "%" PRId64, c->m.cost);
    snprintf(outbox, sizeof(outbox), "%" PRId64, c->m.outbox_id);
    const char *params[] = {req->request_id,
                            c->m.user_id,
                            c->m.key_id,
                            costs,
                            ctx->route ? ctx->route : "unknown",
                            c->m.cycle_start,
                            c->m.day,
                            c->m.outbox_id ? outbox : NULL};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(&ctx->w->db, ctx->arena, &refund_stmt, params, &r);
    if (err || PQntuples(r) != 1) {
        /* The charge stands until the journal settles it; say so loudly (no
         * secret in this line). */
        kb_log_error("unable to refund %" PRId64 " credits to user '%s'", c->m.cost, c->m.user_id);
        c->refund_failed = true;
        return;
    }
    kb_journal_idle(ctx->w->journal);
    kb_metrics_add(KB_M_REFUNDS, 1);
    kb_metrics_add(KB_M_CREDITS_REFUNDED, (uint64_t)c->m.cost);
    c->charged = false;
    c->refunded = true;
    c->m.credits_total = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    c->m.credits_used = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    c->m.cost = 0;
    ctx->credits = 0;
}

static void
headers(kb_ctx *ctx, const kb_charge *c)
{
    if (c->have_limits) {
        kb_resp_header(ctx, "X-RateLimit-Limit", "%" PRId64, c->m.rl_limit);
        kb_resp_header(ctx, "X-RateLimit-Remaining", "%" PRId64, c->m.rl_remaining);
        kb_resp_header(ctx, "X-RateLimit-Reset", "%" PRId64, c->m.rl_reset);
    }
    if ((c->charged || c->refunded) && !c->refund_failed) {
        int64_t remaining = c->m.credits_total - c->m.credits_used;
        kb_resp_header(ctx, "X-Credits-Remaining", "%" PRId64, remaining > 0 ? remaining : 0);
        kb_resp_header(ctx, "X-Credits-Used", "%" PRId64, c->m.credits_used);
        kb_resp_header(ctx, "X-Credits-Total", "%" PRId64, c->m.credits_total);
        kb_resp_header(ctx, "X-Credits-Cost", "%" PRId64, c->m.cost);
    }
}

void
kb_meter_end(const kb_req *req, kb_ctx *ctx, kb_err err, kb_meter_send_fn *send, void *ud)
{
    kb_charge *c = ctx->charge;
    if (c != NULL) {
        if (c->charged && err != KB_OK)
            refund(req, ctx, c);
        if (c->charged)
            kb_metrics_add(KB_M_CREDITS_CHARGED, (uint64_t)c->m.cost);
        headers(ctx, c);
    }
    send(ud, req, ctx);
}

bool
kb_meter_answered(kb_ctx *ctx)
{
    kb_charge *c = ctx->charge;
    if (c == NULL || !c->charged || c->refund_failed || c->cut || ctx->resp.status >= 400 ||
        c->marked)
        return true;
    /* First the charge's row in meter_inflight: a host that settles this pool from
     * there (it died whole and did not come back in time) keeps the charge once the
     * mark is on its way (sent without waiting; its result is read on the
     * connection's next use). Without it, the answer must not complete. */
    const kb_host_self *host = kb_host_self_get();
    int slot = kb_journal_index(ctx->w->journal);
    if (c->with_row) {
        char slots[16];
        snprintf(slots, sizeof(slots), "%d", slot);
        const char *p[] = {host->id, host->life, slots, c->request_id};
        if (!kb_db_send_async(&ctx->w->db, &kb_meter_answered_stmt, p)) {
            kb_log_warn("unable to mark the answer of request %s in meter_inflight: the answer "
                        "is cut off and its charge refunded",
                        c->request_id);
            return false;
        }
    }
    /* Then the journal entry (shared memory, or the journal file that outlives the
     * pool): the charge stands. Nothing but the answer's last write comes after. */
    kb_journal_idle(ctx->w->journal);
    c->marked = true;
    return true;
}

void
kb_meter_cut(kb_ctx *ctx)
{
    kb_charge *c = ctx->charge;
    if (c != NULL)
        c->cut = true;
}
