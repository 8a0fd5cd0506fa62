/* kbt_domain.c - the harness helpers of each area (metering, Stripe, auth and keys, spec
 * conformance, market data, parameterised SQL, requests held in flight); the core (HTTP,
 * SQL, stack control) is in kbt.c. Declarations in kbt.h. */
#include "kbt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kb_crypto.h"
#include "kb_banned.h"

/* ---- metering helpers ---- */

void
kbt_account_new(PGconn *c, kbt_account *a, const char *tier, int credits_total, int rpm_override,
                bool payg)
{
    unsigned char raw[32], tag[8];
    char email[80], tagx[17];
    randombytes_buf(raw, sizeof(raw));
    randombytes_buf(tag, sizeof(tag));
    sodium_bin2hex(tagx, sizeof(tagx), tag, sizeof(tag));
    memcpy(a->key, "kb-", 3);
    sodium_bin2base64(a->key + 3, sizeof(a->key) - 3, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    kb_sha256_hex(a->key, strlen(a->key), a->key_hash);
    kbt_secret_note(a->key);
    snprintf(email, sizeof(email), "kbt-%s@example.test", tagx);

    char prefix[8];
    memcpy(prefix, a->key, 7);
    prefix[7] = '\0';
    char credits[16], rpm[16];
    snprintf(credits, sizeof(credits), "%d", credits_total);
    snprintf(rpm, sizeof(rpm), "%d", rpm_override);
    const char *p[] = {email, a->key_hash, prefix, tier, credits, rpm, payg ? "t" : "f"};
    PGresult *r = PQexecParams(
        c,
        "WITH u AS (INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id),"
        " k AS (INSERT INTO api_keys (user_id, key_hash, key_prefix)"
        "       SELECT id, $2, $3 FROM u RETURNING id, user_id),"
        " b AS (INSERT INTO billing_accounts (user_id, tier, credits_total, credits_override,"
        "       rpm_override, payg_enabled, billing_cycle_start)"
        "       SELECT id, $4, coalesce(nullif($5::int, 0), 1000), nullif($5::int, 0),"
        "              nullif($6::int, 0), $7::bool,"
        "              kb_cycle_month(kb_now()) FROM u)"
        " SELECT k.user_id, k.id FROM k",
        7, NULL, p, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "account: %s", PQresultErrorMessage(r));
    snprintf(a->user_id, sizeof(a->user_id), "%s", PQgetvalue(r, 0, 0));
    snprintf(a->key_id, sizeof(a->key_id), "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
}

long
kbt_sql_long1(PGconn *c, const char *sql, const char *param)
{
    const char *p[] = {param};
    PGresult *r = PQexecParams(c, sql, param ? 1 : 0, NULL, param ? p : NULL, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    ck_assert_msg(PQntuples(r) == 1, "%s: %d rows", sql, PQntuples(r));
    long v = PQgetisnull(r, 0, 0) ? -1 : strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* ---- Stripe helpers ---- */

kbt_resp *
kbt_stripe_control(const char *method, const char *path, const char *json)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/_control/%s", kbt_env("KB_STRIPE_URL"), path);
    const char *h[] = {"Content-Type: application/json", NULL};
    bool post = strcmp(method, "POST") == 0;
    if (json == NULL && post)
        json = "{}";
    return kbt_request_url(method, url, h, json, json ? strlen(json) : 0);
}

char *
kbt_stripe_sign(const char *secret, long t, const char *body)
{
    kb_buf in = KB_BUF_INIT;
    kb_buf_printf(&in, "%ld.%s", t, body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)in.buf, in.len, mac, &n);
    kb_buf_release(&in);
    kb_buf out = KB_BUF_INIT;
    kb_buf_printf(&out, "t=%ld,v1=", t);
    for (unsigned int i = 0; i < n; i++)
        kb_buf_printf(&out, "%02x", mac[i]);
    return kb_buf_detach(&out, NULL);
}

kbt_resp *
kbt_stripe_webhook(const char *signature, const char *body)
{
    char sig[512];
    const char *h[] = {"Content-Type: application/json", sig, NULL};
    if (signature != NULL)
        snprintf(sig, sizeof(sig), "Stripe-Signature: %s", signature);
    else
        h[1] = NULL;
    return kbt_request("POST", "/billing/webhook", h, body, strlen(body));
}

long
kbt_stripe_webhook_ok(const char *body)
{
    char *sig = kbt_stripe_sign(kbt_env("STRIPE_WEBHOOK_SECRET"), (long)time(NULL), body);
    kbt_resp *r = kbt_stripe_webhook(sig, body);
    long st = r->status;
    free(sig);
    kbt_resp_free(r);
    return st;
}

int
kbt_stripe_kbctl(bool background, const char *const *args)
{
    char bin[1024];
    snprintf(bin, sizeof(bin), "%s/kbctl", kbt_env("KB_BIN_DIR"));
    char *argv[16];
    size_t n = 0;
    argv[n++] = bin;
    for (size_t i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Output goes to the stack dir, whose logs the runner scans for sanitizer reports. */
        char log[1024];
        snprintf(log, sizeof(log), "%s/kbctl-tests.log", kbt_env("KB_STACK_DIR"));
        FILE *f = fopen(log, "a");
        if (f != NULL) {
            dup2(fileno(f), 1);
            dup2(fileno(f), 2);
        }
        execv(bin, argv);
        _exit(127);
    }
    if (background)
        return (int)pid;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- auth and keys (issue 4) ---- */

kbt_resp *
kbt_auth_json(const char *method, const char *path, const char *token, const char *body)
{
    char auth[9000];
    const char *h[3] = {"Content-Type: application/json", NULL, NULL};
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h[1] = auth;
    }
    return kbt_request(method, path, h, body, body ? strlen(body) : 0);
}

char *
kbt_auth_email(const char *tag)
{
    static unsigned counter;
    char *out = malloc(128);
    snprintf(out, 128, "%s-%ld-%ld-%u@Example.test", tag, (long)getpid(), kbt_now_ms(),
             __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST));
    return out;
}

const char *
kbt_auth_str(const kbt_resp *r, const char *name)
{
    const cJSON *o = r->json;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    if (m == NULL && cJSON_IsObject(data))
        m = cJSON_GetObjectItemCaseSensitive(data, name);
    return cJSON_IsString(m) ? m->valuestring : NULL;
}

void
kbt_auth_signup(const char *email, const char *password, char **token, char **user_id)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
    kbt_secret_note(password);
    kbt_resp *r = NULL;
    /* The hash slots may be busy (503) while another test signs in: retry briefly. */
    for (int i = 0; i < 200; i++) {
        kbt_resp_free(r);
        r = kbt_auth_json("POST", "/auth/signup", NULL, body);
        if (r->status != 503)
            break;
    }
    ck_assert_msg(r->status == 200, "signup %s: %ld %s", email, r->status, kb_buf_cstr(&r->body));
    kbt_secret_note(kbt_auth_str(r, "access_token"));
    if (token != NULL)
        *token = strdup(kbt_auth_str(r, "access_token"));
    if (user_id != NULL)
        *user_id = strdup(kbt_auth_str(r, "user_id"));
    kbt_resp_free(r);
}

