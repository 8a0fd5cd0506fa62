/* test_meter.c - the meter statements themselves (kb_meter_stmt and its slow path,
 * the texts the workers prepare), against the real database: money rules 1-4 and 9, concurrently
 * where the rule is about concurrency. (HTTP-level metering is covered by
 * test_metered_http.c.) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "check_main.h"
#include "kb_meter.h"
#include "kbt.h"
#include "kb_banned.h"

/* What a worker learned about a key from earlier answers (lib/meter.c). */
typedef struct seen {
    char user_id[40], key_id[40], life[40];
} seen;

/* One charge as a worker runs it, in one transaction: for a key seen before,
 * the meter statement (the account row's UPDATE), then its slow path when that
 * charged nothing; for a key not seen, the slow path. */
static PGresult *
meter_exec_as(PGconn *c, seen *s, const char *hash, const char *cost, const char *endpoint,
              const char *rid, bool commit)
{
    const char *slow[] = {hash, cost, endpoint, rid};
    PGresult *r = NULL;
    PQclear(PQexec(c, "BEGIN"));
    /* The worker's fast path: a key it knows, on a connection whose server life
     * an earlier charge told it. */
    if (s != NULL && s->key_id[0] != '\0' && s->life[0] != '\0') {
        /* No meter_inflight row (kb_meter_row_stmt, test_hosts.c has those). */
        const char *fast[] = {s->user_id, s->key_id, cost, endpoint, rid, s->life};
        r = PQexecParams(c, kb_meter_stmt.sql, 6, NULL, fast, NULL, NULL, 0);
    }
    if (r == NULL || (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 0)) {
        PQclear(r);
        r = PQexecParams(c, kb_meter_slow_stmt.sql, 4, NULL, slow, NULL, NULL, 0);
    }
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    PQclear(PQexec(c, ok && commit ? "COMMIT" : "ROLLBACK"));
    if (ok && s != NULL && !PQgetisnull(r, 0, PQfnumber(r, "key_id"))) {
        snprintf(s->user_id, sizeof(s->user_id), "%s", PQgetvalue(r, 0, PQfnumber(r, "user_id")));
        snprintf(s->key_id, sizeof(s->key_id), "%s", PQgetvalue(r, 0, PQfnumber(r, "key_id")));
        if (!PQgetisnull(r, 0, PQfnumber(r, "token")))
            snprintf(s->life, sizeof(s->life), "%s", PQgetvalue(r, 0, PQfnumber(r, "token")));
    }
    return r;
}

/* Column name of a meter row r; the fast path's row has no user_id, key_id or
 * token (the worker passes them, kb_meter_result_read()'s given): then s's. */
static const char *
meter_col(const PGresult *r, const seen *s, const char *name)
{
    if (PQfnumber(r, name) >= 0)
        return PQgetvalue(r, 0, PQfnumber(r, name));
    if (strcmp(name, "user_id") == 0)
        return s->user_id;
    if (strcmp(name, "key_id") == 0)
        return s->key_id;
    ck_assert_str_eq(name, "token");
    return s->life;
}

/* meter_exec_as() committed, under a request id of its own. */
static PGresult *
meter_exec(PGconn *c, seen *s, const char *hash, const char *cost, const char *endpoint)
{
    static long calls;
    char rid[32];
    snprintf(rid, sizeof(rid), "req_%04x%08lx", (unsigned)getpid() & 0xffff,
             __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED));
    return meter_exec_as(c, s, hash, cost, endpoint, rid, true);
}

typedef struct call {
    const char *hash;
    int cost;
    char outcome[32];
    seen s;
} call;

static void
meter_once(PGconn *c, call *k)
{
    char cost[16];
    snprintf(cost, sizeof(cost), "%d", k->cost);
    PGresult *r = meter_exec(c, &k->s, k->hash, cost, "/markets");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(k->outcome, sizeof(k->outcome), "%s", PQgetvalue(r, 0, PQfnumber(r, "outcome")));
    else
        snprintf(k->outcome, sizeof(k->outcome), "error");
    PQclear(r);
}

typedef struct worker_arg {
    const char *hash;
    int cost;
    int calls;
    int ok, exhausted, limited, other;
} worker_arg;

static void *
worker(void *arg)
{
    worker_arg *w = arg;
    PGconn *c = PQconnectdb(getenv("KB_DATABASE_URL"));
    call k = {w->hash, w->cost, "", {"", "", ""}};
    for (int i = 0; i < w->calls; i++) {
        meter_once(c, &k);
        if (strcmp(k.outcome, "ok") == 0)
            w->ok++;
        else if (strcmp(k.outcome, "exhausted") == 0)
            w->exhausted++;
        else if (strcmp(k.outcome, "rate_limited") == 0)
            w->limited++;
        else
            w->other++;
    }
    PQfinish(c);
    return NULL;
}

