/* test_data_books.c - market data through the whole stack, the book routes: hand-checked
 * books (POST /orderbook), validation before metering, refunds after a 404, pagination walks
 * of deltas and trades, candles against hand-computed OHLCV, and data reads on the replica
 * with metering on the primary. Fixture: t/integration/data_fixture.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "data_fixture.h"
#include "kb_banned.h"

static long
credits_used(void)
{
    PGconn *c = kbt_db();
    long v = kbt_sql_long1(c, "SELECT credits_used FROM billing_accounts WHERE user_id = $1",
                           acct.user_id);
    PQfinish(c);
    return v;
}

/* ---- POST /orderbook: hand-checked books ---- */

typedef struct book_case {
    const char *ts;    /* JSON value of "timestamp" */
    const char *depth; /* JSON value or NULL (absent) */
    const char *basis;
    int applied;
    const char *yes, *no;
} book_case;

static const book_case books[] = {
    /* At the snapshot instant: a delta with ts == captured_at is not applied; a repeated
     * price keeps its last entry (45 -> 70); a snapshot level with quantity 0 is dropped. */
    {"\"2026-01-15T12:00:00Z\"", NULL, "2026-01-15T12:00:00+00:00", 0,
     "[{\"price\":45,\"quantity\":70},{\"price\":40,\"quantity\":100}]",
     "[{\"price\":50,\"quantity\":30}]"},
    /* A delta exactly at the timestamp is applied: 40 goes to zero and disappears. */
    {"\"2026-01-15T12:00:01+00:00\"", NULL, "2026-01-15T12:00:00+00:00", 1,
     "[{\"price\":45,\"quantity\":70}]", "[{\"price\":50,\"quantity\":30}]"},
    /* ... and comes back. Unix seconds are accepted. */
    {"1768478402", NULL, "2026-01-15T12:00:00+00:00", 2,
     "[{\"price\":45,\"quantity\":70},{\"price\":40,\"quantity\":25}]",
     "[{\"price\":50,\"quantity\":30}]"},
    /* no@50 at 30 - 45 = -15: dropped. */
    {"\"2026-01-15 12:00:03\"", NULL, "2026-01-15T12:00:00+00:00", 3,
     "[{\"price\":45,\"quantity\":70},{\"price\":40,\"quantity\":25}]", "[]"},
    /* Zero crossing, pinned: -15 + 20 sums to 5 (SUM semantics, DESIGN.md "Data");
     * the original's step-wise replay would give 20. Equal timestamps (two deltas at
     * 12:00:05 on yes@30, one in dollar/fixed-point form) both count. */
    {"\"2026-01-15T12:00:05Z\"", NULL, "2026-01-15T12:00:00+00:00", 6,
     "[{\"price\":45,\"quantity\":70},{\"price\":40,\"quantity\":25},"
     "{\"price\":30,\"quantity\":15}]",
     "[{\"price\":50,\"quantity\":5}]"},
    {"\"2026-01-15T13:00:09+01:00\"", NULL, "2026-01-15T12:00:00+00:00", 7,
     "[{\"price\":45,\"quantity\":70},{\"price\":40,\"quantity\":25},"
     "{\"price\":30,\"quantity\":15}]",
     "[{\"price\":60,\"quantity\":8},{\"price\":50,\"quantity\":5}]"},
    {"\"2026-01-15T12:00:09Z\"", "1", "2026-01-15T12:00:00+00:00", 7,
     "[{\"price\":45,\"quantity\":70}]", "[{\"price\":60,\"quantity\":8}]"},
    {"\"2026-01-15T12:00:09Z\"", "0", "2026-01-15T12:00:00+00:00", 7, "[]", "[]"},
    {"\"2026-01-15T12:00:09Z\"", "null", "2026-01-15T12:00:00+00:00", 7,
     "[{\"price\":45,\"quantity\":70},{\"price\":40,\"quantity\":25},"
     "{\"price\":30,\"quantity\":15}]",
     "[{\"price\":60,\"quantity\":8},{\"price\":50,\"quantity\":5}]"},
    /* Second snapshot: its own-instant delta (+99) is excluded, the later -4 applied. */
    {"\"2026-01-15T12:00:10Z\"", NULL, "2026-01-15T12:00:10+00:00", 0,
     "[{\"price\":41,\"quantity\":10}]", "[{\"price\":59,\"quantity\":5}]"},
    {"\"2026-01-15T12:00:12.000001Z\"", NULL, "2026-01-15T12:00:10+00:00", 1,
     "[{\"price\":41,\"quantity\":6}]", "[{\"price\":59,\"quantity\":5}]"},
};

