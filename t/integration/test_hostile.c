/* test_hostile.c - a generated corpus of hostile requests against every route, through nginx.
 *
 * Cases are generated from tables: a class (route, where the hostile value
 * goes, who sends it) crossed with a list of hostile values, each class with
 * the status and API.md code it must get. All requests are sequential (the
 * login burst cap would otherwise answer 503). Invariants checked over the
 * whole run: no 5xx, every answer is the API.md error envelope with the
 * expected status and code and a request_id equal to X-Request-ID, a sample
 * conforms to static/openapi.json, nothing is charged (credits_used of the
 * test accounts, api_key_usage and usage_outbox unchanged) and the rows of
 * users, api_keys, billing_accounts, markets, stripe_events and admin_audit
 * are unchanged (every case is refused, so nothing may be created).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "jwt_forge.h"
#include "kbt.h"
#include "kb_banned.h"

/* ---- hostile values -------------------------------------------------------- */

/* Valid JSON string contents (already JSON-escaped), none a timestamp, cursor, UUID,
 * key type or known ticker. */
static const char *const hostile[] = {
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    "1; SELECT pg_sleep(10)--",
    "\\\" OR \\\"\\\"=\\\"",
    "x' UNION SELECT key_hash FROM api_keys--",
    "$$; DELETE FROM markets; $$",
    "../../../../etc/passwd",
    "..\\\\..\\\\windows\\\\win.ini",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "....//....//etc/passwd",
    "/etc/shadow",
    "%s%s%s%n%x%p",
    "<script>alert(1)</script>",
    "\\r\\nX-Injected: 1",
    "${jndi:ldap://x.test/a}",
    "\\u202e\\u0645\\u0631\\u062d\\u0628\\u0627",
    "\\ud83d\\ude00\\ud83d\\ude00",
    "\\u00e9\\u0301",
    "null",
    "true",
    "9223372036854775808",
    "-9223372036854775809",
    "1e400",
    "NaN",
    "\\t \\t",
    "KXNOPE-26JAN15-T0",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "a/b?c=d#e",
    "eyJ0cyI6IDF9",
    "=",
};
#define NH (sizeof(hostile) / sizeof(hostile[0]))

/* Bodies every JSON route refuses with 422 before anything else (lengths: -1 = strlen). */
typedef struct bad_body {
    const char *name;
    const char *p;
    long len;
} bad_body;

static char *deep_body, *wide_body, *long_str_body, *many_values_body;

static bad_body bad_bodies[] = {
    {"invalid utf-8", "{\"name\":\"\xff\xfe\"}", -1},
    {"overlong utf-8", "{\"name\":\"\xc0\xaf\"}", -1},
    {"utf-16 surrogate bytes", "{\"name\":\"\xed\xa0\x80\"}", -1},
    {"escaped NUL", "{\"name\":\"a\\u0000b\"}", -1},
    {"raw NUL", "{\"name\":\"a\0b\"}", 14},
    {"lone surrogate", "{\"name\":\"\\ud800\"}", -1},
    {"duplicate key", "{\"name\":\"a\",\"name\":\"b\"}", -1},
    {"trailing garbage", "{\"name\":\"a\"} x", -1},
    {"truncated", "{\"name\":\"a", -1},
    {"single quotes", "{'name':'a'}", -1},
    {"array", "[]", -1},
    {"string", "\"x\"", -1},
    {"number", "1", -1},
    {"empty", "", -1},
    {"comment", "{/*x*/}", -1},
    {"deep", NULL, -1},        /* 40 levels */
    {"wide", NULL, -1},        /* 300 members */
    {"long string", NULL, -1}, /* 70000 bytes */
    {"many values", NULL, -1}, /* 25000 values */
};
#define NBAD (sizeof(bad_bodies) / sizeof(bad_bodies[0]))