/* ---- spec conformance helpers ---- */

static void
kbt_docs_write(const char *file, const char *data, size_t len)
{
    FILE *f = fopen(file, "wb");
    ck_assert_msg(f != NULL, "kbt_docs: cannot write %s", file);
    ck_assert_msg(fwrite(data, 1, len, f) == len, "kbt_docs: short write to %s", file);
    fclose(f);
}

bool
kbt_docs_conforms(const kbt_resp *r, const char *method, const char *path, char *msg,
                  size_t msg_size)
{
    char dir[] = "/tmp/kbt-docs.XXXXXX";
    ck_assert_msg(mkdtemp(dir) != NULL, "kbt_docs: mkdtemp failed");
    char hfile[64], bfile[64], efile[64], script[4096], status[16], p[2048];
    snprintf(hfile, sizeof(hfile), "%s/headers", dir);
    snprintf(bfile, sizeof(bfile), "%s/body", dir);
    snprintf(efile, sizeof(efile), "%s/out", dir);
    snprintf(script, sizeof(script), "%s/t/docs/validate-response.js", kbt_env("KB_REPO_ROOT"));
    snprintf(status, sizeof(status), "%ld", r->status);
    snprintf(p, sizeof(p), "%.*s", (int)strcspn(path, "?"), path);
    kbt_docs_write(hfile, r->headers.buf ? r->headers.buf : "", r->headers.len);
    kbt_docs_write(bfile, r->body.buf ? r->body.buf : "", r->body.len);

    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "kbt_docs: fork failed");
    if (pid == 0) {
        FILE *in = freopen(bfile, "rb", stdin);
        FILE *out = freopen(efile, "wb", stdout);
        if (!in || !out || dup2(fileno(stdout), 2) < 0)
            _exit(126);
        execlp("node", "node", script, method, p, status, hfile, (char *)NULL);
        _exit(127);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0) {
    }
    msg[0] = '\0';
    FILE *f = fopen(efile, "rb");
    if (f) {
        size_t n = fread(msg, 1, msg_size - 1, f);
        msg[n] = '\0';
        fclose(f);
    }
    unlink(hfile);
    unlink(bfile);
    unlink(efile);
    rmdir(dir);
    return WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
}

