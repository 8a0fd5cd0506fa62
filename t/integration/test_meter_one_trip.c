/* test_meter_one_trip.c - the one-round-trip charge (kb_meter_chain_stmt, migration 0028)
 * against the real database: inside the window the slow path stored it charges and
 * raises charge_xid; anywhere else it raises KB001, so the transaction begun ahead,
 * committed with it, commits nothing; charge_xid is never lowered, crash receipts keep
 * it, and kb_meter_settle() decides a charge journaled without its count (p_seq = 0),
 * across a crash of the server too. (The worker's side: test_metered_http.c.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "check_main.h"
#include "kb_meter.h"
#include "kbt.h"
#include "kb_banned.h"

#define ENDPOINT "/markets/{ticker}"
#define COST 5 /* each one-trip charge's; the slow charges cost 1 */

/* kb_meter_chain_stmt's parameters, in its order. */
enum { P_USER, P_KEY, P_COST, P_ENDPOINT, P_RID, P_LIFE, P_CYCLE, P_DAY, P_N };

/* A one-trip charge as the worker journals it before sending: its parameters and the
 * id of the transaction begun ahead it runs in. */
typedef struct charge {
    char v[P_N][64];
    char xid[32];
} charge;

static void
rid_new(charge *ch)
{
    unsigned char rnd[6];
    char hex[13];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    snprintf(ch->v[P_RID], sizeof(ch->v[P_RID]), "req_%s", hex);
}

/* Value of column name of r's first row (asserted to be there). */
static const char *
col(const PGresult *r, const char *name)
{
    int n = PQfnumber(r, name);
    ck_assert_msg(n >= 0 && PQntuples(r) > 0, "no column %s", name);
    return PQgetvalue(r, 0, n);
}

/* Each test starts 5 s into a minute of its own clock: the window the slow path stores
 * ends with the minute (0027), so no test meets its end unless it means to. */
static void
clock_pin(void)
{
    PGconn *c = kbt_db();
    char *at = kbt_sql_value(c, "SELECT date_trunc('minute', now()) + interval '1 minute'");
    kbt_clock_to(c, at, "5 seconds");
    free(at);
    PQfinish(c);
}

/* A slow-path charge of 1 credit, committed (kb_meter_slow_stmt as the worker sends it). */
static PGresult *
slow_charge(PGconn *c, const kbt_account *a)
{
    charge ch;
    rid_new(&ch);
    const char *p[] = {a->key_hash, "1", ENDPOINT, ch.v[P_RID]};
    kbt_sql_ok(c, "BEGIN");
    PGresult *r = PQexecParams(c, kb_meter_slow_stmt.sql, 4, NULL, p, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    kbt_sql_ok(c, "COMMIT");
    ck_assert_str_eq(col(r, "outcome"), "ok");
    return r;
}

/* A free account with 1000 credits, charged once by the slow path, which stores the
 * fast path's window; ch holds what the worker learned from that charge. */
static void
account_open(PGconn *c, kbt_account *a, charge *ch)
{
    kbt_account_new(c, a, "free", 1000, 0, false);
    PGresult *r = slow_charge(c, a);
    const char *from[P_N] = {[P_USER] = "user_id",
                             [P_KEY] = "key_id",
                             [P_LIFE] = "token",
                             [P_CYCLE] = "cycle_start",
                             [P_DAY] = "day"};
    memset(ch, 0, sizeof(*ch));
    for (int i = 0; i < P_N; i++)
        if (from[i] != NULL)
            snprintf(ch->v[i], sizeof(ch->v[i]), "%s", col(r, from[i]));
    snprintf(ch->v[P_COST], sizeof(ch->v[P_COST]), "%d", COST);
    snprintf(ch->v[P_ENDPOINT], sizeof(ch->v[P_ENDPOINT]), "%s", ENDPOINT);
    rid_new(ch);
    PQclear(r);
}

/* The transaction begun ahead, under a request id of its own; ch->xid its id. */
static void
chain_begin(PGconn *c, charge *ch)
{
    rid_new(ch);
    kbt_sql_ok(c, "BEGIN");
    char *x = kbt_sql_value(c, "SELECT pg_current_xact_id()::text");
    ck_assert_ptr_nonnull(x);
    snprintf(ch->xid, sizeof(ch->xid), "%s", x);
    free(x);
}

static void
chain_params(const charge *ch, const char *p[P_N])
{
    for (int i = 0; i < P_N; i++)
        p[i] = ch->v[i];
}

static PGresult *
chain_send(PGconn *c, const charge *ch)
{
    const char *p[P_N];
    chain_params(ch, p);
    return PQexecParams(c, kb_meter_chain_stmt.sql, P_N, NULL, p, NULL, NULL, 0);
}

/* The commit that rides with the statement (commit), or a rollback. */
static void
chain_end(PGconn *c, bool commit)
{
    kbt_sql_ok(c, commit ? "COMMIT" : "ROLLBACK");
}

/* A one-trip charge in a transaction of its own, asserted to answer rows rows (0: no
 * account row), then committed (commit) or rolled back. Its answer: the caller clears. */
static PGresult *
chain_run(PGconn *c, charge *ch, int rows, bool commit)
{
    chain_begin(c, ch);
    PGresult *r = chain_send(c, ch);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    ck_assert_int_eq(PQntuples(r), rows);
    chain_end(c, commit);
    return r;
}

static void
assert_fast_miss(const PGresult *r)
{
    ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR, "no error: %d rows", PQntuples(r));
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    ck_assert_msg(st != NULL && strcmp(st, "KB001") == 0, "SQLSTATE %s: %s", st ? st : "none",
                  PQresultErrorMessage(r));
}