static void
make_big_bodies(void)
{
    kb_buf b = KB_BUF_INIT;
    kb_buf_puts(&b, "{\"a\":");
    for (int i = 0; i < 40; i++)
        kb_buf_puts(&b, "[");
    for (int i = 0; i < 40; i++)
        kb_buf_puts(&b, "]");
    kb_buf_puts(&b, "}");
    deep_body = strdup(kb_buf_cstr(&b));
    b.len = 0;
    kb_buf_puts(&b, "{");
    for (int i = 0; i < 300; i++)
        kb_buf_printf(&b, "%s\"k%d\":1", i ? "," : "", i);
    kb_buf_puts(&b, "}");
    wide_body = strdup(kb_buf_cstr(&b));
    b.len = 0;
    kb_buf_puts(&b, "{\"name\":\"");
    for (int i = 0; i < 70000; i++)
        kb_buf_putc(&b, 'x');
    kb_buf_puts(&b, "\"}");
    long_str_body = strdup(kb_buf_cstr(&b));
    b.len = 0;
    kb_buf_puts(&b, "{\"a\":[");
    for (int i = 0; i < 25000; i++)
        kb_buf_puts(&b, i ? ",0" : "0");
    kb_buf_puts(&b, "]}");
    many_values_body = strdup(kb_buf_cstr(&b));
    kb_buf_release(&b);
    for (size_t i = 0; i < NBAD; i++) {
        if (strcmp(bad_bodies[i].name, "deep") == 0)
            bad_bodies[i].p = deep_body;
        else if (strcmp(bad_bodies[i].name, "wide") == 0)
            bad_bodies[i].p = wide_body;
        else if (strcmp(bad_bodies[i].name, "long string") == 0)
            bad_bodies[i].p = long_str_body;
        else if (strcmp(bad_bodies[i].name, "many values") == 0)
            bad_bodies[i].p = many_values_body;
    }
}

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
} tally;
static tally T;

/* Percent-encode s for a path segment or query value. */
static void
pct(kb_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            kb_buf_putc(b, (char)*p);
        } else {
            kb_buf_putc(b, '%');
            kb_buf_putc(b, hex[*p >> 4]);
            kb_buf_putc(b, hex[*p & 15]);
        }
    }
}

/* Decode a JSON-escaped hostile value to raw text (for URLs and headers); malloc'd. */
static char *
raw_of(const char *json_escaped)
{
    size_t n = strlen(json_escaped) + 3;
    char *q = malloc(n);
    snprintf(q, n, "\"%s\"", json_escaped);
    cJSON *j = cJSON_Parse(q);
    free(q);
    char *out = strdup(j && cJSON_IsString(j) ? j->valuestring : "x");
    cJSON_Delete(j);
    return out;
}

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
    /* Every 40th answer also goes through the spec checker (node, slow). */
    if (why == NULL && T.sent % 60 == 1) {
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
    kbt_resp_free(r);
}

static char bearer_key[128], bearer_a[2048], bearer_b[2048];

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
    make_big_bodies();
}

/* ---- the case classes ----------------------------------------------------- */

#define TS_OK "2026-01-15T00:00:00Z"
#define TS_OK2 "2026-01-16T00:00:00Z"

/* JSON routes: method, path, auth line (filled at run time). */
typedef struct json_route {
    const char *method, *path;
    int auth; /* 0 none, 1 API key, 2 user token A */
} json_route;

static const char *
auth_line(int kind)
{
    return kind == 1 ? bearer_key : kind == 2 ? bearer_a : NULL;
}

static void
cases_bad_bodies(void)
{
    char patch[128];
    snprintf(patch, sizeof(patch), "/keys/%s", key_a_id);
    const json_route routes[] = {
        {"POST", "/auth/signup", 0}, {"POST", "/auth/login", 0},  {"POST", "/keys", 2},
        {"PATCH", patch, 2},         {"POST", "/billing/payg", 2}, {"POST", "/orderbook", 1},
        {"POST", "/deltas", 1},      {"POST", "/trades", 1},
    };
    for (size_t r = 0; r < sizeof(routes) / sizeof(routes[0]); r++) {
        for (size_t i = 0; i < NBAD; i++)
            send_case("bad_json_body", routes[r].method, routes[r].path,
                      auth_line(routes[r].auth), NULL, bad_bodies[i].p, bad_bodies[i].len, 422,
                      "validation_error");
        static const char *const ctypes[] = {"text/plain", "application/x-www-form-urlencoded",
                                             "multipart/form-data; boundary=x", "application/xml",
                                             "application/jsonp", "json"};
        for (size_t i = 0; i < sizeof(ctypes) / sizeof(ctypes[0]); i++)
            send_case("wrong_content_type", routes[r].method, routes[r].path,
                      auth_line(routes[r].auth), ctypes[i], "{\"name\":\"x\"}", -1, 422,
                      "validation_error");
    }
}

