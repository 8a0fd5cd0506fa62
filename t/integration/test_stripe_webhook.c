/* test_stripe_webhook.c - POST /billing/webhook through nginx (money rule 8, API.md §5.13):
 * signatures (bad, missing, old, rotated secret, several v1), payload checks,
 * duplicates, ordering, unknown types and unknown customers. Events are built
 * here in Stripe's shape (API 2025-09-30.clover: periods on the items). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

static char *
sub_event(const char *evt, const char *type, long created, const char *cus, const char *sub,
          const char *status, long pstart)
{
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b,
                  "{\"id\":\"%s\",\"object\":\"event\",\"api_version\":\"2025-09-30.clover\","
                  "\"created\":%ld,\"livemode\":false,\"type\":\"%s\",\"data\":{\"object\":{"
                  "\"id\":\"%s\",\"object\":\"subscription\",\"customer\":\"%s\","
                  "\"status\":\"%s\",\"metadata\":{},\"items\":{\"object\":\"list\",\"data\":["
                  "{\"id\":\"si_%s\",\"object\":\"subscription_item\",\"price\":{\"id\":\"%s\","
                  "\"object\":\"price\"},\"quantity\":1,\"current_period_start\":%ld,"
                  "\"current_period_end\":%ld}]}}}}",
                  evt, created, type, sub, cus, status, sub, kbt_env("STRIPE_PROJECT_PRICE_ID"),
                  pstart, pstart + 30 * 86400);
    return kb_buf_detach(&b, NULL);
}

static void
rand_id(const char *prefix, char *out, size_t outsz)
{
    unsigned char r[8];
    char hex[17];
    randombytes_buf(r, sizeof(r));
    sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
    snprintf(out, outsz, "%s_%s", prefix, hex);
}

/* A user whose billing account is linked to a fresh customer id. */
static void
linked_account(PGconn *c, kbt_account *a, char *cus, size_t cussz)
{
    kbt_account_new(c, a, "free", 0, 0, false);
    rand_id("cus", cus, cussz);
    const char *p[] = {a->user_id, cus};
    PGresult *r = PQexecParams(c,
                               "UPDATE billing_accounts SET stripe_customer_id = $2"
                               " WHERE user_id = $1::uuid",
                               2, NULL, p, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
}

/* Column col of user's billing account as text (NULL when SQL NULL); the column name is a
 * parameter too, looked up in the row's JSON form. */
static char *
account_field(PGconn *c, const char *user, const char *col)
{
    return kbt_sqlp_value(c, "SELECT to_jsonb(b) ->> $2 FROM billing_accounts b WHERE user_id = $1",
                          2, user, col);
}

static void
assert_field(PGconn *c, const char *user, const char *col, const char *want)
{
    char *v = account_field(c, user, col);
    ck_assert_msg(v != NULL && strcmp(v, want) == 0, "%s = %s, want %s", col, v ? v : "NULL", want);
    free(v);
}

START_TEST(webhook_bad_missing_and_old_signatures_are_400)
{
    const char *body = "{\"id\":\"evt_sig\",\"type\":\"ping\",\"created\":1}";
    long now = (long)time(NULL);
    char *bad = kbt_stripe_sign("whsec_not_ours", now, body);
    char *old = kbt_stripe_sign(kbt_env("STRIPE_WEBHOOK_SECRET"), now - 301, body);
    const char *cases[] = {bad, old, "t=123", "garbage", "", NULL};
    for (size_t i = 0; cases[i] != NULL; i++) {
        kbt_resp *r = kbt_stripe_webhook(cases[i], body);
        kbt_assert_envelope(r, 400, "invalid_signature");
        kbt_resp_free(r);
    }
    kbt_resp *r = kbt_stripe_webhook(NULL, body);
    kbt_assert_envelope(r, 400, "invalid_signature");
    kbt_resp_free(r);
    /* Tampered body with a signature made for another body. */
    char *sig = kbt_stripe_sign(kbt_env("STRIPE_WEBHOOK_SECRET"), now, body);
    r = kbt_stripe_webhook(sig, "{\"id\":\"evt_sig\",\"type\":\"ping\",\"created\":2}");
    kbt_assert_envelope(r, 400, "invalid_signature");
    kbt_resp_free(r);
    free(sig);
    free(bad);
    free(old);
}
END_TEST

START_TEST(webhook_rotated_secret_and_several_v1_are_accepted)
{
    long now = (long)time(NULL);
    char id[40];
    rand_id("evt", id, sizeof(id));
    char body[160];
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"type\":\"kb.test.unknown\",\"created\":%ld}", id,
             now);
    char *sig = kbt_stripe_sign(kbt_env("STRIPE_WEBHOOK_SECRET_OLD"), now, body);
    kbt_resp *r = kbt_stripe_webhook(sig, body);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
    free(sig);

    /* A header with a wrong v1 first and the right one second. */
    rand_id("evt", id, sizeof(id));
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"type\":\"kb.test.unknown\",\"created\":%ld}", id,
             now);
    char *good = kbt_stripe_sign(kbt_env("STRIPE_WEBHOOK_SECRET"), now, body);
    char hdr[400];
    snprintf(hdr, sizeof(hdr), "t=%ld,v1=%064d,%s,v0=abc", now, 0, strstr(good, "v1="));
    r = kbt_stripe_webhook(hdr, body);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
    free(good);
}
END_TEST

