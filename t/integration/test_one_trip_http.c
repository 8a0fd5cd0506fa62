/* test_one_trip_http.c - charges in one round trip through the whole stack (nginx ->
 * worker -> Postgres; lib/meter.c charge_one_trip, db/migrations/0028_meter_one_trip.sql).
 *
 * A worker that has charged a key on the fast path, after a charge whose by-id lookup
 * rode with it, begins the next transaction ahead; the key's next charge is journaled
 * under that transaction's id and sent with its lookup and commit in one round trip.
 * When the fast path does not apply there (credits, rate window) the statement raises
 * KB001, nothing is charged and the worker decides the usual way. Each test warms the
 * workers for its key first (kbt_one_trip_warm) and pins, through the counters of
 * GET /metrics, that the path under test was taken: the money rules are the same as
 * on the other paths (DESIGN.md rules 1-4): exact headers and counters, no overdraft
 * under concurrency, refused requests charge and count nothing, a 404 is refunded.
 * The app runs without its read replica here (kbt_primary_only), as the lookups ride
 * with the meter only on the primary.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

#define MARKET "/markets/KBT-AHEAD-A"

static kbt_resp *
get(const char *key, const char *path)
{
    kbt_keyed_get g = {key, path, NULL};
    kbt_keyed_get_thread(&g);
    return g.resp;
}

/* The account's credits used and its key's usage, and its refunds, in one query. */
typedef struct money {
    long used, key_credits, key_requests, refunds;
} money;

static money
money_of(PGconn *c, const kbt_account *a)
{
    char *v = kbt_sqlp_value(
        c,
        "SELECT concat_ws(' ', ba.credits_used,"
        " (SELECT coalesce(sum(u.credits_used), 0) FROM api_key_usage u WHERE u.api_key_id = $2),"
        " (SELECT coalesce(sum(u.requests), 0) FROM api_key_usage u WHERE u.api_key_id = $2),"
        " (SELECT count(*) FROM meter_refunds r WHERE r.user_id = $1))"
        " FROM billing_accounts ba WHERE ba.user_id = $1",
        2, a->user_id, a->key_id);
    ck_assert_ptr_nonnull(v);
    money m;
    ck_assert_int_eq(
        sscanf(v, "%ld %ld %ld %ld", &m.used, &m.key_credits, &m.key_requests, &m.refunds), 4);
    free(v);
    return m;
}

/* A refused request carries no credit header: nothing was charged. */
static void
assert_refused(const kbt_resp *r, const char *code)
{
    kbt_assert_envelope(r, 429, code);
    const char *credit[] = {"X-Credits-Cost", "X-Credits-Used", "X-Credits-Total",
                            "X-Credits-Remaining"};
    for (size_t i = 0; i < sizeof(credit) / sizeof(credit[0]); i++) {
        char *h = kbt_header(r, credit[i]);
        ck_assert_msg(h == NULL, "%s: %s on a %s", credit[i], h, code);
    }
}

/* Room for that many more credits: the account's credits (its override, which the slow
 * path's figure comes from, and the figure the fast path reads) set to what it used plus
 * room. */
static void
credits_room(PGconn *c, const kbt_account *a, const char *room)
{
    kbt_sqlp_ok(c,
                "UPDATE billing_accounts SET credits_override = credits_used + $2::integer,"
                " credits_total = credits_used + $2::integer WHERE user_id = $1",
                2, a->user_id, room);
}

/* A project account with 1000 credits and rpm requests a minute, the market KBT-AHEAD-A,
 * and the database clock at the top of the next minute: the rate window and the fast
 * path's window hold for the test. Returns a connection for the test. */
static PGconn *
account_new(kbt_account *a, int rpm)
{
    PGconn *c = kbt_db();
    kbt_ahead_markets(c);
    kbt_account_new(c, a, "project", 1000, rpm, false);
    kbt_clock_next_minute();
    return c;
}

/* Warmed workers charge a key's requests in one round trip each: every answer carries
 * the next credit and rate figures exactly, the account and the key's usage count each
 * once, and each lookup is answered from the meter's round trip. */