/* threads x calls concurrent meter calls; totals in *sum. */
static void
hammer(const char *hash, int cost, int threads, int calls, worker_arg *sum)
{
    pthread_t th[32];
    worker_arg w[32];
    memset(sum, 0, sizeof(*sum));
    for (int i = 0; i < threads; i++) {
        w[i] = (worker_arg){hash, cost, calls, 0, 0, 0, 0};
        pthread_create(&th[i], NULL, worker, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        sum->ok += w[i].ok;
        sum->exhausted += w[i].exhausted;
        sum->limited += w[i].limited;
        sum->other += w[i].other;
    }
}

static long
used(PGconn *c, const kbt_account *a)
{
    return kbt_sql_long1(c, "SELECT credits_used FROM billing_accounts WHERE user_id = $1",
                         a->user_id);
}

static long
outbox_sum(PGconn *c, const kbt_account *a)
{
    return kbt_sql_long1(c, "SELECT coalesce(sum(credits), 0) FROM usage_outbox WHERE user_id = $1",
                         a->user_id);
}

START_TEST(meter_refuses_overdraft_concurrently)
{
    /* Room for exactly K = 37 requests of cost 5; 200 concurrent attempts. */
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 185, 100000, false);
    worker_arg sum;
    hammer(a.key_hash, 5, 20, 10, &sum);
    ck_assert_int_eq(sum.other, 0);
    ck_assert_int_eq(sum.ok, 37);
    ck_assert_int_eq(sum.exhausted, 200 - 37);
    ck_assert_int_eq(used(c, &a), 185);
    ck_assert_int_eq(outbox_sum(c, &a), 0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT sum(credits_used) FROM api_key_usage u JOIN "
                                   "api_keys k ON k.id = u.api_key_id WHERE k.user_id = $1",
                                   a.user_id),
                     185);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT sum(requests) FROM api_key_usage u JOIN "
                                   "api_keys k ON k.id = u.api_key_id WHERE k.user_id = $1",
                                   a.user_id),
                     37);
    PQfinish(c);
}
END_TEST

START_TEST(meter_outbox_holds_exact_overage_concurrently)
{
    /* PAYG on: all 200 succeed; only the part beyond 100 credits is overage. */
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "payg", 100, 100000, true);
    worker_arg sum;
    hammer(a.key_hash, 3, 20, 10, &sum);
    ck_assert_int_eq(sum.ok, 200);
    ck_assert_int_eq(used(c, &a), 600);
    ck_assert_int_eq(outbox_sum(c, &a), 500);
    /* Every outbox row is at most one request's cost; the crossing one is partial. */
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM usage_outbox WHERE user_id = $1 "
                                   "AND (credits < 1 OR credits > 3)",
                                   a.user_id),
                     0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM usage_outbox WHERE user_id = $1 "
                                   "AND credits < 3",
                                   a.user_id),
                     1);
    PQfinish(c);
}
END_TEST

START_TEST(meter_overage_cap_stops_payg)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "payg", 10, 100000, true);
    const char *p[] = {a.user_id};
    PQclear(PQexecParams(c, "UPDATE billing_accounts SET overage_cap = 7 WHERE user_id = $1", 1,
                         NULL, p, NULL, NULL, 0));
    worker_arg sum;
    hammer(a.key_hash, 2, 8, 5, &sum);
    /* 10 included + 7 overage = 17 max; cost 2 -> 8 requests (16 credits). */
    ck_assert_int_eq(sum.ok, 8);
    ck_assert_int_eq(used(c, &a), 16);
    ck_assert_int_eq(outbox_sum(c, &a), 6);
    PQfinish(c);
}
END_TEST

START_TEST(meter_rate_limit_exact_and_uncharged)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "free", 1000, 7, false);
    worker_arg sum;
    hammer(a.key_hash, 1, 4, 3, &sum);
    ck_assert_int_eq(sum.ok, 7);
    ck_assert_int_eq(sum.limited, 5);
    ck_assert_int_eq(used(c, &a), 7);
    PQfinish(c);
}
END_TEST

/* A negative cost credits nothing: the fast path's UPDATE takes no row (its guard
 * is written against the row, not as a parameter test), and the slow path refuses
 * it with an error; the account is as it was. */