START_TEST(webhook_signed_non_json_is_invalid_payload)
{
    const char *bodies[] = {"not json", "[1,2]", "{\"type\":\"x\"}", NULL};
    for (size_t i = 0; bodies[i] != NULL; i++) {
        char *sig = kbt_stripe_sign(kbt_env("STRIPE_WEBHOOK_SECRET"), (long)time(NULL), bodies[i]);
        kbt_resp *r = kbt_stripe_webhook(sig, bodies[i]);
        kbt_assert_envelope(r, 400, "invalid_payload");
        kbt_resp_free(r);
        free(sig);
    }
}
END_TEST

START_TEST(webhook_unknown_type_is_200_received_true)
{
    char id[40], body[160];
    rand_id("evt", id, sizeof(id));
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"type\":\"charge.refund.updated\",\"created\":%ld,"
             "\"data\":{\"object\":{}}}",
             id, (long)time(NULL));
    char *sig = kbt_stripe_sign(kbt_env("STRIPE_WEBHOOK_SECRET"), (long)time(NULL), body);
    kbt_resp *r = kbt_stripe_webhook(sig, body);
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(r->json);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(r->json, "received")));
    ck_assert_ptr_null(cJSON_GetObjectItem(r->json, "request_id"));
    kbt_resp_free(r);
    free(sig);
    PGconn *c = kbt_db();
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM stripe_events WHERE id = $1"
                                   " AND outcome = 'ignored'",
                                   id),
                     1);
    PQfinish(c);
}
END_TEST

START_TEST(webhook_subscription_active_sets_project_4000_and_period)
{
    PGconn *c = kbt_db();
    kbt_account a;
    char cus[40], sub[40], evt[40];
    linked_account(c, &a, cus, sizeof(cus));
    rand_id("sub", sub, sizeof(sub));
    rand_id("evt", evt, sizeof(evt));
    long now = (long)time(NULL);
    char *e = sub_event(evt, "customer.subscription.created", now, cus, sub, "active", now - 60);
    ck_assert_int_eq(kbt_stripe_webhook_ok(e), 200);
    assert_field(c, a.user_id, "tier", "project");
    assert_field(c, a.user_id, "credits_total", "4000");
    assert_field(c, a.user_id, "stripe_subscription_id", sub);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT extract(epoch FROM billing_cycle_start)::bigint"
                                   " FROM billing_accounts WHERE user_id = $1",
                                   a.user_id),
                     now - 60);
    free(e);
    PQfinish(c);
}
END_TEST

