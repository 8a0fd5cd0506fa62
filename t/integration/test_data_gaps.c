/* test_data_gaps.c - what the API says about a live market (API.md §7 items 20-21): GET
 * /markets/{ticker}/coverage (span, gaps by start, both channels, 404), POST
 * /orderbook's complete and gap at instants around recorded gaps (start inclusive, end
 * exclusive, open gaps, trade-channel gaps that leave the book complete), and the live
 * checkpoints (kb_extend_checkpoints, 0019) that keep its reconstruction short without
 * changing any answer. Gap rows are written as the collector's writer writes them; the
 * markets come from imports. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

#define M "KXGAP-26JAN15-A"
#define M2 "KXGAP-26JAN15-B" /* a snapshot and nothing else: no gaps */

static kbt_account account;

static void
setup(void)
{
    char path[] = "/tmp/kbt-gaps-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    FILE *f = fdopen(fd, "w");
    fputs("{\"type\":\"orderbook_snapshot\",\"sid\":1,\"seq\":1,\"msg\":{\"market_ticker\":\"" M
          "\",\"yes_dollars_fp\":[[\"0.4000\",\"10.00\"]],\"ts_ms\":1768478400000}}\n",
          f);
    fputs("{\"type\":\"orderbook_snapshot\",\"sid\":2,\"seq\":1,\"msg\":{\"market_ticker\":\"" M2
          "\",\"no_dollars_fp\":[[\"0.5000\",\"1.00\"]],\"ts_ms\":1768478400000}}\n",
          f);
    for (int i = 1; i <= 20; i++)
        fprintf(f,
                "{\"type\":\"orderbook_delta\",\"sid\":1,\"seq\":%d,\"msg\":{\"market_ticker\":"
                "\"" M "\",\"price_dollars\":\"0.4000\",\"delta_fp\":\"1.00\",\"side\":\"yes\","
                "\"ts_ms\":%lld}}\n",
                i + 1, 1768478400000LL + i * 1000LL);
    fclose(f);
    char args[128];
    snprintf(args, sizeof(args), "import --quiet %s", path);
    kb_buf out = KB_BUF_INIT;
    if (kbt_data_kbctl(args, &out) != 0) {
        fprintf(stderr, "gap fixture import failed: %s\n", kb_buf_cstr(&out));
        abort();
    }
    kb_buf_release(&out);
    unlink(path);
    PGconn *c = kbt_db();
    kbt_data_account(c, &account);
    /* 12:00:05 .. 12:00:10 closed; 12:00:15 open; a trade gap over 12:00:02 .. 12:00:04. */
    kbt_sql_ok(c, "DELETE FROM gaps WHERE market_ticker = '" M "'");
    kbt_sql_ok(c, "INSERT INTO gaps (market_ticker, channel, start_at, end_at, reason, source)"
                  " VALUES ('" M "', 'orderbook', '2026-01-15T12:00:05Z', '2026-01-15T12:00:10Z',"
                  "         'seq_jump', 'test/1/1'),"
                  "        ('" M "', 'orderbook', '2026-01-15T12:00:15Z', NULL, 'heartbeat',"
                  "         'test/1/2'),"
                  "        ('" M "', 'trade', '2026-01-15T12:00:02Z', '2026-01-15T12:00:04Z',"
                  "         'seq_jump', 'test/1/3')");
    PQfinish(c);
    kbt_data_wait_replica();
}

typedef struct at_case {
    const char *ts;
    bool complete;
    const char *start, *end, *reason; /* the gap named (end NULL: open) */
} at_case;

static const at_case ats[] = {
    {"2026-01-15T12:00:03Z", true, NULL, NULL, NULL}, /* inside a trade gap only */
    {"2026-01-15T12:00:04.999Z", true, NULL, NULL, NULL},
    {"2026-01-15T12:00:05Z", false, "2026-01-15T12:00:05+00:00", "2026-01-15T12:00:10+00:00",
     "seq_jump"}, /* start inclusive */
    {"2026-01-15T12:00:07.5Z", false, "2026-01-15T12:00:05+00:00", "2026-01-15T12:00:10+00:00",
     "seq_jump"},
    {"2026-01-15T12:00:10Z", true, NULL, NULL, NULL}, /* end exclusive: the new snapshot */
    {"2026-01-15T12:00:14.999999Z", true, NULL, NULL, NULL},
    {"2026-01-15T12:00:15Z", false, "2026-01-15T12:00:15+00:00", NULL, "heartbeat"},
    {"2026-01-16T00:00:00Z", false, "2026-01-15T12:00:15+00:00", NULL, "heartbeat"},
};

