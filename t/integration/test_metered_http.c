/* test_metered_http.c - metering through the whole stack (nginx -> worker ->
 * meter -> data route): headers, no overdraft and exact overage under
 * concurrency, the rate window, refunds (404 and a database failure), nothing
 * charged or counted for 401/422/429, and GET /keys/usage by day. DESIGN.md
 * money rules 1-4. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

static kbt_resp *
get_with_key(const char *path, const char *key)
{
    char auth[160];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    const char *h[] = {auth, NULL};
    return kbt_request("GET", path, h, NULL, 0);
}

static long
used(PGconn *c, const kbt_account *a)
{
    return kbt_sql_long1(c, "SELECT credits_used FROM billing_accounts WHERE user_id = $1",
                         a->user_id);
}

START_TEST(metered_success_carries_exact_headers)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    kbt_resp *r = get_with_key("/markets", a.key);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Cost"), 1);
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Used"), 1);
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Total"), 100);
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Remaining"), 99);
    ck_assert_int_eq(kbt_header_long(r, "X-RateLimit-Limit"), 120);
    ck_assert_int_eq(kbt_header_long(r, "X-RateLimit-Remaining"), 119);
    long reset = kbt_header_long(r, "X-RateLimit-Reset");
    long now = (long)time(NULL);
    ck_assert_msg(reset > now - 2 && reset <= now + 61 && reset % 60 == 0, "reset %ld", reset);
    kbt_resp_free(r);
    /* Bearer in another letter case is the same key (API.md §7.14). */
    char auth[160];
    snprintf(auth, sizeof(auth), "Authorization: bEaReR   %s  ", a.key);
    const char *h[] = {auth, NULL};
    r = kbt_request("GET", "/markets", h, NULL, 0);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Used"), 2);
    kbt_resp_free(r);
    ck_assert_int_eq(used(c, &a), 2);
    PQfinish(c);
}
END_TEST

typedef struct burst {
    const char *key;
    int per_thread;
    atomic_int ok, exhausted, other, headers_on_429;
} burst;

static void *
burst_thread(void *arg)
{
    burst *b = arg;
    for (int i = 0; i < b->per_thread; i++) {
        kbt_resp *r = get_with_key("/markets", b->key);
        if (r->status == 200) {
            atomic_fetch_add(&b->ok, 1);
        } else if (r->status == 429 && r->json != NULL &&
                   strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "code")
                              ->valuestring,
                          "credits_exhausted") == 0) {
            atomic_fetch_add(&b->exhausted, 1);
            char *h = kbt_header(r, "X-Credits-Used");
            if (h != NULL)
                atomic_fetch_add(&b->headers_on_429, 1);
            free(h);
        } else {
            atomic_fetch_add(&b->other, 1);
        }
        kbt_resp_free(r);
    }
    return NULL;
}

static void
run_burst(burst *b, int threads)
{
    pthread_t th[32];
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, burst_thread, b);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
}

START_TEST(no_overdraft_through_the_stack_concurrently)
{
    /* Room for exactly K = 37 one-credit requests; 200 concurrent attempts. */
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 37, 100000, false);
    burst b = {a.key, 10, 0, 0, 0, 0};
    run_burst(&b, 20);
    ck_assert_int_eq(atomic_load(&b.other), 0);
    ck_assert_int_eq(atomic_load(&b.ok), 37);
    ck_assert_int_eq(atomic_load(&b.exhausted), 200 - 37);
    ck_assert_int_eq(atomic_load(&b.headers_on_429), 0);
    ck_assert_int_eq(used(c, &a), 37);
    PQfinish(c);
}
END_TEST

START_TEST(payg_overage_exact_through_the_stack_concurrently)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "payg", 50, 100000, true);
    burst b = {a.key, 6, 0, 0, 0, 0};
    run_burst(&b, 20);
    ck_assert_int_eq(atomic_load(&b.ok), 120);
    ck_assert_int_eq(used(c, &a), 120);
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT sum(credits) FROM usage_outbox WHERE user_id = $1",
                                   a.user_id),
                     70);
    PQfinish(c);
}
END_TEST

