/* hostile.h - the harness of the hostile-request suites (test_hostile_bodies.c,
 * test_hostile_auth.c): shared accounts, the case sender and its tally, and the run that
 * proves nothing changed.
 *
 * Each suite sends its generated cases through nginx with hostile_send(); hostile_run() sets
 * up the accounts, snapshots the rows that must not change, runs the cases and checks: no
 * 5xx, every answer is the API.md error envelope with the expected status and code and a
 * request_id equal to X-Request-ID, a sample conforms to static/openapi.json, nothing is
 * charged beyond the accepted cases' documented cost, and the rows of users, api_keys,
 * billing_accounts, markets, stripe_events and admin_audit are unchanged. Requests are
 * sequential (the login burst cap would otherwise answer 503). Functions here are static:
 * this header is included by exactly one .c per test program, like check_main.h.
 */
#ifndef HOSTILE_H
#define HOSTILE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbt.h"

#define TS_OK "2026-01-15T00:00:00Z"
#define TS_OK2 "2026-01-16T00:00:00Z"

/* ---- state shared by the cases ------------------------------------------- */

static PGconn *db;
static kbt_account acct;    /* project account with a live key */
static kbt_account revoked; /* its key is revoked */
static char *tok_a, *uid_a; /* user A's token */
static char *tok_b, *uid_b; /* user B, who owns key_b */
static char key_a_id[64], key_b_id[64];

typedef struct tally {
    long sent, ok, bad;
    long by_class[64];
    const char *class_name[64];
    int nclass;
    long sampled, sample_bad;
    long charged;          /* credits the accepted cases must have cost */
    long charged_requests; /* and how many requests they were */
    bool before_meter;     /* refused cases must also carry no X-Credits-* header: refused
                            * before the meter, not charged and refunded */
    long sample_every;     /* every Nth answer through the spec checker; 0 = 60 */
} tally;
static tally T;

static char bearer_key[128], bearer_a[2048], bearer_b[2048];

static int
class_index(const char *name)
{
    for (int i = 0; i < T.nclass; i++)
        if (strcmp(T.class_name[i], name) == 0)
            return i;
    ck_assert_int_lt(T.nclass, 64);
    T.class_name[T.nclass] = name;
    return T.nclass++;
}

/*
 * Send one case and check it. auth: NULL, or a full "Authorization: ..." line.
 * ctype: NULL = application/json when there is a body, "" = none.
 */
static void
send_case(const char *cls, const char *method, const char *path, const char *auth,
          const char *ctype, const char *body, long blen, long want_status, const char *want_code)
{
    char ctl[256];
    const char *h[4];
    int k = 0;
    if (auth != NULL)
        h[k++] = auth;
    if (ctype == NULL && body != NULL)
        ctype = "application/json";
    if (ctype != NULL && ctype[0] != '\0') {
        snprintf(ctl, sizeof(ctl), "Content-Type: %s", ctype);
        h[k++] = ctl;
    }
    h[k] = NULL;
    size_t len = body == NULL ? 0 : blen < 0 ? strlen(body) : (size_t)blen;
    kbt_resp *r = kbt_request(method, path, h, body, len);
    T.sent++;
    T.by_class[class_index(cls)]++;

    const char *why = NULL;
    char whybuf[256];
    const cJSON *err = r->json ? cJSON_GetObjectItemCaseSensitive(r->json, "error") : NULL;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(err, "status");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
    const cJSON *rid = r->json ? cJSON_GetObjectItemCaseSensitive(r->json, "request_id") : NULL;
    char *xrid = kbt_header(r, "X-Request-ID");
    char *xcost = kbt_header(r, "X-Credits-Cost");
    if (r->curl_code != 0)
        why = "transport error";
    else if (r->status >= 500)
        why = "5xx";
    else if (r->status != want_status)
        why = "status";
    else if (want_code == NULL) { /* an accepted request: a data answer, charged */
        if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r->json, "data")))
            why = "data";
        else if (!cJSON_IsString(rid) || xrid == NULL || strcmp(rid->valuestring, xrid) != 0)
            why = "request_id";
    } else if (!cJSON_IsString(code) || strcmp(code->valuestring, want_code) != 0)
        why = "code";
    else if (!cJSON_IsNumber(st) || st->valueint != want_status || !cJSON_IsString(msg))
        why = "envelope";
    else if (!cJSON_IsString(rid) || xrid == NULL || strcmp(rid->valuestring, xrid) != 0)
        why = "request_id";
    else if (T.before_meter && xcost != NULL)
        why = "metered (X-Credits-Cost) before it was refused";
    if (why != NULL) {
        T.bad++;
        if (T.bad <= 200) {
            snprintf(whybuf, sizeof(whybuf), "%.90s", kb_buf_cstr(&r->body));
            fprintf(stderr, "hostile [%s] %s %.60s: %s: got %ld %s, want %ld %s\n", cls, method,
                    path, why, r->status, whybuf, want_status, want_code ? want_code : "data");
        }
    } else {
        T.ok++;
    }
    /* Every 60th answer also goes through the spec checker (node, slow: ~0.5 s). */
    if (why == NULL && T.sent % (T.sample_every > 0 ? T.sample_every : 60) == 1) {
        char m[2048];
        T.sampled++;
        char *q = strchr(path, '?');
        char p2[512];
        snprintf(p2, sizeof(p2), "%.*s", q ? (int)(q - path) : (int)strlen(path), path);
        if (!kbt_docs_conforms(r, method, p2, m, sizeof(m))) {
            T.sample_bad++;
            fprintf(stderr, "hostile [%s] %s %s does not conform: %s\n", cls, method, p2, m);
        }
    }
    free(xrid);
    free(xcost);
    kbt_resp_free(r);
}

