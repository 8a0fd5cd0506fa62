/* kb_meter.h - credit metering of data routes (DESIGN.md money rules 1-4).
 *
 * A data handler validates its input, then calls kb_meter_charge() once:
 * one SQL round trip (kb_meter_slot() in db/migrations/0009_meter_journal.sql)
 * authenticates the API key, applies the rate window and deducts the cost.
 * The dispatcher then calls kb_meter_finish(): when the handler failed after
 * the charge it refunds (credits and outbox row back), and it writes the
 * X-Credits-* and X-RateLimit-* headers. Handlers never refund themselves.
 */
#ifndef KB_METER_H
#define KB_METER_H

#include "kb_http.h"

/*
 * Authenticate the data-route API key of req (API.md §2 "API key check") and
 * charge cost credits to its account for route ctx->route. On success fills
 * ctx->charge and returns KB_OK. Refusals are recorded with kb_fail and
 * returned: 401 invalid_api_key, 429 rate_limit_exceeded (Retry-After set),
 * 429 credits_exhausted, 503 when the database is unreachable.
 */
kb_err kb_meter_charge(const kb_req *req, kb_ctx *ctx, int cost);

/*
 * After the handler ran with result err: refund a charge when err != KB_OK
 * (money rule 3; idempotent per req->request_id, re-sent once on a fresh
 * connection if the first one was lost), then add the credit and rate-limit
 * headers that apply.
 * Does nothing for requests that were not metered.
 */
void kb_meter_finish(const kb_req *req, kb_ctx *ctx, kb_err err);

/*
 * After the response went out: a charge whose answer was 2xx stands, so the
 * worker's journal entry (kb_journal.h) is done. Any other pending charge stays
 * journaled until it is settled.
 */
void kb_meter_answered(const kb_ctx *ctx);

/*
 * Settle what the journal holds: the caller's own pending charge, then any
 * orphaned entry of a worker that died. A charge that committed and got no 2xx
 * answer is refunded (idempotent per request id). Returns false when the
 * database could not be reached (try again later); true when nothing the
 * caller can settle is left. Uses arena for results (reset it afterwards).
 */
bool kb_meter_settle_pending(kb_worker *w, kb_arena *arena);

/*
 * Extract the API key from an Authorization header value: scheme "Bearer"
 * in any letter case, one or more spaces, then the key (surrounding spaces
 * trimmed), which must begin with "kb-". Returns false with a client-facing
 * reason otherwise.
 */
bool kb_meter_parse_key(kb_str authorization, kb_str *key, const char **reason);

#endif
