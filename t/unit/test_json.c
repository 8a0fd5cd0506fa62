/* test_json.c - the request-body parser and the typed getters (table-driven). */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "check_main.h"
#include "kb_arena.h"
#include "kb_http.h"
#include "kb_json.h"
#include "kb_banned.h"

#define S(lit) lit, sizeof(lit) - 1

typedef struct pcase {
    const char *in;
    size_t len;
    bool ok;
    const char *reason; /* substring of the failure reason */
} pcase;

static const pcase parse_cases[] = {
    {S("{}"), true, NULL},
    {S(" {\"a\" : [1, -2.5e3, true, false, null, \"x\"]} \n"), true, NULL},
    {S("[]"), true, NULL},
    {S("\"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00\""), true, NULL},
    {S("0"), true, NULL},
    {S("-0.0E+1"), true, NULL},
    {S(""), false, "unexpected end"},
    {S("   "), false, "unexpected end"},
    {S("{"), false, "expected a string key"},
    {S("{\"a\":1,}"), false, "expected a string key"},
    {S("[1,]"), false, "unexpected character"},
    {S("{\"a\" 1}"), false, "expected ':'"},
    {S("{'a':1}"), false, "expected a string key"},
    {S("{\"a\":1}{}"), false, "extra data"},
    {S("{\"a\":1,\"a\":2}"), false, "duplicate key"},
    {S("{\"a\":1,\"\\u0061\":2}"), false, "duplicate key"},
    {S("{\"a\":01}"), false, "expected ','"},
    {S("{\"a\":1.}"), false, "invalid number"},
    {S("{\"a\":.5}"), false, "unexpected character"},
    {S("{\"a\":+1}"), false, "unexpected character"},
    {S("{\"a\":1e}"), false, "invalid number"},
    {S("{\"a\":NaN}"), false, "unexpected character"},
    {S("{\"a\":Infinity}"), false, "unexpected character"},
    {S("{\"a\":tru}"), false, "invalid literal"},
    {S("{\"a\":\"x\ty\"}"), false, "control character"},
    {S("{\"a\":\"\\x\"}"), false, "invalid escape"},
    {S("{\"a\":\"\\u12\"}"), false, "invalid \\u escape"},
    {S("{\"a\":\"\\u0000\"}"), false, "NUL"},
    {S("{\"a\":\"\\ud800\"}"), false, "unpaired surrogate"},
    {S("{\"a\":\"\\udc00\"}"), false, "unpaired surrogate"},
    {S("{\"a\":\"\xff\"}"), false, "invalid UTF-8"},
    {S("{\"a\":\"\xc0\xaf\"}"), false, "invalid UTF-8"},
    {S("{\"a\":\"\xed\xa0\x80\"}"), false, "invalid UTF-8"},
    {S("{\"\xfe\":1}"), false, "invalid UTF-8"},
    {S("\xef\xbb\xbf{}"), false, "unexpected character"},
    {S("{\"a\":\"unterminated}"), false, "unterminated"},
    {S("{\"a\":1}\0"), false, "extra data"},
    {S("{\"a\":123456789012345678901234567890123456789012345678901234567890123456789}"), false,
     "number literal too long"},
};

START_TEST(parser_accepts_json_and_refuses_the_rest)
{
    const pcase *c = &parse_cases[_i];
    cJSON *root = NULL;
    const char *why = NULL;
    size_t at = 0;
    bool ok = kb_json_parse(c->in, c->len, &root, &why, &at);
    ck_assert_msg(ok == c->ok, "case %d '%s': got %d (%s)", _i, c->in, ok, why ? why : "");
    if (ok) {
        ck_assert_ptr_nonnull(root);
        cJSON_Delete(root);
    } else {
        ck_assert_ptr_null(root);
        ck_assert_msg(strstr(why, c->reason) != NULL, "case %d: reason '%s', want '%s'", _i, why,
                      c->reason);
        ck_assert(at <= c->len);
    }
}
END_TEST