/* ---- snapshot of what must not change ------------------------------------ */

typedef struct snap {
    char *v[16];
} snap;

static const char *const snap_sql[] = {
    "SELECT count(*) FROM users",
    "SELECT count(*) FROM api_keys",
    "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL",
    "SELECT count(*) FROM billing_accounts",
    "SELECT count(*) FROM markets",
    "SELECT count(*) FROM usage_outbox",
    "SELECT coalesce(sum(credits_used),0) FROM billing_accounts",
    "SELECT coalesce(sum(credits_used),0) || '/' || coalesce(sum(requests),0) FROM api_key_usage",
    "SELECT count(*) FROM stripe_events",
    "SELECT count(*) FROM admin_audit",
    ("SELECT md5(string_agg(id::text || coalesce(name,'') || key_type, ',' ORDER BY id)) "
     "FROM api_keys"),
};
#define NSNAP (sizeof(snap_sql) / sizeof(snap_sql[0]))
#define SNAP_CREDITS 6
#define SNAP_KEY_USAGE 7

static void
take(snap *s)
{
    for (size_t i = 0; i < NSNAP; i++)
        s->v[i] = kbt_sql_value(db, snap_sql[i]);
}

/* ---- setup ---------------------------------------------------------------- */

static void
setup_accounts(void)
{
    db = kbt_db();
    kbt_data_account(db, &acct);
    kbt_account_new(db, &revoked, "free", 0, 0, false);
    kbt_sqlp_ok(db, "UPDATE api_keys SET revoked_at = now() WHERE id = $1", 1, revoked.key_id);
    char *ea = kbt_auth_email("hostile-a"), *eb = kbt_auth_email("hostile-b");
    kbt_auth_signup(ea, "hostile-password-a", &tok_a, &uid_a);
    kbt_auth_signup(eb, "hostile-password-b", &tok_b, &uid_b);
    free(ea);
    free(eb);
    kbt_resp *r = kbt_auth_json("POST", "/keys", tok_a, "{\"name\":\"a\"}");
    ck_assert_int_eq(r->status, 200);
    snprintf(key_a_id, sizeof(key_a_id), "%s", kbt_auth_str(r, "id"));
    kbt_secret_note(kbt_auth_str(r, "key"));
    kbt_resp_free(r);
    r = kbt_auth_json("POST", "/keys", tok_b, "{\"name\":\"b\"}");
    ck_assert_int_eq(r->status, 200);
    snprintf(key_b_id, sizeof(key_b_id), "%s", kbt_auth_str(r, "id"));
    kbt_secret_note(kbt_auth_str(r, "key"));
    kbt_resp_free(r);
    snprintf(bearer_key, sizeof(bearer_key), "Authorization: Bearer %s", acct.key);
    snprintf(bearer_a, sizeof(bearer_a), "Authorization: Bearer %s", tok_a);
    snprintf(bearer_b, sizeof(bearer_b), "Authorization: Bearer %s", tok_b);
}

/* ---- the run ---------------------------------------------------------------- */

/*
 * Set up the accounts, snapshot, send every case of cases(), snapshot again and check the
 * invariants above; at least min_sent requests, min_sampled of them through the spec checker.
 */
static void
hostile_run(const char *name, void (*cases)(void), long min_sent, long min_sampled)
{
    setup_accounts();
    /* the GET /billing/status of user A creates its free account: do it before the snapshot */
    kbt_resp *r = kbt_auth_json("GET", "/billing/status", tok_a, NULL);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
    r = kbt_auth_json("GET", "/billing/status", tok_b, NULL);
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);

    snap before, after;
    take(&before);
    long t0 = kbt_now_ms();
    cases();
    long ms = kbt_now_ms() - t0;
    take(&after);

    fprintf(stderr,
            "%s: %ld requests in %ld ms, %ld as expected, %ld not; %ld spec samples"
            " (%ld not conforming); classes:",
            name, T.sent, ms, T.ok, T.bad, T.sampled, T.sample_bad);
    for (int i = 0; i < T.nclass; i++)
        fprintf(stderr, " %s=%ld", T.class_name[i], T.by_class[i]);
    fprintf(stderr, "\n");
    char want[64];
    for (size_t i = 0; i < NSNAP; i++) {
        const char *w = before.v[i];
        if (i == SNAP_CREDITS) { /* only the accepted cases' documented cost */
            char *end;
            errno = 0;
            long credits = strtol(before.v[i], &end, 10);
            ck_assert_msg(errno == 0 && end != before.v[i] && *end == '\0', "credits '%s'",
                          before.v[i]);
            snprintf(want, sizeof(want), "%ld", credits + T.charged);
            w = want;
        } else if (i == SNAP_KEY_USAGE) {
            long c = 0, n = 0;
            sscanf(before.v[i], "%ld/%ld", &c, &n);
            snprintf(want, sizeof(want), "%ld/%ld", c + T.charged, n + T.charged_requests);
            w = want;
        }
        ck_assert_msg(strcmp(w, after.v[i]) == 0, "%s: %s before, %s after, want %s", snap_sql[i],
                      before.v[i], after.v[i], w);
    }
    ck_assert_int_ge(T.sent, min_sent);
    ck_assert_int_eq(T.bad, 0);
    ck_assert_int_eq(T.sample_bad, 0);
    ck_assert_int_ge(T.sampled, min_sampled);
    for (size_t i = 0; i < NSNAP; i++) {
        free(before.v[i]);
        free(after.v[i]);
    }
    PQfinish(db);
}

#endif