static void
cases_hostile_strings(void)
{
    char body[4096], path[2048];
    kb_buf u = KB_BUF_INIT;
    for (size_t i = 0; i < NH; i++) {
        const char *h = hostile[i];
        char *raw = raw_of(h);
        u.len = 0;
        pct(&u, raw);
        const char *enc = kb_buf_cstr(&u);

        /* POST data routes: the value in each field. */
        snprintf(body, sizeof(body), "{\"market_ticker\":\"KXH\",\"timestamp\":\"%s\"}", h);
        send_case("orderbook_timestamp", "POST", "/orderbook", bearer_key, NULL, body, -1, 400,
                  "invalid_timestamp");
        snprintf(body, sizeof(body), "{\"market_ticker\":\"%s\",\"timestamp\":\"" TS_OK "\"}", h);
        send_case("orderbook_ticker", "POST", "/orderbook", bearer_key, NULL, body, -1, 404,
                  "market_not_found");
        snprintf(body, sizeof(body),
                 "{\"market_ticker\":\"KXH\",\"timestamp\":\"" TS_OK "\",\"depth\":\"%s\"}", h);
        send_case("orderbook_depth", "POST", "/orderbook", bearer_key, NULL, body, -1, 422,
                  "validation_error");
        for (int t = 0; t < 2; t++) {
            const char *route = t ? "/trades" : "/deltas";
            snprintf(body, sizeof(body),
                     "{\"market_ticker\":\"KXH\",\"start_time\":\"" TS_OK "\",\"end_time\":\"" TS_OK2
                     "\",\"cursor\":\"%s\"}",
                     h);
            send_case("page_cursor", "POST", route, bearer_key, NULL, body, -1, 422,
                      "validation_error");
            snprintf(body, sizeof(body),
                     "{\"market_ticker\":\"KXH\",\"start_time\":\"%s\",\"end_time\":\"" TS_OK2
                     "\"}",
                     h);
            send_case("page_start_time", "POST", route, bearer_key, NULL, body, -1, 400,
                      "invalid_timestamp");
            snprintf(body, sizeof(body),
                     "{\"market_ticker\":\"KXH\",\"start_time\":\"" TS_OK "\",\"end_time\":\"" TS_OK2
                     "\",\"limit\":\"%s\"}",
                     h);
            send_case("page_limit", "POST", route, bearer_key, NULL, body, -1, 422,
                      "validation_error");
        }

        /* GET data routes: in the path and in the query. A "../" that climbs above the
         * root is refused by nginx itself (400 bad_request) before any route. */
        bool climbs = strncmp(raw, "../", 3) == 0 || strstr(raw, "/../") != NULL;
        snprintf(path, sizeof(path), "/markets/%s", enc);
        send_case("market_path", "GET", path, bearer_key, "", NULL, 0, climbs ? 400 : 404,
                  climbs ? "bad_request" : "market_not_found");
        snprintf(path, sizeof(path), "/events/%s", enc);
        send_case("event_path", "GET", path, bearer_key, "", NULL, 0, climbs ? 400 : 404,
                  climbs ? "bad_request" : "event_not_found");
        snprintf(path, sizeof(path), "/settlements/%s", enc);
        send_case("settlement_path", "GET", path, bearer_key, "", NULL, 0, climbs ? 400 : 404,
                  climbs ? "bad_request" : "settlement_not_found");
        snprintf(path, sizeof(path), "/candles/KXH?start_time=%s&end_time=" TS_OK2, enc);
        send_case("candles_start_time", "GET", path, bearer_key, "", NULL, 0, 400,
                  "invalid_timestamp");
        snprintf(path, sizeof(path),
                 "/candles/KXH?start_time=" TS_OK "&end_time=" TS_OK2 "&interval=%s", enc);
        send_case("candles_interval", "GET", path, bearer_key, "", NULL, 0, 422,
                  "validation_error");
        /* The list routes take no parameters (API.md §5.10-5.12): hostile ones are ignored,
         * and the request is answered and charged like any other (1 credit, counted). */
        static const char *const lists[] = {"/markets", "/events", "/settlements"};
        snprintf(path, sizeof(path), "%s?limit=%s&status=%s&cursor=%s", lists[i % 3], enc, enc,
                 enc);
        send_case("ignored_list_query", "GET", path, bearer_key, "", NULL, 0, 200, NULL);
        T.charged += 1;
        T.charged_requests++;

        /* Key routes: the id, other users' ids; and the key type. */
        snprintf(path, sizeof(path), "/keys/%s", enc);
        long ks = climbs ? 400 : 404;
        const char *kc = climbs ? "bad_request" : "key_not_found";
        send_case("key_id_patch", "PATCH", path, bearer_a, NULL, "{\"name\":\"x\"}", -1, ks, kc);
        send_case("key_id_delete", "DELETE", path, bearer_a, "", NULL, 0, ks, kc);
        snprintf(path, sizeof(path), "/keys/%s/reveal", enc);
        send_case("key_id_reveal", "GET", path, bearer_a, "", NULL, 0, ks, kc);
        snprintf(path, sizeof(path), "/keys/%s", key_a_id);
        snprintf(body, sizeof(body), "{\"key_type\":\"%s\"}", h);
        send_case("key_type_patch", "PATCH", path, bearer_a, NULL, body, -1, 400,
                  "invalid_key_type");
        /* create validates the body type (422); PATCH has its own code (API.md §5.5) */
        send_case("key_type_create", "POST", "/keys", bearer_a, NULL, body, -1, 422,
                  "validation_error");

        /* Credentials: the value as a key, as a token, as a webhook signature. */
        char line[2048];
        snprintf(line, sizeof(line), "Authorization: Bearer kb-%s", enc);
        send_case("bogus_api_key", "GET", "/markets", line, "", NULL, 0, 401, "invalid_api_key");
        snprintf(line, sizeof(line), "Authorization: Bearer %s", enc);
        send_case("bogus_token", "GET", "/keys", line, "", NULL, 0, 401, "invalid_api_key");
        snprintf(line, sizeof(line), "Stripe-Signature: t=%ld,v1=%s", (long)time(NULL), enc);
        send_case("webhook_signature", "POST", "/billing/webhook", line, NULL,
                  "{\"id\":\"evt_x\",\"type\":\"invoice.paid\"}", -1, 400, "invalid_signature");

        /* Login: sequential, one argon2id check each (a dummy hash for unknown emails). */
        if (i % 5 == 0) {
            snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", h, h);
            send_case("login_hostile", "POST", "/auth/login", NULL, NULL, body, -1, 401,
                      "invalid_credentials");
        }
        free(raw);
    }
    kb_buf_release(&u);
}