START_TEST(rate_limit_exact_through_the_stack)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "free", 0, 0, false); /* 30 requests per minute */
    /* Move the database clock to the top of the next minute, so the window
     * cannot roll during the burst. */
    char shift[32];
    long to_next = kbt_sql_long1(c, "SELECT (60 - floor(extract(second FROM now())))::int", NULL);
    snprintf(shift, sizeof(shift), "%ld seconds", to_next);
    kbt_clock_shift(shift);
    int ok = 0, limited = 0;
    for (int i = 0; i < 35; i++) {
        kbt_resp *r = get_with_key("/markets", a.key);
        if (r->status == 200) {
            ok++;
        } else {
            kbt_assert_envelope(r, 429, "rate_limit_exceeded");
            long ra = kbt_header_long(r, "Retry-After");
            ck_assert_msg(ra >= 1 && ra <= 60, "Retry-After %ld", ra);
            ck_assert_int_eq(kbt_header_long(r, "X-RateLimit-Limit"), 30);
            ck_assert_int_eq(kbt_header_long(r, "X-RateLimit-Remaining"), 0);
            ck_assert(kbt_header_long(r, "X-RateLimit-Reset") > 0);
            ck_assert_int_eq(kbt_header_long(r, "X-Credits-Cost"), -1);
            limited++;
        }
        kbt_resp_free(r);
    }
    ck_assert_int_eq(ok, 30);
    ck_assert_int_eq(limited, 5);
    ck_assert_int_eq(used(c, &a), 30);
    /* The next window admits requests again. */
    snprintf(shift, sizeof(shift), "%ld seconds", to_next + 61);
    kbt_clock_shift(shift);
    kbt_resp *r = get_with_key("/markets", a.key);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(kbt_header_long(r, "X-RateLimit-Remaining"), 29);
    kbt_resp_free(r);
    ck_assert_int_eq(used(c, &a), 31);
    PQfinish(c);
}
END_TEST

START_TEST(refund_after_404_with_zero_cost_headers)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    kbt_resp *r = get_with_key("/markets", a.key);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
    r = get_with_key("/markets/NO-SUCH-MARKET", a.key);
    kbt_assert_envelope(r, 404, "market_not_found");
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Cost"), 0);
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Used"), 1);
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Remaining"), 99);
    kbt_resp_free(r);
    ck_assert_int_eq(used(c, &a), 1);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT coalesce(sum(credits_used), 0) FROM api_key_usage"
                                   " WHERE api_key_id = $1",
                                   a.key_id),
                     1);
    PQfinish(c);
}
END_TEST

START_TEST(nothing_charged_for_401_422_or_revoked)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    const char *bad[] = {NULL, "Authorization: Basic abc", "Authorization: Bearer not-a-kb-key",
                         "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
                         "Authorization: Bearer kb-unknownunknownunknownunknownunknownunkno"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *h[] = {bad[i], NULL};
        kbt_resp *r = kbt_request("GET", "/markets", bad[i] ? h : NULL, NULL, 0);
        kbt_assert_envelope(r, 401, "invalid_api_key");
        ck_assert_int_eq(kbt_header_long(r, "X-Credits-Cost"), -1);
        kbt_resp_free(r);
    }
    /* A malformed request is refused before the meter runs. */
    char auth[160];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", a.key);
    const char *h[] = {auth, "Content-Type: application/json", NULL};
    const char *body = "{\"market_ticker\":\"X\",\"start_time\":\"2026-01-01T00:00:00Z\","
                       "\"end_time\":\"2026-01-02T00:00:00Z\",\"limit\":0}";
    kbt_resp *r = kbt_request("POST", "/deltas", h, body, strlen(body));
    kbt_assert_envelope(r, 422, "validation_error");
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Cost"), -1);
    kbt_resp_free(r);
    ck_assert_int_eq(used(c, &a), 0);
    /* A revoked key is refused on its very next request. */
    r = get_with_key("/markets", a.key);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
    const char *p[] = {a.key_id};
    PQclear(PQexecParams(c, "UPDATE api_keys SET revoked_at = now() WHERE id = $1", 1, NULL, p,
                         NULL, NULL, 0));
    r = get_with_key("/markets", a.key);
    kbt_assert_envelope(r, 401, "invalid_api_key");
    kbt_resp_free(r);
    ck_assert_int_eq(used(c, &a), 1);
    PQfinish(c);
}
END_TEST

