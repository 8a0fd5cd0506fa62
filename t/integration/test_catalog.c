/* test_catalog.c - GET /markets and GET /events at catalogue scale (issue 23; API.md 5.10-5.11):
 *   - without a parameter both answer the whole list as before paging existed (shape,
 *     order, fields), and the filters /events always had still answer whole lists;
 *   - the pages of one query, concatenated, equal its whole list, for several limits and
 *     with filters, markets and events, across streamed pieces;
 *   - every filter and their combinations select what the same query in SQL selects;
 *   - paging while markets are being added returns every market that existed when it
 *     started exactly once, and nothing twice;
 *   - bad values of the new parameters are 422 (400 for updated_since), never charged;
 *     unknown parameters are still ignored.
 * Fixture: catalog_fixture.h (KXCAT* rows made with SQL, removed afterwards).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "catalog_fixture.h"
#include "kb_banned.h"

/* The markets the API lists for a query, in SQL: the same rows and order. */
#define SQL_MARKETS                                                                                \
    "SELECT coalesce(string_agg(m.ticker, ',' ORDER BY m.discovered_at DESC, m.ticker), '')"       \
    "  FROM markets m LEFT JOIN market_stats st ON st.ticker = m.ticker WHERE "
#define SQL_EVENTS                                                                                 \
    "SELECT coalesce(string_agg(e.event_ticker, ',' ORDER BY e.event_ticker), '')"                 \
    "  FROM events e WHERE "

static long
credits_used(PGconn *c, const kbt_account *a)
{
    return kbt_sql_long1(c, "SELECT credits_used FROM billing_accounts WHERE user_id = $1",
                         a->user_id);
}

/* Compare the tickers of the list at path, read whole and in pages of limit, with want. */
static void
assert_list(const char *path, const char *key, int limit, const char *want)
{
    kb_buf whole = KB_BUF_INIT, paged = KB_BUF_INIT;
    cat_whole(path, key, NULL, &whole);
    ck_assert_msg(strcmp(kb_buf_cstr(&whole), want) == 0, "%s whole:\n %.300s\nwant:\n %.300s",
                  path, kb_buf_cstr(&whole), want);
    cat_walk(path, key, limit, NULL, &paged);
    ck_assert_msg(strcmp(kb_buf_cstr(&paged), want) == 0,
                  "%s paged by %d:\n %.300s\nwant:\n %.300s", path, limit, kb_buf_cstr(&paged),
                  want);
    kb_buf_release(&whole);
    kb_buf_release(&paged);
}

