/* test_auth.c - signup, login and user-token checks through nginx (API.md §2, §5.3, §5.4). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "check_main.h"
#include "jwt_forge.h"
#include "kb_jwt.h"
#include "kbt.h"
#include "kb_banned.h"

#define PW "correct horse battery"

static kb_jwt_verifier
stack_verifier(void)
{
    kb_jwt_verifier v;
    memset(&v, 0, sizeof(v));
    v.hs_secret = (const unsigned char *)kbt_env("KB_JWT_SECRET");
    v.hs_secret_len = strlen((const char *)v.hs_secret);
    return v;
}

static kbt_resp *
creds(const char *path, const char *email, const char *password)
{
    char body[1024];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
    kbt_resp *r = NULL;
    for (int i = 0; i < 200; i++) { /* busy hash slots answer 503: retry */
        kbt_resp_free(r);
        r = kbt_auth_json("POST", path, NULL, body);
        if (r->status != 503)
            break;
    }
    return r;
}

START_TEST(signup_and_login_answer_tokens_with_supabase_claims)
{
    char *email = kbt_auth_email("Claims");
    kbt_resp *r = creds("/auth/signup", email, PW);
    ck_assert_msg(r->status == 200, "%s", kb_buf_cstr(&r->body));
    const char *order[] = {"access_token", "refresh_token", "user_id", "request_id"};
    const cJSON *f = r->json->child;
    for (size_t i = 0; i < 4; i++, f = f->next) {
        ck_assert_str_eq(f->string, order[i]);
        ck_assert(cJSON_IsString(f));
    }
    ck_assert_ptr_null(f);
    kbt_assert_request_id(r);
    char *uid = strdup(kbt_auth_str(r, "user_id"));
    ck_assert_uint_eq(strlen(uid), 36);
    kb_jwt_verifier v = stack_verifier();
    kb_jwt_claims c;
    const char *why = NULL;
    const char *tok = kbt_auth_str(r, "access_token");
    long long now = (long long)time(NULL);
    ck_assert_msg(kb_jwt_verify(&v, tok, strlen(tok), now, &c, &why), "%s", why);
    ck_assert_str_eq(c.sub, uid);
    ck_assert_str_eq(c.role, "authenticated");
    ck_assert_int_eq(c.exp - c.iat, 3600);
    ck_assert(c.iat >= now - 60 && c.iat <= now + 60);
    for (char *p = email; *p; p++) /* stored and signed lower-cased */
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    ck_assert_str_eq(c.email, email);
    kbt_resp_free(r);

    /* Login with any letter case of the email; the token works on /keys. */
    email[0] = 'C';
    r = creds("/auth/login", email, PW);
    ck_assert_msg(r->status == 200, "%s", kb_buf_cstr(&r->body));
    ck_assert_str_eq(kbt_auth_str(r, "user_id"), uid);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(r->json, "refresh_token")));
    kbt_resp *k = kbt_auth_json("GET", "/keys", kbt_auth_str(r, "access_token"), NULL);
    ck_assert_int_eq(k->status, 200);
    kbt_resp_free(k);
    kbt_resp_free(r);

    /* Signup makes no billing account and no key (API.md §7.17). */
    PGconn *db = kbt_db();
    char *n = kbt_sqlp_value(db,
                             "SELECT (SELECT count(*) FROM api_keys WHERE user_id = $1) + "
                             "(SELECT count(*) FROM billing_accounts WHERE user_id = $1)",
                             1, uid);
    ck_assert_str_eq(n, "0");
    free(n);
    /* The password is stored as an argon2id hash only. */
    n = kbt_sqlp_value(db, "SELECT password_hash LIKE '$argon2id$%' FROM users WHERE id = $1", 1,
                       uid);
    ck_assert_str_eq(n, "t");
    free(n);
    PQfinish(db);
    free(uid);
    free(email);
}
END_TEST