START_TEST(meter_negative_cost_charges_nothing)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    seen s = {"", "", ""};
    PQclear(meter_exec(c, &s, a.key_hash, "1", "/markets"));
    ck_assert_int_eq(used(c, &a), 1);
    ck_assert(s.life[0] != '\0'); /* the next charge may take the fast path */
    const char *fast[] = {s.user_id, s.key_id, "-5", "/markets", "req_negative", s.life};
    kbt_sql_ok(c, "BEGIN");
    PGresult *r = PQexecParams(c, kb_meter_stmt.sql, 6, NULL, fast, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQntuples(r), 0);
    PQclear(r);
    kbt_sql_ok(c, "ROLLBACK");
    /* The same cost of 1 does take it: the refusal above was the cost's. */
    fast[2] = "1";
    kbt_sql_ok(c, "BEGIN");
    r = PQexecParams(c, kb_meter_stmt.sql, 6, NULL, fast, NULL, NULL, 0);
    ck_assert_int_eq(PQntuples(r), 1);
    PQclear(r);
    kbt_sql_ok(c, "ROLLBACK");
    r = meter_exec(c, &s, a.key_hash, "-5", "/markets");
    ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    PQclear(r);
    ck_assert_int_eq(used(c, &a), 1);
    PQfinish(c);
}
END_TEST

START_TEST(meter_refusal_order_invalid_then_rate_then_credits)
{
    PGconn *c = kbt_db();
    kbt_account a;
    /* 2 credits and 1 request per minute: the 2nd call is rate limited even
     * though credits would also refuse it. */
    kbt_account_new(c, &a, "free", 2, 1, false);
    call k = {a.key_hash, 2, "", {"", "", ""}};
    meter_once(c, &k);
    ck_assert_str_eq(k.outcome, "ok");
    meter_once(c, &k);
    ck_assert_str_eq(k.outcome, "rate_limited");
    call bad = {
        "0000000000000000000000000000000000000000000000000000000000000000", 1, "", {"", "", ""}};
    meter_once(c, &bad);
    ck_assert_str_eq(bad.outcome, "invalid_key");
    /* A revoked key is refused on its very next call. */
    const char *p[] = {a.key_id};
    PQclear(PQexecParams(c, "UPDATE api_keys SET revoked_at = now() WHERE id = $1", 1, NULL, p,
                         NULL, NULL, 0));
    meter_once(c, &k);
    ck_assert_str_eq(k.outcome, "invalid_key");
    ck_assert_int_eq(used(c, &a), 2);
    PQfinish(c);
}
END_TEST

/* API.md §2: a successful key check sets last_used_at before credits are looked
 * at, so a refused request sets it too. It is written at most once a second
 * per key (0009_meter_journal.sql), so a second call within the second keeps it. */
START_TEST(meter_sets_last_used_at_even_when_refused)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "free", 1, 1000, false);
    const char *p[] = {a.key_id};
    PQclear(PQexecParams(c, "UPDATE api_keys SET last_used_at = NULL WHERE id = $1", 1, NULL, p,
                         NULL, NULL, 0));
    call k = {a.key_hash, 5, "", {"", "", ""}};
    meter_once(c, &k);
    ck_assert_str_eq(k.outcome, "exhausted");
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM api_keys WHERE id = $1"
                                   " AND last_used_at > now() - interval '1 minute'",
                                   a.key_id),
                     1);
    /* An hour-old value is brought up to date by the next check. */
    PQclear(PQexecParams(c,
                         "UPDATE api_keys SET last_used_at = now() - interval '1 hour'"
                         " WHERE id = $1",
                         1, NULL, p, NULL, NULL, 0));
    meter_once(c, &k);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM api_keys WHERE id = $1"
                                   " AND last_used_at > now() - interval '1 minute'",
                                   a.key_id),
                     1);
    /* Within the same second the row is not rewritten: its xmin stays. */
    char *x1 = NULL, *x2 = NULL;
    PGresult *r = PQexecParams(c, "SELECT xmin::text FROM api_keys WHERE id = $1", 1, NULL, p, NULL,
                               NULL, 0);
    x1 = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    meter_once(c, &k);
    r = PQexecParams(c, "SELECT xmin::text FROM api_keys WHERE id = $1", 1, NULL, p, NULL, NULL, 0);
    x2 = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    ck_assert_str_eq(x1, x2);
    free(x1);
    free(x2);
    ck_assert_int_eq(used(c, &a), 0);
    PQfinish(c);
}
END_TEST

