/* test_hostile_auth.c - hostile credentials and ownership through nginx: forged, expired
 * and malformed tokens and keys, other users' keys, revoked keys, unknown methods and
 * unparseable paths. Each case gets its exact status and API.md code and changes nothing
 * (t/integration/hostile.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "hostile.h"
#include "jwt_forge.h"
#include "kb_banned.h"

/* ---- the case classes ----------------------------------------------------- */

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
    } user_routes[] = {{"GET", "/keys"},
                       {"GET", "/keys/usage"},
                       {"POST", "/keys"},
                       {"GET", "/billing/status"},
                       {"POST", "/billing/payg"},
                       {"POST", "/billing/portal"},
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
        send_case("api_key_on_user_route", user_routes[r].method, user_routes[r].path, bearer_key,
                  NULL, body, -1, 401, "invalid_auth_method");
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
    static const char *const paths[] = {"/health",
                                        "/billing/webhook",
                                        "/billing/checkout",
                                        "/billing/portal",
                                        "/billing/payg",
                                        "/metrics",
                                        "/auth/signup",
                                        "/auth/login",
                                        "/keys",
                                        "/keys/usage",
                                        "/billing/status",
                                        "/orderbook",
                                        "/deltas",
                                        "/trades",
                                        "/markets",
                                        "/events",
                                        "/settlements",
                                        "/candles/KXH",
                                        "/markets/KXH",
                                        "/events/KXH",
                                        "/settlements/KXH",
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
    static const char *const unknown[] = {"/markets/a/b",
                                          "/health/",
                                          "/orderbook/",
                                          "/keys/usage/x",
                                          "/.env",
                                          "/.git/config",
                                          "/admin",
                                          "/api/v1/markets",
                                          "/events//x",
                                          "/candles/",
                                          "/settlements/a/b/c",
                                          "/static/%2e%2e/app.env",
                                          "/billing/%2e/status"};
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
auth_cases(void)
{
    cases_tokens();
    cases_keys_and_owners();
    cases_methods_and_paths();
}

START_TEST(hostile_credentials_get_exact_errors_and_change_nothing)
{
    hostile_run("hostile auth", auth_cases, 250, 4);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("hostile_auth");
    TCase *tc = tcase_create("corpus");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, hostile_credentials_get_exact_errors_and_change_nothing);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
