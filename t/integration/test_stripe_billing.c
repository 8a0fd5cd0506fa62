/* test_stripe_billing.c - checkout, portal, PAYG, renewals, failures and reconcile against the
 * Stripe stand-in, through libkb's billing functions (the HTTP wrappers need user tokens from
 * another branch) and kbctl; webhooks travel stand-in -> nginx -> app as in production.
 * Money rules 6, 7, 9, 10, 11 and the Stripe client's retries and errors. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "kb_billing.h"
#include "kb_config.h"
#include "kb_log.h"
#include "kb_stripe.h"
#include "kb_worker.h"
#include "kbt.h"
#include "kb_banned.h"

static kb_worker w; /* the connection and Stripe handle billing uses */
static kb_arena arena;

static void
setup(void)
{
    memset(&w, 0, sizeof(w));
    kb_db_init(&w.db, kb_cfg.database_url, "test-stripe", 3, 0);
    kb_arena_init(&arena, 0);
    kbt_resp *r = kbt_stripe_control("POST", "reset", NULL);
    kbt_resp_free(r);
}

static void
teardown(void)
{
    kbt_resp_free(kbt_stripe_control("POST", "reset", NULL));
    kb_arena_release(&arena);
    kb_worker_release(&w);
}

/* Column col of user's billing account as text (NULL when SQL NULL); the column name is a
 * parameter too, looked up in the row's JSON form. */
static char *
field(PGconn *c, const char *user, const char *col)
{
    return kbt_sqlp_value(c, "SELECT to_jsonb(b) ->> $2 FROM billing_accounts b WHERE user_id = $1",
                          2, user, col);
}

static void
assert_field(PGconn *c, const char *user, const char *col, const char *want)
{
    char *v = field(c, user, col);
    ck_assert_msg(v != NULL && strcmp(v, want) == 0, "%s = %s, want %s", col, v ? v : "NULL", want);
    free(v);
}

/* Complete the hosted checkout at url (as a person clicking Pay would). */
static void
complete(const char *url)
{
    const char *cs = strstr(url, "/checkout/");
    ck_assert_ptr_nonnull(cs);
    char path[200];
    snprintf(path, sizeof(path), "checkout/%s/complete", cs + strlen("/checkout/"));
    kbt_resp *r = kbt_stripe_control("POST", path, NULL);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
}

/* A free account subscribed to Project through checkout; returns the subscription id. */
static char *
subscribed(PGconn *c, kbt_account *a)
{
    kbt_account_new(c, a, "free", 0, 0, false);
    const char *url = NULL;
    ck_assert_int_eq(kb_billing_checkout(&w, &arena, a->user_id, &url), KB_OK);
    complete(url);
    assert_field(c, a->user_id, "tier", "project");
    return field(c, a->user_id, "stripe_subscription_id");
}

static void
control_sub(const char *sub, const char *action)
{
    char path[200];
    snprintf(path, sizeof(path), "subscriptions/%s/%s", sub, action);
    kbt_resp *r = kbt_stripe_control("POST", path, NULL);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
}

/* The last recorded stand-in request to path, as a cJSON copy (caller deletes). */
static cJSON *
last_request(const char *path)
{
    kbt_resp *r = kbt_stripe_control("GET", "requests", NULL);
    ck_assert_ptr_nonnull(r->json);
    cJSON *found = NULL, *it;
    cJSON_ArrayForEach(it, r->json) {
        if (strcmp(cJSON_GetObjectItem(it, "path")->valuestring, path) == 0)
            found = it;
    }
    ck_assert_ptr_nonnull(found);
    cJSON *copy = cJSON_Duplicate(found, 1);
    kbt_resp_free(r);
    return copy;
}

