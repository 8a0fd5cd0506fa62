/* test_data_meta.c - market data through the whole stack, the metadata routes and the
 * importer: markets, events and settlements (fields in API.md order, filters, details),
 * kbctl import idempotency and bad-line reporting, and stale checkpoints removed by a late
 * delta. Fixture: t/integration/data_fixture.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "data_fixture.h"
#include "kb_banned.h"

/* ---- markets, events, settlements ---- */

static const char *const summary_keys[] = {"ticker",   "title",         "event_ticker", "status",
                                           "category", "first_data_at", "last_data_at", NULL};

static const cJSON *
find(const cJSON *arr, const char *key, const char *val)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const cJSON *v = cJSON_GetObjectItem(it, key);
        if (cJSON_IsString(v) && strcmp(v->valuestring, val) == 0)
            return it;
    }
    return NULL;
}

START_TEST(markets_list_and_detail)
{
    kbt_resp *r = kbt_data_get(&acct, "/markets");
    ck_assert_int_eq(r->status, 200);
    const cJSON *data = cJSON_GetObjectItem(r->json, "data");
    const cJSON *a = find(data, "ticker", A);
    ck_assert_ptr_nonnull(a);
    kbt_data_assert_keys(a, summary_keys);
    char *s = print(a);
    ck_assert_str_eq(s, "{\"ticker\":\"" A "\",\"title\":\"Fixture A\",\"event_ticker\":"
                        "\"KXFIX-26JAN15\",\"status\":\"active\",\"category\":\"Crypto\","
                        "\"first_data_at\":\"2026-01-15T12:00:00+00:00\","
                        "\"last_data_at\":\"2026-01-15T12:00:12+00:00\"}");
    free(s);
    /* discovered_at descending: C (lifecycle, Jan 14 12:00), A (Jan 14), B (Jan 13) */
    int ic = -1, ia = -1, ib = -1, i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, data) {
        const char *t = cJSON_GetObjectItem(it, "ticker")->valuestring;
        ic = strcmp(t, "KXOTHER-26JAN15-C") == 0 ? i : ic;
        ia = strcmp(t, A) == 0 ? i : ia;
        ib = strcmp(t, B) == 0 ? i : ib;
        i++;
    }
    ck_assert(ic >= 0 && ic < ia && ia < ib);
    const cJSON *c = find(data, "ticker", "KXOTHER-26JAN15-C");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(c, "first_data_at")));
    ck_assert_str_eq(cJSON_GetObjectItem(c, "status")->valuestring, "determined");
    kbt_resp_free(r);

    r = kbt_data_get(&acct, "/markets/" A);
    ck_assert_int_eq(r->status, 200);
    const cJSON *d = cJSON_GetObjectItem(r->json, "data");
    static const char *const detail[] = {"ticker",
                                         "title",
                                         "event_ticker",
                                         "status",
                                         "category",
                                         "first_data_at",
                                         "last_data_at",
                                         "rules",
                                         "strike_price",
                                         "discovered_at",
                                         "metadata",
                                         "snapshot_count",
                                         "delta_count",
                                         "price_level_structure",
                                         "price_ranges",
                                         "fractional_trading_enabled",
                                         NULL};
    kbt_data_assert_keys(d, detail);
    ck_assert_str_eq(cJSON_GetObjectItem(d, "rules")->valuestring, "Resolves yes if A.");
    ck_assert(cJSON_GetObjectItem(d, "strike_price")->valuedouble == 50000.0);
    ck_assert_str_eq(cJSON_GetObjectItem(d, "discovered_at")->valuestring,
                     "2026-01-14T00:00:00+00:00");
    const cJSON *meta = cJSON_GetObjectItem(d, "metadata");
    ck_assert(cJSON_IsObject(meta));
    ck_assert_int_eq(cJSON_GetObjectItem(meta, "open_interest")->valueint, 12);
    ck_assert_int_eq(cJSON_GetObjectItem(d, "snapshot_count")->valueint, 2);
    ck_assert_int_eq(cJSON_GetObjectItem(d, "delta_count")->valueint, 10);
    /* a REST object without the fields: not known */
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(d, "price_level_structure")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(d, "price_ranges")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(d, "fractional_trading_enabled")));
    kbt_resp_free(r);
    /* a lifecycle market: the envelope's ts is not metadata (timestamps are ISO strings) */
    r = kbt_data_get(&acct, "/markets/KXOTHER-26JAN15-C");
    ck_assert_int_eq(r->status, 200);
    meta = cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "data"), "metadata");
    ck_assert(cJSON_IsObject(meta));
    ck_assert_ptr_null(cJSON_GetObjectItem(meta, "ts"));
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "event_type")->valuestring, "determined");
    kbt_resp_free(r);

    r = kbt_data_get(&acct, "/markets/KXNOPE");
    kbt_assert_envelope(r, 404, "market_not_found");
    kbt_resp_free(r);
}
END_TEST