/* A column of the account row as text (malloc'd, NULL for NULL or no row): the row as
 * JSON, the column's name a parameter (no SQL text is built). */
static char *
account_text(PGconn *c, const charge *ch, const char *column)
{
    return kbt_sqlp_value(c,
                          "SELECT to_jsonb(ba) ->> $2 FROM billing_accounts ba"
                          " WHERE ba.user_id = $1",
                          2, ch->v[P_USER], column);
}

/* A column of the account row as an integer (-1 for NULL); the row and the column
 * must exist. */
static long
account_long(PGconn *c, const charge *ch, const char *column)
{
    char *v = kbt_sqlp_value(c,
                             "SELECT CASE WHEN to_jsonb(ba) ? $2"
                             " THEN coalesce(to_jsonb(ba) ->> $2, '-1') END"
                             " FROM billing_accounts ba WHERE ba.user_id = $1",
                             2, ch->v[P_USER], column);
    ck_assert_msg(v != NULL, "no account row or no column %s", column);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

static void
assert_account_text(PGconn *c, const charge *ch, const char *column, const char *want)
{
    char *got = account_text(c, ch, column);
    ck_assert_msg(got != NULL && strcmp(got, want) == 0, "%s = %s, want %s", column,
                  got ? got : "NULL", want);
    free(got);
}

/* All that a charge changes in the account and its key's usage, as one text (malloc'd). */
static char *
account_state(PGconn *c, const charge *ch)
{
    return kbt_sqlp_value(c,
                          "SELECT (credits_used, rl_count, charge_seq, charge_xid, charge_request,"
                          " usage_credits, usage_requests, (SELECT (sum(u.requests),"
                          " sum(u.credits_used)) FROM api_key_usage u"
                          " WHERE u.api_key_id = usage_key))::text"
                          " FROM billing_accounts WHERE user_id = $1",
                          1, ch->v[P_USER]);
}

/* The state account_state() read before is unchanged. */
static void
assert_account_state(PGconn *c, const charge *ch, const char *before)
{
    char *now = account_state(c, ch);
    ck_assert_msg(now != NULL && strcmp(now, before) == 0, "account state %s, want %s",
                  now ? now : "NULL", before);
    free(now);
}

static void
assert_xact_status(PGconn *c, const char *xid, const char *want)
{
    char *st = kbt_sqlp_value(c, "SELECT pg_xact_status($1::xid8)", 1, xid);
    ck_assert_msg(st != NULL && strcmp(st, want) == 0, "xid %s is %s, want %s", xid,
                  st ? st : "NULL", want);
    free(st);
}

/* The key's usage (requests * 1e6 + credits) as the view api_key_usage sums it. */
static long
key_usage(PGconn *c, const charge *ch)
{
    return kbt_sql_long1(c,
                         "SELECT sum(requests) * 1000000 + sum(credits_used) FROM api_key_usage"
                         " WHERE api_key_id = $1",
                         ch->v[P_KEY]);
}

/* ---- the statement ---- */

/* Inside the window it charges like the fast path, and leaves the transaction's id
 * and the request in the account row (the result does not carry the id: the worker
 * knew it before sending). */
START_TEST(chain_charges_inside_the_window_and_records_its_xid)
{
    PGconn *c = kbt_db();
    kbt_account a;
    charge ch;
    account_open(c, &a, &ch);
    long used = account_long(c, &ch, "credits_used"), rl = account_long(c, &ch, "rl_count");
    long seq = account_long(c, &ch, "charge_seq"), usage = key_usage(c, &ch);
    PGresult *r = chain_run(c, &ch, 1, true);
    ck_assert_str_eq(col(r, "outcome"), "ok");
    ck_assert_int_eq(strtol(col(r, "seq"), NULL, 10), seq + 1);
    ck_assert_int_eq(strtol(col(r, "credits_used"), NULL, 10), used + COST);
    /* What the worker journaled before sending is not returned again. */
    const char *known[] = {"xid", "cycle_start", "day", "fast_until"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ck_assert_msg(PQfnumber(r, known[i]) < 0, "column %s returned", known[i]);
    PQclear(r);
    ck_assert_int_eq(account_long(c, &ch, "credits_used"), used + COST);
    ck_assert_int_eq(account_long(c, &ch, "rl_count"), rl + 1);
    ck_assert_int_eq(account_long(c, &ch, "charge_seq"), seq + 1);
    ck_assert_int_eq(key_usage(c, &ch), usage + 1000000 + COST);
    assert_account_text(c, &ch, "charge_xid", ch.xid);
    assert_account_text(c, &ch, "charge_request", ch.v[P_RID]);
    assert_xact_status(c, ch.xid, "committed");
    PQfinish(c);
}
END_TEST

/* One condition of the fast path broken, the rest as the slow charge left them. */
typedef struct miss_case {
    const char *what;
    const char *setup; /* SQL on the account ($1 its user id), NULL: none */
    int param;         /* the parameter given wrong, -1: none */
    const char *value; /* its value: a query on the account ($1 its user id) */
    bool late;         /* the clock is moved past the window's end */
} miss_case;

static const miss_case miss_cases[] = {
    {"another UTC day", NULL, P_DAY,
     "SELECT (usage_day + 1)::text FROM billing_accounts WHERE user_id = $1::uuid", false},
    {"another cycle", NULL, P_CYCLE,
     "SELECT (billing_cycle_start - interval '1 month')::text FROM billing_accounts"
     " WHERE user_id = $1::uuid",
     false},
    {"credits exhausted",
     "UPDATE billing_accounts SET credits_total = credits_used WHERE user_id = $1::uuid", -1, NULL,
     false},
    {"one credit short",
     "UPDATE billing_accounts SET credits_total = credits_used + 4 WHERE user_id = $1::uuid", -1,
     NULL, false},
    {"rate limit reached",
     "UPDATE billing_accounts SET rl_count = rl_limit WHERE user_id = $1::uuid", -1, NULL, false},
    {"another life of the server", NULL, P_LIFE,
     "SELECT gen_random_uuid()::text FROM billing_accounts WHERE user_id = $1::uuid", false},
    {"another key of the same user", NULL, P_KEY,
     "INSERT INTO api_keys (user_id, key_hash, key_prefix) VALUES ($1::uuid,"
     " encode(sha256(gen_random_uuid()::text::bytea), 'hex'), 'kb-othr') RETURNING id::text",
     false},
    {"another endpoint", NULL, P_ENDPOINT,
     "SELECT '/markets'::text FROM billing_accounts WHERE user_id = $1::uuid", false},
    {"the window over", NULL, -1, NULL, true},
};

/* Outside the fast path the statement raises KB001, so the transaction begun ahead
 * aborts and the commit riding with it commits nothing. Each case's account is
 * charged by the statement just before its one change. */
START_TEST(chain_raises_kb001_and_commits_nothing_outside_the_fast_path)
{
    const miss_case *k = &miss_cases[_i];
    PGconn *c = kbt_db();
    kbt_account a;
    charge ch;
    account_open(c, &a, &ch);
    charge probe = ch; /* it charges before the change (rolled back) */
    PQclear(chain_run(c, &probe, 1, false));
    if (k->setup != NULL)
        kbt_sqlp_ok(c, k->setup, 1, ch.v[P_USER]);
    if (k->param >= 0) {
        char *v = kbt_sqlp_value(c, k->value, 1, ch.v[P_USER]);
        ck_assert_ptr_nonnull(v);
        snprintf(ch.v[k->param], sizeof(ch.v[k->param]), "%s", v);
        free(v);
    }
    if (k->late) {
        char *until = account_text(c, &ch, "fast_until");
        ck_assert_ptr_nonnull(until);
        kbt_clock_to(c, until, "1 second");
        free(until);
    }
    char *before = account_state(c, &ch);
    chain_begin(c, &ch);
    PGresult *r = chain_send(c, &ch);
    assert_fast_miss(r);
    PQclear(r);
    chain_end(c, true);
    assert_xact_status(c, ch.xid, "aborted");
    assert_account_state(c, &ch, before);
    free(before);
    PQfinish(c);
}
END_TEST

/* No account row: nothing to charge and nothing to raise (the worker then takes the
 * slow path, which says the key is invalid). */
START_TEST(chain_takes_no_row_of_an_unknown_account)
{
    PGconn *c = kbt_db();
    kbt_account a;
    charge ch;
    account_open(c, &a, &ch);
    char *before = account_state(c, &ch);
    charge other = ch;
    char *user = kbt_sql_value(c, "SELECT gen_random_uuid()::text");
    snprintf(other.v[P_USER], sizeof(other.v[P_USER]), "%s", user);
    PQclear(chain_run(c, &other, 0, true));
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM billing_accounts WHERE user_id = $1", user), 0);
    assert_account_state(c, &ch, before); /* its key's account untouched */
    free(before);
    free(user);
    PQfinish(c);
}
END_TEST

/* ---- charge_xid ---- */

typedef struct lock_wait {
    PGconn *monitor;
    char pid[16];
} lock_wait;

static bool
backend_waits_on_lock(void *arg)
{
    lock_wait *w = arg;
    return kbt_sql_long1(w->monitor,
                         "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int"
                         " AND wait_event_type = 'Lock'",
                         w->pid) == 1;
}

/* Two charges of one account in transactions A (its id handed out first) and B: B
 * commits first, and A's statement runs after that (_i = 0) or waits on B's row lock
 * and is re-checked on B's row version (_i = 1). A commits last; charge_xid stays B's. */
START_TEST(charge_xid_is_never_lowered_by_an_older_transaction)
{
    PGconn *ca = kbt_db(), *cb = kbt_db();
    kbt_account acct;
    charge a, b;
    account_open(ca, &acct, &a);
    b = a;
    long used = account_long(ca, &a, "credits_used"), seq = account_long(ca, &a, "charge_seq");
    chain_begin(ca, &a);
    chain_begin(cb, &b);
    ck_assert_msg(strtoull(a.xid, NULL, 10) < strtoull(b.xid, NULL, 10), "xids %s, %s", a.xid,
                  b.xid);
    PGresult *r = chain_send(cb, &b);
    ck_assert_int_eq(PQntuples(r), 1);
    PQclear(r);
    if (_i == 0) {
        chain_end(cb, true);
        r = chain_send(ca, &a);
    } else {
        const char *p[P_N];
        chain_params(&a, p);
        ck_assert_int_eq(
            PQsendQueryParams(ca, kb_meter_chain_stmt.sql, P_N, NULL, p, NULL, NULL, 0), 1);
        lock_wait w = {kbt_db(), ""};
        snprintf(w.pid, sizeof(w.pid), "%d", PQbackendPID(ca));
        ck_assert_msg(kbt_wait_until(backend_waits_on_lock, &w, 10000), "A never waited on B");
        PQfinish(w.monitor);
        chain_end(cb, true);
        r = PQgetResult(ca);
        PGresult *rest;
        while ((rest = PQgetResult(ca)) != NULL)
            PQclear(rest);
    }
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    ck_assert_int_eq(PQntuples(r), 1);
    ck_assert_int_eq(strtol(col(r, "seq"), NULL, 10), seq + 2);
    PQclear(r);
    chain_end(ca, true);
    assert_account_text(ca, &a, "charge_xid", b.xid);
    assert_account_text(ca, &a, "charge_request", a.v[P_RID]);
    ck_assert_int_eq(account_long(ca, &a, "credits_used"), used + 2 * COST);
    PQfinish(ca);
    PQfinish(cb);
}
END_TEST

/* A crash of the server as test_meter.c has it: recovery empties the unlogged
 * meter_incarnation (its triggers keep anyone else from it), so the next
 * kb_incarnation() is a new life. */
static void
crash(PGconn *c)
{
    kbt_sql_ok(c, "SET session_replication_role = replica");
    kbt_sql_ok(c, "DELETE FROM meter_incarnation");
    kbt_sql_ok(c, "RESET session_replication_role");
}

/* The footprint a crash receipt keeps includes the charge_xid of the life that
 * ended, written before the new life's first charge changes the row. */
START_TEST(crash_receipt_keeps_the_charge_xid_of_the_life_that_ended)
{
    PGconn *c = kbt_db();
    kbt_account a;
    charge ch;
    account_open(c, &a, &ch);
    PQclear(chain_run(c, &ch, 1, true));
    crash(c);
    PQclear(slow_charge(c, &a));
    char *xid = kbt_sqlp_value(c,
                               "SELECT xid::text FROM meter_crash_receipts"
                               " WHERE user_id = $1 AND token = $2::uuid AND request_id = $3",
                               3, ch.v[P_USER], ch.v[P_LIFE], ch.v[P_RID]);
    ck_assert_msg(xid != NULL && strcmp(xid, ch.xid) == 0, "receipt xid %s, want %s",
                  xid ? xid : "NULL", ch.xid);
    free(xid);
    assert_account_text(c, &ch, "charge_xid", ch.xid); /* the slow path leaves it */
    PQfinish(c);
}
END_TEST

/* ---- settling a charge journaled without its count (p_seq = 0) ---- */

typedef struct settle_case {
    const char *what;
    bool before;  /* a one-trip charge of the account committed before ours (charge_xid) */
    bool gone;    /* the user (and with it the account row) is deleted before ours: it
                   * updates nothing */
    bool commits; /* our transaction commits */
    bool later;   /* a one-trip charge of the account commits after ours, same life */
    bool crash;   /* the server's life ends before settling */
    bool after;   /* a slow charge of the new life moves the footprint into a receipt */
    bool future;  /* ours is settled under an id pg_xact_status() cannot answer for: one
                   * past any the new life has handed out (it raises), as an id of the old
                   * life that never reached the disk is; only the footprint decides */
    const char *want;
} settle_case;

static const settle_case settle_cases[] = {
    {.what = "same life, committed", .commits = true, .want = "refunded"},
    {.what = "same life, aborted", .want = "not_charged"},
    {.what = "same life, committed with no account row",
     .gone = true,
     .commits = true,
     .want = "not_charged"},
    {.what = "crash, ours the row's last request",
     .commits = true,
     .crash = true,
     .future = true,
     .want = "refunded"},
    {.what = "crash, ours the receipt's last request",
     .commits = true,
     .crash = true,
     .after = true,
     .future = true,
     .want = "refunded"},
    {.what = "crash, no charge_xid", .crash = true, .future = true, .want = "not_charged"},
    {.what = "crash, the row's charge_xid below ours",
     .before = true,
     .crash = true,
     .future = true,
     .want = "not_charged"},
    {.what = "crash, the receipt's charge_xid below ours",
     .before = true,
     .crash = true,
     .after = true,
     .future = true,
     .want = "not_charged"},
    {.what = "crash, a later charge_xid, ours committed",
     .commits = true,
     .later = true,
     .crash = true,
     .want = "refunded"},
    {.what = "crash, a later charge_xid, ours aborted",
     .later = true,
     .crash = true,
     .want = "not_charged"},
    {.what = "crash, a later charge_xid in the receipt, ours committed",
     .commits = true,
     .later = true,
     .crash = true,
     .after = true,
     .want = "refunded"},
    {.what = "crash, a later charge_xid in the receipt, ours aborted",
     .later = true,
     .crash = true,
     .after = true,
     .want = "not_charged"},
};

/* kb_meter_settle() for ch under xid, seq 0, as the worker's journal calls it. */
static char *
settle(PGconn *c, const charge *ch, const char *xid)
{
    const char *p[] = {xid,          ch->v[P_LIFE], ch->v[P_RID],      ch->v[P_USER],
                       ch->v[P_KEY], ch->v[P_COST], ch->v[P_ENDPOINT], ch->v[P_CYCLE],
                       ch->v[P_DAY]};
    PGresult *r = PQexecParams(c,
                               "SELECT kb_meter_settle($1::xid8, $2::uuid, 0, $3, $4::uuid,"
                               " $5::uuid, $6::integer, $7, $8::timestamptz, $9::date, NULL)",
                               9, NULL, p, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* An id far past any the server has handed out, which pg_xact_status() refuses. */
static char *
future_xid(PGconn *c)
{
    char *x = kbt_sql_value(
        c, "SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::numeric + 1000000000)::text");
    PGresult *r = PQexecParams(c, "SELECT pg_xact_status($1::xid8)", 1, NULL,
                               (const char *const[]){x}, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR &&
                      strstr(PQresultErrorMessage(r), "in the future") != NULL,
                  "pg_xact_status(%s) answered: %s", x, PQresultErrorMessage(r));
    PQclear(r);
    return x;
}

/* Each case: a slow charge, perhaps a one-trip charge before ours, ours (committed or
 * not), perhaps a later one, perhaps a crash and a slow charge of the new life; then
 * ours is settled twice (a retry changes nothing), and the credits and meter_refunds
 * say whether it was given back, exactly once. */
START_TEST(settle_decides_a_one_trip_charge_without_its_count)
{
    const settle_case *k = &settle_cases[_i];
    PGconn *c = kbt_db();
    kbt_account a;
    charge ch;
    account_open(c, &a, &ch);
    if (k->before)
        PQclear(chain_run(c, &ch, 1, true));
    charge ours = ch;
    if (k->gone)
        kbt_sqlp_ok(c, "DELETE FROM users WHERE id = $1", 1, ch.v[P_USER]);
    PQclear(chain_run(c, &ours, k->gone ? 0 : 1, k->commits));
    if (k->later)
        PQclear(chain_run(c, &ch, 1, true));
    if (k->crash)
        crash(c);
    if (k->after)
        PQclear(slow_charge(c, &a));
    char *xid = k->future ? future_xid(c) : strdup(ours.xid);
    bool row = !k->gone;
    long used = row ? account_long(c, &ours, "credits_used") : -1;
    bool refunded = strcmp(k->want, "refunded") == 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        /* Settling again (another worker, a retry) changes nothing. */
        char *got = settle(c, &ours, xid);
        const char *want = attempt == 1 && refunded ? "done" : k->want;
        ck_assert_msg(strcmp(got, want) == 0, "%s: settle %d said %s, want %s", k->what,
                      attempt + 1, got, want);
        free(got);
    }
    if (row)
        ck_assert_int_eq(account_long(c, &ours, "credits_used"), used - (refunded ? COST : 0));
    else
        ck_assert_int_eq(kbt_sql_long1(c,
                                       "SELECT count(*) FROM billing_accounts WHERE user_id = $1",
                                       ours.v[P_USER]),
                         0);
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1",
                                   ours.v[P_RID]),
                     refunded ? 1 : 0);
    free(xid);
    PQfinish(c);
}
END_TEST

/* A one-trip charge that found no account row commits nothing, and settling it must
 * not refund a row made since (found by this file: a deleted row, made again by the
 * slow path for the user's live key, was refunded). So an account row goes only with
 * its user (migration 0028), whose keys go too: nothing can make the row again. */
START_TEST(an_account_row_goes_only_with_its_user)
{
    PGconn *c = kbt_db();
    kbt_account a;
    charge ch;
    account_open(c, &a, &ch);
    long seq = account_long(c, &ch, "charge_seq");
    PGresult *r = PQexecParams(c, "DELETE FROM billing_accounts WHERE user_id = $1", 1, NULL,
                               (const char *const[]){ch.v[P_USER]}, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23001");
    PQclear(r);
    /* The same row, still charged by the user's key. */
    PQclear(slow_charge(c, &a));
    ck_assert_int_eq(account_long(c, &ch, "charge_seq"), seq + 1);
    /* The user's delete takes the row and the keys with it... */
    kbt_sqlp_ok(c, "DELETE FROM users WHERE id = $1", 1, ch.v[P_USER]);
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT count(*) FROM billing_accounts WHERE user_id = $1",
                                   ch.v[P_USER]),
                     0);
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM api_keys WHERE user_id = $1", ch.v[P_USER]), 0);
    /* ...so no charge makes it again. */
    rid_new(&ch);
    const char *p[] = {a.key_hash, "1", ENDPOINT, ch.v[P_RID]};
    r = PQexecParams(c, kb_meter_slow_stmt.sql, 4, NULL, p, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    ck_assert_str_eq(col(r, "outcome"), "invalid_key");
    PQclear(r);
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT count(*) FROM billing_accounts WHERE user_id = $1",
                                   ch.v[P_USER]),
                     0);
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("meter_one_trip");
    /* Every test pins the cluster's clock (kb_now()); the fixture puts it back. */
    TCase *tc = tcase_create("sql");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, clock_pin, NULL);
    tcase_add_unchecked_fixture(tc, NULL, kbt_clock_restore);
    tcase_add_test(tc, chain_charges_inside_the_window_and_records_its_xid);
    tcase_add_loop_test(tc, chain_raises_kb001_and_commits_nothing_outside_the_fast_path, 0,
                        sizeof(miss_cases) / sizeof(miss_cases[0]));
    tcase_add_test(tc, chain_takes_no_row_of_an_unknown_account);
    tcase_add_loop_test(tc, charge_xid_is_never_lowered_by_an_older_transaction, 0, 2);
    tcase_add_test(tc, crash_receipt_keeps_the_charge_xid_of_the_life_that_ended);
    tcase_add_loop_test(tc, settle_decides_a_one_trip_charge_without_its_count, 0,
                        sizeof(settle_cases) / sizeof(settle_cases[0]));
    tcase_add_test(tc, an_account_row_goes_only_with_its_user);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