/*
 * The level array the API writes for the compact whole-cent form of the table above:
 * each {"price":P,"quantity":Q} gains "price_dollars":"0.PP00","quantity_fp":"Q.00"
 * (API.md §7.19). Caller frees.
 */
static char *
full_levels(const char *compact)
{
    cJSON *arr = cJSON_Parse(compact);
    ck_assert_ptr_nonnull(arr);
    kb_buf b = KB_BUF_INIT;
    kb_buf_putc(&b, '[');
    const cJSON *lv;
    cJSON_ArrayForEach(lv, arr)
    {
        int p = cJSON_GetObjectItem(lv, "price")->valueint;
        int q = cJSON_GetObjectItem(lv, "quantity")->valueint;
        kb_buf_printf(&b, "%s{\"price\":%d,\"quantity\":%d,\"price_dollars\":\"0.%02d00\","
                          "\"quantity_fp\":\"%d.00\"}",
                      b.len > 1 ? "," : "", p, q, p, q);
    }
    kb_buf_putc(&b, ']');
    cJSON_Delete(arr);
    return kb_buf_detach(&b, NULL);
}

START_TEST(orderbook_matches_hand_checked_books)
{
    const book_case *bc = &books[_i];
    char body[256];
    snprintf(body, sizeof(body), "{\"market_ticker\":\"" A "\",\"timestamp\":%s%s%s}", bc->ts,
             bc->depth ? ",\"depth\":" : "", bc->depth ? bc->depth : "");
    kbt_resp *r = kbt_data_post(&acct, "/orderbook", body);
    ck_assert_msg(r->status == 200, "%s: %ld %s", bc->ts, r->status, kb_buf_cstr(&r->body));
    static const char *const keys[] = {"market_ticker", "timestamp", "snapshot_basis",
                                       "deltas_applied", "yes", "no", "complete", "gap", "request_id",
                                       "response_time", NULL};
    kbt_data_assert_keys(r->json, keys);
    ck_assert_str_eq(cJSON_GetObjectItem(r->json, "market_ticker")->valuestring, A);
    ck_assert_str_eq(cJSON_GetObjectItem(r->json, "snapshot_basis")->valuestring, bc->basis);
    ck_assert_int_eq(cJSON_GetObjectItem(r->json, "deltas_applied")->valueint, bc->applied);
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(r->json, "response_time")));
    char *yes = print(cJSON_GetObjectItem(r->json, "yes"));
    char *no = print(cJSON_GetObjectItem(r->json, "no"));
    char *want_yes = full_levels(bc->yes), *want_no = full_levels(bc->no);
    ck_assert_str_eq(yes, want_yes);
    ck_assert_str_eq(no, want_no);
    free(yes);
    free(no);
    free(want_yes);
    free(want_no);
    kbt_resp_free(r);
}
END_TEST

/* "units":"dollars" gives only Kalshi's strings; the rest of the answer is unchanged. */
START_TEST(orderbook_in_dollar_units)
{
    kbt_resp *r = kbt_data_post(&acct, "/orderbook",
                                "{\"market_ticker\":\"" A "\",\"timestamp\":"
                                "\"2026-01-15T12:00:09Z\",\"units\":\"dollars\",\"depth\":2}");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    kbt_docs_assert_conforms(r, "POST", "/orderbook");
    ck_assert_int_eq(cJSON_GetObjectItem(r->json, "deltas_applied")->valueint, 7);
    char *yes = print(cJSON_GetObjectItem(r->json, "yes"));
    char *no = print(cJSON_GetObjectItem(r->json, "no"));
    ck_assert_str_eq(yes, "[{\"price_dollars\":\"0.4500\",\"quantity_fp\":\"70.00\"},"
                          "{\"price_dollars\":\"0.4000\",\"quantity_fp\":\"25.00\"}]");
    ck_assert_str_eq(no, "[{\"price_dollars\":\"0.6000\",\"quantity_fp\":\"8.00\"},"
                         "{\"price_dollars\":\"0.5000\",\"quantity_fp\":\"5.00\"}]");
    free(yes);
    free(no);
    kbt_resp_free(r);
}
END_TEST