/* Credits used, and Σ credits and requests counted for the account's keys. */
typedef struct money {
    long used, key_credits, key_requests, outbox, refunds;
} money;

static money
money_of(PGconn *c, const kbt_account *a)
{
    money m;
    m.used = used(c, a);
    m.key_credits = kbt_sql_long1(c,
                                  "SELECT coalesce(sum(u.credits_used), 0) FROM api_key_usage u"
                                  " JOIN api_keys k ON k.id = u.api_key_id WHERE k.user_id = $1",
                                  a->user_id);
    m.key_requests = kbt_sql_long1(c,
                                   "SELECT coalesce(sum(u.requests), 0) FROM api_key_usage u"
                                   " JOIN api_keys k ON k.id = u.api_key_id WHERE k.user_id = $1",
                                   a->user_id);
    m.outbox = kbt_sql_long1(c, "SELECT count(*) FROM usage_outbox WHERE user_id = $1", a->user_id);
    m.refunds = kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE user_id = $1",
                              a->user_id);
    return m;
}

static void
assert_money_eq(const money *a, const money *b)
{
    ck_assert_int_eq(a->used, b->used);
    ck_assert_int_eq(a->key_credits, b->key_credits);
    ck_assert_int_eq(a->key_requests, b->key_requests);
    ck_assert_int_eq(a->outbox, b->outbox);
    ck_assert_int_eq(a->refunds, b->refunds);
}

/* A refused request, and what it must not carry. */
static void
refused(const char *key, const char *path, long status, const char *code)
{
    kbt_resp *r = get_with_key(path, key);
    kbt_assert_envelope(r, status, code);
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Cost"), -1);
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Used"), -1);
    kbt_resp_free(r);
}

static void
ok_request(const char *key, const char *path)
{
    kbt_resp *r = get_with_key(path, key);
    ck_assert_msg(r->status == 200, "%s: %ld %s", path, r->status, kb_buf_cstr(&r->body));
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Cost"), 1);
    kbt_resp_free(r);
}

/* 401 and 429 charge nothing and count nothing, on the account row's fast path
 * (a key the workers have seen, its counter carried by the account) as on the
 * slow path: credits, per-key usage, outbox and refunds stay as they were. */
START_TEST(refused_requests_charge_and_count_nothing)
{
    PGconn *c = kbt_db();
    /* The window cannot roll during the test: the top of the next minute. */
    char shift[32];
    long to_next = kbt_sql_long1(c, "SELECT (60 - floor(extract(second FROM now())))::int", NULL);
    snprintf(shift, sizeof(shift), "%ld seconds", to_next);
    kbt_clock_shift(shift);

    /* Exhausted: 3 credits, every worker gets to see the key first. */
    kbt_account x;
    kbt_account_new(c, &x, "project", 3, 1000, false);
    for (int i = 0; i < 3; i++)
        ok_request(x.key, "/markets");
    money before = money_of(c, &x);
    ck_assert_int_eq(before.used, 3);
    ck_assert_int_eq(before.key_requests, 3);
    for (int i = 0; i < 6; i++)
        refused(x.key, "/markets", 429, "credits_exhausted");
    money after = money_of(c, &x);
    assert_money_eq(&before, &after);

    /* Rate limited: 4 requests a minute. */
    kbt_account l;
    kbt_account_new(c, &l, "project", 1000, 4, false);
    for (int i = 0; i < 4; i++)
        ok_request(l.key, "/markets");
    before = money_of(c, &l);
    ck_assert_int_eq(before.used, 4);
    for (int i = 0; i < 6; i++)
        refused(l.key, "/markets", 429, "rate_limit_exceeded");
    after = money_of(c, &l);
    assert_money_eq(&before, &after);

    /* Revoked while the account carries its counter: refused at once, and what
     * it had used stays counted. */
    kbt_account v;
    kbt_account_new(c, &v, "project", 1000, 1000, false);
    for (int i = 0; i < 4; i++)
        ok_request(v.key, "/markets");
    before = money_of(c, &v);
    const char *p[] = {v.key_id};
    PQclear(PQexecParams(c, "UPDATE api_keys SET revoked_at = now() WHERE id = $1", 1, NULL, p,
                         NULL, NULL, 0));
    for (int i = 0; i < 6; i++)
        refused(v.key, "/markets", 401, "invalid_api_key");
    after = money_of(c, &v);
    assert_money_eq(&before, &after);
    ck_assert_int_eq(after.key_requests, 4);

    /* Unknown and malformed keys touch no account. */
    refused("kb-unknownunknownunknownunknownunknownunkno", "/markets", 401, "invalid_api_key");
    refused("not-a-kb-key", "/markets", 401, "invalid_api_key");
    assert_money_eq(&before, &after);
    PQfinish(c);
}
END_TEST

