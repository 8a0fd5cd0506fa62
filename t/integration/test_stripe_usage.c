/* test_stripe_usage.c - PAYG overage outbox -> Stripe meter events (money rule 5), end to end:
 * overage made by the real meter, reported by `kbctl report-usage` and by the master's reporter
 * child to the stand-in, whose meter totals must equal the overage exactly - with half of the
 * Stripe calls failing, with the reporter killed between send and mark, with two reporters at
 * once; rows inside the refund margin wait, rows too old are flagged, not dropped. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

typedef struct payg {
    kbt_account a;
    char cus[40];
    long overage;
} payg;

/* A PAYG account (50 credits) linked to a fresh customer, with `calls` 5-credit requests
 * metered; its outbox rows are aged by age_s seconds. */
static void
payg_new(PGconn *c, payg *p, int calls, int age_s)
{
    kbt_account_new(c, &p->a, "payg", 50, 100000, true);
    unsigned char r[8];
    char hex[17];
    randombytes_buf(r, sizeof(r));
    sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
    snprintf(p->cus, sizeof(p->cus), "cus_u%s", hex);
    char age[16];
    snprintf(age, sizeof(age), "%d", age_s);
    const char *q[] = {p->a.user_id, p->cus, p->a.key_hash, age};
    PGresult *res = PQexecParams(c,
                                 "UPDATE billing_accounts SET stripe_customer_id = $2,"
                                 " payg_requested = true WHERE user_id = $1::uuid",
                                 2, NULL, q, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    /* One statement per request, as the app does. */
    const char *m[] = {p->a.key_hash};
    for (int i = 0; i < calls; i++) {
        res = PQexecParams(c, "SELECT outcome FROM kb_meter_slow($1, 5, '/orderbook')", 1, NULL, m,
                           NULL, NULL, 0);
        ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
        ck_assert_str_eq(PQgetvalue(res, 0, 0), "ok");
        PQclear(res);
    }
    const char *u[] = {p->a.user_id, age};
    res = PQexecParams(c,
                       "UPDATE usage_outbox SET created_at = created_at"
                       " - make_interval(secs => $2::int) WHERE user_id = $1::uuid",
                       2, NULL, u, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    p->overage = kbt_sql_long1(c,
                               "SELECT credits_used - credits_total FROM billing_accounts"
                               " WHERE user_id = $1::uuid",
                               p->a.user_id);
    ck_assert_int_eq(p->overage, (long)calls * 5 - 50);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT sum(credits) FROM usage_outbox"
                                   " WHERE user_id = $1::uuid",
                                   p->a.user_id),
                     p->overage);
}

static long
unreported(PGconn *c, const payg *p)
{
    return kbt_sql_long1(c,
                         "SELECT count(*) FROM usage_outbox WHERE user_id = $1::uuid"
                         " AND reported_at IS NULL",
                         p->a.user_id);
}

/* Sum of the meter events the stand-in accepted for cus (deduplicated by identifier). */
static long
meter_total(const char *cus)
{
    kbt_resp *r = kbt_stripe_control("GET", "meter_totals", NULL);
    ck_assert_ptr_nonnull(r->json);
    cJSON *v = cJSON_GetObjectItem(r->json, cus);
    long t = cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
    kbt_resp_free(r);
    return t;
}

static int
report_usage(void)
{
    const char *args[] = {"report-usage", NULL};
    return kbt_stripe_kbctl(false, args);
}

static void
reset_standin(void)
{
    kbt_resp_free(kbt_stripe_control("POST", "reset", NULL));
}

/*
 * Stripe saves what the first request with an Idempotency-Key got once the endpoint began,
 * a 500 included, and replays it for 24 hours. The saved 500s are still there (the stand-in
 * keeps them); faults off, the reporter finishes the batches anyway: on a replayed 5xx it
 * asks again under a fresh key, and the identifier dedupes what Stripe already recorded.
 */
static void
report_after_faults(PGconn *c, const payg *p, int n)
{
    reset_standin();
    for (int run = 0; run < 5; run++) {
        long left = 0;
        for (int i = 0; i < n; i++)
            left += unreported(c, &p[i]);
        if (left == 0)
            break;
        (void)report_usage();
    }
}