START_TEST(webhook_duplicate_event_has_no_second_effect)
{
    PGconn *c = kbt_db();
    kbt_account a;
    char cus[40], sub[40], evt[40];
    linked_account(c, &a, cus, sizeof(cus));
    rand_id("sub", sub, sizeof(sub));
    rand_id("evt", evt, sizeof(evt));
    long now = (long)time(NULL);
    char *e = sub_event(evt, "customer.subscription.created", now, cus, sub, "active", now);
    ck_assert_int_eq(kbt_stripe_webhook_ok(e), 200);
    const char *p[] = {a.user_id};
    PQclear(PQexecParams(c, "UPDATE billing_accounts SET credits_used = 123 WHERE user_id = $1", 1,
                         NULL, p, NULL, NULL, 0));
    ck_assert_int_eq(kbt_stripe_webhook_ok(e), 200); /* redelivery */
    assert_field(c, a.user_id, "credits_used", "123");
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT count(*) FROM stripe_events WHERE id = $1", evt), 1);
    free(e);
    PQfinish(c);
}
END_TEST

typedef struct delivery {
    const char *body;
    long status;
} delivery;

static void *
deliver(void *arg)
{
    delivery *d = arg;
    d->status = kbt_stripe_webhook_ok(d->body);
    return NULL;
}

START_TEST(webhook_concurrent_redeliveries_apply_once)
{
    PGconn *c = kbt_db();
    kbt_account a;
    char cus[40], sub[40], evt[40];
    linked_account(c, &a, cus, sizeof(cus));
    rand_id("sub", sub, sizeof(sub));
    rand_id("evt", evt, sizeof(evt));
    long now = (long)time(NULL);
    char *e = sub_event(evt, "customer.subscription.created", now, cus, sub, "active", now);
    pthread_t th[8];
    delivery d[8];
    for (int i = 0; i < 8; i++) {
        d[i].body = e;
        pthread_create(&th[i], NULL, deliver, &d[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(d[i].status, 200);
    }
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT count(*) FROM stripe_events WHERE id = $1", evt), 1);
    assert_field(c, a.user_id, "tier", "project");
    free(e);
    PQfinish(c);
}
END_TEST

START_TEST(webhook_out_of_order_newest_state_wins)
{
    PGconn *c = kbt_db();
    kbt_account a;
    char cus[40], sub[40], e1[40], e2[40];
    linked_account(c, &a, cus, sizeof(cus));
    rand_id("sub", sub, sizeof(sub));
    rand_id("evt", e1, sizeof(e1));
    rand_id("evt", e2, sizeof(e2));
    long now = (long)time(NULL);
    char *older = sub_event(e1, "customer.subscription.updated", now - 20, cus, sub, "active",
                            now - 100);
    char *newer = sub_event(e2, "customer.subscription.updated", now - 10, cus, sub, "canceled",
                            now - 100);
    ck_assert_int_eq(kbt_stripe_webhook_ok(newer), 200);
    assert_field(c, a.user_id, "tier", "free");
    ck_assert_int_eq(kbt_stripe_webhook_ok(older), 200);
    assert_field(c, a.user_id, "tier", "free");
    assert_field(c, a.user_id, "credits_total", "1000");
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM stripe_events WHERE id = $1"
                                   " AND outcome = 'stale'",
                                   e1),
                     1);
    free(older);
    free(newer);
    PQfinish(c);
}
END_TEST

