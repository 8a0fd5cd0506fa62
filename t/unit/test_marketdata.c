/* test_marketdata.c - timestamp input parsing (API.md §1.1, §7.10, §7.14), the
 * pagination cursor (§5.7) and the candle interval table. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "check_main.h"
#include "kb_arena.h"
#include "kb_book.h"
#include "kb_cursor.h"
#include "kb_time.h"
#include "kb_banned.h"

typedef struct ts_case {
    const char *in;
    bool query;
    bool ok;
    const char *want; /* kb_time_format of the result */
} ts_case;

static const ts_case ts_cases[] = {
    {"2026-01-15T12:00:00+00:00", false, true, "2026-01-15T12:00:00+00:00"},
    {"2026-01-15T12:00:00.123456+00:00", false, true, "2026-01-15T12:00:00.123456+00:00"},
    {"2026-01-15T12:00:00Z", false, true, "2026-01-15T12:00:00+00:00"},
    {"2026-01-15t12:00:00z", false, true, "2026-01-15T12:00:00+00:00"},
    {"2026-01-15 12:00", false, true, "2026-01-15T12:00:00+00:00"},
    {"2026-01-15T12:00:00", false, true, "2026-01-15T12:00:00+00:00"},
    {"2026-01-15", false, true, "2026-01-15T00:00:00+00:00"},
    {"2026-01-15T12:00:00.5", false, true, "2026-01-15T12:00:00.500000+00:00"},
    {"2026-01-15T12:00:00.1234567Z", false, true, "2026-01-15T12:00:00.123456+00:00"},
    {"2026-01-15T14:30:00+02:30", false, true, "2026-01-15T12:00:00+00:00"},
    {"2026-01-15T07:00:00-0500", false, true, "2026-01-15T12:00:00+00:00"},
    {"2026-01-15T12:00:00+00", false, false, NULL},
    {"2026-01-15T12:00:00 00:00", true, true, "2026-01-15T12:00:00+00:00"},
    {"2026-01-15T12:00:00 00:00", false, false, NULL},
    {"2026-01-15 12:00:00 01:00", true, true, "2026-01-15T11:00:00+00:00"},
    {"2024-02-29", false, true, "2024-02-29T00:00:00+00:00"},
    {"2026-02-29", false, false, NULL},
    {"2026-13-01", false, false, NULL},
    {"2026-01-15T24:00:00", false, false, NULL},
    {"2026-01-15T12:60", false, false, NULL},
    {"2026-01-15T12:00:00+24:00", false, false, NULL},
    {"2026-1-15", false, false, NULL},
    {"0000-01-01", false, false, NULL},
    {"9999-12-31T23:59:59.999999Z", false, true, "9999-12-31T23:59:59.999999+00:00"},
    {"1768478400", false, true, "2026-01-15T12:00:00+00:00"},
    {"1768478400.25", false, true, "2026-01-15T12:00:00.250000+00:00"},
    {"1768478400000", false, true, "2026-01-15T12:00:00+00:00"},
    {"0", false, true, "1970-01-01T00:00:00+00:00"},
    {"yesterday", false, false, NULL},
    {"", false, false, NULL},
    {"2026-01-15T12:00:00Zjunk", false, false, NULL},
    {"99999999999999999999", false, false, NULL},
    /* fuzz_time found these: 16 digits of milliseconds overflowed ms * 1000 (UB) */
    {"9992000000000019", false, false, NULL},
    {"-9999999999999999", false, false, NULL},
    {"253402300799999", false, true, "9999-12-31T23:59:59.999000+00:00"},
};

START_TEST(time_parse_accepts_the_documented_forms_only)
{
    const ts_case *c = &ts_cases[_i];
    int64_t us = 0;
    const char *reason = NULL;
    bool ok = kb_time_parse(c->in, strlen(c->in), c->query, &us, &reason);
    ck_assert_msg(ok == c->ok, "'%s': got %d (%s)", c->in, ok, reason ? reason : "");
    if (ok) {
        char out[KB_TIME_FMT_MAX];
        kb_time_format(us, out, sizeof(out));
        ck_assert_str_eq(out, c->want);
    } else {
        ck_assert_ptr_nonnull(reason);
    }
}
END_TEST

START_TEST(time_from_unix_numbers)
{
    int64_t us;
    const char *reason;
    ck_assert(kb_time_from_unix(1768478400.0, &us, &reason));
    ck_assert_int_eq(us, 1768478400LL * 1000000);
    ck_assert(kb_time_from_unix(1768478400500.0, &us, &reason)); /* ms above 2e10 */
    ck_assert_int_eq(us, 1768478400500000LL);
    ck_assert(!kb_time_from_unix(1e30, &us, &reason));
}
END_TEST