START_TEST(meter_free_cycle_rolls_on_calendar_month)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "free", 0, 0, false);
    const char *p[] = {a.user_id};
    /* Last month's cycle, fully used: the first request of this month resets it. */
    PQclear(PQexecParams(c,
                         "UPDATE billing_accounts SET credits_used = 1000,"
                         " billing_cycle_start = kb_cycle_month(kb_now()) - interval '1 month'"
                         " WHERE user_id = $1",
                         1, NULL, p, NULL, NULL, 0));
    call k = {a.key_hash, 5, "", {"", "", ""}};
    meter_once(c, &k);
    ck_assert_str_eq(k.outcome, "ok");
    ck_assert_int_eq(used(c, &a), 5);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT (billing_cycle_start = kb_cycle_month(kb_now()))::int"
                                   " FROM billing_accounts WHERE user_id = $1",
                                   a.user_id),
                     1);
    PQfinish(c);
}
END_TEST

START_TEST(meter_project_cycle_rolls_at_period_end)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 0, 0, false);
    const char *p[] = {a.user_id};
    /* A project period that started mid-month and ended a minute ago. */
    PQclear(
        PQexecParams(c,
                     "UPDATE billing_accounts SET credits_used = 4000, credits_total = 4000,"
                     " billing_cycle_start = kb_now() - interval '1 month' - interval '1 minute',"
                     " billing_cycle_end = kb_now() - interval '1 minute' WHERE user_id = $1",
                     1, NULL, p, NULL, NULL, 0));
    call k = {a.key_hash, 5, "", {"", "", ""}};
    meter_once(c, &k);
    ck_assert_str_eq(k.outcome, "ok");
    ck_assert_int_eq(used(c, &a), 5);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT (billing_cycle_end > kb_now() AND billing_cycle_start"
                                   " <= kb_now() AND credits_total = 4000)::int"
                                   " FROM billing_accounts WHERE user_id = $1",
                                   a.user_id),
                     1);
    /* Before the period end a project account does not roll on the calendar. */
    PQclear(PQexecParams(c,
                         "UPDATE billing_accounts SET credits_used = 4000, credits_total = 4000,"
                         " billing_cycle_start = kb_cycle_month(kb_now()) - interval '10 days',"
                         " billing_cycle_end = kb_now() + interval '5 days' WHERE user_id = $1",
                         1, NULL, p, NULL, NULL, 0));
    meter_once(c, &k);
    ck_assert_str_eq(k.outcome, "exhausted");
    PQfinish(c);
}
END_TEST

/* The account row's UPDATE trusts the allowance and the rate limit stored on the
 * row: an edit of the tier reaches it at once (0015's trigger), and an account
 * that used more than a lowered allowance is exhausted, not overdrawn. */
START_TEST(meter_follows_a_tier_edit_at_once)
{
    PGconn *c = kbt_db();
    char tier[40];
    unsigned char rnd[4];
    randombytes_buf(rnd, sizeof(rnd));
    snprintf(tier, sizeof(tier), "kbt_%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    kbt_sqlp_ok(c,
                "INSERT INTO tiers (name, credits_per_cycle, requests_per_minute)"
                " VALUES ($1, 10, 100)",
                1, tier);
    kbt_account a;
    kbt_account_new(c, &a, tier, 0, 0, false);
    call k = {a.key_hash, 1, "", {"", "", ""}};
    for (int i = 0; i < 4; i++) {
        meter_once(c, &k);
        ck_assert_str_eq(k.outcome, "ok");
    }
    ck_assert_int_eq(used(c, &a), 4);
    kbt_sqlp_ok(c,
                "UPDATE tiers SET credits_per_cycle = 6, requests_per_minute = 3"
                " WHERE name = $1",
                1, tier);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT rl_limit * 1000 + credits_total FROM"
                                   " billing_accounts WHERE user_id = $1",
                                   a.user_id),
                     3006);
    kbt_sqlp_ok(c,
                "UPDATE tiers SET credits_per_cycle = 2, requests_per_minute = 100"
                " WHERE name = $1",
                1, tier);
    ck_assert_int_eq(used(c, &a), 2);
    meter_once(c, &k);
    ck_assert_str_eq(k.outcome, "exhausted");
    ck_assert_int_eq(used(c, &a), 2);
    PQfinish(c);
}
END_TEST