START_TEST(warmed_key_charges_in_one_round_trip_exactly)
{
    kbt_account a;
    PGconn *c = account_new(&a, 100000);
    kbt_trips t0, t1;
    long warm = kbt_one_trip_warm(a.key, MARKET, &t0);
    money before = money_of(c, &a);
    ck_assert_int_eq(before.used, warm);
    ck_assert_int_eq(before.key_requests, warm);
    for (long i = 1; i <= 30; i++) {
        kbt_resp *r = get(a.key, MARKET);
        ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
        const cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "data"), "ticker");
        ck_assert_msg(cJSON_IsString(t) && strcmp(t->valuestring, "KBT-AHEAD-A") == 0, "%s",
                      kb_buf_cstr(&r->body));
        ck_assert_int_eq(kbt_header_long(r, "X-Credits-Cost"), 1);
        ck_assert_int_eq(kbt_header_long(r, "X-Credits-Used"), warm + i);
        ck_assert_int_eq(kbt_header_long(r, "X-Credits-Total"), 1000);
        ck_assert_int_eq(kbt_header_long(r, "X-Credits-Remaining"), 1000 - warm - i);
        ck_assert_int_eq(kbt_header_long(r, "X-RateLimit-Limit"), 100000);
        ck_assert_int_eq(kbt_header_long(r, "X-RateLimit-Remaining"), 100000 - warm - i);
        kbt_resp_free(r);
    }
    kbt_trips_read(&t1);
    money after = money_of(c, &a);
    ck_assert_int_eq(after.used, before.used + 30);
    ck_assert_int_eq(after.key_credits, before.key_credits + 30);
    ck_assert_int_eq(after.key_requests, before.key_requests + 30);
    ck_assert_int_eq(after.refunds, 0);
    /* At most a worker that answered GET /metrics, or sat idle, took two round trips. */
    long trips = (long)(t1.sent - t0.sent);
    ck_assert_msg(trips >= 25 && trips <= 30, "%ld of 30 charges in one round trip", trips);
    ck_assert_int_eq((long)(t1.missed - t0.missed), 0);
    ck_assert_int_eq((long)(t1.sent_ahead - t0.sent_ahead), 30);
    PQfinish(c);
}
END_TEST

typedef struct trio {
    const char *key, *path;
    kbt_keyed_get g[3];
    pthread_t th[3];
} trio;

/* Three requests at once, so that each worker gets one while it still holds the
 * transaction it began ahead. */
