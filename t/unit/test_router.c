/* test_router.c - method/path matching, parameters, 404 vs 405, and dispatch. */
#include <check.h>
#include <string.h>

#include "app.h"
#include "check_main.h"
#include "kb_config.h"
#include "kb_banned.h"

static kb_err
h_dummy(const kb_req *req, kb_ctx *ctx)
{
    (void)req;
    (void)ctx;
    return KB_OK;
}

static const kb_route table[] = {
    {"GET", "/health", h_dummy, 0},
    {"POST", "/keys", h_dummy, 0},
    {"GET", "/keys", h_dummy, 0},
    {"GET", "/keys/usage", h_dummy, 0},
    {"PATCH", "/keys/{key_id}", h_dummy, 0},
    {"DELETE", "/keys/{key_id}", h_dummy, 0},
    {"GET", "/keys/{key_id}/reveal", h_dummy, 0},
    {"GET", "/markets/{ticker}", h_dummy, 0},
};

typedef struct rcase {
    const char *method, *path;
    kb_match want;
    const char *pattern; /* matched pattern, or Allow text for 405 */
    const char *param;   /* first decoded parameter, if any */
} rcase;

static const rcase cases[] = {
    {"GET", "/health", KB_MATCH_OK, "/health", NULL},
    {"POST", "/health", KB_MATCH_BAD_METHOD, "GET", NULL},
    {"HEAD", "/health", KB_MATCH_BAD_METHOD, "GET", NULL},
    {"GET", "/health/", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "//health", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/Health", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/nope", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "health", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/", KB_MATCH_NO_PATH, NULL, NULL},
    {"PUT", "/keys", KB_MATCH_BAD_METHOD, "POST, GET", NULL},
    {"GET", "/keys/usage", KB_MATCH_OK, "/keys/usage", NULL},
    {"DELETE", "/keys/usage", KB_MATCH_OK, "/keys/{key_id}", "usage"},
    {"GET", "/keys/abc", KB_MATCH_BAD_METHOD, "PATCH, DELETE", NULL},
    {"PATCH", "/keys/abc", KB_MATCH_OK, "/keys/{key_id}", "abc"},
    {"GET", "/keys/abc/reveal", KB_MATCH_OK, "/keys/{key_id}/reveal", "abc"},
    {"GET", "/keys//reveal", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/markets/KXBTC-25%2B1", KB_MATCH_OK, "/markets/{ticker}", "KXBTC-25+1"},
    {"GET", "/markets/A+B", KB_MATCH_OK, "/markets/{ticker}", "A+B"},
    {"GET", "/markets/%41bc", KB_MATCH_OK, "/markets/{ticker}", "Abc"},
    {"GET", "/markets/bad%zz", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/markets/bad%4", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/markets/nul%00", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/markets/", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/markets/a/b", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/%6Beys", KB_MATCH_OK, "/keys", NULL},
    {"GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s", KB_MATCH_NO_PATH, NULL, NULL},
};

START_TEST(router_matches_table_of_cases)
{
    const rcase *c = &cases[_i];
    kb_arena a;
    kb_arena_init(&a, 0);
    kb_req req;
    memset(&req, 0, sizeof(req));
    req.arena = &a;
    req.method = kb_str_c(c->method);
    req.path = kb_str_c(c->path);
    const kb_route *route = NULL;
    char allow[128];
    kb_match m = kb_router_match(table, sizeof(table) / sizeof(table[0]), &req, &route, allow,
                                 sizeof(allow));
    ck_assert_msg(m == c->want, "%s %s: got %d want %d", c->method, c->path, m, c->want);
    if (m == KB_MATCH_OK) {
        ck_assert_str_eq(route->pattern, c->pattern);
        if (c->param) {
            ck_assert_uint_eq(req.nparams, 1);
            ck_assert_uint_eq(req.params[0].len, strlen(c->param));
            ck_assert(memcmp(req.params[0].p, c->param, req.params[0].len) == 0);
        } else {
            ck_assert_uint_eq(req.nparams, 0);
        }
    } else if (m == KB_MATCH_BAD_METHOD) {
        ck_assert_str_eq(allow, c->pattern);
    }
    kb_arena_release(&a);
}
END_TEST

/* Dispatch through the real route table, without FastCGI or a database. */
static void
dispatch(const char *method, const char *path, bool too_large, kb_ctx *ctx, kb_req *req,
         kb_arena *a, kb_worker *w)
{
    memset(req, 0, sizeof(*req));
    req->arena = a;
    req->method = kb_str_c(method);
    req->path = kb_str_c(path);
    req->body_too_large = too_large;
    kb_req_set_id(req, kb_str_c("req_0123456789ab"));
    kb_ctx_init(ctx, w, a);
    kb_dispatch(req, ctx);
}

START_TEST(dispatch_unknown_path_is_enveloped_404)
{
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_req req;
    kb_arena_init(&a, 0);
    memset(&w, 0, sizeof(w));
    dispatch("GET", "/nope", false, &ctx, &req, &a, &w);
    ck_assert_int_eq(ctx.resp.status, 404);
    ck_assert_str_eq(kb_buf_cstr(&ctx.resp.body),
                     "{\"error\":{\"code\":\"not_found\",\"message\":\"No route for this path.\","
                     "\"status\":404},\"request_id\":\"req_0123456789ab\"}");
    kb_ctx_release(&ctx);
    kb_arena_release(&a);
}
END_TEST

START_TEST(dispatch_wrong_method_is_405_with_allow)
{
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_req req;
    kb_arena_init(&a, 0);
    memset(&w, 0, sizeof(w));
    dispatch("DELETE", "/health", false, &ctx, &req, &a, &w);
    ck_assert_int_eq(ctx.resp.status, 405);
    ck_assert_str_eq(kb_buf_cstr(&ctx.resp.headers), "Allow: GET\r\n");
    ck_assert(strstr(kb_buf_cstr(&ctx.resp.body), "\"code\":\"method_not_allowed\"") != NULL);
    kb_ctx_release(&ctx);
    kb_arena_release(&a);
}
END_TEST

START_TEST(dispatch_oversized_body_is_413_before_routing)
{
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_req req;
    kb_arena_init(&a, 0);
    memset(&w, 0, sizeof(w));
    kb_cfg.max_body = 1024;
    dispatch("POST", "/nope", true, &ctx, &req, &a, &w);
    ck_assert_int_eq(ctx.resp.status, 413);
    ck_assert(strstr(kb_buf_cstr(&ctx.resp.body), "\"code\":\"payload_too_large\"") != NULL);
    ck_assert(strstr(kb_buf_cstr(&ctx.resp.body), "\"status\":413") != NULL);
    kb_ctx_release(&ctx);
    kb_arena_release(&a);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, router_matches_table_of_cases, 0, sizeof(cases) / sizeof(cases[0]));
    tcase_add_test(tc, dispatch_unknown_path_is_enveloped_404);
    tcase_add_test(tc, dispatch_wrong_method_is_405_with_allow);
    tcase_add_test(tc, dispatch_oversized_body_is_413_before_routing);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
