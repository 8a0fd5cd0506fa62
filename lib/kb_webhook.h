/* kb_webhook.h - Stripe webhook signatures and event application (money rule 8).
 *
 * A Stripe-Signature header is "t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]".
 * The payload signed is "<t>.<raw body>" with HMAC-SHA256 under the
 * endpoint's secret (the whole "whsec_..." string is the key). Every v1 is
 * compared, in constant time, against the HMAC under every configured
 * secret, so a secret can be rotated with both old and new accepted.
 */
#ifndef KB_WEBHOOK_H
#define KB_WEBHOOK_H

#include <stdbool.h>
#include <stdint.h>

#include "kb_arena.h"
#include "kb_db.h"
#include "kb_str.h"

typedef enum kb_webhook_verdict {
    KB_WEBHOOK_OK,
    KB_WEBHOOK_MISSING,  /* no header, or no t= / v1= in it */
    KB_WEBHOOK_MISMATCH, /* no v1 matches any secret */
    KB_WEBHOOK_TOO_OLD,  /* t is outside the tolerance */
} kb_webhook_verdict;

/*
 * Verify header against body with the comma-separated secrets, at now_s
 * (Unix seconds), accepting timestamps within tolerance_s either way.
 */
kb_webhook_verdict
kb_webhook_verify(kb_str header, kb_str body, const char *secrets, long tolerance_s, int64_t now_s);

/* A short reason for logs. Static string. */
const char *kb_webhook_verdict_str(kb_webhook_verdict v);

/*
 * Apply a verified event (raw JSON text) exactly once in one transaction
 * (kb_stripe_apply_event() in 0007_stripe.sql). *outcome is an arena string:
 * applied, duplicate, stale, ignored or unknown_customer. Errors are
 * KB_E_UNAVAILABLE / KB_E_INTERNAL (the caller answers 5xx so Stripe retries).
 */
kb_err kb_webhook_apply(kb_db *db, kb_arena *a, const char *event_json, const char **outcome);

#endif
