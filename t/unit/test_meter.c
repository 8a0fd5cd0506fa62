/* test_meter.c - reading the meter's row (lib/kb_meter.h) without a database:
 * columns are found by name in any order, outcomes are an enum, missing or
 * malformed values are refused, and a charge must carry what a refund needs.
 * Rows are built with libpq's own result constructors. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "check_main.h"
#include "kb_meter.h"
#include "kb_banned.h"

typedef struct col {
    const char *name;
    const char *value; /* NULL = SQL NULL */
} col;

/* A one-row result with the given columns (text format). */
static PGresult *
row_of(const col *cols, int n)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    ck_assert_ptr_nonnull(r);
    PGresAttDesc att[32];
    memset(att, 0, sizeof(att));
    for (int i = 0; i < n; i++) {
        att[i].name = (char *)cols[i].name;
        att[i].typid = 25; /* text */
        att[i].typlen = -1;
        att[i].atttypmod = -1;
    }
    ck_assert(PQsetResultAttrs(r, n, att));
    for (int i = 0; i < n; i++) {
        const char *v = cols[i].value;
        ck_assert(PQsetvalue(r, 0, i, (char *)v, v ? (int)strlen(v) : -1));
    }
    return r;
}

/* The fast path's row: no key_prefix, retry_after or outbox_id column. */
static const col fast_row[] = {
    {"outcome", "ok"},
    {"user_id", "8539643a-9d13-4df2-9ec4-4ad93bbec7fa"},
    {"key_id", "1d1f00a2-0d11-45c3-b164-c93f8aa10878"},
    {"credits_total", "1000"},
    {"credits_used", "7"},
    {"cost", "5"},
    {"rl_limit", "60"},
    {"rl_remaining", "58"},
    {"rl_reset", "1796410740"},
    {"cycle_start", "2026-12-01 00:00:00+00"},
    {"day", "2026-12-04"},
    {"xid", "4294967396"},
    {"token", "5f0c43e4-51b9-4a0e-9d5e-8b1f3a1c0d2e"},
    {"seq", "41"},
};

START_TEST(fast_row_is_read_by_name)
{
    PGresult *r = row_of(fast_row, sizeof(fast_row) / sizeof(fast_row[0]));
    kb_meter_result m;
    const char *why = "unset";
    ck_assert_msg(kb_meter_result_read(r, 0, NULL, &m, &why), "%s", why);
    ck_assert_ptr_null(why);
    ck_assert_int_eq(m.outcome, KB_METER_OK);
    ck_assert_str_eq(m.user_id, "8539643a-9d13-4df2-9ec4-4ad93bbec7fa");
    ck_assert_str_eq(m.key_id, "1d1f00a2-0d11-45c3-b164-c93f8aa10878");
    ck_assert_str_eq(m.key_prefix, "");
    ck_assert_int_eq(m.credits_total, 1000);
    ck_assert_int_eq(m.credits_used, 7);
    ck_assert_int_eq(m.cost, 5);
    ck_assert_int_eq(m.rl_limit, 60);
    ck_assert_int_eq(m.rl_remaining, 58);
    ck_assert_int_eq(m.rl_reset, 1796410740);
    ck_assert_int_eq(m.retry_after, 0);
    ck_assert_str_eq(m.cycle_start, "2026-12-01 00:00:00+00");
    ck_assert_str_eq(m.day, "2026-12-04");
    ck_assert_int_eq(m.outbox_id, 0);
    ck_assert(m.xid == UINT64_C(4294967396)); /* a 64-bit xid8, past 2^32 */
    ck_assert_str_eq(m.token, "5f0c43e4-51b9-4a0e-9d5e-8b1f3a1c0d2e");
    ck_assert_int_eq(m.seq, 41);
    PQclear(r);
}
END_TEST

/* kb_meter_stmt's row as it is now: no user_id, key_id, cost or token (the
 * worker's own parameters, passed as given); a column the row has wins. */
static const col trimmed_row[] = {
    {"outcome", "ok"},
    {"credits_total", "1000"},
    {"credits_used", "7"},
    {"rl_limit", "60"},
    {"rl_remaining", "58"},
    {"rl_reset", "1796410740"},
    {"cycle_start", "2026-12-01 00:00:00+00"},
    {"day", "2026-12-04"},
    {"xid", "4294967396"},
    {"seq", "41"},
    {"fast_until", "1796410740.25"},
};