START_TEST(no_parameter_is_the_whole_list_as_before)
{
    PGconn *c = kbt_db();
    kbt_resp *r = cat_get("/markets");
    kbt_data_assert_keys(r->json, whole_keys);
    /* Streamed: no Content-Length, and charged like any list. */
    char *len = kbt_header(r, "Content-Length");
    ck_assert_ptr_null(len);
    char *cost = kbt_header(r, "X-Credits-Cost");
    ck_assert_ptr_nonnull(cost);
    ck_assert_str_eq(cost, "1");
    free(cost);
    kb_buf got = KB_BUF_INIT;
    cat_join(cJSON_GetObjectItem(r->json, "data"), "ticker", &got);
    char *want = kbt_sql_value(c, SQL_MARKETS "true");
    ck_assert_str_eq(kb_buf_cstr(&got), want);
    free(want);
    /* Every field of a summary, from the rows. */
    const cJSON *it;
    int checked = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(r->json, "data")) {
        const char *t = cJSON_GetObjectItem(it, "ticker")->valuestring;
        if (strcmp(t, "KXCAT0-E070-M0") != 0 && strcmp(t, "KXCAT2-E002-M4") != 0)
            continue;
        char *s = cJSON_PrintUnformatted(it);
        if (strcmp(t, "KXCAT0-E070-M0") == 0) /* i = 700: stats with deltas */
            ck_assert_str_eq(s, "{\"ticker\":\"KXCAT0-E070-M0\",\"title\":\"Catalogue market 700\","
                                "\"event_ticker\":\"KXCAT0-E070\",\"status\":\"active\","
                                "\"category\":\"Politics\",\"first_data_at\":"
                                "\"2026-01-05T11:40:00+00:00\",\"last_data_at\":"
                                "\"2026-02-01T11:40:00+00:00\"}");
        else /* i = 24: no stats (i % 5 == 4) */
            ck_assert_str_eq(s, "{\"ticker\":\"KXCAT2-E002-M4\",\"title\":\"Catalogue market 24\","
                                "\"event_ticker\":\"KXCAT2-E002\",\"status\":\"active\","
                                "\"category\":\"Sports\",\"first_data_at\":null,"
                                "\"last_data_at\":null}");
        free(s);
        checked++;
    }
    ck_assert_int_eq(checked, 2);
    kbt_docs_assert_conforms(r, "GET", "/markets");
    kbt_resp_free(r);

    r = cat_get("/events");
    kbt_data_assert_keys(r->json, whole_keys);
    kb_buf_reset(&got);
    cat_join(cJSON_GetObjectItem(r->json, "data"), "event_ticker", &got);
    want = kbt_sql_value(c, SQL_EVENTS "true");
    ck_assert_str_eq(kb_buf_cstr(&got), want);
    free(want);
    const cJSON *e = NULL;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(r->json, "data")) {
        if (strcmp(cJSON_GetObjectItem(it, "event_ticker")->valuestring, "KXCAT3-E010") == 0)
            e = it;
    }
    ck_assert_ptr_nonnull(e);
    char *s = cJSON_PrintUnformatted(e);
    ck_assert_str_eq(s, "{\"event_ticker\":\"KXCAT3-E010\",\"series_ticker\":\"KXCAT3\","
                        "\"title\":\"Catalogue event 10\",\"sub_title\":null,\"category\":"
                        "\"Politics\",\"mutually_exclusive\":true,\"status\":\"closed\","
                        "\"market_count\":10}");
    free(s);
    kbt_docs_assert_conforms(r, "GET", "/events");
    kbt_resp_free(r);

    /* Today's /events filters, as the SDK sends them: still the whole matching list. */
    r = cat_get("/events?category=Sports&status=settled");
    kbt_data_assert_keys(r->json, whole_keys);
    kb_buf_reset(&got);
    cat_join(cJSON_GetObjectItem(r->json, "data"), "event_ticker", &got);
    want = kbt_sql_value(c, SQL_EVENTS "e.category = 'Sports' AND e.status = 'settled'");
    ck_assert_str_eq(kb_buf_cstr(&got), want);
    ck_assert_int_gt((int)strlen(want), 0);
    free(want);
    kbt_resp_free(r);
    kb_buf_release(&got);
    PQfinish(c);
}
END_TEST

/* The whole list and the pages of several limits, item by item, for a query. */
static void
assert_pages_concatenate(const char *path, const char *key, const int *limits, size_t n)
{
    kb_buf whole = KB_BUF_INIT;
    cat_whole(path, key, &whole, NULL);
    ck_assert_msg(whole.len > 0, "%s: empty", path);
    for (size_t i = 0; i < n; i++) {
        kb_buf paged = KB_BUF_INIT;
        int pages = cat_walk(path, key, limits[i], &paged, NULL);
        ck_assert_msg(strcmp(kb_buf_cstr(&paged), kb_buf_cstr(&whole)) == 0,
                      "%s: pages of %d (%d of them) differ from the whole list", path, limits[i],
                      pages);
        kb_buf_release(&paged);
    }
    kb_buf_release(&whole);
}

START_TEST(whole_list_equals_its_pages_concatenated)
{
    static const int market_limits[] = {1000, 97, 1};
    kb_buf one = KB_BUF_INIT;
    /* limit=1 over everything would be thousands of requests: a filtered list instead. */
    assert_pages_concatenate("/markets", "ticker", market_limits, 2);
    assert_pages_concatenate("/markets?series_ticker=KXCAT3&status=settled", "ticker",
                             market_limits, 3);
    static const int event_limits[] = {1000, 41, 7};
    assert_pages_concatenate("/events", "event_ticker", event_limits, 3);
    assert_pages_concatenate("/events?status=closed", "event_ticker", event_limits, 3);
    /* A page conforms to the spec too. */
    kbt_resp *r = cat_get("/markets?limit=2");
    kbt_docs_assert_conforms(r, "GET", "/markets");
    kbt_resp_free(r);
    r = cat_get("/events?limit=2&status=open");
    kbt_docs_assert_conforms(r, "GET", "/events");
    kbt_resp_free(r);
    /* An empty cursor= asks for the first page; a limit alone pages from the start. */
    r = cat_get("/markets?cursor=");
    kbt_data_assert_keys(r->json, page_keys);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r->json, "data")), 100);
    cat_join(cJSON_GetObjectItem(r->json, "data"), "ticker", &one);
    kbt_resp_free(r);
    r = cat_get("/markets?limit=100");
    kb_buf again = KB_BUF_INIT;
    cat_join(cJSON_GetObjectItem(r->json, "data"), "ticker", &again);
    ck_assert_str_eq(kb_buf_cstr(&one), kb_buf_cstr(&again));
    kbt_resp_free(r);
    kb_buf_release(&one);
    kb_buf_release(&again);
}
END_TEST