/* ---- GET /keys/usage by day (helpers/usage_contract.md) -------------------- */

static const cJSON *
day_of(const cJSON *days, const char *date, const char *key_id, const char *endpoint)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, days) {
        if (strcmp(cJSON_GetObjectItem(d, "date")->valuestring, date) == 0 &&
            strcmp(cJSON_GetObjectItem(d, "key_id")->valuestring, key_id) == 0 &&
            strcmp(cJSON_GetObjectItem(d, "endpoint")->valuestring, endpoint) == 0)
            return d;
    }
    return NULL;
}

static void
assert_day(const cJSON *days, const char *date, const char *key_id, const char *endpoint,
           long credits, long requests)
{
    const cJSON *d = day_of(days, date, key_id, endpoint);
    ck_assert_msg(d != NULL, "no %s %s %s", date, key_id, endpoint);
    ck_assert_int_eq((long)cJSON_GetObjectItem(d, "credits_used")->valuedouble, credits);
    ck_assert_int_eq((long)cJSON_GetObjectItem(d, "requests")->valuedouble, requests);
}

static kbt_resp *
usage(const char *token, const char *query)
{
    char path[256];
    snprintf(path, sizeof(path), "/keys/usage%s", query);
    return kbt_auth_json("GET", path, token, NULL);
}