START_TEST(trimmed_fast_row_takes_the_given_parameters)
{
    PGresult *r = row_of(trimmed_row, sizeof(trimmed_row) / sizeof(trimmed_row[0]));
    kb_meter_result given, m;
    memset(&given, 0, sizeof(given));
    snprintf(given.user_id, sizeof(given.user_id), "%s", "8539643a-9d13-4df2-9ec4-4ad93bbec7fa");
    snprintf(given.key_id, sizeof(given.key_id), "%s", "1d1f00a2-0d11-45c3-b164-c93f8aa10878");
    snprintf(given.token, sizeof(given.token), "%s", "5f0c43e4-51b9-4a0e-9d5e-8b1f3a1c0d2e");
    given.cost = 5;
    given.credits_used = 999; /* only the four parameters are taken from given */
    const char *why = "unset";
    ck_assert_msg(kb_meter_result_read(r, 0, &given, &m, &why), "%s", why);
    ck_assert_int_eq(m.outcome, KB_METER_OK);
    ck_assert_str_eq(m.user_id, given.user_id);
    ck_assert_str_eq(m.key_id, given.key_id);
    ck_assert_str_eq(m.token, given.token);
    ck_assert_int_eq(m.cost, 5);
    ck_assert_int_eq(m.credits_used, 7);
    ck_assert_int_eq(m.rl_reset, 1796410740);
    ck_assert(m.xid == UINT64_C(4294967396));
    ck_assert_int_eq(m.seq, 41);
    /* The fast path's window end (date_part's epoch seconds), in microseconds. */
    ck_assert(m.fast_until_us == INT64_C(1796410740250000));
    /* Without given the same row is not a charge a refund could use. */
    ck_assert(!kb_meter_result_read(r, 0, NULL, &m, &why));
    ck_assert_str_eq(why, "a column is missing");
    PQclear(r);
    /* The slow path's full row: its own columns win over given. */
    r = row_of(fast_row, sizeof(fast_row) / sizeof(fast_row[0]));
    snprintf(given.user_id, sizeof(given.user_id), "%s", "00000000-0000-0000-0000-000000000000");
    given.cost = 1;
    ck_assert_msg(kb_meter_result_read(r, 0, &given, &m, &why), "%s", why);
    ck_assert_str_eq(m.user_id, "8539643a-9d13-4df2-9ec4-4ad93bbec7fa");
    ck_assert_int_eq(m.cost, 5);
    ck_assert(m.fast_until_us == 0); /* no window said: the next charge goes the usual way */
    PQclear(r);
}
END_TEST

/* kb_meter_chain_stmt's row: what the worker journaled before sending (cycle, day,
 * the transaction's id, the window) is not in it; given holds it. */
static const col chain_row[] = {
    {"outcome", "ok"},      {"credits_total", "1000"},  {"credits_used", "8"}, {"rl_limit", "60"},
    {"rl_remaining", "57"}, {"rl_reset", "1796410740"}, {"seq", "42"},
};

START_TEST(one_trip_row_takes_what_was_journaled_from_given)
{
    PGresult *r = row_of(chain_row, sizeof(chain_row) / sizeof(chain_row[0]));
    kb_meter_result given, m;
    memset(&given, 0, sizeof(given));
    snprintf(given.user_id, sizeof(given.user_id), "%s", "8539643a-9d13-4df2-9ec4-4ad93bbec7fa");
    snprintf(given.key_id, sizeof(given.key_id), "%s", "1d1f00a2-0d11-45c3-b164-c93f8aa10878");
    snprintf(given.token, sizeof(given.token), "%s", "5f0c43e4-51b9-4a0e-9d5e-8b1f3a1c0d2e");
    snprintf(given.cycle_start, sizeof(given.cycle_start), "%s", "2026-12-01 00:00:00+00");
    snprintf(given.day, sizeof(given.day), "%s", "2026-12-05");
    given.cost = 1;
    given.xid = UINT64_C(4294967397);
    given.fast_until_us = INT64_C(1796410740000000);
    const char *why = "unset";
    ck_assert_msg(kb_meter_result_read(r, 0, &given, &m, &why), "%s", why);
    ck_assert_int_eq(m.outcome, KB_METER_OK);
    ck_assert_int_eq(m.credits_used, 8);
    ck_assert_int_eq(m.rl_remaining, 57);
    ck_assert_int_eq(m.seq, 42);
    ck_assert_str_eq(m.cycle_start, given.cycle_start);
    ck_assert_str_eq(m.day, given.day);
    ck_assert(m.xid == given.xid);
    ck_assert(m.fast_until_us == given.fast_until_us);
    /* Without its transaction's id it is no charge the journal could settle. */
    given.xid = 0;
    ck_assert(!kb_meter_result_read(r, 0, &given, &m, &why));
    ck_assert_str_eq(why, "a charge without its details");
    PQclear(r);
}
END_TEST