static char *
repeat(const char *a, size_t n, const char *mid, const char *b)
{
    size_t la = strlen(a), lm = strlen(mid), lb = strlen(b);
    char *s = malloc(la * n + lm + lb * n + 1), *p = s;
    for (size_t i = 0; i < n; i++, p += la)
        memcpy(p, a, la);
    memcpy(p, mid, lm);
    p += lm;
    for (size_t i = 0; i < n; i++, p += lb)
        memcpy(p, b, lb);
    *p = '\0';
    return s;
}

START_TEST(parser_bounds_depth_strings_members_and_values)
{
    cJSON *root = NULL;
    const char *why = NULL;
    size_t at = 0;
    char *ok32 = repeat("[", KB_JSON_MAX_DEPTH, "1", "]");
    ck_assert(kb_json_parse(ok32, strlen(ok32), &root, &why, &at));
    cJSON_Delete(root);
    char *deep = repeat("[", KB_JSON_MAX_DEPTH + 1, "1", "]");
    ck_assert(!kb_json_parse(deep, strlen(deep), &root, &why, &at));
    ck_assert_str_eq(why, "nested too deeply");
    char *deeper = repeat("{\"a\":", 100000, "1", "}");
    ck_assert(!kb_json_parse(deeper, strlen(deeper), &root, &why, &at));
    ck_assert_str_eq(why, "nested too deeply");

    size_t n = KB_JSON_MAX_STRING + 10;
    char *big = malloc(n + 3);
    big[0] = '"';
    memset(big + 1, 'x', n);
    big[n + 1] = '"';
    ck_assert(!kb_json_parse(big, n + 2, &root, &why, &at));
    ck_assert_str_eq(why, "string too long");

    kb_buf b = KB_BUF_INIT;
    kb_buf_putc(&b, '{');
    for (int i = 0; i <= KB_JSON_MAX_MEMBERS; i++)
        kb_buf_printf(&b, "%s\"k%d\":1", i ? "," : "", i);
    kb_buf_putc(&b, '}');
    ck_assert(!kb_json_parse(b.buf, b.len, &root, &why, &at));
    ck_assert_str_eq(why, "too many members in an object");

    kb_buf_reset(&b);
    kb_buf_putc(&b, '[');
    for (int i = 0; i <= KB_JSON_MAX_VALUES; i++)
        kb_buf_puts(&b, i ? ",0" : "0");
    kb_buf_putc(&b, ']');
    ck_assert(!kb_json_parse(b.buf, b.len, &root, &why, &at));
    ck_assert_str_eq(why, "too many values");
    kb_buf_release(&b);
    free(ok32);
    free(deep);
    free(deeper);
    free(big);
}
END_TEST

START_TEST(parser_keeps_number_literals_and_decodes_escapes)
{
    static const char doc[] = "{\"n\":-12.50e1,\"s\":\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"}";
    cJSON *root = NULL;
    const char *why;
    size_t at;
    ck_assert(kb_json_parse(doc, sizeof(doc) - 1, &root, &why, &at));
    ck_assert_str_eq(kb_json_num_literal(cJSON_GetObjectItem(root, "n")), "-12.50e1");
    ck_assert_str_eq(cJSON_GetObjectItem(root, "s")->valuestring, "a\"\\/\b\f\n\r\t\xc3\xa9");
    ck_assert_ptr_null(kb_json_num_literal(cJSON_GetObjectItem(root, "s")));
    cJSON_Delete(root);
}
END_TEST

typedef struct ctcase {
    const char *ct;
    bool ok;
} ctcase;

static const ctcase ct_cases[] = {
    {"application/json", true},
    {"application/json; charset=utf-8", true},
    {"APPLICATION/JSON", true},
    {" application/json ", true},
    {"application/vnd.api+json", true},
    {"text/json", true},
    {"application/merge-patch+JSON", true},
    {"application/x-www-form-urlencoded", false},
    {"text/plain", false},
    {"json", false},
    {"/json", false},
    {"application/jsonx", false},
    {"application/+json", false},
    {"multipart/form-data; boundary=json", false},
};