START_TEST(orderbook_says_complete_false_inside_a_gap)
{
    const at_case *c = &ats[_i];
    char body[160];
    snprintf(body, sizeof(body), "{\"market_ticker\":\"" M "\",\"timestamp\":\"%s\"}", c->ts);
    kbt_resp *r = kbt_data_post(&account, "/orderbook", body);
    ck_assert_msg(r->status == 200, "%s: %ld %s", c->ts, r->status, kb_buf_cstr(&r->body));
    kbt_docs_assert_conforms(r, "POST", "/orderbook");
    const cJSON *complete = cJSON_GetObjectItem(r->json, "complete");
    const cJSON *gap = cJSON_GetObjectItem(r->json, "gap");
    ck_assert_msg(cJSON_IsBool(complete) && cJSON_IsTrue(complete) == c->complete, "%s: %s",
                  c->ts, kb_buf_cstr(&r->body));
    if (c->complete) {
        ck_assert(cJSON_IsNull(gap));
    } else {
        ck_assert_str_eq(cJSON_GetObjectItem(gap, "start")->valuestring, c->start);
        const cJSON *end = cJSON_GetObjectItem(gap, "end");
        if (c->end == NULL)
            ck_assert(cJSON_IsNull(end));
        else
            ck_assert_str_eq(end->valuestring, c->end);
        ck_assert_str_eq(cJSON_GetObjectItem(gap, "reason")->valuestring, c->reason);
    }
    /* The book itself is what the rows say, gap or not: 10 + one per second. */
    const cJSON *yes = cJSON_GetObjectItem(r->json, "yes");
    ck_assert_int_eq(cJSON_GetArraySize(yes), 1);
    kbt_resp_free(r);
}
END_TEST

/* ---- GET /markets/{ticker}/coverage -------------------------------------------------- */

static void
assert_gap(const cJSON *g, const char *start, const char *end, const char *reason,
           const char *channel)
{
    static const char *const keys[] = {"start", "end", "reason", "channel", NULL};
    kbt_data_assert_keys(g, keys);
    ck_assert_str_eq(cJSON_GetObjectItem(g, "start")->valuestring, start);
    const cJSON *e = cJSON_GetObjectItem(g, "end");
    if (end == NULL)
        ck_assert(cJSON_IsNull(e));
    else
        ck_assert_str_eq(e->valuestring, end);
    ck_assert_str_eq(cJSON_GetObjectItem(g, "reason")->valuestring, reason);
    ck_assert_str_eq(cJSON_GetObjectItem(g, "channel")->valuestring, channel);
}

START_TEST(coverage_lists_every_gap_by_start)
{
    kbt_resp *r = kbt_data_get(&account, "/markets/" M "/coverage");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    kbt_docs_assert_conforms(r, "GET", "/markets/" M "/coverage");
    char *cost = kbt_header(r, "X-Credits-Cost");
    ck_assert_str_eq(cost, "1");
    free(cost);
    static const char *const keys[] = {"market_ticker", "first_data_at", "last_data_at", "gaps",
                                       "request_id",    "response_time", NULL};
    kbt_data_assert_keys(r->json, keys);
    ck_assert_str_eq(cJSON_GetObjectItem(r->json, "market_ticker")->valuestring, M);
    ck_assert_str_eq(cJSON_GetObjectItem(r->json, "first_data_at")->valuestring,
                     "2026-01-15T12:00:00+00:00");
    ck_assert_str_eq(cJSON_GetObjectItem(r->json, "last_data_at")->valuestring,
                     "2026-01-15T12:00:20+00:00");
    const cJSON *gaps = cJSON_GetObjectItem(r->json, "gaps");
    ck_assert_int_eq(cJSON_GetArraySize(gaps), 3);
    assert_gap(cJSON_GetArrayItem(gaps, 0), "2026-01-15T12:00:02+00:00",
               "2026-01-15T12:00:04+00:00", "seq_jump", "trade");
    assert_gap(cJSON_GetArrayItem(gaps, 1), "2026-01-15T12:00:05+00:00",
               "2026-01-15T12:00:10+00:00", "seq_jump", "orderbook");
    assert_gap(cJSON_GetArrayItem(gaps, 2), "2026-01-15T12:00:15+00:00", NULL, "heartbeat",
               "orderbook");
    kbt_resp_free(r);
}
END_TEST

