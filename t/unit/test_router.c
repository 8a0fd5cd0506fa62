/* test_router.c - method/path matching, parameters, 404 vs 405, dispatch, and the
 * route table's credit costs. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "app.h"
#include "check_main.h"
#include "kb_config.h"
#include "kb_meter.h"
#include "kb_banned.h"

static kb_err
h_dummy(const kb_req *req, kb_ctx *ctx)
{
    (void)req;
    (void)ctx;
    return KB_OK;
}

static const kb_route table[] = {
    {"GET", "/health", h_dummy, 0, KB_OK},
    {"POST", "/keys", h_dummy, 0, KB_OK},
    {"GET", "/keys", h_dummy, 0, KB_OK},
    {"GET", "/keys/usage", h_dummy, 0, KB_OK},
    {"PATCH", "/keys/{key_id}", h_dummy, 0, KB_E_KEY_NOT_FOUND},
    {"DELETE", "/keys/{key_id}", h_dummy, 0, KB_E_KEY_NOT_FOUND},
    {"GET", "/keys/{key_id}/reveal", h_dummy, 0, KB_E_KEY_NOT_FOUND},
    {"GET", "/markets/{ticker}", h_dummy, 0, KB_E_MARKET_NOT_FOUND},
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
    /* a {param} segment that does not decode (a bad escape, NUL, bytes that are
     * not UTF-8, escaped or raw) matches, flagged; it never matches a literal */
    {"GET", "/markets/bad%zz", KB_MATCH_BAD_PARAM, "/markets/{ticker}", NULL},
    {"GET", "/markets/bad%4", KB_MATCH_BAD_PARAM, "/markets/{ticker}", NULL},
    {"GET", "/markets/nul%00", KB_MATCH_BAD_PARAM, "/markets/{ticker}", NULL},
    {"GET", "/markets/%FF", KB_MATCH_BAD_PARAM, "/markets/{ticker}", NULL},
    {"GET", "/markets/A\xff", KB_MATCH_BAD_PARAM, "/markets/{ticker}", NULL},
    {"GET", "/markets/%E2%82", KB_MATCH_BAD_PARAM, "/markets/{ticker}", NULL},
    {"GET", "/markets/%C0%AF", KB_MATCH_BAD_PARAM, "/markets/{ticker}", NULL},
    {"GET", "/markets/%ED%A0%80", KB_MATCH_BAD_PARAM, "/markets/{ticker}", NULL},
    {"GET", "/markets/%F4%90%80%80", KB_MATCH_BAD_PARAM, "/markets/{ticker}", NULL},
    {"GET", "/keys/%FF/reveal", KB_MATCH_BAD_PARAM, "/keys/{key_id}/reveal", NULL},
    {"GET", "/keys/%FF", KB_MATCH_BAD_METHOD, "PATCH, DELETE", NULL},
    {"GET", "/%FF/markets", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/k%FFeys", KB_MATCH_NO_PATH, NULL, NULL},
    {"GET", "/markets/%E2%82%AC", KB_MATCH_OK, "/markets/{ticker}", "\xe2\x82\xac"},
    {"GET", "/markets/\xf0\x9f\x98\x80", KB_MATCH_OK, "/markets/{ticker}", "\xf0\x9f\x98\x80"},
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
    if (m == KB_MATCH_BAD_PARAM) {
        ck_assert_str_eq(route->pattern, c->pattern);
        ck_assert_uint_eq(req.nparams, 1);
        ck_assert_ptr_null(req.params[0].p);
    } else if (m == KB_MATCH_OK) {
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

/* API.md §5.0: every route and its cost in credits. */
static const struct {
    const char *method, *pattern;
    int cost;
} contract[] = {
    {"GET", "/health", 0},
    {"POST", "/billing/webhook", 0},
    {"POST", "/billing/checkout", 0},
    {"POST", "/billing/portal", 0},
    {"POST", "/billing/payg", 0},
    {"GET", "/metrics", 0},
    {"POST", "/auth/signup", 0},
    {"POST", "/auth/login", 0},
    {"POST", "/keys", 0},
    {"GET", "/keys", 0},
    {"GET", "/keys/usage", 0},
    {"PATCH", "/keys/{key_id}", 0},
    {"DELETE", "/keys/{key_id}", 0},
    {"GET", "/keys/{key_id}/reveal", 0},
    {"GET", "/billing/status", 0},
    {"POST", "/orderbook", 5},
    {"POST", "/deltas", 2},
    {"POST", "/trades", 2},
    {"GET", "/markets", 1},
    {"GET", "/events", 1},
    {"GET", "/settlements", 1},
    {"GET", "/candles/{ticker}", 3},
    {"GET", "/markets/{ticker}", 1},
    {"GET", "/events/{event_ticker}", 1},
    {"GET", "/settlements/{ticker}", 1},
    {"GET", "/markets/{ticker}/coverage", 1}, /* API.md §7 item 20 */
};

/* The route table is the one place costs live: each route costs what API.md
 * says, and the table has no route the contract lacks (nor lacks one). */
START_TEST(route_table_costs_are_the_contract)
{
    size_t n = sizeof(contract) / sizeof(contract[0]);
    ck_assert_uint_eq(kb_nroutes, n);
    for (size_t i = 0; i < kb_nroutes; i++) {
        const kb_route *r = &kb_routes[i];
        size_t j = 0;
        while (j < n && !(strcmp(contract[j].method, r->method) == 0 &&
                          strcmp(contract[j].pattern, r->pattern) == 0))
            j++;
        ck_assert_msg(j < n, "%s %s is not in API.md 5.0", r->method, r->pattern);
        ck_assert_msg(r->cost == contract[j].cost, "%s %s costs %d, API.md says %d", r->method,
                      r->pattern, r->cost, contract[j].cost);
    }
}
END_TEST

/* A dispatch through the real route table with a worker whose database is never tried (no
 * network in unit tests). */
typedef struct offline {
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_req req;
    kb_header h;
} offline;

static void
offline_init(offline *o)
{
    memset(o, 0, sizeof(*o));
    kb_arena_init(&o->a, 0);
    kb_db_init(&o->w.db, "", "test", 1, 0);
    o->w.db.next_attempt_us = INT64_MAX;
}

/* Dispatch method path with an Authorization header (NULL = none) into o->ctx. */
static void
offline_dispatch(offline *o, const char *method, const char *path, const char *authorization)
{
    kb_req *req = &o->req;
    memset(req, 0, sizeof(*req));
    req->arena = &o->a;
    req->method = kb_str_c(method);
    req->path = kb_str_c(path);
    if (authorization != NULL) {
        o->h.name = kb_str_c("authorization");
        o->h.value = kb_str_c(authorization);
        req->headers = &o->h;
        req->nheaders = 1;
    }
    kb_req_set_id(req, kb_str_c("req_0123456789ab"));
    kb_ctx_init(&o->ctx, &o->w, &o->a);
    kb_dispatch(req, &o->ctx);
}

static void
offline_release(offline *o)
{
    kb_db_release(&o->w.db);
    kb_arena_release(&o->a);
}

/* The dispatcher parses a metered route's key once, into req->api_key, and
 * takes the route's cost from the table; a malformed key is 401 before the
 * handler. Other routes get neither. */
START_TEST(dispatch_parses_the_key_once_and_takes_the_cost)
{
    offline o;
    offline_init(&o);

    offline_dispatch(&o, "POST", "/orderbook", "Bearer not-a-kb-key");
    ck_assert_int_eq(o.ctx.resp.status, 401);
    ck_assert(strstr(kb_buf_cstr(&o.ctx.resp.body), "\"code\":\"invalid_api_key\"") != NULL);
    ck_assert_int_eq(o.ctx.cost, 5);
    ck_assert_ptr_null(o.req.api_key.p);
    ck_assert_ptr_null(o.ctx.charge);
    kb_ctx_release(&o.ctx);

    /* Well formed: parsed (scheme in any case, spaces trimmed), then the handler
     * runs and the meter finds the database down. */
    offline_dispatch(&o, "GET", "/markets", "bEaReR   kb-abcdef  ");
    ck_assert_int_eq(o.ctx.cost, 1);
    ck_assert_uint_eq(o.req.api_key.len, 9);
    ck_assert(memcmp(o.req.api_key.p, "kb-abcdef", 9) == 0);
    ck_assert_int_eq(o.ctx.resp.status, 503);
    ck_assert_ptr_null(o.ctx.charge);
    kb_ctx_release(&o.ctx);

    offline_dispatch(&o, "GET", "/keys/usage", "Bearer kb-abcdef");
    ck_assert_int_eq(o.ctx.cost, 0);
    ck_assert_ptr_null(o.req.api_key.p);
    kb_ctx_release(&o.ctx);
    offline_release(&o);
}
END_TEST

/* A path parameter that does not decode (here bytes that are not UTF-8) names
 * nothing: the route's own not-found code, before the handler (which would
 * reach the offline meter: 503), so nothing is charged; a malformed key is
 * still 401 first. */
START_TEST(dispatch_undecodable_param_is_the_routes_miss_uncharged)
{
    static const struct {
        const char *method, *path;
        int status;
        const char *code;
    } undecodable[] = {
        {"GET", "/markets/%FF", 404, "market_not_found"},
        {"GET", "/events/%C0%AF", 404, "event_not_found"},
        {"GET", "/settlements/%ED%A0%80", 404, "settlement_not_found"},
        {"GET", "/candles/%F4%90%80%80", 422, "validation_error"},
        {"GET", "/keys/%E2%82/reveal", 404, "key_not_found"},
        {"DELETE", "/keys/A\xfe", 404, "key_not_found"},
        {"GET", "/markets/A\xfe", 404, "market_not_found"},
    };
    offline o;
    offline_init(&o);
    for (size_t i = 0; i < sizeof(undecodable) / sizeof(undecodable[0]); i++) {
        offline_dispatch(&o, undecodable[i].method, undecodable[i].path, "Bearer kb-abcdef");
        const char *body = kb_buf_cstr(&o.ctx.resp.body);
        ck_assert_msg(o.ctx.resp.status == undecodable[i].status, "%s: %d", undecodable[i].path,
                      o.ctx.resp.status);
        ck_assert_msg(strstr(body, undecodable[i].code) != NULL, "%s: %s", undecodable[i].path,
                      body);
        ck_assert_msg(strstr(body, "path.") != NULL, "%s: %s", undecodable[i].path, body);
        ck_assert_ptr_null(o.ctx.charge);
        kb_ctx_release(&o.ctx);
    }
    offline_dispatch(&o, "GET", "/markets/%FF", "Bearer nope");
    ck_assert_int_eq(o.ctx.resp.status, 401);
    kb_ctx_release(&o.ctx);
    offline_release(&o);
}
END_TEST

static int sent;

static void
count_send(void *ud, const kb_req *req, kb_ctx *ctx)
{
    (void)req;
    (void)ctx;
    ck_assert_ptr_eq(ud, &sent);
    sent++;
}

/* kb_meter_end() sends every answer once; one that was not metered gets no
 * credit or rate-limit headers and touches no database. */
START_TEST(end_sends_an_unmetered_answer_unchanged)
{
    offline o;
    offline_init(&o);
    offline_dispatch(&o, "GET", "/nope", NULL);
    sent = 0;
    kb_meter_end(&o.req, &o.ctx, KB_E_NOT_FOUND, count_send, &sent);
    ck_assert_int_eq(sent, 1);
    ck_assert_int_eq(o.ctx.resp.status, 404);
    ck_assert_ptr_null(strstr(kb_buf_cstr(&o.ctx.resp.headers), "X-Credits"));
    ck_assert_ptr_null(strstr(kb_buf_cstr(&o.ctx.resp.headers), "X-RateLimit"));
    kb_ctx_release(&o.ctx);
    offline_release(&o);
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
    tcase_add_test(tc, route_table_costs_are_the_contract);
    tcase_add_test(tc, dispatch_parses_the_key_once_and_takes_the_cost);
    tcase_add_test(tc, dispatch_undecodable_param_is_the_routes_miss_uncharged);
    tcase_add_test(tc, end_sends_an_unmetered_answer_unchanged);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
