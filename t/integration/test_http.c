/* test_http.c - the HTTP surface through nginx: health, envelope, 404/405/413, ids, TLS. */
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

START_TEST(health_answers_ok_json)
{
    kbt_resp *r = kbt_get("/health");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(kb_buf_cstr(&r->body), "{\"status\":\"ok\"}");
    char *ct = kbt_header(r, "Content-Type");
    ck_assert_str_eq(ct, "application/json");
    free(ct);
    kbt_assert_request_id(r);
    kbt_resp_free(r);
}
END_TEST

START_TEST(unknown_path_is_404_not_found_envelope)
{
    const char *paths[] = {"/nope",           "/",         "/health/",
                           "/HEALTH",         "/health/x", "/static/..%2fpasswd",
                           "/billing/unknown"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        kbt_resp *r = kbt_get(paths[i]);
        kbt_assert_envelope(r, 404, "not_found");
        ck_assert_ptr_null(kbt_header(r, "Location"));
        kbt_resp_free(r);
    }
}
END_TEST

START_TEST(wrong_method_is_405_with_allow)
{
    const char *methods[] = {"POST", "DELETE", "PUT", "PATCH"};
    for (size_t i = 0; i < 4; i++) {
        kbt_resp *r = kbt_request(methods[i], "/health", NULL, "{}", 2);
        kbt_assert_envelope(r, 405, "method_not_allowed");
        char *allow = kbt_header(r, "Allow");
        ck_assert_msg(allow != NULL, "no Allow header");
        ck_assert_str_eq(allow, "GET");
        free(allow);
        kbt_resp_free(r);
    }
}
END_TEST

START_TEST(request_ids_are_unique_and_incoming_ignored)
{
    const char *h[] = {"X-Request-ID: req_ffffffffffff", NULL};
    char *seen[20];
    for (int i = 0; i < 20; i++) {
        kbt_resp *r = kbt_request("GET", "/nope", h, NULL, 0);
        kbt_assert_envelope(r, 404, "not_found");
        seen[i] = kbt_header(r, "X-Request-ID");
        ck_assert_str_ne(seen[i], "req_ffffffffffff");
        for (int k = 0; k < i; k++)
            ck_assert_str_ne(seen[k], seen[i]);
        kbt_resp_free(r);
    }
    for (int i = 0; i < 20; i++)
        free(seen[i]);
}
END_TEST

static char *
big_body(size_t n)
{
    char *b = malloc(n);
    memset(b, 'a', n);
    return b;
}

START_TEST(body_over_nginx_cap_is_413_json)
{
    size_t n = 2 * 1024 * 1024;
    char *b = big_body(n);
    const char *h[] = {"Content-Type: application/json", NULL};
    kbt_resp *r = kbt_request("POST", "/health", h, b, n);
    kbt_assert_envelope(r, 413, "payload_too_large");
    kbt_resp_free(r);
    free(b);
}
END_TEST

START_TEST(body_over_worker_cap_is_413_from_worker)
{
    /* The test stack runs with KB_MAX_BODY below nginx's 1 MiB, so this
     * body passes nginx and is refused by the worker's own bound. */
    long cap = strtol(kbt_env("KB_MAX_BODY"), NULL, 10);
    ck_assert(cap > 0 && cap < 1024 * 1024);
    size_t n = (size_t)cap + 1;
    char *b = big_body(n);
    kbt_resp *r = kbt_request("POST", "/nope", NULL, b, n);
    kbt_assert_envelope(r, 413, "payload_too_large");
    cJSON *msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(r->json, "error"), "message");
    ck_assert_msg(strstr(msg->valuestring, kbt_env("KB_MAX_BODY")) != NULL, "%s", msg->valuestring);
    kbt_resp_free(r);
    /* Exactly at the cap is read fully and routed (404 here, not 413). */
    r = kbt_request("POST", "/nope", NULL, b, (size_t)cap);
    kbt_assert_envelope(r, 404, "not_found");
    kbt_resp_free(r);
    free(b);
}
END_TEST

START_TEST(chunked_body_over_worker_cap_is_413)
{
    long cap = strtol(kbt_env("KB_MAX_BODY"), NULL, 10);
    size_t n = (size_t)cap * 2;
    char *b = big_body(n);
    const char *h[] = {"Transfer-Encoding: chunked", NULL};
    kbt_resp *r = kbt_request("POST", "/nope", h, b, n);
    kbt_assert_envelope(r, 413, "payload_too_large");
    kbt_resp_free(r);
    free(b);
}
END_TEST

START_TEST(plain_http_redirects_to_https)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/health", kbt_env("KB_HTTP_URL"));
    kbt_resp *r = kbt_request_url("GET", url, NULL, NULL, 0);
    ck_assert_int_eq(r->status, 301);
    char *loc = kbt_header(r, "Location");
    ck_assert_msg(loc != NULL && strncmp(loc, "https://", 8) == 0, "location %s",
                  loc ? loc : "(none)");
    free(loc);
    kbt_resp_free(r);
}
END_TEST

START_TEST(https_sends_hsts_and_cors)
{
    kbt_resp *r = kbt_get("/health");
    char *hsts = kbt_header(r, "Strict-Transport-Security");
    ck_assert_msg(hsts != NULL && strstr(hsts, "max-age=") != NULL, "hsts");
    char *cors = kbt_header(r, "Access-Control-Allow-Origin");
    ck_assert_msg(cors != NULL && strcmp(cors, "*") == 0, "cors");
    free(hsts);
    free(cors);
    kbt_resp_free(r);
}
END_TEST

START_TEST(static_files_served_by_nginx)
{
    kbt_resp *r = kbt_get("/llms.txt");
    ck_assert_int_eq(r->status, 200);
    char *ct = kbt_header(r, "Content-Type");
    ck_assert_str_eq(ct, "text/plain; charset=utf-8");
    free(ct);
    kbt_resp_free(r);
    r = kbt_get("/openapi.json");
    ck_assert_int_eq(r->status, 200);
    ck_assert(r->json != NULL);
    kbt_resp_free(r);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("surface");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, health_answers_ok_json);
    tcase_add_test(tc, unknown_path_is_404_not_found_envelope);
    tcase_add_test(tc, wrong_method_is_405_with_allow);
    tcase_add_test(tc, request_ids_are_unique_and_incoming_ignored);
    tcase_add_test(tc, body_over_nginx_cap_is_413_json);
    tcase_add_test(tc, body_over_worker_cap_is_413_from_worker);
    tcase_add_test(tc, chunked_body_over_worker_cap_is_413);
    tcase_add_test(tc, plain_http_redirects_to_https);
    tcase_add_test(tc, https_sends_hsts_and_cors);
    tcase_add_test(tc, static_files_served_by_nginx);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