/* GET /keys/usage's start_date/end_date: exactly YYYY-MM-DD, a real date. */
START_TEST(date_parse_takes_calendar_dates_only)
{
    static const struct {
        const char *in;
        bool ok;
        int64_t days;
    } c[] = {
        {"1970-01-01", true, 0},       {"2026-01-15", true, 20468},
        {"2024-02-29", true, 19782},   {"0001-01-01", true, -719162},
        {"9999-12-31", true, 2932896}, {"2026-02-29", false, 0},
        {"2026-13-01", false, 0},      {"2026-00-10", false, 0},
        {"2026-01-32", false, 0},      {"0000-01-01", false, 0},
        {"2026-1-015", false, 0},      {"2026-01-15T", false, 0},
        {"2026/01/15", false, 0},      {"", false, 0},
        {"+026-01-15", false, 0},      {"2026-01-1\xff", false, 0},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        int64_t d = -1;
        bool ok = kb_time_parse_date(c[i].in, strlen(c[i].in), &d);
        ck_assert_msg(ok == c[i].ok, "'%s'", c[i].in);
        if (ok)
            ck_assert_msg(d == c[i].days, "'%s': %lld", c[i].in, (long long)d);
    }
    ck_assert(!kb_time_parse_date(NULL, 0, NULL));
}
END_TEST

START_TEST(naive_format_drops_the_offset)
{
    char out[KB_TIME_FMT_MAX];
    kb_time_format_naive(1768478400LL * 1000000, out, sizeof(out));
    ck_assert_str_eq(out, "2026-01-15T12:00:00");
}
END_TEST

START_TEST(cursor_round_trips_and_matches_the_documented_encoding)
{
    kb_arena a;
    kb_arena_init(&a, 0);
    char *c = kb_cursor_encode(&a, 1768478400LL * 1000000 + 250000, 42);
    /* base64 of {"ts":"2026-01-15T12:00:00.250000+00:00","id":42} */
    ck_assert_str_eq(c, "eyJ0cyI6IjIwMjYtMDEtMTVUMTI6MDA6MDAuMjUwMDAwKzAwOjAwIiwiaWQiOjQyfQ==");
    kb_cursor cur;
    ck_assert(kb_cursor_decode(kb_str_c(c), &cur));
    ck_assert_int_eq(cur.ts_us, 1768478400LL * 1000000 + 250000);
    ck_assert_int_eq(cur.id, 42);
    /* unpadded base64 and an offset-less ts (read as UTC) are accepted */
    ck_assert(kb_cursor_decode(kb_str_c("eyJ0cyI6IjIwMjYtMDEtMTVUMTI6MDA6MDAiLCJpZCI6N30"), &cur));
    ck_assert_int_eq(cur.ts_us, 1768478400LL * 1000000);
    ck_assert_int_eq(cur.id, 7);
    kb_arena_release(&a);
}
END_TEST

static const char *const bad_cursors[] = {
    "",
    "!!!!",
    "eyJ0cyI6MX0=",                             /* {"ts":1} */
    "eyJpZCI6MX0=",                             /* {"id":1} */
    "WzFd",                                     /* [1] */
    "eyJ0cyI6InNvb24iLCJpZCI6MX0=",             /* {"ts":"soon","id":1} */
    "eyJ0cyI6IjIwMjYtMDEtMTUiLCJpZCI6MS41fQ==", /* id 1.5 */
    "bm90IGpzb24=",                             /* not json */
    "eyJ0cyI6IjIwMjYtMDEtMTUiLCJpZCI6MX0geA==", /* {"ts":"2026-01-15","id":1} x */
};

START_TEST(cursor_rejects_anything_else)
{
    kb_cursor cur;
    ck_assert_msg(!kb_cursor_decode(kb_str_c(bad_cursors[_i]), &cur), "%s", bad_cursors[_i]);
}
END_TEST

START_TEST(candle_intervals_are_exactly_1m_1h_1d)
{
    ck_assert_int_eq(kb_candle_interval("1m"), 0);
    ck_assert_int_eq(kb_candle_interval("1h"), 1);
    ck_assert_int_eq(kb_candle_interval("1d"), 2);
    ck_assert_int_eq(kb_candle_interval("1H"), -1);
    ck_assert_int_eq(kb_candle_interval("5m"), -1);
    ck_assert_int_eq(kb_candle_interval(""), -1);
}
END_TEST

START_TEST(list_cursor_round_trips_url_safe)
{
    kb_arena a;
    kb_arena_init(&a, 0);
    char *c = kb_cursor_list_encode(&a, "markets", true, 1768478400LL * 1000000 + 5, "KX-A?+/\"");
    /* base64url, no padding, of {"list":"markets","at":"2026-01-15T12:00:00.000005+00:00",
     * "key":"KX-A?+/\""} */
    ck_assert_str_eq(c, "eyJsaXN0IjoibWFya2V0cyIsImF0IjoiMjAyNi0wMS0xNVQxMjowMDowMC4wMDAwMDUrMDA6"
                        "MDAiLCJrZXkiOiJLWC1BPysvXCIifQ");
    ck_assert(strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
              strlen(c));
    kb_list_cursor cur;
    ck_assert(kb_cursor_list_decode(&a, kb_str_c(c), "markets", true, &cur));
    ck_assert_int_eq(cur.at_us, 1768478400LL * 1000000 + 5);
    ck_assert_str_eq(cur.key, "KX-A?+/\"");
    c = kb_cursor_list_encode(&a, "events", false, 0, "KXFIX-26JAN15");
    ck_assert(kb_cursor_list_decode(&a, kb_str_c(c), "events", false, &cur));
    ck_assert_str_eq(cur.key, "KXFIX-26JAN15");
    /* padded is accepted too */
    ck_assert(kb_cursor_list_decode(&a, kb_str_c("eyJsaXN0IjoiZXZlbnRzIiwia2V5IjoiQSJ9"), "events",
                                    false, &cur));
    ck_assert(kb_cursor_list_decode(&a, kb_str_c("eyJsaXN0IjoiZXZlbnRzIiwia2V5IjoiQUIifQ=="),
                                    "events", false, &cur));
    ck_assert_str_eq(cur.key, "AB");
    kb_arena_release(&a);
}
END_TEST