/* More 5-credit requests for p (all overage now), aged by age_s. */
static void
payg_more(PGconn *c, payg *p, int calls, int age_s)
{
    const char *m[] = {p->a.key_hash};
    for (int i = 0; i < calls; i++) {
        PGresult *res = PQexecParams(c, "SELECT outcome FROM kb_meter_slow($1, 5, '/orderbook')", 1,
                                     NULL, m, NULL, NULL, 0);
        ck_assert_str_eq(PQgetvalue(res, 0, 0), "ok");
        PQclear(res);
    }
    char age[16];
    snprintf(age, sizeof(age), "%d", age_s);
    const char *u[] = {p->a.user_id, age};
    PQclear(PQexecParams(c,
                         "UPDATE usage_outbox SET created_at = created_at"
                         " - make_interval(secs => $2::int) WHERE user_id = $1::uuid"
                         " AND batch_identifier IS NULL"
                         " AND created_at > now() - interval '1 min'",
                         2, NULL, u, NULL, NULL, 0));
    p->overage += (long)calls * 5;
}

START_TEST(usage_exact_with_half_of_stripe_calls_failing)
{
    PGconn *c = kbt_db();
    payg p[3];
    for (int i = 0; i < 3; i++)
        payg_new(c, &p[i], 20 + 7 * i, 300);
    kbt_resp_free(kbt_stripe_control("POST", "fail",
                                     "{\"status\":500,\"rate\":0.5,\"when\":\"random\","
                                     "\"prefix\":\"/v1/billing/meter_events\"}"));
    /* No client retries: every failure is left to a later run, so runs overlap new batches. */
    setenv("STRIPE_MAX_RETRIES", "0", 1);
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 3; i++)
            payg_more(c, &p[i], 1 + round % 3, 300);
        (void)report_usage();
    }
    for (int runs = 0; runs < 6; runs++)
        (void)report_usage();
    unsetenv("STRIPE_MAX_RETRIES");
    kbt_resp *r = kbt_stripe_control("GET", "requests", NULL);
    int failed = 0, sent = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, r->json) {
        if (strcmp(cJSON_GetObjectItem(it, "path")->valuestring, "/v1/billing/meter_events"))
            continue;
        cJSON *pl = cJSON_GetObjectItem(cJSON_GetObjectItem(it, "params"), "payload");
        cJSON *cus = cJSON_GetObjectItem(pl, "stripe_customer_id");
        if (!cJSON_IsString(cus) ||
            (strcmp(cus->valuestring, p[0].cus) && strcmp(cus->valuestring, p[1].cus) &&
             strcmp(cus->valuestring, p[2].cus)))
            continue;
        sent++;
        cJSON *st = cJSON_GetObjectItem(it, "status");
        failed += cJSON_IsNumber(st) && st->valuedouble == 500;
    }
    kbt_resp_free(r);
    report_after_faults(c, p, 3);
    ck_assert_msg(failed >= 3 && sent >= 18, "only %d of %d meter calls failed", failed, sent);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(unreported(c, &p[i]), 0);
        ck_assert_int_eq(meter_total(p[i].cus), p[i].overage);
    }
    PQfinish(c);
}
END_TEST

START_TEST(usage_rows_inside_the_refund_margin_wait)
{
    PGconn *c = kbt_db();
    payg p;
    payg_new(c, &p, 12, 0);
    ck_assert_int_eq(report_usage(), 0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM usage_outbox WHERE user_id = $1::uuid"
                                   " AND batch_identifier IS NULL",
                                   p.a.user_id),
                     2);
    ck_assert_int_eq(meter_total(p.cus), 0);
    /* Do not leave them for later tests' runs. */
    const char *q[] = {p.a.user_id};
    PQclear(PQexecParams(c, "DELETE FROM usage_outbox WHERE user_id = $1::uuid", 1, NULL, q, NULL,
                         NULL, 0));
    PQfinish(c);
}
END_TEST

typedef struct seen {
    const char *cus;
} seen;

static bool
standin_has_event(void *arg)
{
    return meter_total(((seen *)arg)->cus) > 0;
}

START_TEST(usage_reporter_killed_between_send_and_mark_reports_once)
{
    PGconn *c = kbt_db();
    payg p;
    payg_new(c, &p, 30, 300);
    kbt_resp_free(kbt_stripe_control("POST", "delay",
                                     "{\"prefix\":\"/v1/billing/meter_events\",\"ms\":8000}"));
    const char *args[] = {"report-usage", NULL};
    pid_t pid = (pid_t)kbt_stripe_kbctl(true, args);
    seen s = {p.cus};
    ck_assert(kbt_wait_until(standin_has_event, &s, 10000));
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    /* Stripe has the event; our rows are batched but not marked. */
    ck_assert_int_eq(unreported(c, &p), 20);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(DISTINCT batch_identifier) FROM usage_outbox"
                                   " WHERE user_id = $1::uuid",
                                   p.a.user_id),
                     1);
    reset_standin();
    /* Past Stripe's idempotency window only the identifier dedupes: 400, counted as sent. */
    kbt_resp_free(kbt_stripe_control("POST", "forget_idempotency", NULL));
    ck_assert_int_eq(report_usage(), 0);
    ck_assert_int_eq(unreported(c, &p), 0);
    ck_assert_int_eq(meter_total(p.cus), p.overage);
    PQfinish(c);
}
END_TEST

