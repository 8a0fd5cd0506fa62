/* kb_billing.h - Stripe-backed billing (API.md §5.13, §7.4-7.6; money rules 6, 7, 10, 11).
 *
 * The logic of POST /billing/checkout, /billing/portal and /billing/payg and
 * of kbctl stripe-sync, independent of HTTP: a handler authenticates the
 * user and calls these with ctx->w (its connection and Stripe handle). Every function returns
 * KB_E_BILLING_NOT_CONFIGURED without STRIPE_SECRET_KEY, KB_E_STRIPE when
 * Stripe failed (already logged), KB_E_UNAVAILABLE/KB_E_INTERNAL for the
 * database. Strings returned are arena-owned.
 */
#ifndef KB_BILLING_H
#define KB_BILLING_H

#include <stdbool.h>

#include "kb_arena.h"
#include "kb_db.h"
#include "kb_err.h"
#include "kb_worker.h"

/*
 * The user's Stripe customer, created if missing: exactly one per user even
 * under concurrent calls (Idempotency-Key "kb-customer-<user>" plus a
 * conditional UPDATE ... WHERE stripe_customer_id IS NULL). Creates the
 * billing account if missing.
 */
kb_err kb_billing_customer(kb_worker *w, kb_arena *a, const char *user_id, const char **customer);

/*
 * Checkout Session (mode=subscription) for the Project price. KB_E_ALREADY_SUBSCRIBED when a
 * live Project subscription exists (money rule 10).
 */
kb_err kb_billing_checkout(kb_worker *w, kb_arena *a, const char *user_id, const char **url);

/* Billing-portal session; KB_E_NO_BILLING_ACCOUNT without a Stripe customer. */
kb_err kb_billing_portal(kb_worker *w, kb_arena *a, const char *user_id, const char **url);

typedef struct kb_payg_result {
    bool enabled;             /* PAYG overage allowed from now on */
    const char *checkout_url; /* set when the metered subscription must be bought first */
    const char *message;      /* human sentence for the response */
} kb_payg_result;

/*
 * Turn PAYG on or off (money rule 6). enable with a live subscription: the
 * metered item is added (idempotently) and PAYG is on at once. Without one:
 * a Checkout URL for the metered price; PAYG turns on when the webhook
 * confirms the subscription. Disable: off at once (the meter stops taking
 * overage immediately); the metered item stays on the subscription and
 * bills only what was already used. overage_cap: < 0 keeps the current cap,
 * 0 removes it, > 0 sets it (credits per cycle).
 */
kb_err kb_billing_payg(kb_worker *w, kb_arena *a, const char *user_id, bool enable,
                       long overage_cap, kb_payg_result *out);

typedef struct kb_sync_stats {
    long customers, subscriptions, applied, failed, events_resolved;
} kb_sync_stats;

/*
 * Reconcile local state from Stripe's subscriptions (money rule 11) for one
 * customer, or for every known customer (and every customer of an event
 * stored as unknown) when customer is NULL.
 */
kb_err kb_billing_sync(kb_worker *w, kb_arena *a, const char *customer, kb_sync_stats *st);

#endif