static const struct {
    const char *cursor, *list;
    bool with_at;
} bad_list_cursors[] = {
    {"", "events", false},
    {"!!!!", "events", false},
    {"eyJsaXN0IjoiZXZlbnRzIiwia2V5IjoiQSJ9", "markets", true},  /* an events cursor */
    {"eyJsaXN0IjoiZXZlbnRzIiwia2V5IjoiQSJ9", "markets", false}, /* ... whatever the shape */
    /* {"list":"markets","key":"A"}: no "at" */
    {"eyJsaXN0IjoibWFya2V0cyIsImtleSI6IkEifQ", "markets", true},
    /* {"list":"events","key":"A","x":1}: an extra member */
    {"eyJsaXN0IjoiZXZlbnRzIiwia2V5IjoiQSIsIngiOjF9", "events", false},
    /* {"list":"events","key":1} */
    {"eyJsaXN0IjoiZXZlbnRzIiwia2V5IjoxfQ", "events", false},
    /* {"list":"markets","at":"soon","key":"A"} */
    {"eyJsaXN0IjoibWFya2V0cyIsImF0Ijoic29vbiIsImtleSI6IkEifQ", "markets", true},
    /* a /deltas cursor */
    {"eyJ0cyI6IjIwMjYtMDEtMTVUMTI6MDA6MDArMDA6MDAiLCJpZCI6MX0=", "markets", true},
    /* standard base64 where base64url is written: '+' and '/' */
    {"eyJsaXN0IjoiZXZlbnRzIiwia2V5IjoiPz8/Pj4ifQ==", "events", false},
};

START_TEST(list_cursor_rejects_anything_else)
{
    kb_arena a;
    kb_arena_init(&a, 0);
    kb_list_cursor cur;
    ck_assert_msg(!kb_cursor_list_decode(&a, kb_str_c(bad_list_cursors[_i].cursor),
                                         bad_list_cursors[_i].list, bad_list_cursors[_i].with_at,
                                         &cur),
                  "%s", bad_list_cursors[_i].cursor);
    kb_arena_release(&a);
}
END_TEST

START_TEST(list_cursor_keys_are_bounded)
{
    kb_arena a;
    kb_arena_init(&a, 0);
    char key[KB_LIST_CURSOR_KEY_MAX + 2];
    memset(key, 'K', sizeof(key) - 1);
    key[KB_LIST_CURSOR_KEY_MAX] = '\0';
    kb_list_cursor cur;
    char *c = kb_cursor_list_encode(&a, "events", false, 0, key);
    ck_assert(kb_cursor_list_decode(&a, kb_str_c(c), "events", false, &cur));
    key[KB_LIST_CURSOR_KEY_MAX] = 'K';
    key[KB_LIST_CURSOR_KEY_MAX + 1] = '\0';
    c = kb_cursor_list_encode(&a, "events", false, 0, key);
    ck_assert(!kb_cursor_list_decode(&a, kb_str_c(c), "events", false, &cur));
    kb_arena_release(&a);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("marketdata");
    TCase *tc = tcase_create("marketdata");
    tcase_add_loop_test(tc, time_parse_accepts_the_documented_forms_only, 0,
                        (int)(sizeof(ts_cases) / sizeof(ts_cases[0])));
    tcase_add_test(tc, time_from_unix_numbers);
    tcase_add_test(tc, date_parse_takes_calendar_dates_only);
    tcase_add_test(tc, naive_format_drops_the_offset);
    tcase_add_test(tc, cursor_round_trips_and_matches_the_documented_encoding);
    tcase_add_loop_test(tc, cursor_rejects_anything_else, 0,
                        (int)(sizeof(bad_cursors) / sizeof(bad_cursors[0])));
    tcase_add_test(tc, candle_intervals_are_exactly_1m_1h_1d);
    tcase_add_test(tc, list_cursor_round_trips_url_safe);
    tcase_add_loop_test(tc, list_cursor_rejects_anything_else, 0,
                        (int)(sizeof(bad_list_cursors) / sizeof(bad_list_cursors[0])));
    tcase_add_test(tc, list_cursor_keys_are_bounded);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