static void
trio_send(trio *r)
{
    for (int i = 0; i < 3; i++) {
        r->g[i] = (kbt_keyed_get){r->key, r->path, NULL};
        pthread_create(&r->th[i], NULL, kbt_keyed_get_thread, &r->g[i]);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(r->th[i], NULL);
}

/* Out of credits: the one-round-trip statement raises KB001 (its transaction aborts),
 * the usual way refuses, and nothing is charged, counted or refunded. */
START_TEST(credits_exhausted_through_one_round_trip_charges_nothing)
{
    kbt_account a;
    PGconn *c = account_new(&a, 100000);
    bool missed = false;
    for (int attempt = 0; attempt < 6 && !missed; attempt++) {
        kbt_trips t0, t1;
        kbt_one_trip_warm(a.key, MARKET, &t0);
        credits_room(c, &a, "0");
        money before = money_of(c, &a);
        trio r = {a.key, MARKET, {{0}}, {0}};
        trio_send(&r);
        for (int i = 0; i < 3; i++) {
            assert_refused(r.g[i].resp, "credits_exhausted");
            kbt_resp_free(r.g[i].resp);
        }
        kbt_resp *again = get(a.key, MARKET);
        assert_refused(again, "credits_exhausted");
        kbt_resp_free(again);
        kbt_trips_read(&t1);
        money after = money_of(c, &a);
        ck_assert_int_eq(after.used, before.used);
        ck_assert_int_eq(after.key_credits, before.key_credits);
        ck_assert_int_eq(after.key_requests, before.key_requests);
        ck_assert_int_eq(after.refunds, 0);
        /* Every refused request sent in one round trip was aborted there. */
        ck_assert_int_eq((long)(t1.sent - t0.sent), (long)(t1.missed - t0.missed));
        missed = t1.missed > t0.missed;
        /* Room again; when no refusal went in one round trip (each worker's transaction
         * begun ahead had ended meanwhile), warm and refuse again. */
        credits_room(c, &a, "1000");
    }
    ck_assert_msg(missed, "no refusal went through the one-round-trip statement");
    PQfinish(c);
}
END_TEST

/* The rate window: the one-round-trip statement raises KB001 when the minute's count is
 * reached; exactly the allowed requests are answered and charged, the rest refused with
 * an integer Retry-After. */
START_TEST(rate_limit_through_one_round_trip_exactly)
{
    enum { RPM = 30 }; /* the warming (12 to 18 requests) and a dozen more */
    kbt_account a;
    PGconn *c = account_new(&a, RPM);
    kbt_trips t0, t1;
    long ok = kbt_one_trip_warm(a.key, MARKET, &t0);
    ck_assert_int_lt(ok, RPM);
    long answered_after_warm = 0, limited = 0;
    for (int i = 0; limited < 6; i++) {
        ck_assert_int_lt(i, RPM + 6);
        kbt_resp *r = get(a.key, MARKET);
        if (r->status == 200) {
            ck_assert_int_eq(limited, 0); /* refused ones stay refused within the window */
            ok++;
            answered_after_warm++;
            ck_assert_int_eq(kbt_header_long(r, "X-RateLimit-Remaining"), RPM - ok);
            ck_assert_int_eq(kbt_header_long(r, "X-Credits-Used"), ok);
        } else {
            assert_refused(r, "rate_limit_exceeded");
            long ra = kbt_header_long(r, "Retry-After");
            ck_assert_msg(ra >= 1 && ra <= 60, "Retry-After %ld", ra);
            ck_assert_int_eq(kbt_header_long(r, "X-RateLimit-Limit"), RPM);
            ck_assert_int_eq(kbt_header_long(r, "X-RateLimit-Remaining"), 0);
            limited++;
        }
        kbt_resp_free(r);
    }
    kbt_trips_read(&t1);
    ck_assert_int_eq(ok, RPM);
    money m = money_of(c, &a);
    ck_assert_int_eq(m.used, RPM);
    ck_assert_int_eq(m.key_credits, RPM);
    ck_assert_int_eq(m.key_requests, RPM);
    ck_assert_int_eq(m.refunds, 0);
    /* Charged after the warming in one round trip (one took two, after GET /metrics),
     * and the window's end found there first. */
    long sent = (long)(t1.sent - t0.sent), missed = (long)(t1.missed - t0.missed);
    ck_assert_msg(sent - missed >= answered_after_warm - 3, "%ld of %ld in one round trip",
                  sent - missed, answered_after_warm);
    ck_assert_msg(missed >= 1 && missed <= 3, "%ld refusals went in one round trip", missed);
    PQfinish(c);
}
END_TEST

/* A 404 whose charge went in one round trip is refunded: cost 0 in the headers, the
 * credit back, the key's usage unchanged, the refund recorded. */
START_TEST(not_found_after_one_round_trip_is_refunded)
{
    kbt_account a;
    PGconn *c = account_new(&a, 100000);
    kbt_one_trip_warm(a.key, MARKET, NULL);
    bool one_trip = false;
    for (int attempt = 0; attempt < 6 && !one_trip; attempt++) {
        kbt_trips t0, t1;
        double primer = kbt_one_trip_prime(c, &a, MARKET, &t0);
        money before = money_of(c, &a);
        kbt_resp *r = get(a.key, "/markets/KBT-AHEAD-NONE");
        kbt_assert_envelope(r, 404, "market_not_found");
        ck_assert_int_eq(kbt_header_long(r, "X-Credits-Cost"), 0);
        ck_assert_int_eq(kbt_header_long(r, "X-Credits-Used"), before.used);
        ck_assert_int_eq(kbt_header_long(r, "X-Credits-Remaining"), 1000 - before.used);
        char *rid = kbt_header(r, "X-Request-ID");
        ck_assert_ptr_nonnull(rid);
        kbt_resp_free(r);
        kbt_request_ref ref = {c, rid};
        ck_assert_msg(kbt_wait_until(kbt_refund_recorded, &ref, 10000), "%s not refunded", rid);
        free(rid);
        money after = money_of(c, &a);
        ck_assert_int_eq(after.used, before.used);
        ck_assert_int_eq(after.key_credits, before.key_credits);
        ck_assert_int_eq(after.key_requests, before.key_requests);
        ck_assert_int_eq(after.refunds, before.refunds + 1);
        kbt_trips_read(&t1);
        ck_assert_int_eq((long)(t1.missed - t0.missed), 0);
        /* Otherwise it reached a worker with nothing begun ahead: again. */
        one_trip = t1.sent - t0.sent - primer == 1;
    }
    ck_assert_msg(one_trip, "the 404's charge never went in one round trip");
    PQfinish(c);
}
END_TEST

typedef struct burst {
    const char *key;
    atomic_int ok, exhausted, other;
} burst;

static void *
burst_thread(void *arg)
{
    burst *b = arg;
    for (int i = 0; i < 5; i++) {
        kbt_resp *r = get(b->key, MARKET);
        const cJSON *code = cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "code");
        if (r->status == 200) {
            atomic_fetch_add(&b->ok, 1);
        } else if (r->status == 429 && cJSON_IsString(code) &&
                   strcmp(code->valuestring, "credits_exhausted") == 0 &&
                   kbt_header_long(r, "X-Credits-Used") == -1) {
            atomic_fetch_add(&b->exhausted, 1);
        } else {
            atomic_fetch_add(&b->other, 1);
        }
        kbt_resp_free(r);
    }
    return NULL;
}