START_TEST(meter_refund_restores_credits_usage_and_outbox)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "payg", 4, 0, true);
    PGresult *r = meter_exec(c, NULL, a.key_hash, "5", "/orderbook");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert(!PQgetisnull(r, 0, PQfnumber(r, "outbox_id")));
    ck_assert_int_eq(used(c, &a), 5);
    ck_assert_int_eq(outbox_sum(c, &a), 1);
    /* A request id of this run only (meter_refunds keeps ids for good). */
    char rid[32];
    snprintf(rid, sizeof(rid), "req_%.12s", a.key_hash);
    const char *rp[] = {PQgetvalue(r, 0, PQfnumber(r, "user_id")),
                        PQgetvalue(r, 0, PQfnumber(r, "key_id")),
                        PQgetvalue(r, 0, PQfnumber(r, "cycle_start")),
                        PQgetvalue(r, 0, PQfnumber(r, "outbox_id")),
                        rid,
                        PQgetvalue(r, 0, PQfnumber(r, "day"))};
    for (int attempt = 0; attempt < 2; attempt++) {
        /* The second call is a retry of the same request: it changes nothing. */
        PGresult *f = PQexecParams(c,
                                   "SELECT credits_used, outbox_removed FROM kb_meter_refund("
                                   "$5, $1, $2, 5, '/orderbook', $3, $6, $4)",
                                   6, NULL, rp, NULL, NULL, 0);
        ck_assert_int_eq(PQresultStatus(f), PGRES_TUPLES_OK);
        ck_assert_str_eq(PQgetvalue(f, 0, 0), "0");
        ck_assert_str_eq(PQgetvalue(f, 0, 1), attempt == 0 ? "t" : "f");
        PQclear(f);
    }
    PQclear(r);
    ck_assert_int_eq(used(c, &a), 0);
    ck_assert_int_eq(outbox_sum(c, &a), 0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT sum(credits_used) + sum(requests) FROM "
                                   "api_key_usage WHERE api_key_id = $1",
                                   a.key_id),
                     0);
    PQfinish(c);
}
END_TEST

/*
 * Settling a journaled charge (kb_meter_settle(), 0016_meter_crash_settle.sql):
 * whether it committed, with and without a crash of the server in between. A
 * crash is what Postgres does to the unlogged meter_incarnation (emptied) and to
 * every connection (the worker forgets the life it knew); a
 * transaction id handed out again after it is stood for by the id of another
 * transaction that committed. Each case: an earlier charge of the account, the
 * charge (committed or not), perhaps a later one in the same life, the crash,
 * perhaps a charge in the new life, then settling.
 */
typedef struct settle_case {
    bool commits; /* the charge's transaction commits */
    bool later;   /* another charge of the account commits after it, before the crash */
    bool crash;   /* the server's life ends before settling */
    bool after;   /* a charge of the account in the new life comes first */
    bool reused;  /* its id now belongs to another transaction, which committed */
    const char *want;
} settle_case;

static const settle_case settle_cases[] = {
    {true, false, false, false, false, "refunded"},
    {false, false, false, false, false, "not_charged"},
    {true, false, true, false, false, "refunded"},
    {true, false, true, true, false, "refunded"},
    {false, false, true, false, true, "not_charged"},
    {false, false, true, true, true, "not_charged"},
    {false, true, true, false, false, "not_charged"},
    {false, true, true, true, false, "not_charged"},
    {true, true, true, false, false, "refunded"},
    {true, true, true, true, false, "refunded"},
};