static void
cases_numbers(void)
{
    static const char *const nums[] = {"0",   "-1",  "1001", "9223372036854775807",
                                       "9223372036854775808", "-9223372036854775808",
                                       "-9223372036854775809", "1e400", "1.5", "true",
                                       "[]", "{}", "99999999999999999999999999"};
    char body[512];
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        for (int t = 0; t < 2; t++) {
            snprintf(body, sizeof(body),
                     "{\"market_ticker\":\"KXH\",\"start_time\":\"" TS_OK "\",\"end_time\":\"" TS_OK2
                     "\",\"limit\":%s}",
                     nums[i]);
            send_case("limit_bounds", "POST", t ? "/trades" : "/deltas", bearer_key, NULL, body,
                      -1, 422, "validation_error");
        }
        if (i >= 3) { /* 0 and -1 may be accepted depths / caps; past int64 never */
            snprintf(body, sizeof(body),
                     "{\"market_ticker\":\"KXH\",\"timestamp\":\"" TS_OK "\",\"depth\":%s}",
                     nums[i]);
            send_case("depth_bounds", "POST", "/orderbook", bearer_key, NULL, body, -1, 422,
                      "validation_error");
        }
        snprintf(body, sizeof(body), "{\"enable\":%s}", nums[i]);
        if (strcmp(nums[i], "true") != 0)
            send_case("payg_enable_type", "POST", "/billing/payg", bearer_a, NULL, body, -1, 422,
                  "validation_error");
        /* timestamps as huge numbers */
        snprintf(body, sizeof(body), "{\"market_ticker\":\"KXH\",\"timestamp\":%s}", nums[i]);
        (void)body;
    }
    char path[256];
    static const char *const qnums[] = {"0", "-1", "1001", "9223372036854775808", "1e3",
                                        "%00", "1%00", "%20", "0x10", "+5"};
    for (size_t i = 0; i < sizeof(qnums) / sizeof(qnums[0]); i++) {
        snprintf(path, sizeof(path), "/candles/KXH?start_time=%s&end_time=" TS_OK2, qnums[i]);
        /* 0, -1 and 1001 are Unix seconds before end_time: charged, empty answer ("+5" is
         * " 5" in a query string, which is no timestamp) */
        bool valid = strcmp(qnums[i], "0") == 0 || strcmp(qnums[i], "-1") == 0 ||
                     strcmp(qnums[i], "1001") == 0;
        send_case("candles_numeric_time", "GET", path, bearer_key, "", NULL, 0, valid ? 200 : 400,
                  valid ? NULL : "invalid_timestamp");
        T.charged += valid ? 3 : 0;
        T.charged_requests += valid ? 1 : 0;
    }
}