START_TEST(signup_refuses_taken_email_in_any_case_and_weak_passwords)
{
    char *email = kbt_auth_email("dup");
    kbt_auth_signup(email, PW, NULL, NULL);
    for (char *p = email; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    kbt_resp *r = creds("/auth/signup", email, "another password");
    kbt_assert_envelope(r, 409, "user_already_exists");
    kbt_resp_free(r);

    char *e2 = kbt_auth_email("weak");
#define E_ACUTE "\xc3\xa9"
    const char *weak[] = {"", "1234567", E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE};
    for (size_t i = 0; i < 3; i++) {
        r = creds("/auth/signup", e2, weak[i]);
        kbt_assert_envelope(r, 422, "weak_password");
        kbt_resp_free(r);
    }
    /* Eight characters are enough, even when they are multi-byte. */
    r = creds("/auth/signup", e2, E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE E_ACUTE);
    ck_assert_msg(r->status == 200, "%s", kb_buf_cstr(&r->body));
    kbt_resp_free(r);
    free(email);
    free(e2);
}
END_TEST

START_TEST(login_failures_are_all_invalid_credentials)
{
    char *email = kbt_auth_email("login");
    kbt_auth_signup(email, PW, NULL, NULL);
    char *unknown = kbt_auth_email("nobody");
    const char *cases[][2] = {
        {email, "wrong password"}, {email, ""}, {email, PW " "}, {unknown, PW}, {"", PW},
    };
    for (size_t i = 0; i < 5; i++) {
        kbt_resp *r = creds("/auth/login", cases[i][0], cases[i][1]);
        kbt_assert_envelope(r, 401, "invalid_credentials");
        kbt_resp_free(r);
    }
    free(email);
    free(unknown);
}
END_TEST

/* ---- concurrency ---- */

typedef struct race {
    const char *path;
    const char *email;
    bool retry_busy;
    long status;
    char *retry_after;
} race;

static void *
race_one(void *arg)
{
    race *x = arg;
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", x->email, PW);
    long deadline = kbt_now_ms() + 20000;
    kbt_resp *r = NULL;
    do {
        kbt_resp_free(r);
        r = kbt_auth_json("POST", x->path, NULL, body);
    } while (x->retry_busy && r->status == 503 && kbt_now_ms() < deadline);
    x->status = r->status;
    if (r->status == 503) {
        kbt_assert_envelope(r, 503, "service_unavailable");
        x->retry_after = kbt_header(r, "Retry-After");
    }
    kbt_resp_free(r);
    return NULL;
}

START_TEST(concurrent_duplicate_signups_create_one_user)
{
    enum { N = 6 };
    char *email = kbt_auth_email("race");
    race x[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        x[i] = (race){"/auth/signup", email, true, 0, NULL};
        pthread_create(&th[i], NULL, race_one, &x[i]);
    }
    int ok = 0, conflict = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += x[i].status == 200;
        conflict += x[i].status == 409;
    }
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(conflict, N - 1);
    PGconn *db = kbt_db();
    char *n = kbt_sqlp_value(db, "SELECT count(*) FROM users WHERE email = lower($1)", 1, email);
    ck_assert_str_eq(n, "1");
    free(n);
    PQfinish(db);
    free(email);
}
END_TEST

static volatile int burst_done;

static void *
health_loop(void *arg)
{
    int *bad = arg;
    int n = 0;
    while (!burst_done || n == 0) {
        kbt_resp *r = kbt_get("/health");
        if (r->status != 200)
            (*bad)++;
        kbt_resp_free(r);
        n++;
    }
    return NULL;
}

START_TEST(login_burst_answers_503_with_retry_after_and_health_keeps_answering)
{
    enum { N = 16 };
    char *email = kbt_auth_email("burst");
    kbt_auth_signup(email, PW, NULL, NULL);
    int busy = 0;
    for (int round = 0; round < 3 && busy == 0; round++) {
        race x[N];
        pthread_t th[N], hth;
        int health_bad = 0;
        burst_done = 0;
        pthread_create(&hth, NULL, health_loop, &health_bad);
        for (int i = 0; i < N; i++) {
            x[i] = (race){"/auth/login", email, false, 0, NULL};
            pthread_create(&th[i], NULL, race_one, &x[i]);
        }
        int ok = 0;
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            ck_assert_msg(x[i].status == 200 || x[i].status == 503, "status %ld", x[i].status);
            ok += x[i].status == 200;
            if (x[i].status == 503) {
                busy++;
                ck_assert_msg(x[i].retry_after != NULL, "503 without Retry-After");
                ck_assert_str_eq(x[i].retry_after, "1");
            }
            free(x[i].retry_after);
        }
        burst_done = 1;
        pthread_join(hth, NULL);
        ck_assert_int_eq(health_bad, 0);
        ck_assert_int_ge(ok, 1);
    }
    ck_assert_msg(busy > 0, "no login was refused with 503 in three bursts of %d", N);
    free(email);
}
END_TEST