START_TEST(usage_by_day_for_a_date_range)
{
    PGconn *c = kbt_db();
    /* Noon of a UTC day, so that "the next day" is one day on. */
    long shift_s = kbt_sql_long1(c,
                                 "SELECT extract(epoch FROM date_trunc('day', now() AT TIME"
                                 " ZONE 'UTC') + interval '12 hours' - (now() AT TIME ZONE"
                                 " 'UTC'))::bigint",
                                 NULL);
    char shift[48];
    snprintf(shift, sizeof(shift), "%ld seconds", shift_s);
    kbt_clock_shift(shift);
    char *today = kbt_sql_value(c, "SELECT to_char(kb_now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')");
    char *tomorrow = kbt_sql_value(c, "SELECT to_char(kb_now() AT TIME ZONE 'UTC' + interval"
                                      " '1 day', 'YYYY-MM-DD')");

    char *email = kbt_auth_email("days"), *tok = NULL, *uid = NULL;
    kbt_auth_signup(email, "usage by day 1", &tok, &uid);
    char *key[2], *kid[2];
    for (int i = 0; i < 2; i++) {
        kbt_resp *r = kbt_auth_json("POST", "/keys", tok, "{}");
        ck_assert_int_eq(r->status, 200);
        key[i] = strdup(kbt_auth_str(r, "key"));
        kid[i] = strdup(kbt_auth_str(r, "id"));
        kbt_secret_note(key[i]);
        kbt_resp_free(r);
    }
    ok_request(key[0], "/markets");
    ok_request(key[0], "/markets");
    ok_request(key[0], "/events");
    ok_request(key[1], "/markets");
    ok_request(key[0], "/markets");
    /* A refunded request is not counted. */
    kbt_resp *r = get_with_key("/markets/KB-NO-SUCH-MARKET", key[0]);
    kbt_assert_envelope(r, 404, "market_not_found");
    kbt_resp_free(r);
    /* The next UTC day. */
    snprintf(shift, sizeof(shift), "%ld seconds", shift_s + 86400);
    kbt_clock_shift(shift);
    ok_request(key[0], "/markets");
    /* A revoked key's spend still shows by day; the key leaves "data". */
    snprintf(shift, sizeof(shift), "/keys/%s", kid[1]);
    r = kbt_auth_json("DELETE", shift, tok, NULL);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);

    char q[128];
    snprintf(q, sizeof(q), "?start_date=%s&end_date=%s", today, tomorrow);
    r = usage(tok, q);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    /* data, then days, then request_id */
    ck_assert_str_eq(r->json->child->string, "data");
    ck_assert_str_eq(r->json->child->next->string, "days");
    ck_assert_str_eq(r->json->child->next->next->string, "request_id");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r->json, "data")), 1);
    const cJSON *days = cJSON_GetObjectItem(r->json, "days");
    ck_assert_int_eq(cJSON_GetArraySize(days), 4);
    assert_day(days, today, kid[0], "/events", 1, 1);
    assert_day(days, today, kid[0], "/markets", 3, 3);
    assert_day(days, today, kid[1], "/markets", 1, 1);
    assert_day(days, tomorrow, kid[0], "/markets", 1, 1);
    ck_assert_ptr_null(day_of(days, today, kid[0], "/markets/{ticker}"));
    /* Ordered by date, key_id, endpoint. */
    const cJSON *prev = NULL, *d;
    cJSON_ArrayForEach(d, days) {
        if (prev != NULL) {
            char a[160], b[160];
            snprintf(a, sizeof(a), "%s %s %s", cJSON_GetObjectItem(prev, "date")->valuestring,
                     cJSON_GetObjectItem(prev, "key_id")->valuestring,
                     cJSON_GetObjectItem(prev, "endpoint")->valuestring);
            snprintf(b, sizeof(b), "%s %s %s", cJSON_GetObjectItem(d, "date")->valuestring,
                     cJSON_GetObjectItem(d, "key_id")->valuestring,
                     cJSON_GetObjectItem(d, "endpoint")->valuestring);
            ck_assert_msg(strcmp(a, b) < 0, "%s before %s", a, b);
        }
        prev = d;
    }
    kbt_resp_free(r);

    /* One day only; an empty range. */
    snprintf(q, sizeof(q), "?start_date=%s&end_date=%s", tomorrow, tomorrow);
    r = usage(tok, q);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r->json, "days")), 1);
    kbt_resp_free(r);
    r = usage(tok, "?start_date=2020-01-01&end_date=2020-12-31");
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r->json, "days")), 0);
    kbt_resp_free(r);
    /* Without the range: exactly as before, no "days". */
    r = usage(tok, "");
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_null(cJSON_GetObjectItem(r->json, "days"));
    kbt_resp_free(r);
    /* 366 days apart is the most. */
    r = usage(tok, "?start_date=2024-01-01&end_date=2025-01-01");
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);

    const struct {
        const char *q;
        long status;
        const char *code, *loc;
    } bad[] = {
        {"?start_date=2026-13-01&end_date=2026-12-31", 422, "validation_error", "query.start_date"},
        {"?start_date=2026-02-29&end_date=2026-03-01", 422, "validation_error", "query.start_date"},
        {"?start_date=2026-01-01&end_date=26-01-02", 422, "validation_error", "query.end_date"},
        {"?start_date=2026-01-01", 422, "validation_error", "query.end_date"},
        {"?end_date=2026-01-01", 422, "validation_error", "query.start_date"},
        {"?start_date=2026-01-02&end_date=2026-01-01", 400, "invalid_timestamp",
         "query.start_date"},
        {"?start_date=2024-01-01&end_date=2025-01-02", 400, "invalid_timestamp", "query.end_date"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = usage(tok, bad[i].q);
        kbt_assert_envelope(r, bad[i].status, bad[i].code);
        const char *msg = cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")
                              ->valuestring;
        ck_assert_msg(strncmp(msg, bad[i].loc, strlen(bad[i].loc)) == 0, "%s: %s", bad[i].q, msg);
        kbt_resp_free(r);
    }
    /* A user token is needed, as for the rest of /keys. */
    r = usage(NULL, q);
    kbt_assert_envelope(r, 401, "invalid_api_key");
    kbt_resp_free(r);
    for (int i = 0; i < 2; i++) {
        free(key[i]);
        free(kid[i]);
    }
    free(today);
    free(tomorrow);
    free(email);
    free(tok);
    free(uid);
    PQfinish(c);
}
END_TEST