START_TEST(coverage_of_a_market_without_gaps)
{
    kbt_resp *r = kbt_data_get(&account, "/markets/" M2 "/coverage");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    kbt_docs_assert_conforms(r, "GET", "/markets/" M2 "/coverage");
    ck_assert_str_eq(cJSON_GetObjectItem(r->json, "first_data_at")->valuestring,
                     "2026-01-15T12:00:00+00:00");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(r->json, "last_data_at"))); /* no delta yet */
    const cJSON *gaps = cJSON_GetObjectItem(r->json, "gaps");
    ck_assert(cJSON_IsArray(gaps));
    ck_assert_int_eq(cJSON_GetArraySize(gaps), 0);
    kbt_resp_free(r);
}
END_TEST

START_TEST(coverage_of_an_unknown_market_is_404_and_free)
{
    kbt_resp *r = kbt_data_get(&account, "/markets/KXGAP-NO-SUCH/coverage");
    ck_assert_int_eq(r->status, 404);
    kbt_docs_assert_conforms(r, "GET", "/markets/KXGAP-NO-SUCH/coverage");
    const cJSON *e = cJSON_GetObjectItem(r->json, "error");
    ck_assert_str_eq(cJSON_GetObjectItem(e, "code")->valuestring, "market_not_found");
    char *cost = kbt_header(r, "X-Credits-Cost");
    ck_assert_str_eq(cost, "0");
    free(cost);
    kbt_resp_free(r);
}
END_TEST

/* ---- live checkpoints ---------------------------------------------------------------- */

#define L "KXLIVE-26JAN15-A"

/* Import deltas i0..i1 of the live market (price and side vary, some removals). */
static void
import_live(int i0, int i1, bool snapshot)
{
    char path[] = "/tmp/kbt-live-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    if (snapshot)
        fputs("{\"type\":\"orderbook_snapshot\",\"sid\":1,\"seq\":1,\"msg\":{\"market_ticker\":\"" L
              "\",\"yes_dollars_fp\":[[\"0.4000\",\"10.00\"],[\"0.3950\",\"2.50\"]],"
              "\"no_dollars_fp\":[[\"0.5500\",\"7.00\"]],\"ts_ms\":1768478400000}}\n",
              f);
    for (int i = i0; i <= i1; i++) {
        int price = 3900 + (i % 5) * 25;
        const char *side = i % 3 == 0 ? "no" : "yes";
        long long d = i % 4 == 3 ? -50 : 125 + i;
        fprintf(f,
                "{\"type\":\"orderbook_delta\",\"sid\":1,\"seq\":%d,\"msg\":{\"market_ticker\":"
                "\"" L "\",\"price_dollars\":\"0.%04d\",\"delta_fp\":\"%s%lld.%02lld\",\"side\":"
                "\"%s\",\"ts_ms\":%lld}}\n",
                i + 1, price, d < 0 ? "-" : "", (d < 0 ? -d : d) / 100, (d < 0 ? -d : d) % 100, side,
                1768478400000LL + (i == 40 ? 9500LL : i % 2 == 0 && i > 30 ? i * 1000LL - 500
                                                                          : i * 1000LL));
    }
    fclose(f);
    char args[128];
    snprintf(args, sizeof(args), "import --quiet --checkpoint-every 0 %s", path);
    ck_assert_int_eq(kbt_data_kbctl(args, NULL), 0);
    unlink(path);
}

static char *
book_at(const char *ts)
{
    char body[160];
    snprintf(body, sizeof(body), "{\"market_ticker\":\"" L "\",\"timestamp\":\"%s\"}", ts);
    kbt_resp *r = kbt_data_post(&account, "/orderbook", body);
    ck_assert_msg(r->status == 200, "%s: %ld %s", ts, r->status, kb_buf_cstr(&r->body));
    cJSON_DeleteItemFromObject(r->json, "request_id");
    cJSON_DeleteItemFromObject(r->json, "response_time");
    char *s = cJSON_PrintUnformatted(r->json);
    kbt_resp_free(r);
    return s;
}