static void
cases_timezones(void)
{
    /* start after end only once offsets are applied; bad offsets; impossible dates */
    static const struct {
        const char *start, *end;
        long status;
        const char *code;
    } tz[] = {
        {"2026-01-15T12:00:00+00:00", "2026-01-15T12:00:00+05:00", 400, "invalid_timestamp"},
        {"2026-01-15T10:00:00-05:00", "2026-01-15T12:00:00Z", 400, "invalid_timestamp"},
        {"2026-01-15T12:00:00+24:00", TS_OK2, 400, "invalid_timestamp"},
        {"2026-01-15T12:00:00+23:60", TS_OK2, 400, "invalid_timestamp"},
        {"2026-01-15T12:00:00-99:00", TS_OK2, 400, "invalid_timestamp"},
        {"2026-02-29T00:00:00Z", TS_OK2, 400, "invalid_timestamp"},
        {"2026-01-15T24:00:00Z", TS_OK2, 400, "invalid_timestamp"},
        {"2026-01-15T23:59:60Z", TS_OK2, 400, "invalid_timestamp"},
        {"0000-12-31T00:00:00Z", TS_OK2, 400, "invalid_timestamp"},
        {"10000-01-01T00:00:00Z", TS_OK2, 400, "invalid_timestamp"},
        {"2026-01-15T12:00:00+00:00[Europe/Paris]", TS_OK2, 400, "invalid_timestamp"},
        {"2026-01-15T12:00:00 CET", TS_OK2, 400, "invalid_timestamp"},
        {"9992000000000019", TS_OK2, 400, "invalid_timestamp"},
        {"-9999999999999999", TS_OK2, 400, "invalid_timestamp"},
    };
    char body[512];
    for (size_t i = 0; i < sizeof(tz) / sizeof(tz[0]); i++)
        for (int t = 0; t < 2; t++) {
            snprintf(body, sizeof(body),
                     "{\"market_ticker\":\"KXH\",\"start_time\":\"%s\",\"end_time\":\"%s\"}",
                     tz[i].start, tz[i].end);
            send_case("timezone_edges", "POST", t ? "/trades" : "/deltas", bearer_key, NULL,
                      body, -1, tz[i].status, tz[i].code);
        }
}