START_TEST(events_filters_and_detail)
{
    kbt_resp *r = kbt_data_get(&acct, "/events?category=Crypto");
    ck_assert_int_eq(r->status, 200);
    const cJSON *ev;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItem(r->json, "data")) {
        ck_assert_str_eq(cJSON_GetObjectItem(ev, "category")->valuestring, "Crypto");
    }
    char *s = print(find(cJSON_GetObjectItem(r->json, "data"), "event_ticker", "KXFIX-26JAN15"));
    ck_assert_str_eq(s, "{\"event_ticker\":\"KXFIX-26JAN15\",\"series_ticker\":\"KXFIX\","
                        "\"title\":\"Fixture event\",\"sub_title\":\"Jan 15\",\"category\":"
                        "\"Crypto\",\"mutually_exclusive\":true,\"status\":\"active\","
                        "\"market_count\":2}");
    free(s);
    kbt_resp_free(r);
    r = kbt_data_get(&acct, "/events?series_ticker=KXOTHER&status=closed");
    const cJSON *data = cJSON_GetObjectItem(r->json, "data");
    ck_assert_int_eq(cJSON_GetArraySize(data), 1);
    const cJSON *e = cJSON_GetArrayItem(data, 0);
    ck_assert_str_eq(cJSON_GetObjectItem(e, "event_ticker")->valuestring, "KXOTHER-26JAN15");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(e, "mutually_exclusive")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(e, "sub_title")));
    ck_assert_int_eq(cJSON_GetObjectItem(e, "market_count")->valueint, 1);
    kbt_resp_free(r);
    r = kbt_data_get(&acct, "/events?status=active&category=Economics");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r->json, "data")), 0);
    kbt_resp_free(r);

    r = kbt_data_get(&acct, "/events/KXFIX-26JAN15");
    ck_assert_int_eq(r->status, 200);
    const cJSON *d = cJSON_GetObjectItem(r->json, "data");
    static const char *const keys[] = {
        "event_ticker",       "series_ticker", "title",        "sub_title", "category",
        "mutually_exclusive", "status",        "market_count", "markets",   NULL};
    kbt_data_assert_keys(d, keys);
    const cJSON *ms = cJSON_GetObjectItem(d, "markets");
    ck_assert_int_eq(cJSON_GetArraySize(ms), 2);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(ms, 0), "ticker")->valuestring, A);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(ms, 1), "ticker")->valuestring, B);
    kbt_data_assert_keys(cJSON_GetArrayItem(ms, 0), summary_keys);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(ms, 0), "first_data_at")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(ms, 0), "last_data_at")));
    kbt_resp_free(r);
    r = kbt_data_get(&acct, "/events/KXNOPE");
    kbt_assert_envelope(r, 404, "event_not_found");
    kbt_resp_free(r);
}
END_TEST