START_TEST(content_type_json_subtype_or_plus_json)
{
    const ctcase *c = &ct_cases[_i];
    ck_assert_msg(kb_json_content_type_ok(c->ct, strlen(c->ct)) == c->ok, "%s", c->ct);
}
END_TEST

/* ---- kb_json_body and the getters ---- */

typedef struct bcase {
    const char *ct; /* NULL = no Content-Type */
    const char *body;
    kb_err err;
    const char *msg; /* exact message, or NULL for success */
} bcase;

static const bcase body_cases[] = {
    {NULL, "{}", KB_OK, NULL},
    {"application/json", "{\"x\":1}", KB_OK, NULL},
    {"text/plain", "{}", KB_E_VALIDATION, NULL},
    {"application/json", "", KB_E_VALIDATION, "body: Field required"},
    {NULL, "", KB_E_VALIDATION, "body: Field required"},
    {NULL, "[]", KB_E_VALIDATION,
     "body: Input should be a valid dictionary or object to extract fields from"},
    {NULL, "null", KB_E_VALIDATION,
     "body: Input should be a valid dictionary or object to extract fields from"},
    {NULL, "{\"a\":}", KB_E_VALIDATION, "body: JSON decode error: unexpected character at byte 5"},
};

static void
setup_ctx(kb_ctx *ctx, kb_arena *a, kb_req *req)
{
    kb_arena_init(a, 0);
    kb_ctx_init(ctx, NULL, a);
    memset(req, 0, sizeof(*req));
    req->arena = a;
}

static void
teardown_ctx(kb_ctx *ctx, kb_arena *a)
{
    kb_ctx_release(ctx);
    kb_arena_release(a);
}

START_TEST(body_requires_a_json_object)
{
    const bcase *c = &body_cases[_i];
    kb_arena a;
    kb_ctx ctx;
    kb_req req;
    setup_ctx(&ctx, &a, &req);
    req.content_type = kb_str_c(c->ct);
    req.body = kb_str_c(c->body);
    cJSON *root = NULL;
    kb_err err = kb_json_body(&req, &ctx, &root);
    ck_assert_int_eq(err, c->err);
    if (err == KB_OK)
        ck_assert(cJSON_IsObject(root));
    else
        ck_assert_ptr_null(root);
    if (c->msg != NULL)
        ck_assert_str_eq(kb_buf_cstr(&ctx.err_msg), c->msg);
    kb_arena_reset(&a); /* frees the tree (ASan/LSan would notice otherwise) */
    teardown_ctx(&ctx, &a);
}
END_TEST

typedef enum gkind { G_STR, G_INT, G_BOOL, G_TIME } gkind;

typedef struct gcase {
    const char *body;
    gkind kind;
    unsigned flags;
    int64_t min, max; /* int range; max chars for strings */
    bool set;         /* expected *set */
    const char *want; /* value as text ("42", "true", the string) when set */
    const char *msg;  /* exact problem message, NULL when none */
} gcase;

#define REQ KB_JSON_REQUIRED
#define NUL KB_JSON_NULLABLE