START_TEST(orderbook_echoes_timestamp_in_utc)
{
    kbt_resp *r = kbt_data_post(&acct, "/orderbook",
                                "{\"market_ticker\":\"" A "\",\"timestamp\":"
                                "\"2026-01-15T13:00:09.5+01:00\"}");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(cJSON_GetObjectItem(r->json, "timestamp")->valuestring,
                     "2026-01-15T12:00:09.500000+00:00");
    kbt_resp_free(r);
}
END_TEST

START_TEST(orderbook_404s_are_refunded)
{
    long before = credits_used();
    kbt_resp *r = kbt_data_post(&acct, "/orderbook",
                                "{\"market_ticker\":\"" A "\",\"timestamp\":"
                                "\"2026-01-15T11:59:59Z\"}");
    kbt_assert_envelope(r, 404, "no_data_available");
    const char *msg =
        cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")->valuestring;
    ck_assert_msg(strstr(msg, "2026-01-15T12:00:00+00:00") != NULL, "%s", msg);
    char *cost = kbt_header(r, "X-Credits-Cost");
    ck_assert_str_eq(cost, "0");
    free(cost);
    kbt_resp_free(r);
    r = kbt_data_post(&acct, "/orderbook",
                      "{\"market_ticker\":\"KXNOPE\",\"timestamp\":\"2026-01-15T12:00:00Z\"}");
    kbt_assert_envelope(r, 404, "market_not_found");
    kbt_resp_free(r);
    ck_assert_int_eq(credits_used(), before);
    r = kbt_data_post(&acct, "/orderbook",
                      "{\"market_ticker\":\"" A "\",\"timestamp\":\"2026-01-15T12:00:00Z\"}");
    ck_assert_int_eq(r->status, 200);
    cost = kbt_header(r, "X-Credits-Cost");
    ck_assert_str_eq(cost, "5");
    free(cost);
    kbt_resp_free(r);
    ck_assert_int_eq(credits_used(), before + 5);
}
END_TEST

/* ---- validation happens before metering ---- */

typedef struct bad_case {
    const char *method, *path, *ctype, *body;
    long status;
    const char *code, *msg_part;
} bad_case;

