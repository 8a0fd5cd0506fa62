/* test_base.c - libkb base layer: buffers, strings, integers, time, arena, errors, envelope. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "check_main.h"
#include "kb_arena.h"
#include "kb_buf.h"
#include "kb_http.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_worker.h"
#include "kb_banned.h"

typedef struct jcase {
    const char *in;
    size_t len;
    const char *want;
} jcase;

static const jcase json_cases[] = {
    {"plain", 5, "\"plain\""},
    {"q\"b\\", 4, "\"q\\\"b\\\\\""},
    {"nl\n\t\r", 5, "\"nl\\u000a\\u0009\\u000d\""},
    {"nul\0x", 5, "\"nul\\u0000x\""},
    {"\x7f", 1, "\"\\u007f\""},
    {"caf\xc3\xa9", 5, "\"caf\xc3\xa9\""},
    {"bad\xff", 4, "\"bad\\ufffd\""},
    {"trunc\xe2\x82", 7, "\"trunc\\ufffd\\ufffd\""},
    {"overlong\xc0\xaf", 10, "\"overlong\\ufffd\\ufffd\""},
    {"surrogate\xed\xa0\x80", 12, "\"surrogate\\ufffd\\ufffd\\ufffd\""},
    {"emoji\xf0\x9f\x98\x80", 9, "\"emoji\xf0\x9f\x98\x80\""},
};

START_TEST(json_str_escapes_everything_unsafe)
{
    const jcase *c = &json_cases[_i];
    kb_buf b = KB_BUF_INIT;
    kb_buf_json_str(&b, c->in, c->len);
    ck_assert_str_eq(kb_buf_cstr(&b), c->want);
    kb_buf_release(&b);
}
END_TEST

START_TEST(buf_grows_and_stays_terminated)
{
    kb_buf b = KB_BUF_INIT;
    ck_assert_str_eq(kb_buf_cstr(&b), "");
    for (int i = 0; i < 1000; i++)
        kb_buf_printf(&b, "%d,", i);
    ck_assert_uint_eq(b.len, strlen(b.buf));
    ck_assert(b.len < b.cap);
    kb_buf_reset(&b);
    ck_assert_str_eq(kb_buf_cstr(&b), "");
    kb_buf_append(&b, "a\0b", 3);
    ck_assert_uint_eq(b.len, 3);
    size_t len = 0;
    char *s = kb_buf_detach(&b, &len);
    ck_assert_uint_eq(len, 3);
    ck_assert(memcmp(s, "a\0b", 4) == 0);
    ck_assert_ptr_null(b.buf);
    free(s);
}
END_TEST

typedef struct icase {
    const char *in;
    int64_t min, max;
    bool ok;
    int64_t want;
    const char *err;
} icase;

static const icase int_cases[] = {
    {"0", 0, 10, true, 0, NULL},
    {"10", 0, 10, true, 10, NULL},
    {"11", 0, 10, false, 0, "too large"},
    {"-1", 0, 10, false, 0, "too small"},
    {"9223372036854775807", INT64_MIN, INT64_MAX, true, INT64_MAX, NULL},
    {"9223372036854775808", INT64_MIN, INT64_MAX, false, 0, "too large"},
    {"-9223372036854775808", INT64_MIN, INT64_MAX, true, INT64_MIN, NULL},
    {"-9223372036854775809", INT64_MIN, INT64_MAX, false, 0, "too small"},
    {"99999999999999999999999", INT64_MIN, INT64_MAX, false, 0, "too large"},
    {"", 0, 10, false, 0, "invalid"},
    {"-", 0, 10, false, 0, "invalid"},
    {"1x", 0, 10, false, 0, "invalid"},
    {" 1", 0, 10, false, 0, "invalid"},
    {"+1", 0, 10, false, 0, "invalid"},
    {"1.0", 0, 10, false, 0, "invalid"},
};

START_TEST(parse_i64_checks_range_and_syntax)
{
    const icase *c = &int_cases[_i];
    int64_t v = -42;
    const char *err = NULL;
    bool ok = kb_parse_i64(kb_str_c(c->in), c->min, c->max, &v, &err);
    ck_assert_msg(ok == c->ok, "'%s'", c->in);
    if (ok) {
        ck_assert(v == c->want);
        ck_assert_ptr_null(err);
    } else {
        ck_assert_str_eq(err, c->err);
    }
}
END_TEST

START_TEST(query_get_form_decodes)
{
    kb_arena a;
    kb_arena_init(&a, 0);
    kb_str q = kb_str_c("start_time=2026-01-15T12%3A00%3A00%2B00%3A00&x=a+b&empty=&flag&bad=%zz");
    kb_str v;
    ck_assert(kb_query_get(&a, q, "start_time", &v));
    ck_assert(kb_str_eq(v, "2026-01-15T12:00:00+00:00"));
    ck_assert(kb_query_get(&a, q, "x", &v));
    ck_assert(kb_str_eq(v, "a b"));
    ck_assert(kb_query_get(&a, q, "empty", &v));
    ck_assert_uint_eq(v.len, 0);
    ck_assert(kb_query_get(&a, q, "flag", &v));
    ck_assert_uint_eq(v.len, 0);
    ck_assert(kb_query_get(&a, q, "bad", &v));
    ck_assert_ptr_null(v.p);
    ck_assert(!kb_query_get(&a, q, "missing", &v));
    ck_assert(!kb_query_get(&a, KB_STR_NULL, "x", &v));
    kb_arena_release(&a);
}
END_TEST

START_TEST(utf8_validation)
{
    ck_assert(kb_utf8_valid("abc\xc3\xa9\xf0\x9f\x98\x80", 9));
    ck_assert(!kb_utf8_valid("\xc0\xaf", 2));
    ck_assert(!kb_utf8_valid("\xed\xa0\x80", 3));
    ck_assert(!kb_utf8_valid("\xf4\x90\x80\x80", 4));
    ck_assert(!kb_utf8_valid("\xe2\x82", 2));
    ck_assert(kb_utf8_valid("", 0));
}
END_TEST

START_TEST(time_format_is_python_isoformat)
{
    char out[40];
    kb_time_format(0, out, sizeof(out));
    ck_assert_str_eq(out, "1970-01-01T00:00:00+00:00");
    kb_time_format(1768478400LL * 1000000, out, sizeof(out));
    ck_assert_str_eq(out, "2026-01-15T12:00:00+00:00");
    kb_time_format(1768478400LL * 1000000 + 123000, out, sizeof(out));
    ck_assert_str_eq(out, "2026-01-15T12:00:00.123000+00:00");
    kb_time_format(1768478400LL * 1000000 + 1, out, sizeof(out));
    ck_assert_str_eq(out, "2026-01-15T12:00:00.000001+00:00");
    kb_time_format(-1, out, sizeof(out));
    ck_assert_str_eq(out, "1969-12-31T23:59:59.999999+00:00");
}
END_TEST

static int cleanup_calls;

static void
count_cleanup(void *p)
{
    (void)p;
    cleanup_calls++;
}

START_TEST(arena_reset_runs_cleanups_and_reuses)
{
    kb_arena a;
    kb_arena_init(&a, 1024);
    cleanup_calls = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 500; i++) {
            char *p = kb_arena_alloc(&a, (size_t)(i % 300) + 1);
            memset(p, 'x', (size_t)(i % 300) + 1);
            ck_assert(((uintptr_t)p % 16) == 0);
        }
        char *big = kb_arena_alloc(&a, 100000);
        memset(big, 1, 100000);
        kb_arena_on_reset(&a, count_cleanup, NULL);
        kb_arena_on_reset(&a, count_cleanup, NULL);
        ck_assert_str_eq(kb_arena_printf(&a, "%s-%d", "n", 7), "n-7");
        kb_arena_reset(&a);
        ck_assert_int_eq(cleanup_calls, 2 * (round + 1));
        ck_assert_uint_eq(a.allocated, 0);
    }
    kb_arena_release(&a);
}
END_TEST

START_TEST(error_table_maps_status_and_code)
{
    ck_assert_int_eq(kb_err_status(KB_OK), 200);
    ck_assert_int_eq(kb_err_status(KB_E_NOT_FOUND), 404);
    ck_assert_str_eq(kb_err_code(KB_E_NOT_FOUND), "not_found");
    ck_assert_int_eq(kb_err_status(KB_E_CREDITS_EXHAUSTED), 429);
    ck_assert_str_eq(kb_err_code(KB_E_RATE_LIMITED), "rate_limit_exceeded");
    ck_assert_int_eq(kb_err_status(KB_E_STRIPE), 502);
    ck_assert_int_eq(kb_err_status(KB_E_UNAVAILABLE), 503);
    ck_assert_int_eq(kb_err_status((kb_err)9999), 500);
    ck_assert_str_eq(kb_err_code((kb_err)9999), "internal_error");
}
END_TEST

static void
envelope_for(kb_err err, const char *msg, kb_ctx *ctx, kb_req *req, kb_arena *a, kb_worker *w)
{
    memset(req, 0, sizeof(*req));
    req->arena = a;
    kb_req_set_id(req, kb_str_c("req_aaaaaaaaaaaa"));
    kb_ctx_init(ctx, w, a);
    if (msg)
        kb_fail(ctx, err, "%s", msg);
    kb_resp_error(ctx, req, err);
}

START_TEST(internal_error_hides_detail)
{
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_req req;
    kb_arena_init(&a, 0);
    envelope_for(KB_E_INTERNAL, "secret SQL detail", &ctx, &req, &a, &w);
    ck_assert_int_eq(ctx.resp.status, 500);
    ck_assert_str_eq(kb_buf_cstr(&ctx.resp.body),
                     "{\"error\":{\"code\":\"internal_error\",\"message\":\"Internal server "
                     "error.\",\"status\":500},\"request_id\":\"req_aaaaaaaaaaaa\"}");
    kb_ctx_release(&ctx);
    kb_arena_release(&a);
}
END_TEST

START_TEST(unavailable_sends_retry_after)
{
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_req req;
    kb_arena_init(&a, 0);
    envelope_for(KB_E_UNAVAILABLE, NULL, &ctx, &req, &a, &w);
    ck_assert_int_eq(ctx.resp.status, 503);
    ck_assert_str_eq(kb_buf_cstr(&ctx.resp.headers), "Retry-After: 1\r\n");
    ck_assert(strstr(kb_buf_cstr(&ctx.resp.body), "\"code\":\"service_unavailable\"") != NULL);
    kb_ctx_release(&ctx);
    kb_arena_release(&a);
}
END_TEST

START_TEST(client_error_message_is_escaped)
{
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_req req;
    kb_arena_init(&a, 0);
    envelope_for(KB_E_VALIDATION, "body.x: bad \"q\"\n", &ctx, &req, &a, &w);
    ck_assert_int_eq(ctx.resp.status, 422);
    ck_assert_str_eq(kb_buf_cstr(&ctx.resp.body),
                     "{\"error\":{\"code\":\"validation_error\",\"message\":\"body.x: bad "
                     "\\\"q\\\"\\u000a\",\"status\":422},\"request_id\":\"req_aaaaaaaaaaaa\"}");
    kb_ctx_release(&ctx);
    kb_arena_release(&a);
}
END_TEST

START_TEST(request_id_from_nginx_or_generated)
{
    kb_req req;
    memset(&req, 0, sizeof(req));
    kb_req_set_id(&req, kb_str_c("req_0123456789ab"));
    ck_assert_str_eq(req.request_id, "req_0123456789ab");
    const char *bad[] = {NULL, "", "req_0123456789AB", "req_0123", "x\r\nSet-Cookie: a",
                         "req_0123456789abc"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kb_req_set_id(&req, kb_str_c(bad[i]));
        ck_assert_uint_eq(strlen(req.request_id), 16);
        ck_assert(strncmp(req.request_id, "req_", 4) == 0);
        for (size_t k = 4; k < 16; k++)
            ck_assert(strchr("0123456789abcdef", req.request_id[k]) != NULL);
    }
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("base");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, json_str_escapes_everything_unsafe, 0,
                        sizeof(json_cases) / sizeof(json_cases[0]));
    tcase_add_test(tc, buf_grows_and_stays_terminated);
    tcase_add_loop_test(tc, parse_i64_checks_range_and_syntax, 0,
                        sizeof(int_cases) / sizeof(int_cases[0]));
    tcase_add_test(tc, query_get_form_decodes);
    tcase_add_test(tc, utf8_validation);
    tcase_add_test(tc, time_format_is_python_isoformat);
    tcase_add_test(tc, arena_reset_runs_cleanups_and_reuses);
    tcase_add_test(tc, error_table_maps_status_and_code);
    tcase_add_test(tc, internal_error_hides_detail);
    tcase_add_test(tc, unavailable_sends_retry_after);
    tcase_add_test(tc, client_error_message_is_escaped);
    tcase_add_test(tc, request_id_from_nginx_or_generated);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