START_TEST(webhook_updated_canceled_downgrades_like_deleted)
{
    PGconn *c = kbt_db();
    kbt_account a;
    char cus[40], sub[40], e1[40], e2[40];
    linked_account(c, &a, cus, sizeof(cus));
    rand_id("sub", sub, sizeof(sub));
    rand_id("evt", e1, sizeof(e1));
    rand_id("evt", e2, sizeof(e2));
    long now = (long)time(NULL);
    char *on = sub_event(e1, "customer.subscription.created", now - 5, cus, sub, "active", now);
    char *off = sub_event(e2, "customer.subscription.updated", now, cus, sub, "unpaid", now);
    ck_assert_int_eq(kbt_stripe_webhook_ok(on), 200);
    assert_field(c, a.user_id, "tier", "project");
    ck_assert_int_eq(kbt_stripe_webhook_ok(off), 200);
    assert_field(c, a.user_id, "tier", "free");
    assert_field(c, a.user_id, "credits_total", "1000");
    free(on);
    free(off);
    PQfinish(c);
}
END_TEST

START_TEST(webhook_unknown_customer_is_stored_unapplied_and_200)
{
    char cus[40], sub[40], evt[40];
    rand_id("cus", cus, sizeof(cus));
    rand_id("sub", sub, sizeof(sub));
    rand_id("evt", evt, sizeof(evt));
    long now = (long)time(NULL);
    char *e = sub_event(evt, "customer.subscription.created", now, cus, sub, "active", now);
    ck_assert_int_eq(kbt_stripe_webhook_ok(e), 200);
    PGconn *c = kbt_db();
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM stripe_events WHERE id = $1"
                                   " AND outcome = 'unknown_customer' AND payload IS NOT NULL",
                                   evt),
                     1);
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM stripe_subscriptions WHERE id = $1", sub), 0);
    free(e);
    PQfinish(c);
}
END_TEST

START_TEST(webhook_processing_error_is_5xx_and_not_recorded)
{
    PGconn *c = kbt_db();
    kbt_account a;
    char cus[40], sub[40], evt[40];
    linked_account(c, &a, cus, sizeof(cus));
    rand_id("sub", sub, sizeof(sub));
    rand_id("evt", evt, sizeof(evt));
    long now = (long)time(NULL);
    char *e = sub_event(evt, "customer.subscription.created", now, cus, sub, "active", now);
    /* A period Postgres cannot read: applying fails inside the transaction. */
    char *p = strstr(e, "\"current_period_start\":");
    ck_assert_ptr_nonnull(p);
    memcpy(p + strlen("\"current_period_start\":"), "\"x\"", 3);
    memset(p + strlen("\"current_period_start\":") + 3, ' ',
           strlen(p + strlen("\"current_period_start\":") + 3) -
               strlen(strstr(p, ",\"current_period_end\"")));
    char *sig = kbt_stripe_sign(kbt_env("STRIPE_WEBHOOK_SECRET"), now, e);
    kbt_resp *r = kbt_stripe_webhook(sig, e);
    kbt_assert_envelope(r, 500, "internal_error");
    kbt_resp_free(r);
    /* Not recorded, so Stripe's retry will be applied. */
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT count(*) FROM stripe_events WHERE id = $1", evt), 0);
    assert_field(c, a.user_id, "tier", "free");
    free(sig);
    free(e);
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("stripe_webhook");
    TCase *tc = tcase_create("webhook");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, webhook_bad_missing_and_old_signatures_are_400);
    tcase_add_test(tc, webhook_rotated_secret_and_several_v1_are_accepted);
    tcase_add_test(tc, webhook_signed_non_json_is_invalid_payload);
    tcase_add_test(tc, webhook_unknown_type_is_200_received_true);
    tcase_add_test(tc, webhook_subscription_active_sets_project_4000_and_period);
    tcase_add_test(tc, webhook_duplicate_event_has_no_second_effect);
    tcase_add_test(tc, webhook_concurrent_redeliveries_apply_once);
    tcase_add_test(tc, webhook_out_of_order_newest_state_wins);
    tcase_add_test(tc, webhook_updated_canceled_downgrades_like_deleted);
    tcase_add_test(tc, webhook_unknown_customer_is_stored_unapplied_and_200);
    tcase_add_test(tc, webhook_processing_error_is_5xx_and_not_recorded);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