START_TEST(filters_combine_as_in_sql)
{
    static const struct {
        const char *query;
        const char *where;
    } markets[] = {
        {"status=settled", "m.status = 'settled'"},
        {"event_ticker=KXCAT4-E011", "m.event_ticker = 'KXCAT4-E011'"},
        {"series_ticker=KXCAT5", "m.series_ticker = 'KXCAT5'"},
        {"category=Crypto", "m.category = 'Crypto'"},
        {"ticker_prefix=KXCAT6-E1", "m.ticker LIKE 'KXCAT6-E1%'"},
        {"ticker_prefix=KXCAT", "m.ticker LIKE 'KXCAT%'"},
        {"ticker_prefix=kxcat", "m.ticker LIKE 'kxcat%'"},
        {"status=closed&series_ticker=KXCAT1&category=Politics",
         "m.status = 'closed' AND m.series_ticker = 'KXCAT1' AND m.category = 'Politics'"},
        {"status=active&ticker_prefix=KXCAT2-E0&category=Sports",
         "m.status = 'active' AND m.ticker LIKE 'KXCAT2-E0%' AND m.category = 'Sports'"},
        {"event_ticker=KXCAT4-E011&status=determined",
         "m.event_ticker = 'KXCAT4-E011' AND m.status = 'determined'"},
        {"status=nosuchstatus", "false"},
        /* changed or with data at or after an instant: metadata written in March (every
         * 17th), data until Feb 2 19:19 (even ones), first data Jan 5-6 */
        {"updated_since=2026-02-02T12:00:00%2B00:00",
         "(greatest(m.discovered_at, m.last_updated) >= '2026-02-02T12:00:00+00:00'"
         " OR greatest(st.first_data_at, st.last_data_at) >= '2026-02-02T12:00:00+00:00')"},
        {"updated_since=2026-03-01T00:30:00Z&status=active",
         "m.status = 'active' AND (greatest(m.discovered_at, m.last_updated)"
         " >= '2026-03-01T00:30:00Z' OR greatest(st.first_data_at, st.last_data_at)"
         " >= '2026-03-01T00:30:00Z')"},
        {"updated_since=2026-01-06&series_ticker=KXCAT0&ticker_prefix=KXCAT0-E1",
         "m.series_ticker = 'KXCAT0' AND m.ticker LIKE 'KXCAT0-E1%' AND"
         " (greatest(m.discovered_at, m.last_updated) >= '2026-01-06'"
         " OR greatest(st.first_data_at, st.last_data_at) >= '2026-01-06')"},
        {"updated_since=2030-01-01", "false"},
        {"foo=bar&status=settled&LIMIT=3", "m.status = 'settled'"},
    };
    PGconn *c = kbt_db();
    for (size_t i = 0; i < sizeof(markets) / sizeof(markets[0]); i++) {
        char sql[2048], path[512];
        snprintf(sql, sizeof(sql), SQL_MARKETS "%s", markets[i].where);
        snprintf(path, sizeof(path), "/markets?%s", markets[i].query);
        char *want = kbt_sql_value(c, sql);
        assert_list(path, "ticker", 53, want);
        free(want);
    }
    /* The categories NULL on every 13th market match no category filter. */
    char *n = kbt_sql_value(c, "SELECT count(*) FROM markets WHERE ticker ~ '^KXCAT[0-9]'"
                               " AND category IS NULL");
    ck_assert_str_eq(n, "200");
    free(n);

    static const struct {
        const char *query;
        const char *where;
    } events[] = {
        {"category=Crypto", "e.category = 'Crypto'"},
        {"series_ticker=KXCAT2&status=settled",
         "e.series_ticker = 'KXCAT2' AND e.status = 'settled'"},
        {"ticker_prefix=KXCAT1-E2", "e.event_ticker LIKE 'KXCAT1-E2%'"},
        {"ticker_prefix=KXCAT&category=Politics&status=closed",
         "e.event_ticker LIKE 'KXCAT%' AND e.category = 'Politics' AND e.status = 'closed'"},
        /* an event changed, or one of its markets changed or has data */
        {"updated_since=2026-02-02T12:00:00Z",
         "(greatest(e.discovered_at, e.last_updated) >= '2026-02-02T12:00:00Z' OR EXISTS ("
         " SELECT 1 FROM markets m LEFT JOIN market_stats st ON st.ticker = m.ticker"
         "  WHERE m.event_ticker = e.event_ticker"
         "    AND (greatest(m.discovered_at, m.last_updated) >= '2026-02-02T12:00:00Z'"
         "         OR greatest(st.first_data_at, st.last_data_at) >= '2026-02-02T12:00:00Z')))"},
        {"updated_since=2026-03-01T02:00:00Z&category=Sports",
         "e.category = 'Sports' AND (greatest(e.discovered_at, e.last_updated)"
         " >= '2026-03-01T02:00:00Z' OR EXISTS ("
         " SELECT 1 FROM markets m LEFT JOIN market_stats st ON st.ticker = m.ticker"
         "  WHERE m.event_ticker = e.event_ticker"
         "    AND (greatest(m.discovered_at, m.last_updated) >= '2026-03-01T02:00:00Z'"
         "         OR greatest(st.first_data_at, st.last_data_at) >= '2026-03-01T02:00:00Z')))"},
    };
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        char sql[2048], path[512];
        snprintf(sql, sizeof(sql), SQL_EVENTS "%s", events[i].where);
        snprintf(path, sizeof(path), "/events?%s", events[i].query);
        char *want = kbt_sql_value(c, sql);
        ck_assert_msg(i > 3 || strlen(want) > 0, "%s selects nothing", path);
        assert_list(path, "event_ticker", 11, want);
        free(want);
    }
    PQfinish(c);
}
END_TEST

