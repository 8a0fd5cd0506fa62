/* billing.c - checkout, portal, PAYG and reconcile against Stripe; see kb_billing.h.
 *
 * Invariants: every POST to Stripe has an Idempotency-Key built from the
 * operation and its inputs; local state changes only through SQL that is
 * safe to repeat (conditional updates, kb_stripe_recompute()), so retries
 * and concurrent calls converge.
 */
#include "kb_billing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_config.h"
#include "kb_log.h"
#include "kb_stripe.h"
#include "kb_time.h"
#include "kb_worker.h"
#include "kb_banned.h"

static const kb_stmt account_stmt = {
    "billing_account",
    "WITH ins AS (INSERT INTO billing_accounts (user_id) SELECT id FROM users WHERE id = $1::uuid"
    " ON CONFLICT DO NOTHING)"
    " SELECT u.email, ba.stripe_customer_id FROM users u"
    " LEFT JOIN billing_accounts ba ON ba.user_id = u.id WHERE u.id = $1::uuid",
    1, false};
/* Conditional: the first writer wins; a concurrent one updates nothing. The
 * stored id is then read by a separate statement, whose fresh snapshot sees
 * the winner's commit (a SELECT inside the UPDATE statement would not). */
static const kb_stmt set_customer_stmt = {
    "billing_set_customer",
    "UPDATE billing_accounts SET stripe_customer_id = $2, updated_at = now()"
    " WHERE user_id = $1::uuid AND stripe_customer_id IS NULL",
    2, false};
/* Live Project subscription?, and how many subscriptions the user has had
 * (part of the Checkout Idempotency-Key: a finished checkout is not replayed). */
static const kb_stmt has_project_stmt = {
    "billing_has_project",
    "SELECT coalesce(bool_or(has_project AND kb_stripe_live(status)), false), count(*)"
    " FROM stripe_subscriptions WHERE user_id = $1::uuid",
    1, true};
static const kb_stmt customer_of_stmt = {
    "billing_customer_of",
    "SELECT stripe_customer_id FROM billing_accounts WHERE user_id = $1::uuid", 1, true};
static const kb_stmt live_sub_stmt = {
    "billing_live_sub",
    "SELECT id, payg_item_id FROM stripe_subscriptions WHERE user_id = $1::uuid"
    " AND kb_stripe_live(status) ORDER BY has_project DESC, state_at DESC LIMIT 1",
    1, true};
static const kb_stmt payg_request_stmt = {
    "billing_payg_request",
    "UPDATE billing_accounts SET payg_requested = $2::bool,"
    " overage_cap = CASE WHEN $3::int < 0 THEN overage_cap ELSE nullif($3::int, 0) END,"
    " updated_at = now() WHERE user_id = $1::uuid",
    3, false};
static const kb_stmt payg_item_stmt = {
    "billing_payg_item", "UPDATE stripe_subscriptions SET payg_item_id = $2 WHERE id = $1", 2,
    false};
static const kb_stmt recompute_stmt = {
    "billing_recompute",
    "SELECT kb_stripe_recompute($1::uuid), (SELECT payg_enabled FROM billing_accounts"
    " WHERE user_id = $1::uuid)",
    1, false};
static const kb_stmt payg_state_stmt = {
    "billing_payg_state", "SELECT payg_enabled FROM billing_accounts WHERE user_id = $1::uuid", 1,
    false};
static const kb_stmt apply_sub_stmt = {
    "billing_apply_sub", "SELECT kb_stripe_apply_subscription($1::jsonb, now(), $2, $3, false)", 3,
    false};
static const kb_stmt customers_stmt = {
    "billing_customers",
    "SELECT stripe_customer_id FROM billing_accounts WHERE stripe_customer_id IS NOT NULL"
    " UNION SELECT customer FROM stripe_events WHERE outcome = 'unknown_customer'"
    " AND customer IS NOT NULL",
    0, true};
static const kb_stmt resolve_events_stmt = {
    "billing_resolve_events",
    "UPDATE stripe_events e SET outcome = 'synced', payload = NULL"
    " WHERE e.outcome = 'unknown_customer' AND e.customer = $1"
    " AND EXISTS (SELECT 1 FROM billing_accounts ba WHERE ba.stripe_customer_id = $1)",
    1, false};