START_TEST(settlements_list_filters_and_detail)
{
    kbt_resp *r = kbt_data_get(&acct, "/settlements?event_ticker=KXFIX-26JAN15");
    ck_assert_int_eq(r->status, 200);
    char *s = print(cJSON_GetObjectItem(r->json, "data"));
    ck_assert_str_eq(s, "[{\"market_ticker\":\"" A "\",\"event_ticker\":\"KXFIX-26JAN15\","
                        "\"result\":\"yes\",\"settlement_value\":100,"
                        "\"determined_at\":\"2026-01-15T17:00:00+00:00\","
                        "\"settled_at\":\"2026-01-15T17:05:00.250000+00:00\","
                        "\"settlement_value_dollars\":\"1.0000\"}]");
    free(s);
    kbt_resp_free(r);
    r = kbt_data_get(&acct, "/settlements?result=no");
    const cJSON *c = find(cJSON_GetObjectItem(r->json, "data"), "market_ticker",
                          "KXOTHER-26JAN15-C");
    ck_assert_ptr_nonnull(c);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(c, "settled_at")));
    ck_assert_int_eq(cJSON_GetObjectItem(c, "settlement_value")->valueint, 0);
    kbt_resp_free(r);
    /* determined_at descending: A (17:00) before C (14:00) */
    r = kbt_data_get(&acct, "/settlements");
    const cJSON *data = cJSON_GetObjectItem(r->json, "data"), *it;
    int ia = -1, ic = -1, i = 0;
    cJSON_ArrayForEach(it, data) {
        const char *t = cJSON_GetObjectItem(it, "market_ticker")->valuestring;
        ia = strcmp(t, A) == 0 ? i : ia;
        ic = strcmp(t, "KXOTHER-26JAN15-C") == 0 ? i : ic;
        i++;
    }
    ck_assert(ia >= 0 && ia < ic);
    kbt_resp_free(r);
    r = kbt_data_get(&acct, "/settlements/" A);
    ck_assert_int_eq(r->status, 200);
    static const char *const keys[] = {"market_ticker",
                                       "event_ticker",
                                       "result",
                                       "settlement_value",
                                       "determined_at",
                                       "settled_at",
                                       "settlement_value_dollars",
                                       NULL};
    kbt_data_assert_keys(cJSON_GetObjectItem(r->json, "data"), keys);
    kbt_resp_free(r);
    r = kbt_data_get(&acct, "/settlements/" B);
    kbt_assert_envelope(r, 404, "settlement_not_found");
    kbt_resp_free(r);
}
END_TEST

/* ---- kbctl import ---- */

static char *
stats_row(PGconn *c)
{
    return kbt_sql_value(c, "SELECT string_agg(concat_ws('|', ticker, first_data_at, last_data_at,"
                            " snapshot_count, delta_count, trade_count), ';' ORDER BY ticker)"
                            " || (SELECT count(*) FROM deltas) || (SELECT count(*) FROM trades)"
                            " || (SELECT max(last_updated) FROM markets)"
                            " || (SELECT max(updated_at) FROM settlements)"
                            " FROM market_stats WHERE ticker LIKE 'KXFIX%'");
}

START_TEST(import_twice_changes_nothing)
{
    PGconn *c = kbt_db();
    char *before = stats_row(c);
    kb_buf out = KB_BUF_INIT;
    ck_assert_int_eq(kbt_data_kbctl("import t/data/fixture.jsonl", &out), 0);
    ck_assert_msg(strstr(kb_buf_cstr(&out), "snapshots 3 (0 new), deltas 68 (0 new), "
                                            "trades 6 (0 new)") != NULL,
                  "%s", kb_buf_cstr(&out));
    char *after = stats_row(c);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    kb_buf_release(&out);
    PQfinish(c);
}
END_TEST