START_TEST(checkout_complete_gives_project_4000_and_second_checkout_is_409)
{
    PGconn *c = kbt_db();
    kbt_account a;
    char *sub = subscribed(c, &a);
    ck_assert_ptr_nonnull(sub);
    assert_field(c, a.user_id, "credits_total", "4000");
    assert_field(c, a.user_id, "credits_used", "0");

    cJSON *req = last_request("/v1/checkout/sessions");
    cJSON *p = cJSON_GetObjectItem(req, "params");
    ck_assert_str_eq(cJSON_GetObjectItem(p, "mode")->valuestring, "subscription");
    ck_assert_str_eq(cJSON_GetObjectItem(p, "client_reference_id")->valuestring, a.user_id);
    cJSON *li = cJSON_GetArrayItem(cJSON_GetObjectItem(p, "line_items"), 0);
    ck_assert_str_eq(cJSON_GetObjectItem(li, "price")->valuestring,
                     kbt_env("STRIPE_PROJECT_PRICE_ID"));
    ck_assert_str_eq(cJSON_GetObjectItem(li, "quantity")->valuestring, "1");
    ck_assert_ptr_nonnull(
        strstr(cJSON_GetObjectItem(p, "success_url")->valuestring, "/billing?success=true"));
    ck_assert_str_eq(cJSON_GetObjectItem(req, "stripe_version")->valuestring, KB_STRIPE_VERSION);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(req, "idempotency_key")));
    cJSON_Delete(req);

    const char *url = NULL;
    ck_assert_int_eq(kb_billing_checkout(&w, &arena, a.user_id, &url), KB_E_ALREADY_SUBSCRIBED);
    free(sub);
    PQfinish(c);
}
END_TEST

START_TEST(renewal_resets_credits_failure_marks_past_due_cancel_gives_free)
{
    PGconn *c = kbt_db();
    kbt_account a;
    char *sub = subscribed(c, &a);
    char *start0 = field(c, a.user_id, "billing_cycle_start");
    const char *p[] = {a.user_id};
    PQclear(PQexecParams(c, "UPDATE billing_accounts SET credits_used = 1500 WHERE user_id = $1", 1,
                         NULL, p, NULL, NULL, 0));
    control_sub(sub, "renew");
    assert_field(c, a.user_id, "credits_used", "0");
    char *start1 = field(c, a.user_id, "billing_cycle_start");
    ck_assert_str_ne(start0, start1);

    control_sub(sub, "fail_payment");
    assert_field(c, a.user_id, "past_due", "true");
    assert_field(c, a.user_id, "tier", "project");
    control_sub(sub, "pay");
    assert_field(c, a.user_id, "past_due", "false");

    control_sub(sub, "cancel");
    assert_field(c, a.user_id, "tier", "free");
    assert_field(c, a.user_id, "credits_total", "1000");
    assert_field(c, a.user_id, "payg_enabled", "false");
    char *end = field(c, a.user_id, "billing_cycle_end");
    ck_assert_ptr_null(end);
    free(start0);
    free(start1);
    free(sub);
    PQfinish(c);
}
END_TEST

START_TEST(payg_with_subscription_adds_metered_item_and_enables_at_once)
{
    PGconn *c = kbt_db();
    kbt_account a;
    char *sub = subscribed(c, &a);
    kb_payg_result pr;
    ck_assert_int_eq(kb_billing_payg(&w, &arena, a.user_id, true, 500, &pr), KB_OK);
    ck_assert(pr.enabled);
    ck_assert_ptr_null(pr.checkout_url);
    assert_field(c, a.user_id, "payg_enabled", "true");
    assert_field(c, a.user_id, "overage_cap", "500");
    cJSON *req = last_request("/v1/subscription_items");
    cJSON *params = cJSON_GetObjectItem(req, "params");
    ck_assert_str_eq(cJSON_GetObjectItem(params, "price")->valuestring,
                     kbt_env("STRIPE_PAYG_PRICE_ID"));
    ck_assert_str_eq(cJSON_GetObjectItem(params, "subscription")->valuestring, sub);
    cJSON_Delete(req);
    /* Enabling again adds nothing (idempotent). */
    ck_assert_int_eq(kb_billing_payg(&w, &arena, a.user_id, true, -1, &pr), KB_OK);
    ck_assert(pr.enabled);
    /* A failed payment pauses PAYG; disabling stops it at once. */
    control_sub(sub, "fail_payment");
    assert_field(c, a.user_id, "payg_enabled", "false");
    control_sub(sub, "pay");
    assert_field(c, a.user_id, "payg_enabled", "true");
    ck_assert_int_eq(kb_billing_payg(&w, &arena, a.user_id, false, -1, &pr), KB_OK);
    ck_assert(!pr.enabled);
    assert_field(c, a.user_id, "payg_enabled", "false");
    control_sub(sub, "renew"); /* a later webhook does not turn it back on */
    assert_field(c, a.user_id, "payg_enabled", "false");
    free(sub);
    PQfinish(c);
}
END_TEST