/* A window end that is NULL (a slow path's refusal) or not a number says nothing. */
START_TEST(fast_until_null_or_malformed_is_unknown)
{
    col row[sizeof(trimmed_row) / sizeof(trimmed_row[0])];
    memcpy(row, trimmed_row, sizeof(row));
    const char *values[] = {NULL, "", "-5", "nan", "1e300"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        row[sizeof(row) / sizeof(row[0]) - 1].value = values[i];
        PGresult *r = row_of(row, sizeof(row) / sizeof(row[0]));
        kb_meter_result given, m;
        memset(&given, 0, sizeof(given));
        snprintf(given.user_id, sizeof(given.user_id), "%s",
                 "8539643a-9d13-4df2-9ec4-4ad93bbec7fa");
        snprintf(given.key_id, sizeof(given.key_id), "%s", "1d1f00a2-0d11-45c3-b164-c93f8aa10878");
        snprintf(given.token, sizeof(given.token), "%s", "5f0c43e4-51b9-4a0e-9d5e-8b1f3a1c0d2e");
        const char *why = "unset";
        ck_assert_msg(kb_meter_result_read(r, 0, &given, &m, &why), "%s", why);
        ck_assert_msg(m.fast_until_us == 0, "fast_until %s read as %lld",
                      values[i] ? values[i] : "NULL", (long long)m.fast_until_us);
        PQclear(r);
    }
}
END_TEST

/* The slow path's row, columns in another order, a refusal with NULLs. */
START_TEST(refused_row_in_any_column_order)
{
    const col cols[] = {
        {"retry_after", "17"},
        {"xid", NULL},
        {"seq", NULL},
        {"token", NULL},
        {"outbox_id", NULL},
        {"day", "2026-12-04"},
        {"cycle_start", "2026-12-01 00:00:00+00"},
        {"rl_reset", "1796410740"},
        {"rl_remaining", "0"},
        {"rl_limit", "30"},
        {"cost", "0"},
        {"credits_used", "30"},
        {"credits_total", "1000"},
        {"key_prefix", "kb-Ab3x"},
        {"key_id", "1d1f00a2-0d11-45c3-b164-c93f8aa10878"},
        {"user_id", "8539643a-9d13-4df2-9ec4-4ad93bbec7fa"},
        {"outcome", "rate_limited"},
    };
    PGresult *r = row_of(cols, sizeof(cols) / sizeof(cols[0]));
    kb_meter_result m;
    const char *why = NULL;
    ck_assert_msg(kb_meter_result_read(r, 0, NULL, &m, &why), "%s", why);
    ck_assert_int_eq(m.outcome, KB_METER_RATE_LIMITED);
    ck_assert_int_eq(m.retry_after, 17);
    ck_assert_str_eq(m.key_prefix, "kb-Ab3x");
    ck_assert_int_eq(m.rl_limit, 30);
    ck_assert_int_eq(m.cost, 0);
    ck_assert(m.xid == 0);
    ck_assert_str_eq(m.token, "");
    ck_assert_int_eq(m.seq, 0);
    ck_assert_int_eq(m.outbox_id, 0);
    PQclear(r);
}
END_TEST

/* An unknown key: everything but the outcome is NULL. */
START_TEST(invalid_key_row)
{
    col cols[sizeof(fast_row) / sizeof(fast_row[0])];
    memcpy(cols, fast_row, sizeof(cols));
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
        cols[i].value = NULL;
    cols[0].value = "invalid_key";
    cols[5].value = "0";
    PGresult *r = row_of(cols, sizeof(cols) / sizeof(cols[0]));
    kb_meter_result m;
    const char *why = NULL;
    ck_assert_msg(kb_meter_result_read(r, 0, NULL, &m, &why), "%s", why);
    ck_assert_int_eq(m.outcome, KB_METER_INVALID_KEY);
    ck_assert_str_eq(m.user_id, "");
    ck_assert_int_eq(m.credits_total, 0);
    PQclear(r);
}
END_TEST

