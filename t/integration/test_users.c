/* test_users.c - token users this database has never seen (an outside issuer's, or a user
 * row deleted since): their first request on each user-token route creates exactly one users
 * row and one billing account (kb_user_ensure / kb_account_ensure, migration 0021), also when
 * the first requests arrive at once; a token whose email belongs to another account can own
 * nothing and is answered 401, with no row created.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "jwt_forge.h"
#include "kbt.h"
#include "kb_banned.h"

/* An HS256 token for sub with this email, as an outside issuer sharing the secret signs it. */
static char *
token_for(const char *sub, const char *email)
{
    long long now = (long long)time(NULL);
    char claims[512];
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"%s\",\"email\":\"%s\",\"aud\":\"authenticated\","
             "\"role\":\"authenticated\",\"iat\":%lld,\"exp\":%lld}",
             sub, email, now, now + 600);
    char *t = forge_jwt("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims, "HS256",
                        kbt_env("KB_JWT_SECRET"));
    kbt_secret_note(t);
    return t;
}

/* A UUID no user has (gen_random_uuid through the test's connection). */
static char *
fresh_uuid(PGconn *db)
{
    return kbt_sql_value(db, "SELECT gen_random_uuid()::text");
}

static long
count1(PGconn *db, const char *sql, const char *param)
{
    return kbt_sql_long1(db, sql, param);
}

typedef struct first_use {
    const char *method, *path, *body, *token;
    long status;
} first_use;

static void *
first_use_one(void *arg)
{
    first_use *x = arg;
    kbt_resp *r = kbt_auth_json(x->method, x->path, x->token, x->body);
    x->status = r->status;
    kbt_resp_free(r);
    return NULL;
}

/* Eight first requests at once, on three routes, for one unseen user: all answered, one
 * users row (with the token's email, lower case), one billing account, each key created. */
START_TEST(unseen_token_user_first_requests_at_once_make_one_user)
{
    enum { N = 8 };
    PGconn *db = kbt_db();
    char *sub = fresh_uuid(db);
    char *email = kbt_auth_email("Outside");
    char *tok = token_for(sub, email);
    first_use x[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        x[i] = (first_use){"GET", "/billing/status", NULL, tok, 0};
        if (i % 3 == 1)
            x[i] = (first_use){"POST", "/keys", "{\"name\":\"first\"}", tok, 0};
        else if (i % 3 == 2)
            x[i] = (first_use){"GET", "/keys/usage", NULL, tok, 0};
        pthread_create(&th[i], NULL, first_use_one, &x[i]);
    }
    int keys = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(x[i].status == 200, "%s %s: %ld", x[i].method, x[i].path, x[i].status);
        keys += strcmp(x[i].path, "/keys") == 0;
    }
    ck_assert_int_eq(count1(db, "SELECT count(*) FROM users WHERE id = $1::uuid", sub), 1);
    ck_assert_int_eq(
        count1(db, "SELECT count(*) FROM users WHERE id = $1::uuid AND email = lower(email)", sub),
        1);
    char *stored = kbt_sqlp_value(db, "SELECT email FROM users WHERE id = $1::uuid", 1, sub);
    char *want = kbt_sqlp_value(db, "SELECT lower($1)", 1, email);
    ck_assert_str_eq(stored, want);
    ck_assert_int_eq(
        count1(db, "SELECT count(*) FROM billing_accounts WHERE user_id = $1::uuid", sub), 1);
    ck_assert_int_eq(count1(db, "SELECT count(*) FROM api_keys WHERE user_id = $1::uuid", sub),
                     keys);
    /* The billing routes see the same rows (PAYG off needs no Stripe call to exist). */
    kbt_resp *r = kbt_auth_json("GET", "/billing/status", tok, NULL);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
    ck_assert_int_eq(
        count1(db, "SELECT count(*) FROM billing_accounts WHERE user_id = $1::uuid", sub), 1);
    free(stored);
    free(want);
    free(tok);
    free(email);
    free(sub);
    PQfinish(db);
}
END_TEST

/* The race made certain: another first use has inserted the users row and not committed
 * yet, two first requests wait on it, then it commits. Both must then find the row (a
 * statement that took its snapshot before the wait would not, and answer 401). */
