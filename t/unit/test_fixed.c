/* test_fixed.c - exact fixed-point prices and quantities (lib/kb_fixed.h): the parser's
 * accepted and refused forms, exact round trips of every price in range and of quantities
 * around every edge, and the API's trimmed number text. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "kb_fixed.h"
#include "kb_banned.h"

typedef struct parse_case {
    const char *in;
    int scale;
    bool neg;
    int64_t max;
    bool ok;
    int64_t want;
    const char *reason; /* part of the refusal reason */
} parse_case;

#define PMAX KB_PRICE_DOLLAR
#define QMAX KB_QTY_MAX
static const parse_case parse_cases[] = {
    {"0.0550", 4, false, PMAX, true, 550, NULL},
    {"0.5600", 4, false, PMAX, true, 5600, NULL},
    {"0.56", 4, false, PMAX, true, 5600, NULL},
    {"0.001", 4, false, PMAX, true, 10, NULL},
    {"0.0001", 4, false, PMAX, true, 1, NULL},
    {"1", 4, false, PMAX, true, 10000, NULL},
    {"1.0000", 4, false, PMAX, true, 10000, NULL},
    {"0", 4, false, PMAX, true, 0, NULL},
    {"00.5", 4, false, PMAX, true, 5000, NULL},
    {"1.0001", 4, false, PMAX, false, 0, "out of range"},
    {"2", 4, false, PMAX, false, 0, "out of range"},
    {"0.05500", 4, false, PMAX, false, 0, "too many decimals"},
    {"0.00001", 4, false, PMAX, false, 0, "too many decimals"},
    {"-0.5", 4, false, PMAX, false, 0, "negative"},
    {"+0.5", 4, false, PMAX, false, 0, "not a decimal"},
    {"5e-2", 4, false, PMAX, false, 0, "not a decimal"},
    {"0.5E0", 4, false, PMAX, false, 0, "not a decimal"},
    {".5", 4, false, PMAX, false, 0, "not a decimal"},
    {"1.", 4, false, PMAX, false, 0, "not a decimal"},
    {"", 4, false, PMAX, false, 0, "not a decimal"},
    {"-", 2, true, QMAX, false, 0, "not a decimal"},
    {" 0.5", 4, false, PMAX, false, 0, "not a decimal"},
    {"0.5 ", 4, false, PMAX, false, 0, "not a decimal"},
    {"0..5", 4, false, PMAX, false, 0, "not a decimal"},
    {"0.5.0", 4, false, PMAX, false, 0, "not a decimal"},
    {"0x10", 4, false, PMAX, false, 0, "not a decimal"},
    {"NaN", 4, false, PMAX, false, 0, "not a decimal"},
    {"12.50", 2, true, QMAX, true, 1250, NULL},
    {"-12.50", 2, true, QMAX, true, -1250, NULL},
    {"-0.01", 2, true, QMAX, true, -1, NULL},
    {"-0.00", 2, true, QMAX, true, 0, NULL},
    {"300", 2, true, QMAX, true, 30000, NULL},
    {"12.505", 2, true, QMAX, false, 0, "too many decimals"},
    {"12.500", 2, true, QMAX, false, 0, "too many decimals"},
    {"--1", 2, true, QMAX, false, 0, "not a decimal"},
    {"2147483647.00", 2, true, QMAX, true, QMAX, NULL},
    {"-2147483647", 2, true, QMAX, true, -QMAX, NULL},
    {"2147483647.01", 2, true, QMAX, false, 0, "out of range"},
    {"2147483648", 2, true, QMAX, false, 0, "out of range"},
    {"99999999999999999999999", 2, true, QMAX, false, 0, "out of range"},
    {"92233720368547758.07", 2, true, INT64_MAX, true, INT64_MAX, NULL},
    {"92233720368547758.08", 2, true, INT64_MAX, false, 0, "out of range"},
    {"922337203685477580", 2, true, INT64_MAX, false, 0, "out of range"},
    {"12.5", 0, true, QMAX, false, 0, "whole number"},
    {"12", 0, true, QMAX, true, 12, NULL},
};

START_TEST(fixed_parse_takes_plain_decimals_only)
{
    const parse_case *c = &parse_cases[_i];
    int64_t v = -7;
    const char *reason = NULL;
    bool ok = kb_fixed_parse(c->in, strlen(c->in), c->scale, c->neg, c->max, &v, &reason);
    ck_assert_msg(ok == c->ok, "'%s': %s", c->in, ok ? "accepted" : reason);
    if (ok)
        ck_assert_msg(v == c->want, "'%s' -> %lld, want %lld", c->in, (long long)v,
                      (long long)c->want);
    else
        ck_assert_msg(strstr(reason, c->reason) != NULL, "'%s': reason '%s' lacks '%s'", c->in,
                      reason, c->reason);
}
END_TEST

/* The length is taken from the argument, not from a NUL: no read past it. */
START_TEST(fixed_parse_reads_only_len_bytes)
{
    int64_t v;
    const char *reason;
    ck_assert(kb_fixed_parse("0.5599", 4, 4, false, PMAX, &v, &reason));
    ck_assert_int_eq(v, 5500);
    ck_assert(!kb_fixed_parse("0.5599", 0, 4, false, PMAX, &v, &reason));
}
END_TEST

/* Every price 0 .. $1 formats as Kalshi's 4-decimal string and parses back exactly; its
 * cents number is the shortest decimal and also reads back exactly. */