START_TEST(meter_settle_tells_a_crash_apart)
{
    const settle_case *k = &settle_cases[_i];
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    seen s = {"", "", ""};
    PQclear(meter_exec(c, &s, a.key_hash, "1", "/markets"));
    char rid[32];
    snprintf(rid, sizeof(rid), "req_%.12s", a.key_hash);
    PGresult *r = meter_exec_as(c, &s, a.key_hash, "5", "/markets", rid, k->commits);
    seen at = s; /* what the worker passed to that charge */
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQfnumber(r, "token"), -1); /* it took the fast path */
    ck_assert_str_eq(PQgetvalue(r, 0, PQfnumber(r, "outcome")), "ok");
    ck_assert_str_eq(PQgetvalue(r, 0, PQfnumber(r, "seq")), "2");
    if (k->later)
        PQclear(meter_exec(c, &s, a.key_hash, "1", "/markets"));
    if (k->crash) {
        /* What recovery does to the unlogged table (triggers keep anyone else
         * from it), and the worker's connection is gone with its life. */
        kbt_sql_ok(c, "SET session_replication_role = replica");
        kbt_sql_ok(c, "DELETE FROM meter_incarnation");
        kbt_sql_ok(c, "RESET session_replication_role");
        s.life[0] = '\0';
    }
    if (k->after)
        PQclear(meter_exec(c, &s, a.key_hash, "1", "/markets"));
    char *other = k->reused ? kbt_sql_value(c, "SELECT pg_current_xact_id()") : NULL;
    long before = used(c, &a);
    const char *p[] = {other ? other : PQgetvalue(r, 0, PQfnumber(r, "xid")),
                       meter_col(r, &at, "token"),
                       PQgetvalue(r, 0, PQfnumber(r, "seq")),
                       rid,
                       meter_col(r, &at, "user_id"),
                       meter_col(r, &at, "key_id"),
                       PQgetvalue(r, 0, PQfnumber(r, "cycle_start")),
                       PQgetvalue(r, 0, PQfnumber(r, "day"))};
    if (k->reused) {
        char *st = kbt_sqlp_value(c, "SELECT pg_xact_status($1::xid8)", 1, p[0]);
        ck_assert_str_eq(st, "committed"); /* what 0015 trusted */
        free(st);
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        /* Settling again (another worker, a retry) changes nothing. */
        PGresult *f = PQexecParams(c,
                                   "SELECT kb_meter_settle($1::xid8, $2::uuid, $3::bigint, $4,"
                                   " $5::uuid, $6::uuid, 5, '/markets', $7::timestamptz,"
                                   " $8::date, NULL)",
                                   8, NULL, p, NULL, NULL, 0);
        ck_assert_msg(PQresultStatus(f) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(f));
        const char *want = attempt == 1 && strcmp(k->want, "refunded") == 0 ? "done" : k->want;
        ck_assert_str_eq(PQgetvalue(f, 0, 0), want);
        PQclear(f);
    }
    bool refunded = strcmp(k->want, "refunded") == 0;
    ck_assert_int_eq(used(c, &a), before - (refunded ? 5 : 0));
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1",
                                   rid),
                     refunded ? 1 : 0);
    /* Usage per key counts the answered charges only: all but this one. */
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT sum(requests) FROM api_key_usage"
                                   " WHERE api_key_id = $1",
                                   a.key_id),
                     1 + k->later + k->after);
    free(other);
    PQclear(r);
    PQfinish(c);
}
END_TEST

/* Only a crash changes the server's life: nobody deletes, truncates or edits it. */
START_TEST(meter_incarnation_changes_only_by_a_crash)
{
    PGconn *c = kbt_db();
    char *before = kbt_sql_value(c, "SELECT kb_incarnation()::text");
    const char *sql[] = {"DELETE FROM meter_incarnation", "TRUNCATE meter_incarnation",
                         "UPDATE meter_incarnation SET token = gen_random_uuid()"};
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        PGresult *r = PQexec(c, sql[i]);
        ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR, "%s was allowed", sql[i]);
        PQclear(r);
    }
    char *after = kbt_sql_value(c, "SELECT kb_incarnation()::text");
    ck_assert_str_eq(after, before);
    free(before);
    free(after);
    PQfinish(c);
}
END_TEST

/* ---- the fast path's clock window (migrations 0026 and 0027) ---- */