typedef struct bad {
    const char *column, *value; /* set column to value (NULL: drop the column) */
    const char *why;
} bad;

static const bad bads[] = {
    {"outcome", "charged", "unknown outcome"},
    {"outcome", NULL, "a column is missing"},
    {"credits_used", "12x", "a number column is malformed"},
    {"rl_limit", NULL, "a column is missing"},
    {"day", NULL, "a column is missing"},
    {"xid", NULL, "a column is missing"},
    {"token", NULL, "a column is missing"},
    {"seq", "4x", "a number column is malformed"},
    {"user_id", "8539643a-9d13-4df2-9ec4-4ad93bbec7fa-much-too-long-for-a-uuid",
     "a text column is too long"},
};

/* A row the meter cannot trust is refused, never half read; and a charge
 * without what settling it needs (its xid, its day) is not a charge. */
START_TEST(malformed_rows_are_refused)
{
    const bad *b = &bads[_i];
    col cols[sizeof(fast_row) / sizeof(fast_row[0])];
    int n = 0;
    for (size_t i = 0; i < sizeof(fast_row) / sizeof(fast_row[0]); i++) {
        if (strcmp(fast_row[i].name, b->column) == 0) {
            if (b->value == NULL)
                continue;
            cols[n] = fast_row[i];
            cols[n++].value = b->value;
        } else {
            cols[n++] = fast_row[i];
        }
    }
    PGresult *r = row_of(cols, n);
    kb_meter_result m;
    const char *why = NULL;
    ck_assert(!kb_meter_result_read(r, 0, NULL, &m, &why));
    ck_assert_str_eq(why, b->why);
    ck_assert(!kb_meter_result_read(r, 1, NULL, &m, &why)); /* no such row */
    PQclear(r);
}
END_TEST

/* An 'ok' row without its transaction id, server life or charge count: the
 * journal could not settle it, so it is no charge. */
static const char *const settle_columns[] = {"xid", "token", "seq"};

START_TEST(a_charge_without_its_xid_is_refused)
{
    col cols[sizeof(fast_row) / sizeof(fast_row[0])];
    memcpy(cols, fast_row, sizeof(cols));
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
        if (strcmp(cols[i].name, settle_columns[_i]) == 0)
            cols[i].value = NULL;
    PGresult *r = row_of(cols, sizeof(cols) / sizeof(cols[0]));
    kb_meter_result m;
    const char *why = NULL;
    ck_assert(!kb_meter_result_read(r, 0, NULL, &m, &why));
    ck_assert_str_eq(why, "a charge without its details");
    PQclear(r);
}
END_TEST

START_TEST(outcome_names_round_trip)
{
    const kb_meter_outcome all[] = {KB_METER_OK, KB_METER_INVALID_KEY, KB_METER_RATE_LIMITED,
                                    KB_METER_EXHAUSTED};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        kb_meter_outcome o;
        ck_assert(kb_meter_outcome_parse(kb_meter_outcome_name(all[i]), &o));
        ck_assert_int_eq(o, all[i]);
    }
    kb_meter_outcome o;
    ck_assert(!kb_meter_outcome_parse("OK", &o));
    ck_assert(!kb_meter_outcome_parse("", &o));
    ck_assert(!kb_meter_outcome_parse(NULL, &o));
    ck_assert_str_eq(kb_meter_outcome_name((kb_meter_outcome)99), "unknown");
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("meter_result");
    TCase *tc = tcase_create("result");
    tcase_add_test(tc, fast_row_is_read_by_name);
    tcase_add_test(tc, trimmed_fast_row_takes_the_given_parameters);
    tcase_add_test(tc, fast_until_null_or_malformed_is_unknown);
    tcase_add_test(tc, one_trip_row_takes_what_was_journaled_from_given);
    tcase_add_test(tc, refused_row_in_any_column_order);
    tcase_add_test(tc, invalid_key_row);
    tcase_add_loop_test(tc, malformed_rows_are_refused, 0, sizeof(bads) / sizeof(bads[0]));
    tcase_add_loop_test(tc, a_charge_without_its_xid_is_refused, 0,
                        sizeof(settle_columns) / sizeof(settle_columns[0]));
    tcase_add_test(tc, outcome_names_round_trip);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