START_TEST(fixed_every_price_round_trips)
{
    for (int64_t p = 0; p <= KB_PRICE_DOLLAR; p++) {
        char s[KB_FIXED_FMT_MAX], t[KB_FIXED_FMT_MAX];
        size_t n = kb_fixed_format(p, KB_PRICE_SCALE, s);
        ck_assert_uint_eq(n, 6);
        ck_assert_uint_eq(strlen(s), n);
        int64_t back;
        const char *reason;
        ck_assert_msg(kb_fixed_parse(s, n, KB_PRICE_SCALE, false, PMAX, &back, &reason), "%s", s);
        ck_assert_int_eq(back, p);
        /* cents: p / 100 with up to two decimals, no trailing zero */
        n = kb_fixed_format_trim(p, 2, t);
        ck_assert(kb_fixed_parse(t, n, 2, false, PMAX, &back, &reason));
        ck_assert_int_eq(back, p);
        ck_assert_msg(p % 100 != 0 || strchr(t, '.') == NULL, "%s", t);
        ck_assert_msg(n == 0 || t[n - 1] != '0' || strchr(t, '.') == NULL, "%s", t);
    }
}
END_TEST

/* Quantities: a dense band around zero and around every decimal magnitude up to the bound. */
START_TEST(fixed_quantities_round_trip)
{
    int64_t centres[24];
    int nc = 0;
    for (int64_t m = 1; m <= QMAX / 10; m *= 10)
        centres[nc++] = m;
    centres[nc++] = QMAX;
    for (int c = -1; c < nc; c++) {
        int64_t mid = c < 0 ? 0 : centres[c];
        for (int64_t d = -2000; d <= 2000; d++) {
            for (int sign = -1; sign <= 1; sign += 2) {
                int64_t q = sign * (mid + d);
                if (q > QMAX || q < -QMAX)
                    continue;
                char s[KB_FIXED_FMT_MAX];
                size_t n = kb_fixed_format(q, KB_QTY_SCALE, s);
                int64_t back;
                const char *reason;
                ck_assert_msg(kb_fixed_parse(s, n, KB_QTY_SCALE, true, QMAX, &back, &reason),
                              "%s: %s", s, reason);
                ck_assert_int_eq(back, q);
                n = kb_fixed_format_trim(q, KB_QTY_SCALE, s);
                ck_assert(kb_fixed_parse(s, n, KB_QTY_SCALE, true, QMAX, &back, &reason));
                ck_assert_int_eq(back, q);
            }
        }
    }
}
END_TEST

typedef struct fmt_case {
    int64_t v;
    int scale;
    const char *fixed, *trim;
} fmt_case;

static const fmt_case fmt_cases[] = {
    {550, 4, "0.0550", "0.055"},
    {550, 2, "5.50", "5.5"},
    {5600, 2, "56.00", "56"},
    {555, 2, "5.55", "5.55"},
    {10000, 4, "1.0000", "1"},
    {0, 4, "0.0000", "0"},
    {0, 2, "0.00", "0"},
    {-1250, 2, "-12.50", "-12.5"},
    {-25, 2, "-0.25", "-0.25"},
    {-1, 2, "-0.01", "-0.01"},
    {1225, 2, "12.25", "12.25"},
    {7, 0, "7", "7"},
    {INT64_MAX, 2, "92233720368547758.07", "92233720368547758.07"},
    {INT64_MIN, 2, "-92233720368547758.08", "-92233720368547758.08"},
    {INT64_MIN, 9, "-9223372036.854775808", "-9223372036.854775808"},
};

START_TEST(fixed_format_is_exact_text)
{
    const fmt_case *c = &fmt_cases[_i];
    char s[KB_FIXED_FMT_MAX];
    ck_assert_uint_eq(kb_fixed_format(c->v, c->scale, s), strlen(c->fixed));
    ck_assert_str_eq(s, c->fixed);
    ck_assert_uint_eq(kb_fixed_format_trim(c->v, c->scale, s), strlen(c->trim));
    ck_assert_str_eq(s, c->trim);
}
END_TEST

START_TEST(fixed_scale_int_checks_the_bound)
{
    int64_t v;
    ck_assert(kb_fixed_scale_int(56, 2, PMAX, &v));
    ck_assert_int_eq(v, 5600);
    ck_assert(kb_fixed_scale_int(100, 2, PMAX, &v));
    ck_assert(!kb_fixed_scale_int(101, 2, PMAX, &v));
    ck_assert(kb_fixed_scale_int(-2147483647, 2, QMAX, &v));
    ck_assert_int_eq(v, -QMAX);
    ck_assert(!kb_fixed_scale_int(2147483648, 2, QMAX, &v));
    ck_assert(!kb_fixed_scale_int(INT64_MIN, 2, INT64_MAX, &v));
    ck_assert(!kb_fixed_scale_int(INT64_MAX, 2, INT64_MAX, &v));
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("fixed");
    TCase *tc = tcase_create("fixed");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, fixed_parse_takes_plain_decimals_only, 0,
                        (int)(sizeof(parse_cases) / sizeof(parse_cases[0])));
    tcase_add_test(tc, fixed_parse_reads_only_len_bytes);
    tcase_add_test(tc, fixed_every_price_round_trips);
    tcase_add_test(tc, fixed_quantities_round_trip);
    tcase_add_loop_test(tc, fixed_format_is_exact_text, 0,
                        (int)(sizeof(fmt_cases) / sizeof(fmt_cases[0])));
    tcase_add_test(tc, fixed_scale_int_checks_the_bound);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