void
kbt_docs_assert_conforms(const kbt_resp *r, const char *method, const char *path)
{
    char msg[4096];
    bool ok = kbt_docs_conforms(r, method, path, msg, sizeof(msg));
    ck_assert_msg(ok, "%s %s %ld does not conform to static/openapi.json:\n%s", method, path,
                  r->status, msg);
}

/* ---- market data helpers ---- */

int
kbt_data_kbctl(const char *args, kb_buf *out)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "cd '%s' && '%s/kbctl' %s 2>&1", kbt_env("KB_REPO_ROOT"),
             kbt_env("KB_BIN_DIR"), args);
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "popen %s", cmd);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0) {
        if (out != NULL)
            kb_buf_append(out, chunk, n);
    }
    int st = pclose(p);
    kbt_data_wait_replica();
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

void
kbt_data_wait_replica(void)
{
    const char *url = getenv("KB_DATABASE_READ_URL");
    if (url == NULL || url[0] == '\0')
        return;
    PGconn *c = kbt_db();
    char *lsn = kbt_sql_value(c, "SELECT pg_current_wal_lsn()::text");
    PQfinish(c);
    PGconn *r = PQconnectdb(url);
    ck_assert_msg(PQstatus(r) == CONNECTION_OK, "replica: %s", PQerrorMessage(r));
    const char *params[] = {lsn};
    long deadline = kbt_now_ms() + 15000;
    for (;;) {
        PGresult *res = PQexecParams(r, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", 1, NULL,
                                     params, NULL, NULL, 0);
        bool done = PQresultStatus(res) == PGRES_TUPLES_OK && PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        if (done)
            break;
        ck_assert_msg(kbt_now_ms() < deadline, "replica did not replay %s in 15 s", lsn);
        struct timespec d = {0, 10 * 1000000};
        nanosleep(&d, NULL);
    }
    PQfinish(r);
    free(lsn);
}

void
kbt_data_account(PGconn *c, kbt_account *a)
{
    kbt_account_new(c, a, "project", 1000000000, 1000000, false);
}

static kbt_resp *
data_request(const kbt_account *a, const char *method, const char *path, const char *json)
{
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", a->key);
    const char *h[] = {auth, "Content-Type: application/json", NULL};
    return kbt_request(method, path, h, json, json ? strlen(json) : 0);
}

kbt_resp *
kbt_data_post(const kbt_account *a, const char *path, const char *json)
{
    return data_request(a, "POST", path, json);
}

kbt_resp *
kbt_data_get(const kbt_account *a, const char *path)
{
    return data_request(a, "GET", path, NULL);
}

void
kbt_data_assert_keys(const cJSON *obj, const char *const *names)
{
    ck_assert_msg(cJSON_IsObject(obj), "not an object");
    const cJSON *it = obj->child;
    size_t i = 0;
    for (; names[i] != NULL; i++, it = it->next) {
        ck_assert_msg(it != NULL, "missing member '%s'", names[i]);
        ck_assert_msg(strcmp(it->string, names[i]) == 0, "member %zu is '%s', want '%s'", i,
                      it->string, names[i]);
    }
    ck_assert_msg(it == NULL, "unexpected member '%s'", it ? it->string : "");
}

/* ---- parameterised SQL: tests pass values as libpq parameters, never as SQL text ---- */

#define KBT_SQLP_MAX 8