#define OB "\"market_ticker\":\"" A "\""
static const bad_case bads[] = {
    {"POST", "/orderbook", "application/json", "", 422, "validation_error",
     "body: Field required"},
    {"POST", "/orderbook", "text/plain", "{}", 422, "validation_error", "body"},
    {"POST", "/orderbook", "application/json", "{\"market_ticker\":", 422, "validation_error",
     "body"},
    {"POST", "/orderbook", "application/json", "[]", 422, "validation_error", "body"},
    {"POST", "/orderbook", "application/json",
     "{" OB ",\"timestamp\":\"2026-01-15T12:00:00Z\"} trailing", 422, "validation_error", "body"},
    {"POST", "/orderbook", "application/json", "{}", 422, "validation_error",
     "body.market_ticker: Field required; body.timestamp: Field required"},
    {"POST", "/orderbook", "application/json", "{" OB ",\"timestamp\":\"yesterday\"}", 400,
     "invalid_timestamp", "body.timestamp"},
    {"POST", "/orderbook", "application/json", "{" OB ",\"timestamp\":\"2026-02-30T00:00:00Z\"}",
     400, "invalid_timestamp", "body.timestamp"},
    {"POST", "/orderbook", "application/json", "{" OB ",\"timestamp\":\"2026-01-15T12:00:00Z\","
     "\"depth\":-1}", 422, "validation_error", "body.depth"},
    {"POST", "/orderbook", "application/json", "{" OB ",\"timestamp\":\"2026-01-15T12:00:00Z\","
     "\"depth\":1.5}", 422, "validation_error", "body.depth"},
    {"POST", "/orderbook", "application/json", "{" OB ",\"timestamp\":\"2026-01-15T12:00:00Z\","
     "\"units\":\"cents\"}", 422, "validation_error", "body.units: Input should be 'dollars'"},
    {"POST", "/orderbook", "application/json", "{" OB ",\"timestamp\":\"2026-01-15T12:00:00Z\","
     "\"units\":1}", 422, "validation_error", "body.units"},
    {"POST", "/deltas", "application/json", "{" OB ",\"start_time\":\"2026-01-15T12:00:00Z\"}",
     422, "validation_error", "body.end_time: Field required"},
    {"POST", "/deltas", "application/json", "{" OB ",\"start_time\":\"2026-01-15T12:00:01Z\","
     "\"end_time\":\"2026-01-15T12:00:00Z\"}", 400, "invalid_timestamp", "start_time"},
    {"POST", "/deltas", "application/json", "{" OB ",\"start_time\":\"2026-01-15T12:00:00Z\","
     "\"end_time\":\"2026-01-15T12:00:10Z\",\"limit\":0}", 422, "validation_error",
     "body.limit"},
    {"POST", "/trades", "application/json", "{" OB ",\"start_time\":\"2026-01-15T12:00:00Z\","
     "\"end_time\":\"2026-01-15T12:00:10Z\",\"limit\":1001}", 422, "validation_error",
     "body.limit"},
    {"POST", "/trades", "application/json", "{" OB ",\"start_time\":\"2026-01-15T12:00:00Z\","
     "\"end_time\":\"2026-01-15T12:00:10Z\",\"cursor\":\"not-a-cursor!\"}", 422,
     "validation_error", "invalid pagination cursor"},
    {"POST", "/deltas", "application/json", "{" OB ",\"start_time\":\"2026-01-15T12:00:00Z\","
     "\"end_time\":\"2026-01-15T12:00:10Z\",\"cursor\":\"eyJ0cyI6MX0=\"}", 422,
     "validation_error", "invalid pagination cursor"},
    {"GET", "/candles/" A "?start_time=2026-01-15T12:00:00Z&end_time=2026-01-16&interval=5m",
     NULL, NULL, 422, "validation_error", "'1m', '1h' or '1d'"},
    {"GET", "/candles/" A "?start_time=2026-01-15T12:00:00Z", NULL, NULL, 422,
     "validation_error", "query.end_time: Field required"},
    {"GET", "/candles/" A "?start_time=2026-13-01&end_time=2026-01-16", NULL, NULL, 400,
     "invalid_timestamp", "query.start_time"},
};

START_TEST(invalid_requests_are_rejected_uncharged)
{
    const bad_case *bc = &bads[_i];
    long before = credits_used();
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", acct.key);
    char ct[96];
    snprintf(ct, sizeof(ct), "Content-Type: %s", bc->ctype ? bc->ctype : "application/json");
    const char *h[] = {auth, ct, NULL};
    kbt_resp *r = kbt_request(bc->method, bc->path, h, bc->body, bc->body ? strlen(bc->body) : 0);
    kbt_assert_envelope(r, bc->status, bc->code);
    const char *msg =
        cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")->valuestring;
    ck_assert_msg(strstr(msg, bc->msg_part) != NULL, "message '%s' lacks '%s'", msg,
                  bc->msg_part);
    char *cost = kbt_header(r, "X-Credits-Cost");
    ck_assert_msg(cost == NULL, "charged: X-Credits-Cost %s", cost);
    kbt_resp_free(r);
    ck_assert_int_eq(credits_used(), before);
}
END_TEST

START_TEST(data_routes_need_an_api_key)
{
    const char *paths[] = {"/markets", "/events", "/settlements", ("/markets/" A)};
    for (size_t i = 0; i < 4; i++) {
        kbt_resp *r = kbt_get(paths[i]);
        kbt_assert_envelope(r, 401, "invalid_api_key");
        kbt_resp_free(r);
    }
}
END_TEST

