/* test_stripe_http.c - POST /billing/checkout, /billing/portal and /billing/payg through nginx
 * with real user tokens and the Stripe stand-in (API.md §5.13, §7.4-7.6): auth errors, the
 * response shapes, checkout -> hosted page completed -> webhook -> project, 409 on a second
 * checkout, portal 400/200, PAYG validation and both PAYG paths, 502 on a Stripe outage. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

typedef struct user {
    char *token;
    char *id;
} user;

static void
user_new(user *u, const char *tag)
{
    char *email = kbt_auth_email(tag);
    kbt_auth_signup(email, "correct horse battery", &u->token, &u->id);
    free(email);
}

static void
user_free(user *u)
{
    free(u->token);
    free(u->id);
}

static char *
tier_of(const char *user_id)
{
    PGconn *c = kbt_db();
    char *v = kbt_sqlp_value(c,
                             "SELECT tier || '/' || credits_total || '/' || payg_enabled"
                             " FROM billing_accounts WHERE user_id = $1",
                             1, user_id);
    PQfinish(c);
    return v;
}

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

START_TEST(billing_routes_need_a_user_token)
{
    const char *paths[] = {"/billing/checkout", "/billing/portal", NULL};
    for (size_t i = 0; paths[i] != NULL; i++) {
        kbt_resp *r = kbt_auth_json("POST", paths[i], NULL, NULL);
        kbt_assert_envelope(r, 401, "invalid_api_key");
        kbt_resp_free(r);
        r = kbt_auth_json("POST", paths[i], "kb-notatoken", NULL);
        kbt_assert_envelope(r, 401, "invalid_auth_method");
        kbt_resp_free(r);
    }
}
END_TEST

START_TEST(checkout_then_webhook_gives_project_and_second_checkout_is_409)
{
    user u;
    user_new(&u, "stripe-checkout");
    kbt_resp *r = kbt_auth_json("POST", "/billing/checkout", u.token, NULL);
    ck_assert_int_eq(r->status, 200);
    kbt_assert_request_id(r);
    const char *url = kbt_auth_str(r, "checkout_url");
    ck_assert_ptr_nonnull(url);
    ck_assert_ptr_nonnull(kbt_auth_str(r, "request_id"));
    complete(url);
    kbt_resp_free(r);
    char *t = tier_of(u.id);
    ck_assert_str_eq(t, "project/4000/false");
    free(t);
    r = kbt_auth_json("POST", "/billing/checkout", u.token, NULL);
    kbt_assert_envelope(r, 409, "already_subscribed");
    ck_assert_ptr_nonnull(
        strstr(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")->valuestring,
               "/billing/portal"));
    kbt_resp_free(r);
    r = kbt_auth_json("POST", "/billing/portal", u.token, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(kbt_auth_str(r, "portal_url"));
    kbt_resp_free(r);
    /* PAYG with the Project subscription: metered item added, on at once. */
    r = kbt_auth_json("POST", "/billing/payg", u.token, "{\"enable\":true}");
    ck_assert_int_eq(r->status, 200);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(r->json, "payg_enabled")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(r->json, "checkout_url")));
    kbt_resp_free(r);
    t = tier_of(u.id);
    ck_assert_str_eq(t, "project/4000/true");
    free(t);
    user_free(&u);
}
END_TEST

typedef struct call {
    const char *token;
    long status;
} call;

static void *
checkout_call(void *arg)
{
    call *k = arg;
    kbt_resp *r = kbt_auth_json("POST", "/billing/checkout", k->token, NULL);
    k->status = r->status;
    kbt_resp_free(r);
    return NULL;
}

START_TEST(twenty_concurrent_checkouts_through_nginx_make_one_customer)
{
    user u;
    user_new(&u, "stripe-20");
    pthread_t th[20];
    call k[20];
    for (int i = 0; i < 20; i++) {
        k[i].token = u.token;
        pthread_create(&th[i], NULL, checkout_call, &k[i]);
    }
    for (int i = 0; i < 20; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(k[i].status, 200);
    }
    kbt_resp *r = kbt_stripe_control("GET", "state", NULL);
    int n = 0;
    cJSON *cus;
    cJSON_ArrayForEach(cus, cJSON_GetObjectItem(r->json, "customers")) {
        const char *uid = cJSON_GetStringValue(
            cJSON_GetObjectItem(cJSON_GetObjectItem(cus, "metadata"), "kalshibook_user_id"));
        n += uid != NULL && strcmp(uid, u.id) == 0;
    }
    kbt_resp_free(r);
    ck_assert_int_eq(n, 1);
    user_free(&u);
}
END_TEST

START_TEST(portal_without_customer_is_400_no_billing_account)
{
    user u;
    user_new(&u, "stripe-portal");
    kbt_resp *r = kbt_auth_json("POST", "/billing/portal", u.token, NULL);
    kbt_assert_envelope(r, 400, "no_billing_account");
    kbt_resp_free(r);
    user_free(&u);
}
END_TEST

