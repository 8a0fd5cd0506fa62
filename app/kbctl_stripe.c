/* kbctl_stripe.c - kbctl report-usage, stripe-sync and stripe-setup.
 *
 * report-usage: one usage reporter run (lib/usage.c); safe next to the
 * master's reporter child and to other copies of itself.
 * stripe-sync: repair local subscription state from Stripe (money rule 11).
 * stripe-setup: create, idempotently, the product, the Project price, the
 * billing meter and the metered PAYG price; print the env lines to set.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbctl.h"
#include "kb_billing.h"
#include "kb_config.h"
#include "kb_log.h"
#include "kb_stripe.h"
#include "kb_usage.h"
#include "kb_worker.h"
#include "kb_banned.h"

static int
load(const char *cmd, kb_worker *w, bool need_db)
{
    if (!kb_stripe_configured()) {
        fprintf(stderr, "kbctl %s: STRIPE_SECRET_KEY is not set\n", cmd);
        return KBCTL_CONFIG;
    }
    kb_worker_init(w, "kbctl-stripe");
    w->db.statement_timeout_ms = 0; /* an operator's command may run long */
    if (need_db && kb_db_connect(&w->db)) {
        fprintf(stderr, "kbctl %s: unable to connect to the database\n", cmd);
        kb_worker_release(w);
        return KBCTL_FAIL;
    }
    return KBCTL_OK;
}

int
kbctl_report_usage(int argc, char **argv)
{
    if (argc > 1) {
        printf("usage: kbctl report-usage\n\nSend unreported PAYG overage to Stripe as meter "
               "events (one run of the reporter).\nExit 0 when everything due was delivered "
               "or flagged, 1 when some batches must be retried.\n");
        return strcmp(argv[1], "--help") == 0 ? KBCTL_OK : KBCTL_USAGE;
    }
    kb_worker w;
    int rc = load("report-usage", &w, true);
    if (rc)
        return rc;
    kb_usage_stats st;
    kb_err err = kb_usage_report(&w, &st);
    printf("batched_rows=%ld sent=%ld duplicates=%ld failed=%ld flagged=%ld flagged_total=%ld "
           "no_customer=%ld\n",
           st.batched_rows, st.sent, st.duplicates, st.failed, st.flagged, st.flagged_total,
           st.no_customer);
    kb_worker_release(&w);
    return err ? KBCTL_FAIL : KBCTL_OK;
}

int
kbctl_stripe_sync(int argc, char **argv)
{
    const char *customer = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--customer") == 0 && i + 1 < argc) {
            customer = argv[++i];
        } else {
            printf("usage: kbctl stripe-sync [--customer cus_...]\n\nPull subscriptions from "
                   "Stripe and repair local billing state (tiers, periods, PAYG),\nfor one "
                   "customer or for every known one, including customers of webhook\nevents "
                   "stored as 'unknown_customer'.\n");
            return strcmp(argv[i], "--help") == 0 ? KBCTL_OK : KBCTL_USAGE;
        }
    }
    kb_worker w;
    int rc = load("stripe-sync", &w, true);
    if (rc)
        return rc;
    kb_arena a;
    kb_arena_init(&a, 0);
    kb_sync_stats st;
    kb_err err = kb_billing_sync(&w, &a, customer, &st);
    printf("customers=%ld subscriptions=%ld applied=%ld failed=%ld events_resolved=%ld\n",
           st.customers, st.subscriptions, st.applied, st.failed, st.events_resolved);
    kb_arena_release(&a);
    kb_worker_release(&w);
    return err ? KBCTL_FAIL : KBCTL_OK;
}

