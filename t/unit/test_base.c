/* test_base.c - libkb base layer: buffers, strings, integers, time, arena, errors, envelope,
 * streamed bodies. */
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

/* What kb_str_unescape (and so every path segment and query value) decodes or
 * refuses: the malformed byte sequences of issue 20, escaped and raw. */
static const struct {
    const char *in;
    const char *out; /* NULL: refused */
} unescape_cases[] = {
    {"abc", "abc"},
    {"a%20b+c", "a b c"},
    {"%E2%82%AC", "\xe2\x82\xac"},
    {"%F0%9F%98%80", "\xf0\x9f\x98\x80"},
    {"\xc3\xa9", "\xc3\xa9"},
    {"%FF", NULL},
    {"A%FEB", NULL},
    {"\xff", NULL},
    {"%E2%82", NULL},
    {"%E2%82x", NULL},
    {"%C0%AF", NULL},
    {"%E0%80%AF", NULL},
    {"%ED%A0%80", NULL},
    {"%ED%BF%BF", NULL},
    {"%F4%90%80%80", NULL},
    {"%F8%88%80%80%80", NULL},
    {"%80", NULL},
    {"%00", NULL},
    {"%zz", NULL},
    {"%4", NULL},
};

START_TEST(unescape_refuses_bytes_that_are_not_utf8)
{
    kb_arena a;
    kb_arena_init(&a, 0);
    kb_str out = {"untouched", 9};
    bool ok = kb_str_unescape(&a, kb_str_c(unescape_cases[_i].in), true, &out);
    const char *want = unescape_cases[_i].out;
    ck_assert_msg(ok == (want != NULL), "'%s'", unescape_cases[_i].in);
    if (want != NULL)
        ck_assert(kb_str_eq(out, want));
    /* a query value is "present but undecodable" */
    kb_buf q = KB_BUF_INIT;
    kb_buf_printf(&q, "x=1&v=%s&y=2", unescape_cases[_i].in);
    ck_assert(kb_query_get(&a, kb_str_c(kb_buf_cstr(&q)), "v", &out));
    ck_assert(want != NULL ? kb_str_eq(out, want) : out.p == NULL);
    kb_buf_release(&q);
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
    /* code points, not bytes (password and name lengths) */
    ck_assert_uint_eq(kb_utf8_chars("abc\xc3\xa9\xf0\x9f\x98\x80", 9), 5);
    ck_assert_uint_eq(kb_utf8_chars("\xe2\x82\xac\xe2\x82\xac", 6), 2);
    ck_assert_uint_eq(kb_utf8_chars("", 0), 0);
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
    const char *bad[] = {
        NULL, "", "req_0123456789AB", "req_0123", "x\r\nSet-Cookie: a", "req_0123456789abc"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kb_req_set_id(&req, kb_str_c(bad[i]));
        ck_assert_uint_eq(strlen(req.request_id), 16);
        ck_assert(strncmp(req.request_id, "req_", 4) == 0);
        for (size_t k = 4; k < 16; k++)
            ck_assert(strchr("0123456789abcdef", req.request_id[k]) != NULL);
    }
}
END_TEST

/* ---- streamed bodies (kb_resp_stream, kb_resp_send_body) ---- */

/* A producer of `pieces` pieces "<n>,", failing at piece `fail_at` (0 = never). */
typedef struct producer {
    int pieces, next, fail_at, closed;
} producer;

static kb_err
produce(void *ud, kb_ctx *ctx, kb_buf *out, bool *done)
{
    producer *p = ud;
    ck_assert_uint_eq(out->len, 0);
    ck_assert_int_eq(p->closed, 0);
    p->next++;
    if (p->next == p->fail_at)
        return kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");
    kb_buf_printf(out, "%d,", p->next);
    *done = p->next == p->pieces;
    return KB_OK;
}

static void
close_producer(void *ud, kb_ctx *ctx)
{
    (void)ctx;
    ((producer *)ud)->closed++;
}

/* A peer that takes at most `room` bytes, then is gone. */
typedef struct peer {
    kb_buf got;
    size_t room;
    int writes;
} peer;

static bool
peer_write(void *ud, const char *p, size_t n)
{
    peer *w = ud;
    w->writes++;
    if (w->got.len + n > w->room)
        return false;
    kb_buf_append(&w->got, p, n);
    return true;
}

static void
stream_ctx(kb_ctx *ctx, kb_arena *a, kb_worker *w, producer *p, kb_resp_stream *s)
{
    kb_ctx_init(ctx, w, a);
    kb_buf_puts(&ctx->resp.body, "[");
    *s = (kb_resp_stream){produce, close_producer, p};
    kb_resp_stream_set(ctx, s);
}

