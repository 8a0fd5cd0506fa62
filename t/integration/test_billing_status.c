/* test_billing_status.c - GET /billing/status: shape, lazy account, the
 * rolled cycle as metering sees it (API.md §7.16), auth errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

static kbt_resp *
status(const char *token)
{
    return kbt_auth_json("GET", "/billing/status", token, NULL);
}

static void
first_of_month(char *out, size_t outsz)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, outsz, "%Y-%m-01T00:00:00+00:00", &tm);
}

START_TEST(status_creates_free_account_with_exact_shape)
{
    char *token = NULL, *uid = NULL, *email = kbt_auth_email("status");
    kbt_auth_signup(email, "correct horse battery", &token, &uid);
    kbt_resp *r = status(token);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    const char *order[] = {"tier",         "credits_total",
                           "credits_used", "credits_remaining",
                           "payg_enabled", "billing_cycle_start",
                           "request_id"};
    cJSON *f = r->json->child;
    for (size_t i = 0; i < 7; i++, f = f->next) {
        ck_assert_msg(f != NULL, "missing %s", order[i]);
        ck_assert_str_eq(f->string, order[i]);
    }
    ck_assert_ptr_null(f);
    ck_assert_str_eq(kbt_auth_str(r, "tier"), "free");
    ck_assert_int_eq(cJSON_GetObjectItem(r->json, "credits_total")->valueint, 1000);
    ck_assert_int_eq(cJSON_GetObjectItem(r->json, "credits_used")->valueint, 0);
    ck_assert_int_eq(cJSON_GetObjectItem(r->json, "credits_remaining")->valueint, 1000);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r->json, "payg_enabled")));
    char want[40];
    first_of_month(want, sizeof(want));
    ck_assert_str_eq(kbt_auth_str(r, "billing_cycle_start"), want);
    char *rid = kbt_header(r, "X-Request-ID");
    ck_assert_str_eq(kbt_auth_str(r, "request_id"), rid);
    free(rid);
    kbt_resp_free(r);

    PGconn *c = kbt_db();
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM billing_accounts WHERE user_id = $1", uid), 1);
    PQfinish(c);
    free(token);
    free(uid);
    free(email);
}
END_TEST

START_TEST(status_shows_the_rolled_cycle_like_the_meter)
{
    char *token = NULL, *uid = NULL, *email = kbt_auth_email("status-roll");
    kbt_auth_signup(email, "correct horse battery", &token, &uid);
    kbt_resp_free(status(token));
    PGconn *c = kbt_db();
    const char *p[] = {uid};
    /* Last month's cycle, 600 used: this month shows 0 used and a new start. */
    PQclear(PQexecParams(c,
                         "UPDATE billing_accounts SET credits_used = 600, billing_cycle_start ="
                         " kb_cycle_month(kb_now()) - interval '1 month' WHERE user_id = $1",
                         1, NULL, p, NULL, NULL, 0));
    kbt_resp *r = status(token);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(cJSON_GetObjectItem(r->json, "credits_used")->valueint, 0);
    char want[40];
    first_of_month(want, sizeof(want));
    ck_assert_str_eq(kbt_auth_str(r, "billing_cycle_start"), want);
    kbt_resp_free(r);
    /* Within the cycle the figures are the account's: used 250 of a custom 300. */
    PQclear(PQexecParams(c,
                         "UPDATE billing_accounts SET credits_used = 250, credits_total = 300,"
                         " credits_override = 300, billing_cycle_start = kb_cycle_month(kb_now())"
                         " WHERE user_id = $1",
                         1, NULL, p, NULL, NULL, 0));
    r = status(token);
    ck_assert_int_eq(cJSON_GetObjectItem(r->json, "credits_total")->valueint, 300);
    ck_assert_int_eq(cJSON_GetObjectItem(r->json, "credits_used")->valueint, 250);
    ck_assert_int_eq(cJSON_GetObjectItem(r->json, "credits_remaining")->valueint, 50);
    kbt_resp_free(r);
    PQfinish(c);
    free(token);
    free(uid);
    free(email);
}
END_TEST

START_TEST(status_refuses_missing_token_and_api_keys)
{
    kbt_resp *r = status(NULL);
    kbt_assert_envelope(r, 401, "invalid_api_key");
    kbt_resp_free(r);
    r = status("kb-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    kbt_assert_envelope(r, 401, "invalid_auth_method");
    kbt_resp_free(r);
    r = status("not.a.jwt");
    kbt_assert_envelope(r, 401, "invalid_api_key");
    kbt_resp_free(r);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("billing_status");
    TCase *tc = tcase_create("status");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, status_creates_free_account_with_exact_shape);
    tcase_add_test(tc, status_shows_the_rolled_cycle_like_the_meter);
    tcase_add_test(tc, status_refuses_missing_token_and_api_keys);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