START_TEST(import_reports_bad_lines_and_keeps_going)
{
    PGconn *c = kbt_db();
    kb_buf out = KB_BUF_INIT;
    /* --strict stops at line 2, after loading line 1 */
    ck_assert_int_eq(kbt_data_kbctl("import --strict t/data/bad.jsonl", &out), 1);
    ck_assert_msg(strstr(kb_buf_cstr(&out), "t/data/bad.jsonl:2: malformed JSON") != NULL, "%s",
                  kb_buf_cstr(&out));
    ck_assert_ptr_null(strstr(kb_buf_cstr(&out), "bad.jsonl:3:"));
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM deltas WHERE market_ticker = $1", "KXBAD"), 1);
    kb_buf_reset(&out);
    ck_assert_int_eq(kbt_data_kbctl("import t/data/bad.jsonl", &out), 1);
    const char *want[] = {"bad.jsonl:2: malformed JSON", "bad.jsonl:3: orderbook_delta price",
                          "bad.jsonl:4: msg.ts missing", "bad.jsonl:6: a line must be one JSON",
                          "bad.jsonl:7: trade taker_side"};
    for (size_t i = 0; i < 5; i++)
        ck_assert_msg(strstr(kb_buf_cstr(&out), want[i]) != NULL, "no '%s' in %s", want[i],
                      kb_buf_cstr(&out));
    ck_assert_ptr_null(strstr(kb_buf_cstr(&out), "bad.jsonl:5:"));
    /* line 5 (ts from received_at) loaded, line 1 not duplicated */
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM deltas WHERE market_ticker = $1", "KXBAD"), 2);
    kb_buf_release(&out);
    PQfinish(c);
}
END_TEST

/* A delta imported later, inside intervals already checkpointed, is counted:
 * import removes the stale checkpoints in the same transaction. */
static void
assert_d_book(const char *ts, int applied, const char *yes)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"market_ticker\":\"KXFIX-26JAN15-D\",\"timestamp\":\"%s\"}",
             ts);
    kbt_resp *r = kbt_data_post(&acct, "/orderbook", body);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    ck_assert_int_eq(cJSON_GetObjectItem(r->json, "deltas_applied")->valueint, applied);
    char *s = print(cJSON_GetObjectItem(r->json, "yes"));
    ck_assert_str_eq(s, yes);
    free(s);
    kbt_resp_free(r);
}

START_TEST(late_deltas_invalidate_checkpoints)
{
    PGconn *c = kbt_db();
    ck_assert_int_eq(
        kbt_data_kbctl("import --quiet --checkpoint-every 2 t/data/checkpoints.jsonl", NULL), 0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM book_checkpoints"
                                   " WHERE market_ticker = $1",
                                   "KXFIX-26JAN15-D"),
                     3);
    assert_d_book(
        "2026-01-15T12:00:45Z", 4,
        "[{\"price\":10,\"quantity\":9,\"price_dollars\":\"0.1000\",\"quantity_fp\":\"9.00\"}]");
    /* --checkpoint-every 0: no rebuild, only the invalidation */
    ck_assert_int_eq(kbt_data_kbctl("import --quiet --checkpoint-every 0 "
                                    "t/data/checkpoints-late.jsonl",
                                    NULL),
                     0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM book_checkpoints"
                                   " WHERE market_ticker = $1",
                                   "KXFIX-26JAN15-D"),
                     0);
    assert_d_book(
        "2026-01-15T12:00:45Z", 5,
        "[{\"price\":10,\"quantity\":109,\"price_dollars\":\"0.1000\",\"quantity_fp\":\"109.00\"}]");
    /* rebuilt by the next import that touches the market (here: a re-import, nothing
     * new, so nothing is rebuilt) and by any import with new rows */
    ck_assert_int_eq(kbt_data_kbctl("import --quiet --checkpoint-every 2 "
                                    "t/data/checkpoints.jsonl",
                                    NULL),
                     0);
    assert_d_book(
        "2026-01-15T12:01:00Z", 7,
        "[{\"price\":10,\"quantity\":111,\"price_dollars\":\"0.1000\",\"quantity_fp\":\"111.00\"}]");
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("data_meta");
    TCase *tc = tcase_create("data");
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, markets_list_and_detail);
    tcase_add_test(tc, events_filters_and_detail);
    tcase_add_test(tc, settlements_list_filters_and_detail);
    tcase_add_test(tc, import_twice_changes_nothing);
    tcase_add_test(tc, import_reports_bad_lines_and_keeps_going);
    tcase_add_test(tc, late_deltas_invalidate_checkpoints);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