static const gcase get_cases[] = {
    /* strings */
    {"{\"v\":\"abc\"}", G_STR, REQ, 0, 0, true, "abc", NULL},
    {"{}", G_STR, 0, 0, 0, false, NULL, NULL},
    {"{}", G_STR, REQ, 0, 0, false, NULL, "body.v: Field required"},
    {"{\"v\":null}", G_STR, NUL, 0, 0, false, NULL, NULL},
    {"{\"v\":null}", G_STR, 0, 0, 0, false, NULL, "body.v: Input should be a valid string"},
    {"{\"v\":5}", G_STR, 0, 0, 0, false, NULL, "body.v: Input should be a valid string"},
    {"{\"v\":[\"a\"]}", G_STR, 0, 0, 0, false, NULL, "body.v: Input should be a valid string"},
    {"{\"v\":\"\"}", G_STR, REQ, 0, 3, true, "", NULL},
    {"{\"v\":\"\xc3\xa9\xc3\xa9\xc3\xa9\"}", G_STR, 0, 0, 3, true, "\xc3\xa9\xc3\xa9\xc3\xa9",
     NULL},
    {"{\"v\":\"abcd\"}", G_STR, 0, 0, 3, false, NULL,
     "body.v: String should have at most 3 characters"},
    {"{\"V\":\"abc\"}", G_STR, REQ, 0, 0, false, NULL, "body.v: Field required"},
    /* integers */
    {"{\"v\":42}", G_INT, REQ, 1, 1000, true, "42", NULL},
    {"{\"v\":-0}", G_INT, REQ, INT64_MIN, INT64_MAX, true, "0", NULL},
    {"{\"v\":1.0}", G_INT, REQ, 1, 1000, true, "1", NULL},
    {"{\"v\":1e2}", G_INT, REQ, 1, 1000, true, "100", NULL},
    {"{\"v\":9223372036854775807}", G_INT, 0, INT64_MIN, INT64_MAX, true, "9223372036854775807",
     NULL},
    {"{\"v\":-9223372036854775808}", G_INT, 0, INT64_MIN, INT64_MAX, true, "-9223372036854775808",
     NULL},
    {"{\"v\":9223372036854775808}", G_INT, 0, INT64_MIN, INT64_MAX, false, NULL,
     "body.v: Input should be a valid integer, number out of range"},
    {"{\"v\":1e300}", G_INT, 0, INT64_MIN, INT64_MAX, false, NULL,
     "body.v: Input should be a valid integer, number out of range"},
    {"{\"v\":1e999}", G_INT, 0, INT64_MIN, INT64_MAX, false, NULL,
     "body.v: Input should be a valid integer, number out of range"},
    {"{\"v\":1.5}", G_INT, 0, 1, 1000, false, NULL,
     "body.v: Input should be a valid integer, got a number with a fractional part"},
    {"{\"v\":0}", G_INT, 0, 1, 1000, false, NULL,
     "body.v: Input should be greater than or equal to 1"},
    {"{\"v\":1001}", G_INT, 0, 1, 1000, false, NULL,
     "body.v: Input should be less than or equal to 1000"},
    {"{\"v\":\"5\"}", G_INT, 0, 1, 1000, false, NULL, "body.v: Input should be a valid integer"},
    /* lax: integer strings too (the data routes) */
    {"{\"v\":\"5\"}", G_INT, KB_JSON_LAX, 1, 1000, true, "5", NULL},
    {"{\"v\":\" 7\\t\"}", G_INT, KB_JSON_LAX, 1, 1000, true, "7", NULL},
    {"{\"v\":\"5x\"}", G_INT, KB_JSON_LAX, 1, 1000, false, NULL,
     "body.v: Input should be a valid integer, unable to parse string as an integer"},
    {"{\"v\":\"1.5\"}", G_INT, KB_JSON_LAX, 1, 1000, false, NULL,
     "body.v: Input should be a valid integer, unable to parse string as an integer"},
    {"{\"v\":\"0\"}", G_INT, KB_JSON_LAX, 1, 1000, false, NULL,
     "body.v: Input should be greater than or equal to 1"},
    {"{\"v\":true}", G_INT, KB_JSON_LAX, 0, 1, false, NULL,
     "body.v: Input should be a valid integer"},
    {"{\"v\":true}", G_INT, 0, 0, 1, false, NULL, "body.v: Input should be a valid integer"},
    {"{\"v\":null}", G_INT, NUL, 0, 1, false, NULL, NULL},
    {"{\"v\":null}", G_INT, REQ, 0, 1, false, NULL, "body.v: Input should be a valid integer"},
    {"{}", G_INT, REQ, 0, 1, false, NULL, "body.v: Field required"},
    /* booleans */
    {"{\"v\":true}", G_BOOL, REQ, 0, 0, true, "true", NULL},
    {"{\"v\":false}", G_BOOL, REQ, 0, 0, true, "false", NULL},
    {"{\"v\":1}", G_BOOL, REQ, 0, 0, false, NULL, "body.v: Input should be a valid boolean"},
    {"{\"v\":\"true\"}", G_BOOL, REQ, 0, 0, false, NULL, "body.v: Input should be a valid boolean"},
    {"{\"v\":null}", G_BOOL, NUL, 0, 0, false, NULL, NULL},
    {"{}", G_BOOL, REQ, 0, 0, false, NULL, "body.v: Field required"},
    /* instants: ISO strings and Unix numbers; what is no instant is 400, absent 422 */
    {"{\"v\":\"2026-01-15T12:00:00Z\"}", G_TIME, REQ, 0, 0, true, "1768478400000000", NULL},
    {"{\"v\":\"2026-01-15T13:00:00+01:00\"}", G_TIME, REQ, 0, 0, true, "1768478400000000", NULL},
    {"{\"v\":1768478400}", G_TIME, REQ, 0, 0, true, "1768478400000000", NULL},
    {"{\"v\":1768478400500}", G_TIME, REQ, 0, 0, true, "1768478400500000", NULL},
    {"{\"v\":null}", G_TIME, NUL, 0, 0, false, NULL, NULL},
    {"{}", G_TIME, REQ, 0, 0, false, NULL, "body.v: Field required"},
    {"{\"v\":true}", G_TIME, REQ, 0, 0, false, NULL, "body.v: Input should be a valid datetime"},
    {"{\"v\":[]}", G_TIME, REQ, 0, 0, false, NULL, "body.v: Input should be a valid datetime"},
};