static kb_err
db_err(kb_err e)
{
    return e == KB_E_UNAVAILABLE ? KB_E_UNAVAILABLE : KB_E_INTERNAL;
}

kb_err
kb_billing_customer(kb_worker *w, kb_arena *a, const char *user_id, const char **customer)
{
    kb_db *db = &w->db;
    if (!kb_stripe_configured())
        return KB_E_BILLING_NOT_CONFIGURED;
    const char *p[] = {user_id, NULL};
    PGresult *r;
    kb_err err = kb_db_exec(db, a, &account_stmt, p, &r);
    if (err)
        return db_err(err);
    if (PQntuples(r) != 1)
        return KB_E_INTERNAL; /* no such user */
    if (!PQgetisnull(r, 0, 1)) {
        *customer = kb_arena_strdup(a, PQgetvalue(r, 0, 1));
        return KB_OK;
    }
    const char *email = kb_arena_strdup(a, PQgetvalue(r, 0, 0));
    kb_stripe_form f = {KB_BUF_INIT};
    kb_stripe_form_add(&f, "email", email);
    kb_stripe_form_add(&f, "metadata[kalshibook_user_id]", user_id);
    kb_stripe_res res;
    err = kb_stripe_call(w, a, "POST", "/v1/customers", &f,
                         kb_arena_printf(a, "kb-customer-%s", user_id), &res);
    kb_stripe_form_release(&f);
    if (err)
        return err;
    const char *id = kb_stripe_str(res.json, "id");
    if (id == NULL)
        return KB_E_STRIPE;
    p[1] = id;
    err = kb_db_exec(db, a, &set_customer_stmt, p, NULL);
    if (!err)
        err = kb_db_exec(db, a, &customer_of_stmt, p, &r);
    if (err)
        return db_err(err);
    if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
        kb_log_error("billing: customer of user %s vanished after it was stored", user_id);
        return KB_E_INTERNAL;
    }
    *customer = kb_arena_strdup(a, PQgetvalue(r, 0, 0));
    if (strcmp(*customer, id) != 0)
        kb_log_warn("billing: user %s already had customer %s; Stripe customer %s is unused",
                    user_id, *customer, id);
    return KB_OK;
}

/* Checkout Session for one subscription price (metered: no quantity). */
static kb_err
checkout_session(kb_worker *w, kb_arena *a, const char *user_id, const char *customer,
                 const char *price, bool metered, const char *nsubs, const char **url)
{
    if (price == NULL)
        return KB_E_BILLING_NOT_CONFIGURED;
    kb_stripe_form f = {KB_BUF_INIT};
    kb_stripe_form_add(&f, "mode", "subscription");
    kb_stripe_form_add(&f, "customer", customer);
    kb_stripe_form_add(&f, "client_reference_id", user_id);
    kb_stripe_form_add(&f, "line_items[0][price]", price);
    if (!metered)
        kb_stripe_form_add(&f, "line_items[0][quantity]", "1");
    kb_stripe_form_add(&f, "metadata[kalshibook_user_id]", user_id);
    kb_stripe_form_add(&f, "subscription_data[metadata][kalshibook_user_id]", user_id);
    char *s = kb_arena_printf(a, "%s/billing?success=true", kb_cfg.app_url);
    kb_stripe_form_add(&f, "success_url", s);
    s = kb_arena_printf(a, "%s/billing?canceled=true", kb_cfg.app_url);
    kb_stripe_form_add(&f, "cancel_url", s);
    /* Same user, price, subscription count and 10-minute window: the same
     * session (double clicks, concurrent calls). */
    char *key = kb_arena_printf(a, "kb-checkout-%s-%s-%s-%lld", user_id, price, nsubs,
                                (long long)(kb_now_us() / 1000000 / 600));
    kb_stripe_res res;
    kb_err err = kb_stripe_call(w, a, "POST", "/v1/checkout/sessions", &f, key, &res);
    kb_stripe_form_release(&f);
    if (err)
        return err;
    *url = kb_stripe_str(res.json, "url");
    return *url ? KB_OK : KB_E_STRIPE;
}

