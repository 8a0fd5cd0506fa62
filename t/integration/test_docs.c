/* test_docs.c - live answers of the routes on main validated against static/openapi.json
 * through kbt_docs_assert_conforms (t/docs/validate-response.js). Other suites call the same
 * helper for their routes. */
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

START_TEST(health_conforms)
{
    kbt_resp *r = kbt_get("/health");
    ck_assert_int_eq(r->status, 200);
    kbt_docs_assert_conforms(r, "GET", "/health");
    kbt_resp_free(r);
}
END_TEST

START_TEST(not_found_and_method_not_allowed_conform)
{
    kbt_resp *r = kbt_get("/no-such-path?x=1");
    ck_assert_int_eq(r->status, 404);
    kbt_docs_assert_conforms(r, "GET", "/no-such-path?x=1");
    kbt_resp_free(r);
    r = kbt_request("DELETE", "/health", NULL, NULL, 0);
    ck_assert_int_eq(r->status, 405);
    kbt_docs_assert_conforms(r, "DELETE", "/health");
    kbt_resp_free(r);
}
END_TEST

START_TEST(payload_too_large_conforms)
{
    size_t n = (size_t)1100 * 1024;
    char *body = malloc(n);
    ck_assert_ptr_nonnull(body);
    memset(body, 'a', n);
    const char *h[] = {"Content-Type: application/json", NULL};
    kbt_resp *r = kbt_request("POST", "/orderbook", h, body, n);
    free(body);
    ck_assert_int_eq(r->status, 413);
    kbt_docs_assert_conforms(r, "POST", "/orderbook");
    kbt_resp_free(r);
}
END_TEST

START_TEST(drifted_body_is_refused)
{
    kbt_resp *r = kbt_get("/health");
    r->body.len = 0;
    kb_buf_puts(&r->body, "{\"status\":\"ok\",\"extra\":1}");
    char msg[4096];
    ck_assert_msg(!kbt_docs_conforms(r, "GET", "/health", msg, sizeof(msg)),
                  "a body with an undocumented field was accepted");
    ck_assert_msg(strstr(msg, "additional properties") != NULL, "message: %s", msg);
    kbt_resp_free(r);
}
END_TEST

static Suite *
docs_suite(void)
{
    Suite *s = suite_create("docs");
    TCase *tc = tcase_create("conformance");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, health_conforms);
    tcase_add_test(tc, not_found_and_method_not_allowed_conform);
    tcase_add_test(tc, payload_too_large_conforms);
    tcase_add_test(tc, drifted_body_is_refused);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    kbt_init();
    return kb_check_run(docs_suite());
}
