/* test_data_gaps.c - what the API says about completeness (API.md §7 items 20-21): POST
 * /orderbook's complete and gap at instants around recorded gaps (start inclusive, end
 * exclusive, open gaps, trade-channel gaps that leave the book complete). Gap rows are
 * written as the collector's writer writes them; the market comes from an import. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

#define M "KXGAP-26JAN15-A"

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

static Suite *
suite(void)
{
    Suite *s = suite_create("data_gaps");
    TCase *tc = tcase_create("gaps");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_add_loop_test(tc, orderbook_says_complete_false_inside_a_gap, 0,
                        (int)(sizeof(ats) / sizeof(ats[0])));
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    kbt_init();
    return kb_check_run(suite());
}