/* No overdraft: 100 requests at once on warmed workers, room for 23 credits. */
START_TEST(no_overdraft_in_one_round_trip_concurrently)
{
    kbt_account a;
    PGconn *c = account_new(&a, 100000);
    kbt_trips t0, t1;
    long warm = kbt_one_trip_warm(a.key, MARKET, &t0);
    credits_room(c, &a, "23");
    burst b = {a.key, 0, 0, 0};
    pthread_t th[20];
    for (int i = 0; i < 20; i++)
        pthread_create(&th[i], NULL, burst_thread, &b);
    for (int i = 0; i < 20; i++)
        pthread_join(th[i], NULL);
    kbt_trips_read(&t1);
    ck_assert_int_eq(atomic_load(&b.other), 0);
    ck_assert_int_eq(atomic_load(&b.ok), 23);
    ck_assert_int_eq(atomic_load(&b.exhausted), 77);
    money m = money_of(c, &a);
    ck_assert_int_eq(m.used, warm + 23);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_total FROM billing_accounts WHERE user_id = $1",
                                   a.user_id),
                     m.used);
    ck_assert_int_eq(m.key_credits, warm + 23);
    ck_assert_int_eq(m.key_requests, warm + 23);
    ck_assert_int_eq(m.refunds, 0);
    /* Most of the 23 went in one round trip (each worker's first may not have: GET
     * /metrics, or an idle pause, ended what it began ahead), and the end of the credits
     * was found there first by at least one worker. */
    long sent = (long)(t1.sent - t0.sent), missed = (long)(t1.missed - t0.missed);
    ck_assert_msg(sent - missed >= 23 - 3, "%ld of 23 charges in one round trip", sent - missed);
    ck_assert_msg(missed >= 1 && missed <= 3, "%ld refusals went in one round trip", missed);
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("one_trip_http");
    TCase *tc = tcase_create("one-trip");
    tcase_set_timeout(tc, 90);
    /* the app restarted on the primary alone once, before the tests and after them */
    tcase_add_unchecked_fixture(tc, kbt_primary_only, kbt_replica_back);
    tcase_add_unchecked_fixture(tc, NULL, kbt_clock_restore);
    tcase_add_test(tc, warmed_key_charges_in_one_round_trip_exactly);
    tcase_add_test(tc, credits_exhausted_through_one_round_trip_charges_nothing);
    tcase_add_test(tc, rate_limit_through_one_round_trip_exactly);
    tcase_add_test(tc, not_found_after_one_round_trip_is_refunded);
    tcase_add_test(tc, no_overdraft_in_one_round_trip_concurrently);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