static void
cases_tokens(void)
{
    const char *secret = kbt_env("KB_JWT_SECRET");
    long long now = (long long)time(NULL);
    const char *hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *claims_ok = forge_claims(uid_a, now, now + 600, "authenticated");
    char *claims_exp = forge_claims(uid_a, now - 7200, now - 3600, "authenticated");
    char *claims_aud = forge_claims(uid_a, now, now + 600, "anon");
    char *toks[10];
    int n = 0;
    toks[n++] = forge_jwt("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims_ok, "none", NULL);
    toks[n++] = forge_jwt(hs, claims_exp, "HS256", secret);
    toks[n++] = forge_jwt(hs, claims_aud, "HS256", secret);
    toks[n++] = forge_jwt(hs, claims_ok, "HS256", "not-the-secret-0123456789abcdef0123456");
    toks[n++] = forge_jwt("{\"alg\":\"HS512\"}", claims_ok, "HS256", secret);
    toks[n++] = forge_jwt("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", claims_ok, "HS256", secret);
    toks[n++] = forge_jwt("{\"alg\":\"ES256\"}", claims_ok, "HS256", secret);
    toks[n++] = strdup("e30.e30.");
    toks[n++] = strdup("a.b.c.d");
    toks[n++] = forge_jwt(hs, "{\"sub\":\"x\",\"sub\":\"y\",\"aud\":\"authenticated\"}", "HS256",
                          secret);
    for (int i = 0; i < n; i++)
        kbt_secret_note(toks[i]);
    static const struct {
        const char *method, *path;
    } user_routes[] = {{"GET", "/keys"},          {"GET", "/keys/usage"},
                       {"POST", "/keys"},         {"GET", "/billing/status"},
                       {"POST", "/billing/payg"}, {"POST", "/billing/portal"},
                       {"POST", "/billing/checkout"}};
    char line[4096];
    for (size_t r = 0; r < sizeof(user_routes) / sizeof(user_routes[0]); r++) {
        const char *body = strcmp(user_routes[r].method, "POST") == 0 ? "{}" : NULL;
        for (int i = 0; i < n; i++) {
            snprintf(line, sizeof(line), "Authorization: Bearer %s", toks[i]);
            send_case("forged_token", user_routes[r].method, user_routes[r].path, line, NULL, body,
                      -1, 401, "invalid_api_key");
        }
        send_case("no_auth", user_routes[r].method, user_routes[r].path, NULL, NULL, body, -1, 401,
                  "invalid_api_key");
        send_case("basic_auth", user_routes[r].method, user_routes[r].path,
                  "Authorization: Basic dXNlcjpwYXNz", NULL, body, -1, 401, "invalid_api_key");
        send_case("api_key_on_user_route", user_routes[r].method, user_routes[r].path,
                  bearer_key, NULL, body, -1, 401, "invalid_auth_method");
    }
    free(claims_ok);
    free(claims_exp);
    free(claims_aud);
    for (int i = 0; i < n; i++)
        free(toks[i]);
}

static void
cases_keys_and_owners(void)
{
    char revoked_line[160], path[256];
    snprintf(revoked_line, sizeof(revoked_line), "Authorization: Bearer %s", revoked.key);
    static const struct {
        const char *method, *path, *body;
    } data_routes[] = {
        {"POST", "/orderbook", "{\"market_ticker\":\"KXH\",\"timestamp\":\"" TS_OK "\"}"},
        {"POST", "/deltas",
         "{\"market_ticker\":\"KXH\",\"start_time\":\"" TS_OK "\",\"end_time\":\"" TS_OK2 "\"}"},
        {"POST", "/trades",
         "{\"market_ticker\":\"KXH\",\"start_time\":\"" TS_OK "\",\"end_time\":\"" TS_OK2 "\"}"},
        {"GET", "/markets", NULL},
        {"GET", "/events", NULL},
        {"GET", "/settlements", NULL},
        {"GET", "/candles/KXH?start_time=" TS_OK "&end_time=" TS_OK2, NULL},
        {"GET", "/markets/KXH", NULL},
        {"GET", "/events/KXH", NULL},
        {"GET", "/settlements/KXH", NULL},
    };
    for (size_t r = 0; r < sizeof(data_routes) / sizeof(data_routes[0]); r++) {
        const char *m = data_routes[r].method, *p = data_routes[r].path, *b = data_routes[r].body;
        send_case("revoked_key", m, p, revoked_line, NULL, b, -1, 401, "invalid_api_key");
        send_case("unknown_key", m, p, "Authorization: Bearer kb-0000000000000000000000000000000",
                  NULL, b, -1, 401, "invalid_api_key");
        send_case("no_key", m, p, NULL, NULL, b, -1, 401, "invalid_api_key");
        /* API.md §2.1: on an API-key route anything not starting kb- is invalid_api_key */
        send_case("token_on_data_route", m, p, bearer_a, NULL, b, -1, 401, "invalid_api_key");
        send_case("key_in_query", m, p, "X-Api-Key: x", NULL, b, -1, 401, "invalid_api_key");
    }
    /* user A acting on user B's key, and on B's user id as a key id */
    const char *ids[] = {key_b_id, uid_b, uid_a, revoked.key_id, acct.key_id};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        snprintf(path, sizeof(path), "/keys/%s", ids[i]);
        send_case("other_users_key", "PATCH", path, bearer_a, NULL, "{\"name\":\"mine\"}", -1, 404,
                  "key_not_found");
        send_case("other_users_key", "DELETE", path, bearer_a, "", NULL, 0, 404, "key_not_found");
        snprintf(path, sizeof(path), "/keys/%s/reveal", ids[i]);
        send_case("other_users_key", "GET", path, bearer_a, "", NULL, 0, 404, "key_not_found");
    }
    /* PATCH with nothing to change */
    snprintf(path, sizeof(path), "/keys/%s", key_a_id);
    send_case("patch_no_fields", "PATCH", path, bearer_a, NULL, "{}", -1, 400, "no_fields");
    send_case("patch_no_fields", "PATCH", path, bearer_a, NULL, "{\"unknown\":1}", -1, 400,
              "no_fields");
}