START_TEST(first_use_that_waits_on_another_finds_its_row)
{
    PGconn *db = kbt_db(), *other = kbt_db();
    char *sub = fresh_uuid(db);
    char *email = kbt_auth_email("waits");
    char *tok = token_for(sub, email);
    kbt_sql_ok(other, "BEGIN");
    kbt_sqlp_ok(other,
                "INSERT INTO users (id, email, password_hash) VALUES ($1::uuid, lower($2),"
                " '!external')",
                2, sub, email);
    first_use x[2] = {{"POST", "/keys", "{\"name\":\"w\"}", tok, 0},
                      {"GET", "/billing/status", NULL, tok, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, first_use_one, &x[i]);
    ck_assert_msg(kbt_wait_until(kbt_two_workers_wait_on_lock, db, 20000),
                  "the two first requests never waited on the uncommitted users row");
    kbt_sql_ok(other, "COMMIT");
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(x[i].status == 200, "%s %s: %ld", x[i].method, x[i].path, x[i].status);
    }
    ck_assert_int_eq(count1(db, "SELECT count(*) FROM users WHERE id = $1::uuid", sub), 1);
    ck_assert_int_eq(
        count1(db, "SELECT count(*) FROM billing_accounts WHERE user_id = $1::uuid", sub), 1);
    ck_assert_int_eq(count1(db, "SELECT count(*) FROM api_keys WHERE user_id = $1::uuid", sub), 1);
    free(tok);
    free(email);
    free(sub);
    PQfinish(other);
    PQfinish(db);
}
END_TEST

/* A token user without an email gets '<id>@external.invalid'. */
START_TEST(unseen_token_user_without_email_gets_a_placeholder)
{
    PGconn *db = kbt_db();
    char *sub = fresh_uuid(db);
    char *tok = token_for(sub, "");
    kbt_resp *r = kbt_auth_json("GET", "/billing/status", tok, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    kbt_resp_free(r);
    char *stored = kbt_sqlp_value(db, "SELECT email FROM users WHERE id = $1::uuid", 1, sub);
    char want[80];
    snprintf(want, sizeof(want), "%s@external.invalid", sub);
    ck_assert_str_eq(stored, want);
    free(stored);
    free(tok);
    free(sub);
    PQfinish(db);
}
END_TEST

/* An unseen sub whose token carries another account's email: 401 on every route that would
 * create its rows, and no users row, billing account or key appears. */
START_TEST(token_user_with_anothers_email_owns_nothing)
{
    PGconn *db = kbt_db();
    char *email = kbt_auth_email("taken");
    char *owner_tok = NULL, *owner = NULL;
    kbt_auth_signup(email, "taken-password-1", &owner_tok, &owner);
    char *sub = fresh_uuid(db);
    char *tok = token_for(sub, email);
    static const struct {
        const char *method, *path, *body;
    } routes[] = {{"POST", "/keys", "{\"name\":\"x\"}"},
                  {"GET", "/billing/status", NULL},
                  {"POST", "/billing/payg", "{\"enable\":false}"},
                  {"POST", "/billing/portal", NULL}};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        kbt_resp *r = kbt_auth_json(routes[i].method, routes[i].path, tok, routes[i].body);
        ck_assert_msg(r->status == 401, "%s %s: %ld %s", routes[i].method, routes[i].path,
                      r->status, kb_buf_cstr(&r->body));
        kbt_assert_envelope(r, 401, "invalid_api_key");
        kbt_resp_free(r);
    }
    ck_assert_int_eq(count1(db, "SELECT count(*) FROM users WHERE id = $1::uuid", sub), 0);
    ck_assert_int_eq(
        count1(db, "SELECT count(*) FROM billing_accounts WHERE user_id = $1::uuid", sub), 0);
    ck_assert_int_eq(count1(db, "SELECT count(*) FROM api_keys WHERE user_id = $1::uuid", sub), 0);
    ck_assert_int_eq(count1(db, "SELECT count(*) FROM users WHERE email = lower($1)", email), 1);
    free(tok);
    free(sub);
    free(owner_tok);
    free(owner);
    free(email);
    PQfinish(db);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("users");
    TCase *tc = tcase_create("token users");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, unseen_token_user_first_requests_at_once_make_one_user);
    tcase_add_test(tc, first_use_that_waits_on_another_finds_its_row);
    tcase_add_test(tc, unseen_token_user_without_email_gets_a_placeholder);
    tcase_add_test(tc, token_user_with_anothers_email_owns_nothing);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