START_TEST(usage_two_reporters_at_once_report_exactly_once)
{
    PGconn *c = kbt_db();
    payg p[2];
    payg_new(c, &p[0], 40, 300);
    payg_new(c, &p[1], 25, 300);
    kbt_resp_free(kbt_stripe_control("POST", "fail",
                                     "{\"status\":500,\"rate\":0.3,\"when\":\"random\","
                                     "\"prefix\":\"/v1/billing/meter_events\"}"));
    const char *args[] = {"report-usage", NULL};
    for (int round = 0; round < 20 && (unreported(c, &p[0]) || unreported(c, &p[1])); round++) {
        pid_t a = (pid_t)kbt_stripe_kbctl(true, args);
        pid_t b = (pid_t)kbt_stripe_kbctl(true, args);
        int st;
        waitpid(a, &st, 0);
        waitpid(b, &st, 0);
    }
    report_after_faults(c, p, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(unreported(c, &p[i]), 0);
        ck_assert_int_eq(meter_total(p[i].cus), p[i].overage);
    }
    PQfinish(c);
}
END_TEST

/* Meter-event requests the stand-in saw for cus. */
static int
meter_calls(const char *cus)
{
    kbt_resp *r = kbt_stripe_control("GET", "requests", NULL);
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, r->json) {
        cJSON *pl = cJSON_GetObjectItem(cJSON_GetObjectItem(it, "params"), "payload");
        const char *c = cJSON_GetStringValue(cJSON_GetObjectItem(pl, "stripe_customer_id"));
        n += c != NULL && strcmp(c, cus) == 0;
    }
    kbt_resp_free(r);
    return n;
}

START_TEST(usage_run_stops_while_stripe_rate_limits)
{
    PGconn *c = kbt_db();
    payg p[2];
    payg_new(c, &p[0], 12, 300);
    payg_new(c, &p[1], 13, 300);
    kbt_resp_free(kbt_stripe_control("POST", "fail",
                                     "{\"status\":429,\"prefix\":\"/v1/billing/meter_events\"}"));
    setenv("STRIPE_MAX_RETRIES", "1", 1);
    ck_assert_int_eq(report_usage(), 1);
    unsetenv("STRIPE_MAX_RETRIES");
    /* Two attempts for the first batch (429 is retried), none for the second. */
    ck_assert_int_eq(meter_calls(p[0].cus) + meter_calls(p[1].cus), 2);
    reset_standin();
    ck_assert_int_eq(report_usage(), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(unreported(c, &p[i]), 0);
        ck_assert_int_eq(meter_total(p[i].cus), p[i].overage);
    }
    PQfinish(c);
}
END_TEST

START_TEST(usage_rows_too_old_for_stripe_are_flagged_not_dropped)
{
    PGconn *c = kbt_db();
    payg p;
    payg_new(c, &p, 11, 40 * 86400);
    ck_assert_int_eq(report_usage(), 0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM usage_outbox WHERE user_id = $1::uuid"
                                   " AND flagged_at IS NOT NULL AND reported_at IS NULL",
                                   p.a.user_id),
                     1);
    ck_assert_int_eq(meter_total(p.cus), 0);
    PQfinish(c);
}
END_TEST

static bool
all_reported(void *arg)
{
    PGconn *c = kbt_db();
    long n = unreported(c, arg);
    PQfinish(c);
    return n == 0;
}

typedef struct kids {
    pid_t master;
    size_t want;
} kids;

static bool
has_children(void *arg)
{
    kids *k = arg;
    pid_t p[64];
    return kbt_children(k->master, p, 64) == k->want;
}