static void
cases_methods_and_paths(void)
{
    static const char *const paths[] = {
        "/health", "/billing/webhook", "/billing/checkout", "/billing/portal", "/billing/payg",
        "/metrics", "/auth/signup", "/auth/login", "/keys", "/keys/usage", "/billing/status",
        "/orderbook", "/deltas", "/trades", "/markets", "/events", "/settlements",
        "/candles/KXH", "/markets/KXH", "/events/KXH", "/settlements/KXH",
        "/keys/00000000-0000-0000-0000-000000000000/reveal"};
    static const char *const methods[] = {"PUT", "PROPFIND", "MKCOL"};
    for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
        for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++)
            send_case("wrong_method", methods[m], paths[p], bearer_key, "", NULL, 0, 405,
                      "method_not_allowed");
        /* not a method token at all: nginx refuses the request line */
        send_case("malformed_method", "GET2", paths[p], bearer_key, "", NULL, 0, 400,
                  "bad_request");
    }
    static const char *const unknown[] = {
        "/markets/a/b", "/health/", "/orderbook/", "/keys/usage/x", "/.env", "/.git/config",
        "/admin", "/api/v1/markets", "/events//x", "/candles/", "/settlements/a/b/c",
        "/static/%2e%2e/app.env", "/billing/%2e/status"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        send_case("unknown_path", "GET", unknown[i], bearer_key, "", NULL, 0, 404, "not_found");
    /* climbing above the root, or a NUL in the path: nginx answers 400 itself */
    static const char *const refused[] = {"/%2e%2e/%2e%2e/etc/passwd",
                                          "/keys/..%2f..%2f..%2fetc%2fpasswd", "/%00",
                                          "/markets%00", "/markets/%00"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        send_case("unparseable_path", "GET", refused[i], bearer_key, "", NULL, 0, 400,
                  "bad_request");
}

static void
run_all_cases(void)
{
    cases_bad_bodies();
    cases_hostile_strings();
    cases_numbers();
    cases_timezones();
    cases_tokens();
    cases_keys_and_owners();
    cases_methods_and_paths();
}

START_TEST(hostile_corpus_gets_exact_errors_and_changes_nothing)
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
    run_all_cases();
    long ms = kbt_now_ms() - t0;
    take(&after);

    fprintf(stderr, "hostile: %ld requests in %ld ms, %ld as expected, %ld not; %ld spec samples"
                    " (%ld not conforming); classes:",
            T.sent, ms, T.ok, T.bad, T.sampled, T.sample_bad);
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
        ck_assert_msg(strcmp(w, after.v[i]) == 0, "%s: %s before, %s after, want %s",
                      snap_sql[i], before.v[i], after.v[i], w);
    }
    ck_assert_int_ge(T.sent, 1000);
    ck_assert_int_eq(T.bad, 0);
    ck_assert_int_eq(T.sample_bad, 0);
    ck_assert_int_gt(T.sampled, 10);
    for (size_t i = 0; i < NSNAP; i++) {
        free(before.v[i]);
        free(after.v[i]);
    }
    PQfinish(db);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("corpus");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, hostile_corpus_gets_exact_errors_and_changes_nothing);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