/* Where the data query runs: the replica when the suite has one. */
static PGconn *
data_db(void)
{
    const char *read = getenv("KB_DATABASE_READ_URL");
    if (read == NULL || read[0] == '\0')
        return kbt_db();
    PGconn *c = PQconnectdb(read);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "replica: %s", PQerrorMessage(c));
    return c;
}

START_TEST(refund_after_database_failure_mid_request)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    /* The data query will wait on this lock; then its connection is killed. */
    PGconn *lock = kbt_db();
    kbt_sql_ok(lock, "BEGIN");
    kbt_sql_ok(lock, "LOCK TABLE markets IN ACCESS EXCLUSIVE MODE");
    /* The lock reaches a streaming replica too: AccessExclusiveLock is
     * WAL-logged; flush it (segment switch) and wait for the replay. */
    PGconn *data = data_db();
    if (getenv("KB_DATABASE_READ_URL") != NULL && getenv("KB_DATABASE_READ_URL")[0] != '\0') {
        kbt_sql_ok(c, "SELECT pg_switch_wal()");
        kbt_data_wait_replica();
    }
    kbt_keyed_get f = {a.key, "/markets", NULL};
    pthread_t th;
    pthread_create(&th, NULL, kbt_keyed_get_thread, &f);
    ck_assert_msg(kbt_wait_until(kbt_one_worker_waits_on_lock, data, 10000),
                  "request not in flight");
    kbt_sql_ok(data, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                     " application_name LIKE 'kalshibook-worker%' AND wait_event_type = 'Lock'");
    PQfinish(data);
    pthread_join(th, NULL);
    kbt_sql_ok(lock, "ROLLBACK");
    ck_assert_msg(f.resp->status == 503 || f.resp->status == 500, "got %ld %s", f.resp->status,
                  kb_buf_cstr(&f.resp->body));
    /* Refunded on a fresh connection: the response says cost 0, the account agrees. */
    ck_assert_int_eq(kbt_header_long(f.resp, "X-Credits-Cost"), 0);
    ck_assert_int_eq(kbt_header_long(f.resp, "X-Credits-Used"), 0);
    kbt_resp_free(f.resp);
    ck_assert_int_eq(used(c, &a), 0);
    PQfinish(lock);
    PQfinish(c);
}
END_TEST

/* ---- the by-id lookups sent ahead with the meter (no read replica) ----------- */

/* GET /<things>/{id} and the checks every answer gets: status, code or the
 * id echoed in data, X-Credits-Cost and -Used. */
static void
by_id(const char *key, const char *path, long status, const char *field, const char *want,
      long cost, long used_after)
{
    kbt_resp *r = get_with_key(path, key);
    ck_assert_msg(r->status == status, "%s: %ld %s", path, r->status, kb_buf_cstr(&r->body));
    if (status == 200) {
        const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "data"), field);
        ck_assert_msg(cJSON_IsString(v) && strcmp(v->valuestring, want) == 0, "%s: %s", path,
                      kb_buf_cstr(&r->body));
    } else {
        kbt_assert_envelope(r, status, want);
    }
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Cost"), cost);
    ck_assert_int_eq(kbt_header_long(r, "X-Credits-Used"), used_after);
    kbt_resp_free(r);
}

/* With the data on the meter's connection, GET /markets|events|settlements/{id}
 * send their lookup with the meter statement. The answers and the money are
 * what they are without that: the right row, 404 refunded, a refused request
 * neither charged nor answered from its lookup, the next request never given
 * an earlier one's; and every answered lookup came from the shared round trip
 * (kalshibook_db_sent_ahead_total). */