kb_err
kb_billing_checkout(kb_worker *w, kb_arena *a, const char *user_id, const char **url)
{
    kb_db *db = &w->db;
    if (!kb_stripe_configured())
        return KB_E_BILLING_NOT_CONFIGURED;
    const char *p[] = {user_id};
    PGresult *r;
    kb_err err = kb_db_exec(db, a, &has_project_stmt, p, &r);
    if (err)
        return db_err(err);
    if (strcmp(PQgetvalue(r, 0, 0), "t") == 0)
        return KB_E_ALREADY_SUBSCRIBED;
    const char *nsubs = kb_arena_strdup(a, PQgetvalue(r, 0, 1));
    const char *customer;
    if ((err = kb_billing_customer(w, a, user_id, &customer)) != KB_OK)
        return err;
    return checkout_session(w, a, user_id, customer, kb_cfg.stripe_project_price, false, nsubs,
                            url);
}

kb_err
kb_billing_portal(kb_worker *w, kb_arena *a, const char *user_id, const char **url)
{
    kb_db *db = &w->db;
    if (!kb_stripe_configured())
        return KB_E_BILLING_NOT_CONFIGURED;
    const char *p[] = {user_id};
    PGresult *r;
    kb_err err = kb_db_exec(db, a, &customer_of_stmt, p, &r);
    if (err)
        return db_err(err);
    if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0))
        return KB_E_NO_BILLING_ACCOUNT;
    const char *customer = kb_arena_strdup(a, PQgetvalue(r, 0, 0));
    kb_stripe_form f = {KB_BUF_INIT};
    kb_stripe_form_add(&f, "customer", customer);
    kb_stripe_form_add(&f, "return_url", kb_arena_printf(a, "%s/billing", kb_cfg.app_url));
    kb_stripe_res res;
    err = kb_stripe_call(w, a, "POST", "/v1/billing_portal/sessions", &f,
                         kb_arena_printf(a, "kb-portal-%s-%lld", customer,
                                         (long long)(kb_now_us() / 1000000 / 60)),
                         &res);
    kb_stripe_form_release(&f);
    if (err)
        return err;
    *url = kb_stripe_str(res.json, "url");
    return *url ? KB_OK : KB_E_STRIPE;
}

kb_err
kb_billing_payg(kb_worker *w, kb_arena *a, const char *user_id, bool enable, long overage_cap,
                kb_payg_result *out)
{
    kb_db *db = &w->db;
    memset(out, 0, sizeof(*out));
    if (!kb_stripe_configured())
        return KB_E_BILLING_NOT_CONFIGURED;
    const char *customer = NULL;
    kb_err err;
    if (enable && (err = kb_billing_customer(w, a, user_id, &customer)) != KB_OK)
        return err;
    char cap[24];
    snprintf(cap, sizeof(cap), "%ld", overage_cap);
    const char *p[] = {user_id, enable ? "t" : "f", cap};
    PGresult *r;
    if ((err = kb_db_exec(db, a, &payg_request_stmt, p, NULL)) != KB_OK)
        return db_err(err);
    if (!enable) {
        if ((err = kb_db_exec(db, a, &recompute_stmt, p, NULL)) != KB_OK)
            return db_err(err);
        out->message = "Pay-as-you-go disabled. Requests beyond your allowance are refused "
                       "from now on.";
        return KB_OK;
    }
    if ((err = kb_db_exec(db, a, &live_sub_stmt, p, &r)) != KB_OK)
        return db_err(err);
    if (PQntuples(r) == 0) {
        if (kb_cfg.stripe_payg_price == NULL)
            return KB_E_BILLING_NOT_CONFIGURED;
        PGresult *h;
        if ((err = kb_db_exec(db, a, &has_project_stmt, p, &h)) != KB_OK)
            return db_err(err);
        err = checkout_session(w, a, user_id, customer, kb_cfg.stripe_payg_price, true,
                               kb_arena_strdup(a, PQgetvalue(h, 0, 1)), &out->checkout_url);
        if (err)
            return err;
        out->message = "Complete checkout to enable pay-as-you-go at $0.008 per credit beyond "
                       "your allowance; it turns on when Stripe confirms the subscription.";
        return KB_OK;
    }
    const char *sub = kb_arena_strdup(a, PQgetvalue(r, 0, 0));
    if (PQgetisnull(r, 0, 1)) {
        if (kb_cfg.stripe_payg_price == NULL)
            return KB_E_BILLING_NOT_CONFIGURED;
        kb_stripe_form f = {KB_BUF_INIT};
        kb_stripe_form_add(&f, "subscription", sub);
        kb_stripe_form_add(&f, "price", kb_cfg.stripe_payg_price);
        kb_stripe_form_add(&f, "proration_behavior", "none");
        kb_stripe_res res;
        err = kb_stripe_call(
            w, a, "POST", "/v1/subscription_items", &f,
            kb_arena_printf(a, "kb-payg-item-%s-%s", sub, kb_cfg.stripe_payg_price), &res);
        kb_stripe_form_release(&f);
        if (err)
            return err;
        const char *item = kb_stripe_str(res.json, "id");
        if (item == NULL)
            return KB_E_STRIPE;
        const char *ip[] = {sub, item};
        if ((err = kb_db_exec(db, a, &payg_item_stmt, ip, NULL)) != KB_OK)
            return db_err(err);
    }
    if ((err = kb_db_exec(db, a, &recompute_stmt, p, NULL)) != KB_OK ||
        (err = kb_db_exec(db, a, &payg_state_stmt, p, &r)) != KB_OK)
        return db_err(err);
    out->enabled = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    out->message = out->enabled
                       ? "Pay-as-you-go enabled: usage beyond your allowance is billed at "
                         "$0.008 per credit."
                       : "Pay-as-you-go is requested but paused: your last payment failed. "
                         "Update your payment method in the billing portal.";
    return KB_OK;
}