START_TEST(stream_sends_every_piece_then_closes)
{
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_resp_stream s;
    producer p = {.pieces = 4};
    peer to = {KB_BUF_INIT, 1000, 0};
    kb_arena_init(&a, 0);
    stream_ctx(&ctx, &a, &w, &p, &s);
    ck_assert(kb_resp_send_body(&ctx, peer_write, &to));
    ck_assert_str_eq(kb_buf_cstr(&to.got), "[1,2,3,4,");
    ck_assert_int_eq(to.writes, 5); /* the head, then one write per piece */
    ck_assert_int_eq(p.closed, 1);
    ck_assert_ptr_null(ctx.resp.stream);
    ck_assert_int_eq(ctx.resp.status, 200);
    ck_assert_int_eq(ctx.err, KB_OK);
    kb_buf_release(&to.got);
    kb_ctx_release(&ctx);
    kb_arena_release(&a);
}
END_TEST

START_TEST(stream_failing_after_the_first_byte_is_recorded_and_cut)
{
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_resp_stream s;
    producer p = {.pieces = 9, .fail_at = 3};
    peer to = {KB_BUF_INIT, 1000, 0};
    kb_arena_init(&a, 0);
    stream_ctx(&ctx, &a, &w, &p, &s);
    ck_assert(!kb_resp_send_body(&ctx, peer_write, &to));
    ck_assert_str_eq(kb_buf_cstr(&to.got), "[1,2,");
    ck_assert_int_eq(p.closed, 1);
    ck_assert_int_eq(p.next, 3);
    /* what the log line, the metrics and kb_meter_end see */
    ck_assert_int_eq(ctx.resp.status, 503);
    ck_assert_int_eq(ctx.err, KB_E_UNAVAILABLE);
    kb_buf_release(&to.got);
    kb_ctx_release(&ctx);
    kb_arena_release(&a);
}
END_TEST

START_TEST(stream_to_a_peer_that_went_away_stops_and_closes)
{
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_resp_stream s;
    producer p = {.pieces = 100};
    peer to = {KB_BUF_INIT, 5, 0};
    kb_arena_init(&a, 0);
    stream_ctx(&ctx, &a, &w, &p, &s);
    ck_assert(kb_resp_send_body(&ctx, peer_write, &to));
    ck_assert_str_eq(kb_buf_cstr(&to.got), "[1,2,");
    ck_assert_int_eq(p.next, 3); /* nothing produced after the failed write */
    ck_assert_int_eq(p.closed, 1);
    ck_assert_int_eq(ctx.resp.status, 200);
    kb_buf_release(&to.got);
    kb_ctx_release(&ctx);
    kb_arena_release(&a);
}
END_TEST

START_TEST(error_envelope_replaces_and_closes_a_stream)
{
    kb_arena a;
    kb_worker w;
    kb_ctx ctx;
    kb_req req;
    kb_resp_stream s;
    producer p = {.pieces = 2};
    kb_arena_init(&a, 0);
    memset(&req, 0, sizeof(req));
    kb_req_set_id(&req, kb_str_c("req_aaaaaaaaaaaa"));
    stream_ctx(&ctx, &a, &w, &p, &s);
    kb_resp_error(&ctx, &req, KB_E_INTERNAL);
    ck_assert_int_eq(p.closed, 1);
    ck_assert_int_eq(p.next, 0);
    ck_assert_ptr_null(ctx.resp.stream);
    ck_assert_int_eq(ctx.resp.status, 500);
    kb_resp_stream_drop(&ctx); /* nothing left: no second close */
    ck_assert_int_eq(p.closed, 1);
    kb_ctx_release(&ctx);
    kb_arena_release(&a);
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
    tcase_add_loop_test(tc, unescape_refuses_bytes_that_are_not_utf8, 0,
                        sizeof(unescape_cases) / sizeof(unescape_cases[0]));
    tcase_add_test(tc, time_format_is_python_isoformat);
    tcase_add_test(tc, arena_reset_runs_cleanups_and_reuses);
    tcase_add_test(tc, error_table_maps_status_and_code);
    tcase_add_test(tc, internal_error_hides_detail);
    tcase_add_test(tc, unavailable_sends_retry_after);
    tcase_add_test(tc, client_error_message_is_escaped);
    tcase_add_test(tc, request_id_from_nginx_or_generated);
    tcase_add_test(tc, stream_sends_every_piece_then_closes);
    tcase_add_test(tc, stream_failing_after_the_first_byte_is_recorded_and_cut);
    tcase_add_test(tc, stream_to_a_peer_that_went_away_stops_and_closes);
    tcase_add_test(tc, error_envelope_replaces_and_closes_a_stream);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