/* ---- token checks on a user route ---- */

#define UUID "0f8fad5b-d9cb-469f-a165-70867728950e"

typedef enum tk {
    T_NONE,
    T_BASIC,
    T_EMPTY,
    T_KEY,
    T_KEY_LOWER,
    T_GOOD_LOWER,
    T_GOOD_CAPS,
    T_EXPIRED,
    T_EXPIRED_IN_LEEWAY,
    T_OTHER_SECRET,
    T_ALG_NONE,
    T_ALG_NONE_KEEP_SIG,
    T_HS512,
    T_AUD,
    T_SUB_NOT_UUID,
    T_GARBAGE,
    T_PADDED,
    T_HUGE
} tk;

typedef struct tcase_ {
    tk kind;
    long status;
    const char *code;
} tcase_;

static const tcase_ token_cases[] = {
    {T_NONE, 401, "invalid_api_key"},
    {T_BASIC, 401, "invalid_api_key"},
    {T_EMPTY, 401, "invalid_api_key"},
    {T_KEY, 401, "invalid_auth_method"},
    {T_KEY_LOWER, 401, "invalid_auth_method"},
    {T_GOOD_LOWER, 200, NULL},
    {T_GOOD_CAPS, 200, NULL},
    {T_EXPIRED, 401, "invalid_api_key"},
    {T_EXPIRED_IN_LEEWAY, 200, NULL},
    {T_OTHER_SECRET, 401, "invalid_api_key"},
    {T_ALG_NONE, 401, "invalid_api_key"},
    {T_ALG_NONE_KEEP_SIG, 401, "invalid_api_key"},
    {T_HS512, 401, "invalid_api_key"},
    {T_AUD, 401, "invalid_api_key"},
    {T_SUB_NOT_UUID, 401, "invalid_api_key"},
    {T_GARBAGE, 401, "invalid_api_key"},
    {T_PADDED, 401, "invalid_api_key"},
    {T_HUGE, 401, "invalid_api_key"},
};

static char *
signed_with(const char *secret, const char *hdr, long long exp_in, const char *aud, const char *sub)
{
    long long now = (long long)time(NULL);
    char *c = forge_claims(sub, now, now + exp_in, aud);
    char *t = forge_jwt(hdr, c, "HS256", secret);
    free(c);
    return t;
}