START_TEST(payg_validates_its_body)
{
    user u;
    user_new(&u, "stripe-payg-422");
    const char *bodies[] = {"{}", "{\"enable\":\"yes\"}", "{\"enable\":true,\"overage_cap\":-1}",
                            "[true]", NULL};
    for (size_t i = 0; bodies[i] != NULL; i++) {
        kbt_resp *r = kbt_auth_json("POST", "/billing/payg", u.token, bodies[i]);
        kbt_assert_envelope(r, 422, "validation_error");
        kbt_resp_free(r);
    }
    user_free(&u);
}
END_TEST

/* overage_cap: a number sets it, absent keeps it, null removes it (the handler tells null
 * from absent with kb_json_is_null). */
START_TEST(payg_overage_cap_null_removes_absent_keeps)
{
    static const struct {
        const char *body, *cap; /* cap after the call, NULL = none */
    } steps[] = {{"{\"enable\":false,\"overage_cap\":500}", "500"},
                 {"{\"enable\":false}", "500"},
                 {"{\"enable\":false,\"overage_cap\":null}", NULL}};
    user u;
    user_new(&u, "stripe-payg-cap");
    PGconn *db = kbt_db();
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        kbt_resp *r = kbt_auth_json("POST", "/billing/payg", u.token, steps[i].body);
        ck_assert_msg(r->status == 200, "%s: %ld %s", steps[i].body, r->status,
                      kb_buf_cstr(&r->body));
        kbt_resp_free(r);
        char *cap = kbt_sqlp_value(db,
                                   "SELECT overage_cap FROM billing_accounts"
                                   " WHERE user_id = $1::uuid",
                                   1, u.id);
        if (steps[i].cap == NULL)
            ck_assert_msg(cap == NULL, "%s: cap %s", steps[i].body, cap);
        else
            ck_assert_msg(cap != NULL && strcmp(cap, steps[i].cap) == 0, "%s: cap %s",
                          steps[i].body, cap ? cap : "none");
        free(cap);
    }
    PQfinish(db);
    user_free(&u);
}
END_TEST

START_TEST(payg_without_subscription_returns_checkout_then_webhook_enables)
{
    user u;
    user_new(&u, "stripe-payg");
    kbt_resp *r = kbt_auth_json("POST", "/billing/payg", u.token, "{\"enable\":true}");
    ck_assert_int_eq(r->status, 200);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r->json, "payg_enabled")));
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(r->json, "message")));
    const char *url = kbt_auth_str(r, "checkout_url");
    ck_assert_ptr_nonnull(url);
    complete(url);
    kbt_resp_free(r);
    char *t = tier_of(u.id);
    ck_assert_str_eq(t, "payg/1000/true");
    free(t);
    /* With the metered subscription in place: on at once, checkout_url null. */
    r = kbt_auth_json("POST", "/billing/payg", u.token, "{\"enable\":false}");
    ck_assert_int_eq(r->status, 200);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r->json, "payg_enabled")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(r->json, "checkout_url")));
    kbt_resp_free(r);
    r = kbt_auth_json("POST", "/billing/payg", u.token, "{\"enable\":true,\"overage_cap\":300}");
    ck_assert_int_eq(r->status, 200);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(r->json, "payg_enabled")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(r->json, "checkout_url")));
    kbt_resp_free(r);
    PGconn *c = kbt_db();
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT overage_cap FROM billing_accounts"
                                   " WHERE user_id = $1::uuid",
                                   u.id),
                     300);
    PQfinish(c);
    user_free(&u);
}
END_TEST

START_TEST(stripe_outage_is_502_stripe_error)
{
    user u;
    user_new(&u, "stripe-outage");
    kbt_resp_free(kbt_stripe_control("POST", "outage", "{\"on\":true}"));
    kbt_resp *r = kbt_auth_json("POST", "/billing/checkout", u.token, NULL);
    kbt_resp_free(kbt_stripe_control("POST", "reset", NULL));
    kbt_assert_envelope(r, 502, "stripe_error");
    kbt_resp_free(r);
    user_free(&u);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("stripe_http");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, billing_routes_need_a_user_token);
    tcase_add_test(tc, checkout_then_webhook_gives_project_and_second_checkout_is_409);
    tcase_add_test(tc, portal_without_customer_is_400_no_billing_account);
    tcase_add_test(tc, payg_validates_its_body);
    tcase_add_test(tc, payg_overage_cap_null_removes_absent_keeps);
    tcase_add_test(tc, payg_without_subscription_returns_checkout_then_webhook_enables);
    tcase_add_test(tc, stripe_outage_is_502_stripe_error);
    tcase_add_test(tc, twenty_concurrent_checkouts_through_nginx_make_one_customer);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