/* Would the fast path charge s's key now? Its statement in a transaction rolled back. */
static int
fast_probe(PGconn *c, const seen *s)
{
    const char *fast[] = {s->user_id, s->key_id, "1", "/markets", "req_probe", s->life};
    kbt_sql_ok(c, "BEGIN");
    PGresult *r = PQexecParams(c, kb_meter_stmt.sql, 6, NULL, fast, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    int n = PQntuples(r);
    PQclear(r);
    kbt_sql_ok(c, "ROLLBACK");
    return n;
}

typedef struct window_case {
    const char *what;
    const char *tier;
    const char *setup;            /* SQL run on the account before its slow charge ($1 user id) */
    const char *start;            /* the clock when the slow path stores the window (a query) */
    const char *inside, *outside; /* shifts from start: the fast path charges, then not */
} window_case;

/* The starts sit in a minute of their own (the next one), so that only the bound
 * a case names falls between its two shifts. */
#define NEXT_MINUTE "SELECT date_trunc('minute', now()) + interval '1 minute' + interval "

#define PERIOD_IN_20_DAYS                                                                          \
    "UPDATE billing_accounts SET billing_cycle_end = kb_now() + interval '20 days'"                \
    " WHERE user_id = $1"

static const window_case window_cases[] = {
    /* The key was checked in the minute before (last_used_at is written at most once
     * a second, so the slow path keeps a check up to a second old): its minute ends
     * 0.3 s before this one. */
    {"the key check's minute", "project",
     "WITH k AS (UPDATE api_keys SET last_used_at = kb_now() - interval '500 milliseconds'"
     " WHERE user_id = $1) " PERIOD_IN_20_DAYS,
     NEXT_MINUTE "'200 milliseconds'", "59 seconds", "59.6 seconds"},
    {"the rate window's minute", "project", PERIOD_IN_20_DAYS, NEXT_MINUTE "'5 seconds'",
     "50 seconds", "56 seconds"},
    {"a project's period end", "project",
     "UPDATE billing_accounts SET billing_cycle_start = kb_now() - interval '10 days',"
     " billing_cycle_end = kb_now() + interval '30 seconds' WHERE user_id = $1",
     NEXT_MINUTE "'5 seconds'", "20 seconds", "31 seconds"},
    {"the UTC day's end", "project", PERIOD_IN_20_DAYS,
     "SELECT (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day')"
     " AT TIME ZONE 'UTC'"
     " - interval '20 seconds'",
     "10 seconds", "25 seconds"},
    {"a free account's calendar month", "free", NULL,
     "SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')"
     " AT TIME ZONE 'UTC'"
     " - interval '20 seconds'",
     "10 seconds", "25 seconds"},
};

/* The window kb_meter_slow() stores ends at each of the clock checks it stands for:
 * inside it the fast path charges, past any bound it does not (and the slow path
 * then decides: a roll, a new day's counter, a new key check). */
START_TEST(meter_fast_window_ends_at_each_clock_bound)
{
    const window_case *k = &window_cases[_i];
    PGconn *c = kbt_db();
    char *at = kbt_sql_value(c, k->start);
    kbt_clock_to(c, at, "0 seconds");
    free(at);
    kbt_account a;
    kbt_account_new(c, &a, k->tier, 1000, 0, false);
    if (k->setup != NULL)
        kbt_sqlp_ok(c, k->setup, 1, a.user_id);
    seen s = {"", "", ""};
    PGresult *r = meter_exec(c, &s, a.key_hash, "1", "/markets");
    ck_assert_str_eq(PQgetvalue(r, 0, PQfnumber(r, "outcome")), "ok");
    PQclear(r);
    ck_assert_msg(kbt_sql_long1(c,
                                "SELECT (fast_from <= kb_now() AND kb_now() < fast_until)::int"
                                " FROM billing_accounts WHERE user_id = $1",
                                a.user_id) == 1,
                  "%s: no window stored", k->what);
    char *start = kbt_sql_value(c, "SELECT kb_now()::text");
    kbt_clock_to(c, start, k->inside);
    ck_assert_msg(fast_probe(c, &s) == 1, "%s: no fast charge %s in", k->what, k->inside);
    kbt_clock_to(c, start, k->outside);
    ck_assert_msg(fast_probe(c, &s) == 0, "%s: a fast charge %s in", k->what, k->outside);
    /* The slow path still charges and stores the next window (after a cycle roll the
     * roll itself clears it once: the charge after it stores it). */
    for (int i = 0; i < 2; i++) {
        r = meter_exec(c, &s, a.key_hash, "1", "/markets");
        ck_assert_str_eq(PQgetvalue(r, 0, PQfnumber(r, "outcome")), "ok");
        PQclear(r);
    }
    ck_assert_int_eq(fast_probe(c, &s), 1);
    free(start);
    PQfinish(c);
}
END_TEST

/* A project account's period that ends 20 days from the clock: no roll comes near. */
static void
period_ends_in_20_days(PGconn *c, const kbt_account *a)
{
    kbt_sqlp_ok(c, PERIOD_IN_20_DAYS, 1, a->user_id);
}

/* Another writer of the cycle (a Stripe event, kbctl) clears the window: a period
 * end moved into the past with the same start is seen by the next charge at once. */
START_TEST(meter_fast_window_cleared_by_a_cycle_change)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 1000, 0, false);
    period_ends_in_20_days(c, &a);
    seen s = {"", "", ""};
    PQclear(meter_exec(c, &s, a.key_hash, "1", "/markets"));
    ck_assert_int_eq(fast_probe(c, &s), 1);
    kbt_sqlp_ok(c,
                "UPDATE billing_accounts SET billing_cycle_end = kb_now() - interval '1 second'"
                " WHERE user_id = $1",
                1, a.user_id);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM billing_accounts"
                                   " WHERE user_id = $1 AND fast_until IS NULL",
                                   a.user_id),
                     1);
    ck_assert_int_eq(fast_probe(c, &s), 0);
    /* The slow path rolls the cycle: this charge is the new period's first. */
    PGresult *r = meter_exec(c, &s, a.key_hash, "1", "/markets");
    ck_assert_str_eq(PQgetvalue(r, 0, PQfnumber(r, "outcome")), "ok");
    PQclear(r);
    ck_assert_int_eq(used(c, &a), 1);
    PQfinish(c);
}
END_TEST