START_TEST(user_routes_check_tokens_in_api_md_order)
{
    const tcase_ *c = &token_cases[_i];
    const char *secret = kbt_env("KB_JWT_SECRET");
    const char *hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *tok = NULL;
    char line[20000];
    const char *h[2] = {line, NULL};
    switch (c->kind) {
    case T_NONE:
        h[0] = NULL;
        break;
    case T_BASIC:
        snprintf(line, sizeof(line), "Authorization: Basic dXNlcjpwYXNz");
        break;
    case T_EMPTY:
        snprintf(line, sizeof(line), "Authorization: Bearer ");
        break;
    case T_KEY:
        snprintf(line, sizeof(line), "Authorization: Bearer kb-%s",
                 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        break;
    case T_KEY_LOWER:
        snprintf(line, sizeof(line), "Authorization: bearer   kb-whatever  ");
        break;
    case T_GOOD_LOWER:
    case T_GOOD_CAPS:
        tok = signed_with(secret, hs, 600, "authenticated", UUID);
        snprintf(line, sizeof(line), "Authorization: %s %s",
                 c->kind == T_GOOD_LOWER ? "bearer" : "BEARER", tok);
        break;
    case T_EXPIRED:
    case T_EXPIRED_IN_LEEWAY:
        tok = signed_with(secret, hs, c->kind == T_EXPIRED ? -60 : -10, "authenticated", UUID);
        break;
    case T_OTHER_SECRET:
        tok = signed_with("another-secret-another-secret-another", hs, 600, "authenticated", UUID);
        break;
    case T_ALG_NONE: {
        long long now = (long long)time(NULL);
        char *cl = forge_claims(UUID, now, now + 600, "authenticated");
        tok = forge_jwt("{\"alg\":\"none\",\"typ\":\"JWT\"}", cl, "none", NULL);
        free(cl);
        break;
    }
    case T_ALG_NONE_KEEP_SIG: {
        /* A valid token whose header is swapped for alg none, signature kept. */
        char *good = signed_with(secret, hs, 600, "authenticated", UUID);
        char *h2 = forge_b64("{\"alg\":\"none\"}", 14);
        size_t n = strlen(good) + strlen(h2) + 1;
        tok = malloc(n);
        snprintf(tok, n, "%s%s", h2, strchr(good, '.'));
        free(good);
        free(h2);
        break;
    }
    case T_HS512:
        tok = signed_with(secret, "{\"alg\":\"HS512\"}", 600, "authenticated", UUID);
        break;
    case T_AUD:
        tok = signed_with(secret, hs, 600, "anon", UUID);
        break;
    case T_SUB_NOT_UUID:
        tok = signed_with(secret, hs, 600, "authenticated", "user-1");
        break;
    case T_GARBAGE:
        tok = strdup("not.a.jwt");
        break;
    case T_PADDED: {
        char *good = signed_with(secret, hs, 600, "authenticated", UUID);
        size_t n = strlen(good) + 3;
        tok = malloc(n);
        snprintf(tok, n, "%s==", good);
        free(good);
        break;
    }
    case T_HUGE:
        tok = malloc(KB_JWT_MAX_LEN + 100);
        memset(tok, 'a', KB_JWT_MAX_LEN + 99);
        tok[KB_JWT_MAX_LEN + 99] = '\0';
        break;
    }
    if (tok != NULL && c->kind != T_GOOD_LOWER && c->kind != T_GOOD_CAPS)
        snprintf(line, sizeof(line), "Authorization: Bearer %s", tok);
    const char *paths[] = {"/keys", "/keys/usage"};
    for (int i = 0; i < 2; i++) {
        kbt_resp *r = kbt_request("GET", paths[i], h[0] ? h : NULL, NULL, 0);
        if (c->status == 200)
            ck_assert_msg(r->status == 200, "case %d: %ld %s", _i, r->status,
                          kb_buf_cstr(&r->body));
        else
            kbt_assert_envelope(r, c->status, c->code);
        kbt_resp_free(r);
    }
    free(tok);
}
END_TEST

/* ---- JWKS (Supabase-style ES256) ---- */

static char jwks_path[512];

static void
set_app_env_jwks(bool on)
{
    kbt_app_env_set("KB_JWT_JWKS_FILE", on ? jwks_path : NULL);
}

static bool
healthy(void *arg)
{
    (void)arg;
    kbt_resp *r = kbt_get("/health");
    bool ok = r->status == 200;
    kbt_resp_free(r);
    return ok;
}

static bool
jwks_configured(void)
{
    char envf[512], line[1024];
    bool on = false;
    snprintf(envf, sizeof(envf), "%s/app.env", kbt_env("KB_STACK_DIR"));
    FILE *f = fopen(envf, "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        on = on || strncmp(line, "KB_JWT_JWKS_FILE=", 17) == 0;
    if (f != NULL)
        fclose(f);
    return on;
}

/* Runs in the test's parent too (unchecked teardown), so a failed test
 * never leaves the shared stack configured with the test's JWKS. */
static void
jwks_off(void)
{
    if (jwks_configured()) {
        set_app_env_jwks(false);
        kbt_wait_until(healthy, NULL, 30000);
    }
}

static void
jwks_setup(void)
{
    snprintf(jwks_path, sizeof(jwks_path), "%s/jwks.json", kbt_env("KB_STACK_DIR"));
}

START_TEST(jwks_es256_tokens_accepted_when_configured)
{
    EVP_PKEY *ec = forge_ec_key(), *other = forge_ec_key();
    char *doc = forge_jwks(ec, "supabase-key-1");
    FILE *f = fopen(jwks_path, "w");
    ck_assert(f != NULL);
    fputs(doc, f);
    fclose(f);
    set_app_env_jwks(true);
    ck_assert(kbt_wait_until(healthy, NULL, 30000));

    /* A user this database has never seen, as a Supabase project would send. */
    const char *sub = "7d0e8c2a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
    long long now = (long long)time(NULL);
    char claims[512];
    snprintf(claims, sizeof(claims),
             "{\"sub\":\"%s\",\"email\":\"Supa@Example.test\",\"aud\":\"authenticated\","
             "\"role\":\"authenticated\",\"iat\":%lld,\"exp\":%lld,\"session_id\":\"s\"}",
             sub, now, now + 600);
    char *good = forge_jwt("{\"alg\":\"ES256\",\"kid\":\"supabase-key-1\",\"typ\":\"JWT\"}", claims,
                           "ES256", ec);
    kbt_resp *r = kbt_auth_json("POST", "/keys", good, "{\"name\":\"from supabase\"}");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    kbt_resp_free(r);
    r = kbt_auth_json("GET", "/keys", good, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r->json, "data")), 1);
    kbt_resp_free(r);
    PGconn *db = kbt_db();
    char *v = kbt_sqlp_value(db, "SELECT email FROM users WHERE id = $1", 1, sub);
    ck_assert_str_eq(v, "supa@example.test");
    free(v);
    PQfinish(db);

    /* Refused: another key, unknown kid, alg confusion with the public JWKS as secret. */
    char *bad[3];
    bad[0] = forge_jwt("{\"alg\":\"ES256\",\"kid\":\"supabase-key-1\"}", claims, "ES256", other);
    bad[1] = forge_jwt("{\"alg\":\"ES256\",\"kid\":\"nope\"}", claims, "ES256", ec);
    bad[2] = forge_jwt("{\"alg\":\"HS256\",\"kid\":\"supabase-key-1\"}", claims, "HS256", doc);
    for (int i = 0; i < 3; i++) {
        r = kbt_auth_json("GET", "/keys", bad[i], NULL);
        kbt_assert_envelope(r, 401, "invalid_api_key");
        kbt_resp_free(r);
        free(bad[i]);
    }
    /* Our own HS256 tokens keep working alongside. */
    char *email = kbt_auth_email("jwks");
    char *tok = NULL;
    kbt_auth_signup(email, PW, &tok, NULL);
    r = kbt_auth_json("GET", "/keys", tok, NULL);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);

    jwks_off();
    r = kbt_auth_json("GET", "/keys", good, NULL);
    kbt_assert_envelope(r, 401, "invalid_api_key");
    kbt_resp_free(r);
    free(good);
    free(doc);
    free(email);
    free(tok);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(other);
}
END_TEST