/* Markets inserted by another connection while a pager walks the list. */
typedef struct adder {
    atomic_bool stop;
    int added;
} adder;

static void *
add_markets(void *arg)
{
    adder *a = arg;
    PGconn *c = kbt_db();
    /* Spread over the whole list's order (the fixture spans Jan 1, 00:00-14:26) and past
     * its start (now): some land behind the pager, some ahead of it. */
    while (!atomic_load(&a->stop) && a->added < 3000) {
        char t[32], at[16];
        snprintf(t, sizeof(t), "KXCATNEW-%05d", a->added);
        snprintf(at, sizeof(at), "%d", (a->added * 7919) % 1000);
        kbt_sqlp_ok(c,
                    "INSERT INTO markets (ticker, status, discovered_at)"
                    " VALUES ($1, 'active', CASE WHEN $2::int % 10 = 0 THEN now()"
                    "  ELSE timestamptz '2026-01-01' + $2::int * interval '52 seconds' END)",
                    2, t, at);
        a->added++;
    }
    PQfinish(c);
    return NULL;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Split a comma-joined list (modified in place) into a sorted array; *n its length. */
static char **
split_sorted(char *s, size_t *n)
{
    size_t cap = 16, k = 0;
    char **v = malloc(cap * sizeof(*v));
    for (char *p = s; p && *p;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (k == cap)
            v = realloc(v, (cap *= 2) * sizeof(*v));
        v[k++] = p;
        p = comma ? comma + 1 : NULL;
    }
    qsort(v, k, sizeof(*v), cmp_str);
    *n = k;
    return v;
}

START_TEST(paging_while_markets_are_added_returns_each_once)
{
    PGconn *c = kbt_db();
    kbt_sqlp_ok(c, "DELETE FROM markets WHERE ticker LIKE $1", 1, "KXCATNEW-%");
    kbt_data_wait_replica();
    char *before_s = kbt_sql_value(c, "SELECT string_agg(ticker, ',') FROM markets");
    size_t nbefore;
    char **before = split_sorted(before_s, &nbefore);

    adder a = {.added = 0};
    atomic_init(&a.stop, false);
    pthread_t th;
    pthread_create(&th, NULL, add_markets, &a);
    kb_buf seen_s = KB_BUF_INIT;
    int pages = cat_walk("/markets", "ticker", 40, NULL, &seen_s);
    atomic_store(&a.stop, true);
    pthread_join(th, NULL);
    ck_assert_msg(a.added > 0, "nothing was added while paging");

    size_t nseen;
    char **seen = split_sorted(seen_s.buf, &nseen);
    size_t new_seen = 0;
    for (size_t i = 0; i < nseen; i++) {
        ck_assert_msg(i == 0 || strcmp(seen[i - 1], seen[i]) != 0, "%s listed twice", seen[i]);
        if (strncmp(seen[i], "KXCATNEW-", 9) == 0)
            new_seen++;
        else
            ck_assert_msg(bsearch(&seen[i], before, nbefore, sizeof(*before), cmp_str) != NULL,
                          "%s listed but never inserted", seen[i]);
    }
    /* Every market of the start, exactly once (no duplicates, above). */
    ck_assert_msg(nseen - new_seen == nbefore, "%zu of %zu markets listed (%d pages)",
                  nseen - new_seen, nbefore, pages);
    fprintf(stderr, "paging: %d pages, %d markets added meanwhile, %zu of them listed\n", pages,
            a.added, new_seen);
    free(seen);
    free(before);
    free(before_s);
    kb_buf_release(&seen_s);
    kbt_sqlp_ok(c, "DELETE FROM markets WHERE ticker LIKE $1", 1, "KXCATNEW-%");
    PQfinish(c);
    kbt_data_wait_replica();
}
END_TEST

START_TEST(bad_values_are_refused_uncharged)
{
    static const struct {
        const char *path;
        long status;
        const char *code;
        const char *message;
    } bad[] = {
        {"/markets?limit=0", 422, "validation_error",
         "query.limit: Input should be greater than or equal to 1"},
        {"/markets?limit=1001", 422, "validation_error",
         "query.limit: Input should be less than or equal to 1000"},
        {"/markets?limit=ten", 422, "validation_error",
         "query.limit: Input should be a valid integer"},
        {"/markets?limit=", 422, "validation_error",
         "query.limit: Input should be a valid integer"},
        {"/events?limit=-5", 422, "validation_error",
         "query.limit: Input should be greater than or equal to 1"},
        {"/markets?cursor=bm90IGEgY3Vyc29y", 422, "validation_error",
         "query.cursor: invalid pagination cursor"},
        {"/markets?cursor=%%%", 422, "validation_error",
         "query.cursor: invalid percent-encoding or UTF-8"},
        /* a /deltas cursor, and an /events cursor on /markets */
        {"/markets?cursor=eyJ0cyI6IjIwMjYtMDEtMTVUMTI6MDA6MDArMDA6MDAiLCJpZCI6MX0=", 422,
         "validation_error", "query.cursor: invalid pagination cursor"},
        {"/markets?cursor=eyJsaXN0IjoiZXZlbnRzIiwia2V5IjoiS1hDQVQwLUUwMDAifQ", 422,
         "validation_error", "query.cursor: invalid pagination cursor"},
        {"/markets?status=%FF", 422, "validation_error",
         "query.status: invalid percent-encoding or UTF-8"},
        {"/events?ticker_prefix=%C0%AF", 422, "validation_error",
         "query.ticker_prefix: invalid percent-encoding or UTF-8"},
        {"/markets?updated_since=yesterday", 400, "invalid_timestamp", NULL},
        {"/events?updated_since=2026-13-01", 400, "invalid_timestamp", NULL},
        {"/markets?updated_since=2026-01-15%FF", 400, "invalid_timestamp",
         "query.updated_since: Input should be a valid datetime"},
        /* 422 wins over 400, and every problem is named */
        {"/markets?updated_since=x&limit=0", 422, "validation_error",
         "query.limit: Input should be greater than or equal to 1"},
        {"/markets?limit=0&cursor=x", 422, "validation_error",
         "query.limit: Input should be greater than or equal to 1; "
         "query.cursor: invalid pagination cursor"},
    };
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kbt_resp *r = kbt_data_get(&a, bad[i].path);
        kbt_assert_envelope(r, bad[i].status, bad[i].code);
        if (bad[i].message != NULL)
            ck_assert_str_eq(
                cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")->valuestring,
                bad[i].message);
        char *cost = kbt_header(r, "X-Credits-Cost");
        ck_assert_msg(cost == NULL, "%s: charged", bad[i].path);
        kbt_resp_free(r);
    }
    ck_assert_int_eq(credits_used(c, &a), 0);
    /* A cursor of the other list's kind works where it belongs. */
    kbt_resp *r = kbt_data_get(&a,
                               "/events?cursor=eyJsaXN0IjoiZXZlbnRzIiwia2V5IjoiS1hDQVQwLUUwMDAifQ");
    ck_assert_int_eq(r->status, 200);
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(r->json, "data"), 0);
    ck_assert_ptr_nonnull(first);
    ck_assert_int_gt(strcmp(cJSON_GetObjectItem(first, "event_ticker")->valuestring, "KXCAT0-E000"),
                     0);
    kbt_resp_free(r);
    ck_assert_int_eq(credits_used(c, &a), 1);
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("catalog");
    TCase *tc = tcase_create("lists");
    tcase_add_unchecked_fixture(tc, cat_setup, cat_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, no_parameter_is_the_whole_list_as_before);
    tcase_add_test(tc, whole_list_equals_its_pages_concatenated);
    tcase_add_test(tc, filters_combine_as_in_sql);
    tcase_add_test(tc, paging_while_markets_are_added_returns_each_once);
    tcase_add_test(tc, bad_values_are_refused_uncharged);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