START_TEST(payg_without_subscription_answers_checkout_and_enables_on_webhook)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "free", 0, 0, false);
    kb_payg_result pr;
    ck_assert_int_eq(kb_billing_payg(&w, &arena, a.user_id, true, -1, &pr), KB_OK);
    ck_assert(!pr.enabled);
    ck_assert_ptr_nonnull(pr.checkout_url);
    assert_field(c, a.user_id, "payg_enabled", "false");
    cJSON *req = last_request("/v1/checkout/sessions");
    cJSON *li = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(req, "params"), "line_items"), 0);
    ck_assert_str_eq(cJSON_GetObjectItem(li, "price")->valuestring,
                     kbt_env("STRIPE_PAYG_PRICE_ID"));
    ck_assert_ptr_null(cJSON_GetObjectItem(li, "quantity"));
    cJSON_Delete(req);
    complete(pr.checkout_url);
    assert_field(c, a.user_id, "payg_enabled", "true");
    assert_field(c, a.user_id, "tier", "payg");
    assert_field(c, a.user_id, "credits_total", "1000");
    PQfinish(c);
}
END_TEST

START_TEST(twenty_concurrent_checkouts_make_one_customer)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "free", 0, 0, false);
    pid_t kids[20];
    for (int i = 0; i < 20; i++) {
        fflush(NULL);
        kids[i] = fork();
        ck_assert_int_ge(kids[i], 0);
        if (kids[i] == 0) {
            kb_worker d;
            kb_arena ar;
            memset(&d, 0, sizeof(d));
            kb_db_init(&d.db, kb_cfg.database_url, "test-stripe-kid", 3, 0);
            kb_arena_init(&ar, 0);
            const char *url = NULL;
            kb_err err = kb_billing_checkout(&d, &ar, a.user_id, &url);
            kb_arena_release(&ar);
            kb_worker_release(&d);
            _exit(err == KB_OK ? 0 : 1);
        }
    }
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        int st = 0;
        waitpid(kids[i], &st, 0);
        ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    ck_assert_int_eq(ok, 20);
    kbt_resp *r = kbt_stripe_control("GET", "state", NULL);
    int n = 0;
    cJSON *cus;
    cJSON_ArrayForEach(cus, cJSON_GetObjectItem(r->json, "customers")) {
        cJSON *uid = cJSON_GetObjectItem(cJSON_GetObjectItem(cus, "metadata"),
                                         "kalshibook_user_id");
        n += cJSON_IsString(uid) && strcmp(uid->valuestring, a.user_id) == 0;
    }
    kbt_resp_free(r);
    ck_assert_int_eq(n, 1);
    PQfinish(c);
}
END_TEST

START_TEST(missed_webhooks_are_repaired_by_kbctl_stripe_sync)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "free", 0, 0, false);
    const char *url = NULL;
    ck_assert_int_eq(kb_billing_checkout(&w, &arena, a.user_id, &url), KB_OK);
    kbt_resp_free(kbt_stripe_control("POST", "hold", "{\"on\":true}"));
    complete(url);
    kbt_resp_free(kbt_stripe_control("POST", "reset", NULL)); /* drop the held webhooks */
    assert_field(c, a.user_id, "tier", "free");
    char *cus = field(c, a.user_id, "stripe_customer_id");
    const char *args[] = {"stripe-sync", "--customer", cus, NULL};
    ck_assert_int_eq(kbt_stripe_kbctl(false, args), 0);
    assert_field(c, a.user_id, "tier", "project");
    assert_field(c, a.user_id, "credits_total", "4000");
    free(cus);
    PQfinish(c);
}
END_TEST