/* ---- configuration: no usable token key, no start ---- */

/* Run "sh -c cmd" with the stack's environment; output into out, returns the exit code. */
static int
sh(const char *cmd, char *out, size_t outsz)
{
    FILE *p = popen(cmd, "r");
    ck_assert(p != NULL);
    size_t n = fread(out, 1, outsz - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

START_TEST(no_jwt_secret_or_jwks_means_no_start)
{
    const char *bin = kbt_env("KB_BIN_DIR");
    char cmd[2048], out[8192];
    struct {
        const char *env;
        int rc;
        const char *want;
    } cases[] = {
        {"env -u KB_JWT_SECRET -u KB_JWT_JWKS_FILE", 78,
         "KB_JWT_SECRET: is required (at least 32 bytes) unless KB_JWT_JWKS_FILE is set"},
        {"env -u KB_JWT_JWKS_FILE KB_JWT_SECRET=0123456789abcdef0123456789abcde", 78,
         "KB_JWT_SECRET: must be at least 32 bytes long"},
        {"env -u KB_JWT_SECRET KB_JWT_JWKS_FILE=/nonexistent/jwks.json", 78,
         "KB_JWT_JWKS_FILE: unusable: No such file or directory"},
        {"env -u KB_JWT_JWKS_FILE KB_JWT_SECRET=0123456789abcdef0123456789abcdef", 0,
         "configuration ok"},
    };
    for (size_t i = 0; i < 4; i++) {
        snprintf(cmd, sizeof(cmd), "%s %s/kbctl check-config 2>&1", cases[i].env, bin);
        ck_assert_int_eq(sh(cmd, out, sizeof(out)), cases[i].rc);
        ck_assert_msg(strstr(out, cases[i].want) != NULL, "%s", out);
        ck_assert_msg(strstr(out, "0123456789abcdef") == NULL, "secret printed: %s", out);
    }
    /* The server itself refuses to start (EX_CONFIG) before touching any socket. */
    snprintf(cmd, sizeof(cmd),
             "env -u KB_JWT_SECRET -u KB_JWT_JWKS_FILE KB_SOCKET=/nonexistent/x.sock "
             "%s/kalshibook-fcgi 2>&1",
             bin);
    ck_assert_int_eq(sh(cmd, out, sizeof(out)), 78);
    ck_assert_msg(strstr(out, "KB_JWT_SECRET") != NULL, "%s", out);
}
END_TEST

/* The commands that neither sign nor verify tokens run with no token key at all, or with one
 * the server would refuse; the server and check-config still refuse (test above). */
START_TEST(kbctl_commands_without_tokens_need_no_jwt_secret)
{
    const char *bin = kbt_env("KB_BIN_DIR");
    static const char *const envs[] = {
        "env -u KB_JWT_SECRET -u KB_JWT_JWKS_FILE",
        "env -u KB_JWT_JWKS_FILE KB_JWT_SECRET=short",
    };
    static const char *const cmds[] = {"migrate", "import - </dev/null", "status"};
    char cmd[2048], out[8192];
    for (size_t e = 0; e < sizeof(envs) / sizeof(envs[0]); e++) {
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
            snprintf(cmd, sizeof(cmd), "%s %s/kbctl %s 2>&1", envs[e], bin, cmds[i]);
            ck_assert_msg(sh(cmd, out, sizeof(out)) == 0, "%s: %s", cmd, out);
            ck_assert_msg(strstr(out, "KB_JWT") == NULL, "%s: %s", cmd, out);
        }
        snprintf(cmd, sizeof(cmd), "%s %s/kbctl check-config 2>&1", envs[e], bin);
        ck_assert_int_eq(sh(cmd, out, sizeof(out)), 78);
        ck_assert_msg(strstr(out, "KB_JWT_SECRET: ") != NULL, "%s", out);
    }
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("accounts");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, signup_and_login_answer_tokens_with_supabase_claims);
    tcase_add_test(tc, signup_refuses_taken_email_in_any_case_and_weak_passwords);
    tcase_add_test(tc, login_failures_are_all_invalid_credentials);
    tcase_add_test(tc, concurrent_duplicate_signups_create_one_user);
    tcase_add_test(tc, login_burst_answers_503_with_retry_after_and_health_keeps_answering);
    suite_add_tcase(s, tc);
    TCase *tt = tcase_create("tokens");
    tcase_add_loop_test(tt, user_routes_check_tokens_in_api_md_order, 0,
                        (int)(sizeof(token_cases) / sizeof(token_cases[0])));
    suite_add_tcase(s, tt);
    TCase *tj = tcase_create("jwks");
    tcase_set_timeout(tj, 120);
    tcase_add_unchecked_fixture(tj, jwks_setup, jwks_off);
    tcase_add_test(tj, jwks_es256_tokens_accepted_when_configured);
    suite_add_tcase(s, tj);
    TCase *tg = tcase_create("config");
    tcase_add_test(tg, no_jwt_secret_or_jwks_means_no_start);
    tcase_add_test(tg, kbctl_commands_without_tokens_need_no_jwt_secret);
    suite_add_tcase(s, tg);
    return kb_check_run(s);
}