START_TEST(getters_check_type_and_range)
{
    const gcase *c = &get_cases[_i];
    kb_arena a;
    kb_ctx ctx;
    kb_req req;
    setup_ctx(&ctx, &a, &req);
    req.body = kb_str_c(c->body);
    cJSON *root = NULL;
    ck_assert_int_eq(kb_json_body(&req, &ctx, &root), KB_OK);
    bool set = !c->set;
    char got[64] = "";
    kb_err err;
    if (c->kind == G_STR) {
        const char *v = NULL;
        err = kb_json_get_str(&ctx, root, "v", c->flags, (size_t)c->max, &v, &set);
        if (v)
            snprintf(got, sizeof(got), "%s", v);
    } else if (c->kind == G_INT) {
        int64_t v = 0;
        err = kb_json_get_int(&ctx, root, "v", c->flags, c->min, c->max, &v, &set);
        snprintf(got, sizeof(got), "%lld", (long long)v);
    } else if (c->kind == G_BOOL) {
        bool v = false;
        err = kb_json_get_bool(&ctx, root, "v", c->flags, &v, &set);
        snprintf(got, sizeof(got), "%s", v ? "true" : "false");
    } else {
        int64_t v = 0;
        err = kb_json_get_time(&ctx, root, "v", c->flags, &v, &set);
        snprintf(got, sizeof(got), "%lld", (long long)v);
    }
    ck_assert_msg(set == c->set, "case %d: set %d", _i, set);
    if (c->msg == NULL) {
        ck_assert_int_eq(err, KB_OK);
        ck_assert_int_eq(ctx.err, KB_OK);
        if (c->set)
            ck_assert_str_eq(got, c->want);
    } else {
        /* an instant that cannot be read is a timestamp problem (API.md §7.10) */
        kb_err want = c->kind == G_TIME && strstr(c->msg, "Field required") == NULL
                          ? KB_E_INVALID_TIMESTAMP
                          : KB_E_VALIDATION;
        ck_assert_int_eq(err, want);
        ck_assert_int_eq(ctx.err, want);
        ck_assert_str_eq(kb_buf_cstr(&ctx.err_msg), c->msg);
    }
    kb_arena_reset(&a);
    teardown_ctx(&ctx, &a);
}
END_TEST