/* GET path?key=value and return data[0] (or the object itself) when found. */
static const cJSON *
find_one(kb_worker *w, kb_arena *a, const char *path, const char *key, const char *value,
         kb_err *err)
{
    kb_stripe_form q = {KB_BUF_INIT};
    if (key)
        kb_stripe_form_add(&q, key, value);
    kb_stripe_res res;
    *err = kb_stripe_call(w, a, "GET", path, key ? &q : NULL, NULL, &res);
    kb_stripe_form_release(&q);
    if (*err) {
        if (res.status == 404)
            *err = KB_OK;
        return NULL;
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(res.json, "data");
    if (data == NULL)
        return res.json;
    return cJSON_GetArrayItem(data, 0);
}

static const char *
create(kb_worker *w, kb_arena *a, const char *path, kb_stripe_form *f, const char *idem)
{
    kb_stripe_res res;
    kb_err err = kb_stripe_call(w, a, "POST", path, f, idem, &res);
    kb_stripe_form_release(f);
    return err ? NULL : kb_stripe_str(res.json, "id");
}

int
kbctl_stripe_setup(int argc, char **argv)
{
    const char *cents = NULL, *credit_cents = "0.8", *currency = "usd";
    bool help = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--project-cents") == 0 && i + 1 < argc) {
            cents = argv[++i];
        } else if (strcmp(argv[i], "--credit-cents") == 0 && i + 1 < argc) {
            credit_cents = argv[++i];
        } else if (strcmp(argv[i], "--currency") == 0 && i + 1 < argc) {
            currency = argv[++i];
        } else {
            help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
            cents = NULL;
            break;
        }
    }
    if (cents == NULL) {
        printf("usage: kbctl stripe-setup --project-cents N [--credit-cents 0.8] "
               "[--currency usd]\n\nCreate (or find) the product 'kalshibook_api', the "
               "monthly Project price (lookup key\nkalshibook_project), the billing meter "
               "(STRIPE_METER_EVENT_NAME, sum) and the metered\nPAYG price (lookup key "
               "kalshibook_payg, per credit), then print the env lines.\n");
        return help ? KBCTL_OK : KBCTL_USAGE;
    }
    kb_worker w;
    int rc = load("stripe-setup", &w, false);
    if (rc)
        return rc;
    kb_arena a;
    kb_arena_init(&a, 0);
    kb_err err;
    const char *product = "kalshibook_api";
    if (find_one(&w, &a, "/v1/products/kalshibook_api", NULL, NULL, &err) == NULL) {
        kb_stripe_form f = {KB_BUF_INIT};
        kb_stripe_form_add(&f, "id", product);
        kb_stripe_form_add(&f, "name", "KalshiBook API");
        if (err || create(&w, &a, "/v1/products", &f, "kb-setup-product") == NULL)
            goto fail;
    }
    const cJSON *o = find_one(&w, &a, "/v1/prices", "lookup_keys[0]", "kalshibook_project", &err);
    const char *project = o ? kb_stripe_str(o, "id") : NULL;
    if (err)
        goto fail;
    if (project == NULL) {
        kb_stripe_form f = {KB_BUF_INIT};
        kb_stripe_form_add(&f, "product", product);
        kb_stripe_form_add(&f, "currency", currency);
        kb_stripe_form_add(&f, "unit_amount", cents);
        kb_stripe_form_add(&f, "recurring[interval]", "month");
        kb_stripe_form_add(&f, "lookup_key", "kalshibook_project");
        if ((project = create(&w, &a, "/v1/prices", &f, NULL)) == NULL)
            goto fail;
    }
    const char *meter = NULL;
    kb_stripe_res res;
    kb_stripe_form q = {KB_BUF_INIT};
    kb_stripe_form_add(&q, "status", "active");
    kb_stripe_form_add(&q, "limit", "100");
    err = kb_stripe_call(&w, &a, "GET", "/v1/billing/meters", &q, NULL, &res);
    kb_stripe_form_release(&q);
    if (err)
        goto fail;
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(res.json, "data")) {
        const char *ev = kb_stripe_str(m, "event_name");
        if (ev && strcmp(ev, kb_cfg.stripe_meter_event) == 0)
            meter = kb_stripe_str(m, "id");
    }
    if (meter == NULL) {
        kb_stripe_form f = {KB_BUF_INIT};
        kb_stripe_form_add(&f, "display_name", "KalshiBook API credits (overage)");
        kb_stripe_form_add(&f, "event_name", kb_cfg.stripe_meter_event);
        kb_stripe_form_add(&f, "default_aggregation[formula]", "sum");
        kb_stripe_form_add(&f, "customer_mapping[type]", "by_id");
        kb_stripe_form_add(&f, "customer_mapping[event_payload_key]", "stripe_customer_id");
        kb_stripe_form_add(&f, "value_settings[event_payload_key]", "value");
        if ((meter = create(&w, &a, "/v1/billing/meters", &f, NULL)) == NULL)
            goto fail;
    }
    o = find_one(&w, &a, "/v1/prices", "lookup_keys[0]", "kalshibook_payg", &err);
    const char *payg = o ? kb_stripe_str(o, "id") : NULL;
    if (err)
        goto fail;
    if (payg == NULL) {
        kb_stripe_form f = {KB_BUF_INIT};
        kb_stripe_form_add(&f, "product", product);
        kb_stripe_form_add(&f, "currency", currency);
        kb_stripe_form_add(&f, "unit_amount_decimal", credit_cents);
        kb_stripe_form_add(&f, "recurring[interval]", "month");
        kb_stripe_form_add(&f, "recurring[usage_type]", "metered");
        kb_stripe_form_add(&f, "recurring[meter]", meter);
        kb_stripe_form_add(&f, "lookup_key", "kalshibook_payg");
        if ((payg = create(&w, &a, "/v1/prices", &f, NULL)) == NULL)
            goto fail;
    }
    printf("STRIPE_PROJECT_PRICE_ID=%s\nSTRIPE_PAYG_PRICE_ID=%s\nSTRIPE_METER_EVENT_NAME=%s\n"
           "# meter %s; product %s\n",
           project, payg, kb_cfg.stripe_meter_event, meter, product);
    kb_arena_release(&a);
    kb_worker_release(&w);
    return KBCTL_OK;
fail:
    fprintf(stderr, "kbctl stripe-setup: a Stripe call failed (see the log line above)\n");
    kb_arena_release(&a);
    kb_worker_release(&w);
    return KBCTL_FAIL;
}
