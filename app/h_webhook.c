/* h_webhook.c - POST /billing/webhook: verify, deduplicate, order and apply Stripe events.
 *
 * No user auth: the Stripe-Signature over the raw body is the authentication
 * (kb_webhook_verify). The event is applied in one transaction together with
 * its id (kb_webhook_apply), so a redelivery answers 200 with no effect and a
 * failure answers 5xx so Stripe retries. Unknown types, stale events and
 * events for customers we do not know (kept for kbctl stripe-sync) are
 * acknowledged with 200. Success body: {"received": true}, no request_id.
 */
#include "app.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "kb_config.h"
#include "kb_json.h"
#include "kb_log.h"
#include "kb_time.h"
#include "kb_webhook.h"
#include "kb_banned.h"

static void
delete_json(void *p)
{
    cJSON_Delete(p);
}

kb_err
h_webhook(const kb_req *req, kb_ctx *ctx)
{
    if (kb_cfg.stripe_webhook_secrets == NULL)
        return kb_fail(ctx, KB_E_BILLING_NOT_CONFIGURED, "Stripe webhooks are not configured.");
    kb_webhook_verdict v = kb_webhook_verify(kb_req_header(req, "stripe-signature"), req->body,
                                             kb_cfg.stripe_webhook_secrets,
                                             kb_cfg.stripe_webhook_tolerance_s,
                                             kb_now_us() / 1000000);
    if (v != KB_WEBHOOK_OK) {
        kb_log_warn("webhook refused: %s", kb_webhook_verdict_str(v));
        return kb_fail(ctx, KB_E_INVALID_SIGNATURE, "Invalid Stripe signature: %s.",
                       kb_webhook_verdict_str(v));
    }
    /* The strict parser (lib/json_parse.c) refuses what Postgres's jsonb would
     * (invalid UTF-8, \u0000, lone surrogates), so a signed body it accepts is
     * stored; anything else is 400 here, never a 500 that Stripe would retry. */
    cJSON *ev = NULL;
    const char *why = NULL;
    size_t at = 0;
    if (!kb_json_parse(req->body.p, req->body.len, &ev, &why, &at))
        return kb_fail(ctx, KB_E_INVALID_PAYLOAD, "Webhook body is not UTF-8 JSON: %s at byte %zu.",
                       why, at);
    kb_arena_on_reset(ctx->arena, delete_json, ev);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "id");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(ev, "created");
    if (!cJSON_IsObject(ev) || !cJSON_IsString(id) || !cJSON_IsString(type) ||
        !cJSON_IsNumber(created))
        return kb_fail(ctx, KB_E_INVALID_PAYLOAD, "Webhook body is not a Stripe event.");

    const char *outcome = NULL;
    char *text = kb_str_dup(ctx->arena, req->body);
    kb_err err = kb_webhook_apply(&ctx->w->db, ctx->arena, text, &outcome);
    if (err == KB_E_UNAVAILABLE)
        return kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");
    if (err)
        return kb_fail(ctx, KB_E_INTERNAL, "webhook: applying %s failed", id->valuestring);
    kb_log(strcmp(outcome, "unknown_customer") == 0 ? KB_LOG_WARN : KB_LOG_INFO,
           "webhook %s %s: %s%s", id->valuestring, type->valuestring, outcome,
           strcmp(outcome, "unknown_customer") == 0 ? " (stored for kbctl stripe-sync)" : "");
    kb_buf_puts(&ctx->resp.body, "{\"received\": true}");
    return KB_OK;
}