/* ---- pagination ---- */

/* Walk B's 57 deltas with a page size; every seq 2..58 exactly once, in order. */
static void
walk(const char *path, int limit, const char *start, const char *end, int want_rows,
     int first_seq)
{
    char *cursor = NULL;
    int seen = 0, pages = 0;
    for (;;) {
        char body[1024];
        snprintf(body, sizeof(body),
                 "{\"market_ticker\":\"" B "\",\"start_time\":\"%s\",\"end_time\":\"%s\","
                 "\"limit\":%d%s%s%s}",
                 start, end, limit, cursor ? ",\"cursor\":\"" : "", cursor ? cursor : "",
                 cursor ? "\"" : "");
        kbt_resp *r = kbt_data_post(&acct, path, body);
        ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
        static const char *const keys[] = {"data", "next_cursor", "has_more", "request_id",
                                           "response_time", NULL};
        kbt_data_assert_keys(r->json, keys);
        const cJSON *data = cJSON_GetObjectItem(r->json, "data");
        const cJSON *more = cJSON_GetObjectItem(r->json, "has_more");
        const cJSON *next = cJSON_GetObjectItem(r->json, "next_cursor");
        int n = cJSON_GetArraySize(data);
        ck_assert_int_le(n, limit);
        /* next_cursor is non-null exactly when has_more is true */
        ck_assert_int_eq(cJSON_IsTrue(more), cJSON_IsString(next));
        const cJSON *row;
        cJSON_ArrayForEach(row, data)
        {
            ck_assert_int_eq(cJSON_GetObjectItem(row, "seq")->valueint, first_seq + seen);
            seen++;
        }
        free(cursor);
        cursor = cJSON_IsString(next) ? strdup(next->valuestring) : NULL;
        pages++;
        if (cJSON_IsTrue(more))
            ck_assert_int_eq(n, limit);
        kbt_resp_free(r);
        if (cursor == NULL)
            break;
        ck_assert_int_lt(pages, 200);
    }
    ck_assert_int_eq(seen, want_rows);
    free(cursor);
}

static const int page_sizes[] = {1, 2, 7, 10, 57, 100, 1000};

START_TEST(deltas_pagination_returns_every_row_once)
{
    /* B's deltas: 57 rows, two per 250 ms step from 12:00:00.001, seq 2..58. */
    walk("/deltas", page_sizes[_i], "2026-01-15T12:00:00Z", "2026-01-15T12:01:00Z", 57, 2);
    /* end is inclusive: 12:00:00.251 holds seq 4 and 5 */
    walk("/deltas", page_sizes[_i], "2026-01-15T12:00:00.001Z", "2026-01-15T12:00:00.251Z", 4,
         2);
    /* start is inclusive too */
    walk("/deltas", page_sizes[_i], "2026-01-15T12:00:00.251Z", "2026-01-15T12:00:00.251Z", 2,
         4);
}
END_TEST

START_TEST(deltas_rows_have_api_fields)
{
    kbt_resp *r = kbt_data_post(&acct, "/deltas",
                                "{\"market_ticker\":\"" A "\",\"start_time\":"
                                "\"2026-01-15T12:00:06Z\",\"end_time\":\"2026-01-15T12:00:07Z\"}");
    ck_assert_int_eq(r->status, 200);
    char *s = print(cJSON_GetObjectItem(r->json, "data"));
    ck_assert_str_eq(s, "[{\"market_ticker\":\"" A "\",\"ts\":\"2026-01-15T12:00:06.500000+00:00\","
                        "\"seq\":9,\"price_cents\":60,\"delta_amount\":8,\"side\":\"no\","
                        "\"price_dollars\":\"0.6000\",\"delta_fp\":\"8.00\","
                        "\"received_at\":null}]");
    free(s);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(r->json, "next_cursor")));
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r->json, "has_more")));
    kbt_resp_free(r);
    /* unknown ticker: empty, not 404 */
    r = kbt_data_post(&acct, "/deltas",
                      "{\"market_ticker\":\"KXNOPE\",\"start_time\":0,\"end_time\":2000000000}");
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r->json, "data")), 0);
    kbt_resp_free(r);
}
END_TEST