static kb_err
sync_customer(kb_worker *w, kb_arena *a, const char *customer, kb_sync_stats *st)
{
    kb_db *db = &w->db;
    const char *after = NULL;
    st->customers++;
    for (int page = 0; page < 100; page++) {
        kb_stripe_form q = {KB_BUF_INIT};
        kb_stripe_form_add(&q, "customer", customer);
        kb_stripe_form_add(&q, "status", "all");
        kb_stripe_form_add(&q, "limit", "100");
        if (after)
            kb_stripe_form_add(&q, "starting_after", after);
        kb_stripe_res res;
        kb_err err = kb_stripe_call(w, a, "GET", "/v1/subscriptions", &q, NULL, &res);
        kb_stripe_form_release(&q);
        if (err)
            return err;
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(res.json, "data");
        const cJSON *sub;
        cJSON_ArrayForEach(sub, data) {
            char *text = cJSON_PrintUnformatted(sub);
            if (text == NULL)
                return KB_E_INTERNAL;
            const char *p[] = {kb_arena_strdup(a, text), kb_cfg.stripe_project_price,
                               kb_cfg.stripe_payg_price};
            free(text);
            PGresult *r;
            st->subscriptions++;
            if (kb_db_exec(db, a, &apply_sub_stmt, p, &r) != KB_OK) {
                st->failed++;
                continue;
            }
            if (strcmp(PQgetvalue(r, 0, 0), "applied") == 0)
                st->applied++;
            after = kb_stripe_str(sub, "id");
        }
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res.json, "has_more")) || after == NULL)
            break;
        after = kb_arena_strdup(a, after);
    }
    const char *p[] = {customer};
    PGresult *r;
    if (kb_db_exec(db, a, &resolve_events_stmt, p, &r) == KB_OK)
        st->events_resolved += strtol(PQcmdTuples(r), NULL, 10);
    return KB_OK;
}

kb_err
kb_billing_sync(kb_worker *w, kb_arena *a, const char *customer, kb_sync_stats *st)
{
    kb_db *db = &w->db;
    memset(st, 0, sizeof(*st));
    if (!kb_stripe_configured())
        return KB_E_BILLING_NOT_CONFIGURED;
    if (customer != NULL)
        return sync_customer(w, a, customer, st);
    PGresult *r;
    kb_err err = kb_db_exec(db, a, &customers_stmt, NULL, &r);
    if (err)
        return db_err(err);
    kb_err worst = KB_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        err = sync_customer(w, a, kb_arena_strdup(a, PQgetvalue(r, i, 0)), st);
        if (err) {
            worst = err;
            st->failed++;
        }
    }
    return worst;
}