START_TEST(stripe_failures_retry_then_502_and_no_key_is_503)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "free", 0, 0, false);
    /* One 429 then success: retried transparently. */
    kbt_resp_free(kbt_stripe_control("POST", "fail",
                                     "{\"status\":429,\"count\":1,\"prefix\":\"/v1/customers\"}"));
    const char *cus = NULL;
    ck_assert_int_eq(kb_billing_customer(&w, &arena, a.user_id, &cus), KB_OK);
    /* An outage: bounded attempts, then stripe_error. */
    kbt_resp_free(kbt_stripe_control("POST", "outage", "{\"on\":true}"));
    const char *url = NULL;
    kb_err err = kb_billing_checkout(&w, &arena, a.user_id, &url);
    kbt_resp_free(kbt_stripe_control("POST", "reset", NULL));
    ck_assert_int_eq(err, KB_E_STRIPE);
    ck_assert_int_eq(kb_err_status(err), 502);
    /* Idempotency-Key reuse with other parameters is refused by Stripe. */
    kb_stripe_form f = {KB_BUF_INIT};
    kb_stripe_form_add(&f, "email", "a@example.test");
    kb_stripe_res res;
    ck_assert_int_eq(
        kb_stripe_call(&w, &arena, "POST", "/v1/customers", &f, "kb-test-reuse-x", &res), KB_OK);
    kb_stripe_form_release(&f);
    kb_stripe_form_add(&f, "email", "b@example.test");
    ck_assert_int_eq(kb_stripe_call(&w, &arena, "POST", "/v1/customers", &f, "kb-test-reuse-x",
                                    &res),
                     KB_E_STRIPE);
    kb_stripe_form_release(&f);
    ck_assert_int_eq(res.status, 400);
    ck_assert_str_eq(res.err_type, "idempotency_error");
    /* No key: billing_not_configured. */
    kb_cfg.stripe_secret_key = NULL;
    ck_assert_int_eq(kb_billing_checkout(&w, &arena, a.user_id, &url), KB_E_BILLING_NOT_CONFIGURED);
    ck_assert_int_eq(kb_err_status(KB_E_BILLING_NOT_CONFIGURED), 503);
    PQfinish(c);
}
END_TEST

START_TEST(stripe_timeout_is_retried_with_the_same_idempotency_key)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "free", 0, 0, false);
    kb_cfg.stripe_timeout_s = 1;
    kb_cfg.stripe_max_retries = 1;
    kbt_resp_free(kbt_stripe_control("POST", "fail",
                                     "{\"timeout\":true,\"count\":1,"
                                     "\"prefix\":\"/v1/customers\"}"));
    const char *cus = NULL;
    ck_assert_int_eq(kb_billing_customer(&w, &arena, a.user_id, &cus), KB_OK);
    cJSON *req = last_request("/v1/customers");
    ck_assert_str_eq(cJSON_GetObjectItem(req, "idempotency_key")->valuestring,
                     kb_arena_printf(&arena, "kb-customer-%s", a.user_id));
    cJSON_Delete(req);
    PQfinish(c);
}
END_TEST

/* Id of the newest stand-in event of type for subscription sub (malloc'd). */
static char *
event_id(const char *type, const char *sub)
{
    kbt_resp *r = kbt_stripe_control("GET", "events", NULL);
    char *id = NULL;
    cJSON *ev;
    cJSON_ArrayForEach(ev, r->json) {
        cJSON *obj = cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "data"), "object");
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(obj, "id"));
        cJSON *parent = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "parent"),
                                            "subscription_details");
        const char *ps = cJSON_GetStringValue(cJSON_GetObjectItem(parent, "subscription"));
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(ev, "type")), type) == 0 &&
            ((s && strcmp(s, sub) == 0) || (ps && strcmp(ps, sub) == 0))) {
            free(id);
            id = strdup(cJSON_GetStringValue(cJSON_GetObjectItem(ev, "id")));
        }
    }
    kbt_resp_free(r);
    ck_assert_ptr_nonnull(id);
    return id;
}