static PGresult *
sqlp_exec(PGconn *c, const char *sql, int nparams, va_list ap)
{
    const char *p[KBT_SQLP_MAX];
    ck_assert_msg(nparams >= 0 && nparams <= KBT_SQLP_MAX, "%s: %d parameters", sql, nparams);
    for (int i = 0; i < nparams; i++)
        p[i] = va_arg(ap, const char *);
    PGresult *r = PQexecParams(c, sql, nparams, NULL, nparams > 0 ? p : NULL, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(r);
    ck_assert_msg(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQresultErrorMessage(r));
    return r;
}

char *
kbt_sqlp_value(PGconn *c, const char *sql, int nparams, ...)
{
    va_list ap;
    va_start(ap, nparams);
    PGresult *r = sqlp_exec(c, sql, nparams, ap);
    va_end(ap);
    char *v = NULL;
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

void
kbt_sqlp_ok(PGconn *c, const char *sql, int nparams, ...)
{
    va_list ap;
    va_start(ap, nparams);
    PQclear(sqlp_exec(c, sql, nparams, ap));
    va_end(ap);
}

/* Worker connections of the database c waiting on a lock. */
static long
workers_waiting_on_lock(PGconn *c)
{
    char *v = kbt_sql_value(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name"
                               " LIKE 'kalshibook-worker%' AND wait_event_type = 'Lock'");
    long n = v != NULL ? strtol(v, NULL, 10) : -1;
    free(v);
    return n;
}

bool
kbt_one_worker_waits_on_lock(void *c)
{
    return workers_waiting_on_lock(c) == 1;
}

bool
kbt_two_workers_wait_on_lock(void *c)
{
    return workers_waiting_on_lock(c) == 2;
}

void *
kbt_keyed_get_thread(void *arg)
{
    kbt_keyed_get *g = arg;
    char auth[160];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", g->key);
    const char *h[] = {auth, NULL};
    g->resp = kbt_request("GET", g->path, h, NULL, 0);
    return NULL;
}

bool
kbt_refund_recorded(void *arg)
{
    kbt_request_ref *r = arg;
    return kbt_sql_long1(r->c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1",
                         r->request_id) == 1;
}

bool
kbt_fd_is_socket(pid_t p, long fd)
{
    char path[64], link[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%ld", (int)p, fd);
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    if (n <= 0)
        return false;
    link[n] = '\0';
    return strncmp(link, "socket:", 7) == 0;
}

/* Move the cluster's clock: kb_now() reads its offset from a one-row table, so the offset
 * travels as a parameter and no SQL text is built from it. */
void
kbt_clock_shift(const char *interval)
{
    PGconn *c = kbt_db();
    kbt_sql_ok(c, "SET client_min_messages = warning"); /* no "already exists" notice */
    kbt_sql_ok(c, "CREATE TABLE IF NOT EXISTS kbt_clock_offset (one bool PRIMARY KEY DEFAULT true"
                  " CHECK (one), shift interval NOT NULL)");
    kbt_sqlp_ok(c,
                "INSERT INTO kbt_clock_offset (shift) VALUES ($1::interval)"
                " ON CONFLICT (one) DO UPDATE SET shift = excluded.shift",
                1, interval);
    kbt_sql_ok(c, "CREATE OR REPLACE FUNCTION kb_now() RETURNS timestamptz LANGUAGE sql STABLE"
                  " PARALLEL SAFE AS $$ SELECT now() + coalesce((SELECT shift FROM"
                  " kbt_clock_offset), interval '0') $$");
    PQfinish(c);
}

void
kbt_clock_to(PGconn *c, const char *at, const char *extra)
{
    char *shift = kbt_sqlp_value(c, "SELECT ($1::timestamptz + $2::interval - now())::text", 2, at,
                                 extra);
    ck_assert_ptr_nonnull(shift);
    kbt_clock_shift(shift);
    free(shift);
}

/* kb_now() put back as 0001_clock.sql defines it (a fixture: it runs in the parent even
 * when the test fails). */
void
kbt_clock_restore(void)
{
    PGconn *c = kbt_db();
    kbt_sql_ok(c, "CREATE OR REPLACE FUNCTION kb_now() RETURNS timestamptz LANGUAGE sql STABLE"
                  " PARALLEL SAFE AS $$ SELECT now() $$");
    kbt_sql_ok(c, "DROP TABLE IF EXISTS kbt_clock_offset");
    PQfinish(c);
}

long
kbt_clock_next_minute(void)
{
    PGconn *c = kbt_db();
    long to_next = kbt_sql_long1(c, "SELECT (60 - floor(extract(second FROM now())))::int", NULL);
    PQfinish(c);
    char shift[32];
    snprintf(shift, sizeof(shift), "%ld seconds", to_next);
    kbt_clock_shift(shift);
    return to_next;
}