static const char *const live_at[] = {
    "2026-01-15T12:00:00Z", "2026-01-15T12:00:03Z", "2026-01-15T12:00:04Z",
    "2026-01-15T12:00:09.5Z", "2026-01-15T12:00:17Z", "2026-01-15T12:00:25Z",
    "2026-01-15T12:00:31.5Z", "2026-01-15T12:00:38Z", "2026-01-15T13:00:00Z"};
#define NLIVE (sizeof(live_at) / sizeof(live_at[0]))

/* The answers with no checkpoint at all (the definition) against those with them. */
static void
same_answers(PGconn *c, long want_checkpoints)
{
    char *with[NLIVE];
    for (size_t i = 0; i < NLIVE; i++)
        with[i] = book_at(live_at[i]);
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT count(*) FROM book_checkpoints WHERE market_ticker "
                                      "= $1", L), want_checkpoints);
    kbt_sql_ok(c, "BEGIN");
    kbt_sql_ok(c, "CREATE TEMP TABLE saved AS SELECT * FROM book_checkpoints WHERE market_ticker "
                  "= '" L "'");
    kbt_sql_ok(c, "DELETE FROM book_checkpoints WHERE market_ticker = '" L "'");
    kbt_sql_ok(c, "COMMIT");
    kbt_data_wait_replica();
    for (size_t i = 0; i < NLIVE; i++) {
        char *without = book_at(live_at[i]);
        ck_assert_msg(strcmp(with[i], without) == 0, "%s:\n with: %s\n without: %s", live_at[i],
                      with[i], without);
        free(without);
        free(with[i]);
    }
    kbt_sql_ok(c, "INSERT INTO book_checkpoints SELECT * FROM saved");
    kbt_sql_ok(c, "DROP TABLE saved");
    kbt_data_wait_replica();
}

START_TEST(live_checkpoints_extend_without_changing_answers)
{
    PGconn *c = kbt_db();
    /* From nothing (a re-run of the suite on the same database too). */
    kbt_sql_ok(c, "DELETE FROM book_checkpoints WHERE market_ticker = '" L "'");
    kbt_sql_ok(c, "DELETE FROM deltas WHERE market_ticker = '" L "'");
    kbt_sql_ok(c, "DELETE FROM snapshots WHERE market_ticker = '" L "'");
    kbt_sql_ok(c, "DELETE FROM market_stats WHERE ticker = '" L "'");
    import_live(1, 25, true);
    /* 25 deltas, one checkpoint every 4: six. */
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT kb_extend_checkpoints($1, 4)", L), 6);
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT kb_extend_checkpoints($1, 4)", L), 0);
    kbt_data_wait_replica();
    same_answers(c, 6);
    /* Ten more, later: from the last checkpoint on (1 left over + 10), two more. */
    import_live(26, 35, false);
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT kb_extend_checkpoints($1, 4)", L), 2);
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT max(deltas) FROM book_checkpoints WHERE "
                                      "market_ticker = $1", L), 32);
    kbt_data_wait_replica();
    same_answers(c, 8);
    /* A late delta at 12:00:09.5 (a replay): the checkpoints from there on go, the answers
     * stay exact, and the next extension covers the window again from its last one. */
    import_live(40, 40, false);
    ck_assert_int_lt(kbt_sql_long1(c, "SELECT count(*) FROM book_checkpoints WHERE "
                                      "market_ticker = $1", L), 8);
    kbt_data_wait_replica();
    long left = kbt_sql_long1(c, "SELECT count(*) FROM book_checkpoints WHERE market_ticker = $1",
                              L);
    same_answers(c, left);
    ck_assert_int_gt(kbt_sql_long1(c, "SELECT kb_extend_checkpoints($1, 4)", L), 0);
    kbt_data_wait_replica();
    same_answers(c, kbt_sql_long1(c, "SELECT count(*) FROM book_checkpoints WHERE market_ticker "
                                     "= $1", L));
    PQfinish(c);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("data_gaps");
    TCase *tc = tcase_create("gaps");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_add_loop_test(tc, orderbook_says_complete_false_inside_a_gap, 0,
                        (int)(sizeof(ats) / sizeof(ats[0])));
    tcase_add_test(tc, coverage_lists_every_gap_by_start);
    tcase_add_test(tc, coverage_of_a_market_without_gaps);
    tcase_add_test(tc, coverage_of_an_unknown_market_is_404_and_free);
    tcase_add_test(tc, live_checkpoints_extend_without_changing_answers);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    kbt_init();
    return kb_check_run(suite());
}