START_TEST(trades_end_is_exclusive_and_cursor_walks)
{
    kbt_resp *r = kbt_data_post(&acct, "/trades",
                                "{\"market_ticker\":\"" A "\",\"start_time\":"
                                "\"2026-01-15T12:00:00Z\",\"end_time\":\"2026-01-15T13:00:00Z\","
                                "\"limit\":2}");
    ck_assert_int_eq(r->status, 200);
    char *s = print(cJSON_GetObjectItem(r->json, "data"));
    ck_assert_str_eq(s, "[{\"trade_id\":\"tr-1\",\"market_ticker\":\"" A "\",\"yes_price\":40,"
                        "\"no_price\":60,\"count\":10,\"taker_side\":\"yes\","
                        "\"ts\":\"2026-01-15T12:00:00+00:00\",\"yes_price_dollars\":\"0.4000\","
                        "\"no_price_dollars\":\"0.6000\",\"count_fp\":\"10.00\",\"received_at\":null},"
                        "{\"trade_id\":\"tr-2\",\"market_ticker\":\"" A "\",\"yes_price\":45,"
                        "\"no_price\":55,\"count\":5,\"taker_side\":\"no\","
                        "\"ts\":\"2026-01-15T12:00:30+00:00\",\"yes_price_dollars\":\"0.4500\","
                        "\"no_price_dollars\":\"0.5500\",\"count_fp\":\"5.00\",\"received_at\":null}]");
    free(s);
    const cJSON *next = cJSON_GetObjectItem(r->json, "next_cursor");
    ck_assert(cJSON_IsString(next));
    /* The cursor is base64 of {"ts":"<§1.1>","id":<id>} */
    ck_assert_msg(strncmp(next->valuestring, "eyJ0cyI6IjIwMjYtMDEtMTVUMTI6MDA6MzArMDA6MDAiLCJpZCI6",
                          52) == 0,
                  "%s", next->valuestring);
    char body[512];
    snprintf(body, sizeof(body),
             "{\"market_ticker\":\"" A "\",\"start_time\":\"2026-01-15T12:00:00Z\","
             "\"end_time\":\"2026-01-15T13:00:00Z\",\"limit\":2,\"cursor\":\"%s\"}",
             next->valuestring);
    kbt_resp_free(r);
    r = kbt_data_post(&acct, "/trades", body);
    ck_assert_int_eq(r->status, 200);
    const cJSON *data = cJSON_GetObjectItem(r->json, "data");
    ck_assert_int_eq(cJSON_GetArraySize(data), 2); /* tr-3, tr-4; tr-5 at 13:00 excluded */
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 0), "trade_id")->valuestring,
                     "tr-3");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 1), "trade_id")->valuestring,
                     "tr-4");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r->json, "has_more")));
    kbt_resp_free(r);
}
END_TEST

/* ---- candles ---- */

typedef struct candle_case {
    const char *query;
    const char *data;
} candle_case;

#define CANDLE(b, o, h, l, c, v, n)                                                        \
    "{\"bucket\":\"" b "\",\"market_ticker\":\"" A "\",\"open\":" #o ",\"high\":" #h         \
    ",\"low\":" #l ",\"close\":" #c ",\"volume\":" #v ",\"trade_count\":" #n                  \
    ",\"open_dollars\":\"0." #o "00\",\"high_dollars\":\"0." #h "00\",\"low_dollars\":\"0." #l \
    "00\",\"close_dollars\":\"0." #c "00\",\"volume_fp\":\"" #v ".00\"}"