/* The rate window restarts with each minute, fast path or not: charges in a new
 * minute count from one, though the key check from the minute before would still
 * let the fast path charge (its window ends with the minute it counted in). */
START_TEST(meter_rate_window_restarts_each_minute)
{
    PGconn *c = kbt_db();
    char *at = kbt_sql_value(c, NEXT_MINUTE "'30 seconds'");
    kbt_clock_to(c, at, "0 seconds");
    free(at);
    kbt_account a;
    kbt_account_new(c, &a, "project", 1000, 5, false);
    period_ends_in_20_days(c, &a);
    seen s = {"", "", ""};
    for (int i = 0; i < 3; i++) {
        PGresult *r = meter_exec(c, &s, a.key_hash, "1", "/markets");
        ck_assert_str_eq(PQgetvalue(r, 0, PQfnumber(r, "outcome")), "ok");
        ck_assert_str_eq(PQgetvalue(r, 0, PQfnumber(r, "rl_remaining")), i == 0   ? "4"
                                                                         : i == 1 ? "3"
                                                                                  : "2");
        PQclear(r);
    }
    /* A transaction whose clock reads the minute before (it began before the one
     * that stored the window) does not count in this minute's window. */
    char *start = kbt_sql_value(c, "SELECT kb_now()::text");
    kbt_clock_to(c, start, "-31 seconds");
    ck_assert_int_eq(fast_probe(c, &s), 0);
    /* 35 s on: the next minute, 25 s before the key check's runs out. */
    kbt_clock_to(c, start, "35 seconds");
    free(start);
    ck_assert_int_eq(fast_probe(c, &s), 0);
    for (int i = 0; i < 5; i++) {
        PGresult *r = meter_exec(c, &s, a.key_hash, "1", "/markets");
        ck_assert_msg(strcmp(PQgetvalue(r, 0, PQfnumber(r, "outcome")), "ok") == 0,
                      "charge %d of the new minute: %s", i + 1,
                      PQgetvalue(r, 0, PQfnumber(r, "outcome")));
        PQclear(r);
    }
    PGresult *r = meter_exec(c, &s, a.key_hash, "1", "/markets");
    ck_assert_str_eq(PQgetvalue(r, 0, PQfnumber(r, "outcome")), "rate_limited");
    PQclear(r);
    ck_assert_int_eq(used(c, &a), 8);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT (rl_window_start = date_trunc('minute', kb_now()))::int"
                                   " * rl_count FROM billing_accounts WHERE user_id = $1",
                                   a.user_id),
                     5);
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("meter");
    TCase *tc = tcase_create("sql");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, meter_refuses_overdraft_concurrently);
    tcase_add_test(tc, meter_outbox_holds_exact_overage_concurrently);
    tcase_add_test(tc, meter_overage_cap_stops_payg);
    tcase_add_test(tc, meter_rate_limit_exact_and_uncharged);
    tcase_add_test(tc, meter_negative_cost_charges_nothing);
    tcase_add_test(tc, meter_refusal_order_invalid_then_rate_then_credits);
    tcase_add_test(tc, meter_sets_last_used_at_even_when_refused);
    tcase_add_test(tc, meter_free_cycle_rolls_on_calendar_month);
    tcase_add_test(tc, meter_project_cycle_rolls_at_period_end);
    tcase_add_test(tc, meter_refund_restores_credits_usage_and_outbox);
    tcase_add_test(tc, meter_follows_a_tier_edit_at_once);
    tcase_add_test(tc, meter_incarnation_changes_only_by_a_crash);
    tcase_add_loop_test(tc, meter_settle_tells_a_crash_apart, 0,
                        sizeof(settle_cases) / sizeof(settle_cases[0]));
    suite_add_tcase(s, tc);
    /* These move the cluster's clock (kb_now()); the fixture puts it back. */
    TCase *tw = tcase_create("window");
    tcase_set_timeout(tw, 60);
    tcase_add_unchecked_fixture(tw, NULL, kbt_clock_restore);
    tcase_add_loop_test(tw, meter_fast_window_ends_at_each_clock_bound, 0,
                        sizeof(window_cases) / sizeof(window_cases[0]));
    tcase_add_test(tw, meter_fast_window_cleared_by_a_cycle_change);
    tcase_add_test(tw, meter_rate_window_restarts_each_minute);
    suite_add_tcase(s, tw);
    return kb_check_run(s);
}