START_TEST(usage_master_runs_and_respawns_the_reporter_child)
{
    PGconn *c = kbt_db();
    payg p;
    payg_new(c, &p, 14, 300);
    ck_assert_int_eq(kbt_stack("app-stop", NULL), 0);
    setenv("KB_USAGE_REPORTER", "1", 1);
    setenv("KB_USAGE_FLUSH_S", "1", 1);
    ck_assert_int_eq(kbt_stack("app-start", NULL), 0);
    unsetenv("KB_USAGE_REPORTER");
    unsetenv("KB_USAGE_FLUSH_S");
    ck_assert(kbt_wait_until(all_reported, &p, 20000));
    ck_assert_int_eq(meter_total(p.cus), p.overage);

    kids k = {kbt_master_pid(), (size_t)strtol(kbt_env("KB_WORKERS"), NULL, 10) + 1};
    ck_assert(kbt_wait_until(has_children, &k, 10000));
    /* The reporter names itself (prctl PR_SET_NAME) "kb-reporter". */
    pid_t ch[64];
    size_t n = kbt_children(k.master, ch, 64);
    pid_t reporter = 0;
    for (size_t i = 0; i < n; i++) {
        char path[64], comm[64] = "";
        snprintf(path, sizeof(path), "/proc/%ld/comm", (long)ch[i]);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fgets(comm, sizeof(comm), f) == NULL)
                comm[0] = '\0';
            fclose(f);
        }
        if (strncmp(comm, "kb-reporter", 11) == 0)
            reporter = ch[i];
    }
    ck_assert_int_ne(reporter, 0);
    kill(reporter, SIGKILL);
    ck_assert(kbt_wait_until(has_children, &k, 10000));

    ck_assert_int_eq(kbt_stack("app-stop", NULL), 0);
    ck_assert_int_eq(kbt_stack("app-start", NULL), 0);
    PQfinish(c);
}
END_TEST

/* POST /v1/customers straight to the stand-in with Idempotency-Key key; the status, and
 * whether the answer was a replay. */
static long
stand_in_customer(const char *key, bool *replayed)
{
    char url[512], auth[256], idem[128];
    snprintf(url, sizeof(url), "%s/v1/customers", kbt_env("KB_STRIPE_URL"));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", kbt_env("STRIPE_SECRET_KEY"));
    snprintf(idem, sizeof(idem), "Idempotency-Key: %s", key);
    const char *h[] = {auth, idem, "Content-Type: application/x-www-form-urlencoded", NULL};
    const char body[] = "email=idem%40example.test";
    kbt_resp *r = kbt_request_url("POST", url, h, body, sizeof(body) - 1);
    char *rep = kbt_header(r, "Idempotent-Replayed");
    *replayed = rep != NULL && strcmp(rep, "true") == 0;
    free(rep);
    long st = r->status;
    kbt_resp_free(r);
    return st;
}

/* The stand-in keeps Stripe's v1 rule (docs.stripe.com/api/idempotent_requests): the first
 * response after the endpoint began is saved and replayed, 500 included; a request refused
 * before that saves nothing. */
START_TEST(stand_in_replays_a_saved_500_like_stripe)
{
    char k1[64], k2[64];
    snprintf(k1, sizeof(k1), "kbt-idem-after-%ld-%ld", (long)getpid(), kbt_now_ms());
    snprintf(k2, sizeof(k2), "kbt-idem-before-%ld-%ld", (long)getpid(), kbt_now_ms());
    bool rep;
    kbt_resp_free(kbt_stripe_control("POST", "fail",
                                     "{\"status\":500,\"count\":1,\"when\":\"after\","
                                     "\"prefix\":\"/v1/customers\"}"));
    ck_assert_int_eq(stand_in_customer(k1, &rep), 500);
    ck_assert(!rep);
    ck_assert_int_eq(stand_in_customer(k1, &rep), 500); /* the saved 500, not a new attempt */
    ck_assert(rep);
    kbt_resp_free(kbt_stripe_control("POST", "fail",
                                     "{\"status\":500,\"count\":1,\"when\":\"before\","
                                     "\"prefix\":\"/v1/customers\"}"));
    ck_assert_int_eq(stand_in_customer(k2, &rep), 500);
    ck_assert_int_eq(stand_in_customer(k2, &rep), 200); /* nothing was saved */
    ck_assert(!rep);
    ck_assert_int_eq(stand_in_customer(k2, &rep), 200);
    ck_assert(rep);
    reset_standin();
    /* Past the 24 h window the key is new again. */
    kbt_resp_free(kbt_stripe_control("POST", "forget_idempotency", NULL));
    ck_assert_int_eq(stand_in_customer(k1, &rep), 200);
    ck_assert(!rep);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("stripe_usage");
    TCase *tc = tcase_create("usage");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, stand_in_replays_a_saved_500_like_stripe);
    tcase_add_test(tc, usage_exact_with_half_of_stripe_calls_failing);
    tcase_add_test(tc, usage_rows_inside_the_refund_margin_wait);
    tcase_add_test(tc, usage_reporter_killed_between_send_and_mark_reports_once);
    tcase_add_test(tc, usage_two_reporters_at_once_report_exactly_once);
    tcase_add_test(tc, usage_rows_too_old_for_stripe_are_flagged_not_dropped);
    tcase_add_test(tc, usage_run_stops_while_stripe_rate_limits);
    tcase_add_test(tc, usage_master_runs_and_respawns_the_reporter_child);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