static const candle_case candles[] = {
    {"start_time=2026-01-15T12:00:00%2B00:00&end_time=2026-01-15T13:01:00+00:00&interval=1m",
     "[" CANDLE("2026-01-15T12:00:00", 40, 45, 38, 38, 16, 3) ","
     CANDLE("2026-01-15T12:01:00", 50, 50, 50, 50, 2, 1) ","
     CANDLE("2026-01-15T13:00:00", 55, 55, 55, 55, 4, 1) "]"},
    {"start_time=2026-01-15T12:00:00Z&end_time=2026-01-15T13:00:00Z",
     "[" CANDLE("2026-01-15T12:00:00", 40, 50, 38, 50, 18, 4) "]"},
    {"start_time=2026-01-15&end_time=2026-01-16&interval=1d",
     "[" CANDLE("2026-01-15T00:00:00", 40, 55, 38, 55, 22, 5) "]"},
    {"start_time=2026-01-16&end_time=2026-01-17&interval=1h", "[]"},
};

START_TEST(candles_match_hand_computed_ohlcv)
{
    char path[512];
    snprintf(path, sizeof(path), "/candles/" A "?%s", candles[_i].query);
    kbt_resp *r = kbt_data_get(&acct, path);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    static const char *const keys[] = {"data", "request_id", "response_time", NULL};
    kbt_data_assert_keys(r->json, keys);
    char *s = print(cJSON_GetObjectItem(r->json, "data"));
    ck_assert_str_eq(s, candles[_i].data);
    free(s);
    char *cost = kbt_header(r, "X-Credits-Cost");
    ck_assert_str_eq(cost, "3");
    free(cost);
    kbt_resp_free(r);
}
END_TEST

/* ---- read replica (API.md/DESIGN.md: data on KB_DATABASE_READ_URL, money on the primary) ---- */

START_TEST(data_queries_use_the_replica_and_metering_the_primary)
{
    const char *url = getenv("KB_DATABASE_READ_URL");
    if (url == NULL || url[0] == '\0')
        return; /* the suite runs once with a replica (t/run-tests.sh); nothing to check here */
    long before = credits_used();
    for (int i = 0; i < 6; i++) { /* reach every worker */
        kbt_resp *r = kbt_data_get(&acct, "/markets/" A);
        ck_assert_int_eq(r->status, 200);
        kbt_resp_free(r);
    }
    ck_assert_int_eq(credits_used(), before + 6);
    PGconn *rep = PQconnectdb(url);
    ck_assert_msg(PQstatus(rep) == CONNECTION_OK, "%s", PQerrorMessage(rep));
    char *rec = kbt_sql_value(rep, "SELECT pg_is_in_recovery()::text");
    ck_assert_str_eq(rec, "true");
    free(rec);
    ck_assert_int_ge(kbt_sql_long1(rep, "SELECT count(*) FROM pg_stat_activity"
                                        " WHERE application_name = $1",
                                   "kalshibook-worker-read"), 1);
    PQfinish(rep);
    PGconn *c = kbt_db();
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT count(*) FROM pg_stat_activity"
                                      " WHERE application_name = $1", "kalshibook-worker-read"),
                     0);
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("data_books");
    TCase *tc = tcase_create("data");
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, orderbook_matches_hand_checked_books, 0,
                        (int)(sizeof(books) / sizeof(books[0])));
    tcase_add_test(tc, orderbook_in_dollar_units);
    tcase_add_test(tc, orderbook_echoes_timestamp_in_utc);
    tcase_add_test(tc, orderbook_404s_are_refunded);
    tcase_add_loop_test(tc, invalid_requests_are_rejected_uncharged, 0,
                        (int)(sizeof(bads) / sizeof(bads[0])));
    tcase_add_test(tc, data_routes_need_an_api_key);
    tcase_add_loop_test(tc, deltas_pagination_returns_every_row_once, 0,
                        (int)(sizeof(page_sizes) / sizeof(page_sizes[0])));
    tcase_add_test(tc, deltas_rows_have_api_fields);
    tcase_add_test(tc, trades_end_is_exclusive_and_cursor_walks);
    tcase_add_loop_test(tc, candles_match_hand_computed_ohlcv, 0,
                        (int)(sizeof(candles) / sizeof(candles[0])));
    tcase_add_test(tc, data_queries_use_the_replica_and_metering_the_primary);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