START_TEST(getters_collect_every_problem)
{
    kb_arena a;
    kb_ctx ctx;
    kb_req req;
    setup_ctx(&ctx, &a, &req);
    req.body = kb_str_c("{\"limit\":0,\"name\":7}");
    cJSON *root = NULL;
    ck_assert_int_eq(kb_json_body(&req, &ctx, &root), KB_OK);
    int64_t limit = 100;
    const char *name = "Default";
    bool flag = false;
    kb_json_get_int(&ctx, root, "limit", 0, 1, 1000, &limit, NULL);
    kb_json_get_str(&ctx, root, "name", 0, 100, &name, NULL);
    kb_json_get_bool(&ctx, root, "enable", KB_JSON_REQUIRED, &flag, NULL);
    ck_assert_int_eq(ctx.err, KB_E_VALIDATION);
    ck_assert_str_eq(kb_buf_cstr(&ctx.err_msg),
                     "body.limit: Input should be greater than or equal to 1; "
                     "body.name: Input should be a valid string; body.enable: Field required");
    ck_assert_int_eq(limit, 100); /* defaults survive a failed read */
    ck_assert_str_eq(name, "Default");
    kb_arena_reset(&a);
    teardown_ctx(&ctx, &a);
}
END_TEST

/* 400 timestamp problems join each other; any 422 problem replaces them, before or after
 * (API.md §7.10: a missing field stays 422). */
START_TEST(validation_problems_win_over_timestamp_problems)
{
    kb_arena a;
    kb_ctx ctx;
    kb_req req;
    setup_ctx(&ctx, &a, &req);
    kb_json_time_problem(&ctx, "body.start_time", "invalid datetime");
    kb_json_time_problem(&ctx, "body.end_time", "invalid datetime");
    ck_assert_int_eq(ctx.err, KB_E_INVALID_TIMESTAMP);
    ck_assert_str_eq(kb_buf_cstr(&ctx.err_msg),
                     "body.start_time: invalid datetime; body.end_time: invalid datetime");
    kb_json_problem(&ctx, "body.limit", "Field required");
    kb_json_time_problem(&ctx, "query.start_time", "start_time must not be after end_time");
    kb_json_problem(&ctx, "body.cursor", "invalid pagination cursor");
    ck_assert_int_eq(ctx.err, KB_E_VALIDATION);
    ck_assert_str_eq(kb_buf_cstr(&ctx.err_msg),
                     "body.limit: Field required; body.cursor: invalid pagination cursor");
    teardown_ctx(&ctx, &a);
}
END_TEST

START_TEST(null_member_is_told_from_an_absent_one)
{
    cJSON *o = cJSON_Parse("{\"a\":null,\"b\":0}");
    ck_assert(kb_json_is_null(o, "a"));
    ck_assert(!kb_json_is_null(o, "b"));
    ck_assert(!kb_json_is_null(o, "c"));
    ck_assert(!kb_json_is_null(NULL, "a"));
    cJSON_Delete(o);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("body");
    tcase_add_loop_test(tc, parser_accepts_json_and_refuses_the_rest, 0,
                        (int)(sizeof(parse_cases) / sizeof(parse_cases[0])));
    tcase_add_test(tc, parser_bounds_depth_strings_members_and_values);
    tcase_add_test(tc, parser_keeps_number_literals_and_decodes_escapes);
    tcase_add_loop_test(tc, content_type_json_subtype_or_plus_json, 0,
                        (int)(sizeof(ct_cases) / sizeof(ct_cases[0])));
    tcase_add_loop_test(tc, body_requires_a_json_object, 0,
                        (int)(sizeof(body_cases) / sizeof(body_cases[0])));
    tcase_add_loop_test(tc, getters_check_type_and_range, 0,
                        (int)(sizeof(get_cases) / sizeof(get_cases[0])));
    tcase_add_test(tc, getters_collect_every_problem);
    tcase_add_test(tc, validation_problems_win_over_timestamp_problems);
    tcase_add_test(tc, null_member_is_told_from_an_absent_one);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