START_TEST(by_id_lookups_ride_with_the_meter)
{
    PGconn *c = kbt_db();
    kbt_ahead_markets(c);
    kbt_account a, b;
    kbt_account_new(c, &a, "project", 3, 0, false);
    kbt_account_new(c, &b, "project", 100, 0, false);
    double before = kbt_metric("kalshibook_db_sent_ahead_total");
    double sent_before = kbt_metric("kalshibook_db_ahead_sent_total");

    by_id(a.key, "/markets/KBT-AHEAD-A", 200, "ticker", "KBT-AHEAD-A", 1, 1);
    by_id(a.key, "/events/KBT-AHEAD-EV", 200, "event_ticker", "KBT-AHEAD-EV", 1, 2);
    by_id(a.key, "/markets/KBT-AHEAD-NONE", 404, NULL, "market_not_found", 0, 2);
    by_id(a.key, "/settlements/KBT-AHEAD-A", 404, NULL, "settlement_not_found", 0, 2);
    by_id(a.key, "/markets/KBT-AHEAD-B", 200, "ticker", "KBT-AHEAD-B", 1, 3);
    /* refused: its lookup went out with the meter and is dropped unread */
    kbt_resp *r = get_with_key("/markets/KBT-AHEAD-A", a.key);
    kbt_assert_envelope(r, 429, "credits_exhausted");
    kbt_resp_free(r);
    /* an invalid key never costs a lookup: no worker has charged it, so its lookup
     * would only go out once charged */
    double sent_401 = kbt_metric("kalshibook_db_ahead_sent_total");
    r = get_with_key("/markets/KBT-AHEAD-A", "kb-notakeynotakeynotakeynotakeynotakeynotake");
    kbt_assert_envelope(r, 401, "invalid_api_key");
    kbt_resp_free(r);
    ck_assert_int_eq((long)(kbt_metric("kalshibook_db_ahead_sent_total") - sent_401), 0);
    /* the next requests, on whichever worker, get their own rows */
    by_id(b.key, "/markets/KBT-AHEAD-B", 200, "ticker", "KBT-AHEAD-B", 1, 1);
    by_id(b.key, "/markets/KBT-AHEAD-A", 200, "ticker", "KBT-AHEAD-A", 1, 2);

    ck_assert_int_eq(used(c, &a), 3);
    ck_assert_int_eq(used(c, &b), 2);
    /* 5 + 2 answered lookups, each from the meter's round trip */
    ck_assert_int_eq((long)(kbt_metric("kalshibook_db_sent_ahead_total") - before), 7);
    /* sent: those 7, and the refused 429's when its worker had charged the key before */
    long sent = (long)(kbt_metric("kalshibook_db_ahead_sent_total") - sent_before);
    ck_assert_msg(sent == 7 || sent == 8, "%ld lookups sent", sent);
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("metered_http");
    TCase *tc = tcase_create("metered");
    tcase_set_timeout(tc, 90);
    tcase_add_unchecked_fixture(tc, NULL, kbt_clock_restore);
    tcase_add_test(tc, metered_success_carries_exact_headers);
    tcase_add_test(tc, no_overdraft_through_the_stack_concurrently);
    tcase_add_test(tc, payg_overage_exact_through_the_stack_concurrently);
    tcase_add_test(tc, rate_limit_exact_through_the_stack);
    tcase_add_test(tc, refund_after_404_with_zero_cost_headers);
    tcase_add_test(tc, nothing_charged_for_401_422_or_revoked);
    tcase_add_test(tc, refund_after_database_failure_mid_request);
    tcase_add_test(tc, refused_requests_charge_and_count_nothing);
    tcase_add_test(tc, usage_by_day_for_a_date_range);
    suite_add_tcase(s, tc);
    TCase *ta = tcase_create("primary-only");
    tcase_set_timeout(ta, 90);
    tcase_add_unchecked_fixture(ta, kbt_primary_only, kbt_replica_back);
    tcase_add_test(ta, by_id_lookups_ride_with_the_meter);
    suite_add_tcase(s, ta);
    return kb_check_run(s);
}