static void
redeliver(const char *evt)
{
    char path[128];
    snprintf(path, sizeof(path), "events/%s/redeliver", evt);
    kbt_resp *r = kbt_stripe_control("POST", path, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq((int)cJSON_GetObjectItem(r->json, "status")->valuedouble, 200);
    kbt_resp_free(r);
}

START_TEST(renewal_invoice_alone_resets_credits_and_reordered_cancel_wins)
{
    PGconn *c = kbt_db();
    kbt_account a;
    char *sub = subscribed(c, &a);
    const char *p[] = {a.user_id};
    PQclear(PQexecParams(c, "UPDATE billing_accounts SET credits_used = 700 WHERE user_id = $1", 1,
                         NULL, p, NULL, NULL, 0));
    kbt_resp_free(kbt_stripe_control("POST", "hold", "{\"on\":true}"));
    control_sub(sub, "renew");
    /* Only invoice.paid of the renewal arrives (subscription.updated is late). */
    char *inv = event_id("invoice.paid", sub);
    redeliver(inv);
    assert_field(c, a.user_id, "credits_used", "0");
    redeliver(inv); /* Stripe redelivers: no second effect */
    PQclear(PQexecParams(c, "UPDATE billing_accounts SET credits_used = 10 WHERE user_id = $1", 1,
                         NULL, p, NULL, NULL, 0));
    redeliver(inv);
    assert_field(c, a.user_id, "credits_used", "10");
    kbt_resp_free(kbt_stripe_control("POST", "release", "{}"));
    assert_field(c, a.user_id, "credits_used", "10");
    /* Cancel, then the events arrive in reverse order: canceled stays canceled. */
    kbt_resp_free(kbt_stripe_control("POST", "hold", "{\"on\":true}"));
    control_sub(sub, "pay");
    control_sub(sub, "cancel");
    kbt_resp *r = kbt_stripe_control("POST", "release", "{\"order\":\"reverse\"}");
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
    assert_field(c, a.user_id, "tier", "free");
    assert_field(c, a.user_id, "credits_total", "1000");
    free(inv);
    free(sub);
    PQfinish(c);
}
END_TEST

START_TEST(stripe_setup_is_idempotent)
{
    const char *args[] = {"stripe-setup", "--project-cents", "2900", NULL};
    ck_assert_int_eq(kbt_stripe_kbctl(false, args), 0);
    ck_assert_int_eq(kbt_stripe_kbctl(false, args), 0);
    kbt_resp *r = kbt_stripe_control("GET", "state", NULL);
    int project = 0, payg = 0, meters = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(r->json, "prices")) {
        const char *lk = cJSON_GetStringValue(cJSON_GetObjectItem(it, "lookup_key"));
        project += lk && strcmp(lk, "kalshibook_project") == 0;
        if (lk && strcmp(lk, "kalshibook_payg") == 0) {
            payg++;
            cJSON *rec = cJSON_GetObjectItem(it, "recurring");
            ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "usage_type")),
                             "metered");
            ck_assert_ptr_nonnull(cJSON_GetStringValue(cJSON_GetObjectItem(rec, "meter")));
        }
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(r->json, "meters")) {
        meters += strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(it, "event_name")),
                         "kalshibook_api_credits") == 0;
    }
    ck_assert_ptr_nonnull(
        cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "products"), "kalshibook_api"));
    kbt_resp_free(r);
    ck_assert_int_eq(project, 1);
    ck_assert_int_eq(payg, 1);
    ck_assert_int_eq(meters, 1);
}
END_TEST

START_TEST(portal_needs_a_customer)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "free", 0, 0, false);
    const char *url = NULL;
    ck_assert_int_eq(kb_billing_portal(&w, &arena, a.user_id, &url), KB_E_NO_BILLING_ACCOUNT);
    const char *cus = NULL;
    ck_assert_int_eq(kb_billing_customer(&w, &arena, a.user_id, &cus), KB_OK);
    ck_assert_int_eq(kb_billing_portal(&w, &arena, a.user_id, &url), KB_OK);
    ck_assert_ptr_nonnull(strstr(url, "/portal/"));
    cJSON *req = last_request("/v1/billing_portal/sessions");
    cJSON *p = cJSON_GetObjectItem(req, "params");
    ck_assert_str_eq(cJSON_GetObjectItem(p, "customer")->valuestring, cus);
    cJSON_Delete(req);
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    kb_log_init("test", KB_LOG_ERROR);
    kb_buf problems = KB_BUF_INIT;
    if (kb_config_load(&kb_cfg, &problems) != 0) {
        fprintf(stderr, "config: %s", kb_buf_cstr(&problems));
        kb_buf_release(&problems);
        return 1;
    }
    kb_buf_release(&problems);
    Suite *s = suite_create("stripe_billing");
    TCase *tc = tcase_create("billing");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, checkout_complete_gives_project_4000_and_second_checkout_is_409);
    tcase_add_test(tc, renewal_resets_credits_failure_marks_past_due_cancel_gives_free);
    tcase_add_test(tc, payg_with_subscription_adds_metered_item_and_enables_at_once);
    tcase_add_test(tc, payg_without_subscription_answers_checkout_and_enables_on_webhook);
    tcase_add_test(tc, twenty_concurrent_checkouts_make_one_customer);
    tcase_add_test(tc, missed_webhooks_are_repaired_by_kbctl_stripe_sync);
    tcase_add_test(tc, stripe_failures_retry_then_502_and_no_key_is_503);
    tcase_add_test(tc, portal_needs_a_customer);
    tcase_add_test(tc, renewal_invoice_alone_resets_credits_and_reordered_cancel_wins);
    tcase_add_test(tc, stripe_setup_is_idempotent);
    tcase_add_test(tc, stripe_timeout_is_retried_with_the_same_idempotency_key);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
