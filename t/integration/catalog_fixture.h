/* catalog_fixture.h - what test_catalog.c and test_catalog_stream.c share: a catalogue of
 * KXCAT* events and markets made with SQL (ties on discovered_at, NULL categories, metadata
 * changes and data times spread out), the lists read whole or page by page, and answers
 * reduced to comma-joined tickers for comparison with the same list computed in SQL.
 * Functions here are static: one .c per test program includes it.
 */
#ifndef CATALOG_FIXTURE_H
#define CATALOG_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbt.h"

/* Not every program uses every helper. */
#define CAT_FN static __attribute__((unused))

#define CAT_MARKETS 2600 /* more than two pieces of a streamed list (KB_CATALOG_PIECE) */
#define CAT_EVENTS 260

static kbt_account cat_acct;

/* Delete the rows of tickers LIKE pattern (markets, their stats, events). */
CAT_FN void
cat_delete(PGconn *c, const char *pattern)
{
    kbt_sqlp_ok(c, "DELETE FROM market_stats WHERE ticker LIKE $1", 1, pattern);
    kbt_sqlp_ok(c, "DELETE FROM markets WHERE ticker LIKE $1", 1, pattern);
    kbt_sqlp_ok(c, "DELETE FROM events WHERE event_ticker LIKE $1", 1, pattern);
}

CAT_FN void
cat_setup(void)
{
    PGconn *c = kbt_db();
    cat_delete(c, "KXCAT%");
    /* Events: 7 series, three categories and statuses, some changed in March. */
    kbt_sql_ok(c, "INSERT INTO events (event_ticker, series_ticker, title, category, status,"
                  "                    mutually_exclusive, discovered_at, last_updated)"
                  " SELECT format('KXCAT%s-E%s', e % 7, lpad(e::text, 3, '0')),"
                  "        format('KXCAT%s', e % 7), 'Catalogue event ' || e,"
                  "        (ARRAY['Crypto','Politics','Sports'])[1 + e % 3],"
                  "        (ARRAY['open','closed','settled'])[1 + e % 3], e % 2 = 0,"
                  "        timestamptz '2026-01-01' + e * interval '1 hour',"
                  "        CASE WHEN e % 11 = 0"
                  "             THEN timestamptz '2026-03-01' + e * interval '1 minute' END"
                  "   FROM generate_series(0, 259) e");
    /* Markets: ten per event, three per discovered_at instant (ties broken by ticker),
     * every 13th without a category, every 17th changed in March. */
    kbt_sql_ok(c, "INSERT INTO markets (ticker, title, event_ticker, series_ticker, status,"
                  "                     category, discovered_at, last_updated)"
                  " SELECT format('KXCAT%s-E%s-M%s', (i / 10) % 7, lpad((i / 10)::text, 3, '0'),"
                  "               i % 10), 'Catalogue market ' || i,"
                  "        format('KXCAT%s-E%s', (i / 10) % 7, lpad((i / 10)::text, 3, '0')),"
                  "        format('KXCAT%s', (i / 10) % 7),"
                  "        (ARRAY['active','closed','settled','determined'])[1 + i % 4],"
                  "        CASE WHEN i % 13 <> 0"
                  "             THEN (ARRAY['Crypto','Politics','Sports'])[1 + (i / 10) % 3] END,"
                  "        timestamptz '2026-01-01' + (i / 3) * interval '1 minute',"
                  "        CASE WHEN i % 17 = 0"
                  "             THEN timestamptz '2026-03-01' + i * interval '1 second' END"
                  "   FROM generate_series(0, 2599) i");
    /* Data on four of five markets; deltas (last_data_at) on every other one of those. */
    kbt_sql_ok(c, "INSERT INTO market_stats (ticker, first_data_at, last_data_at, snapshot_count,"
                  "                          delta_count)"
                  " SELECT format('KXCAT%s-E%s-M%s', (i / 10) % 7, lpad((i / 10)::text, 3, '0'),"
                  "               i % 10),"
                  "        timestamptz '2026-01-05' + i * interval '1 minute',"
                  "        CASE WHEN i % 2 = 0"
                  "             THEN timestamptz '2026-02-01' + i * interval '1 minute' END,"
                  "        1, (i + 1) % 2"
                  "   FROM generate_series(0, 2599) i WHERE i % 5 <> 4");
    kbt_sql_ok(c, "ANALYZE markets");
    kbt_sql_ok(c, "ANALYZE market_stats");
    kbt_sql_ok(c, "ANALYZE events");
    kbt_data_account(c, &cat_acct);
    PQfinish(c);
    kbt_data_wait_replica();
}

CAT_FN void
cat_teardown(void)
{
    PGconn *c = kbt_db();
    cat_delete(c, "KXCAT%");
    PQfinish(c);
    kbt_data_wait_replica();
}

/* GET path with the fixture's key, asserting 200 and a JSON object. */
CAT_FN kbt_resp *
cat_get(const char *path)
{
    kbt_resp *r = kbt_data_get(&cat_acct, path);
    ck_assert_msg(r->status == 200, "%s: %ld %s", path, r->status, kb_buf_cstr(&r->body));
    ck_assert_msg(cJSON_IsObject(r->json), "%s: not JSON", path);
    return r;
}

/* The member key of every item of data, comma-joined, into out (appended). */
CAT_FN void
cat_join(const cJSON *data, const char *key, kb_buf *out)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, data) {
        const cJSON *v = cJSON_GetObjectItem(it, key);
        ck_assert_msg(cJSON_IsString(v), "item without %s", key);
        if (out->len)
            kb_buf_putc(out, ',');
        kb_buf_puts(out, v->valuestring);
    }
}

/* Every item of data serialized, one per line, into out (appended). */
CAT_FN void
cat_items(const cJSON *data, kb_buf *out)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, data) {
        char *s = cJSON_PrintUnformatted(it);
        kb_buf_puts(out, s);
        kb_buf_putc(out, '\n');
        free(s);
    }
}

static const char *const whole_keys[] = {"data", "request_id", "response_time", NULL};
static const char *const page_keys[] = {"data",       "next_cursor",   "has_more",
                                        "request_id", "response_time", NULL};

/* The whole list at path (no limit, no cursor): its items and key values. */
CAT_FN void
cat_whole(const char *path, const char *key, kb_buf *items, kb_buf *keys)
{
    kbt_resp *r = cat_get(path);
    kbt_data_assert_keys(r->json, whole_keys);
    const cJSON *data = cJSON_GetObjectItem(r->json, "data");
    if (items != NULL)
        cat_items(data, items);
    if (keys != NULL)
        cat_join(data, key, keys);
    kbt_resp_free(r);
}

/*
 * Read the list at base (a path with a query, e.g. "/markets?status=active") page by
 * page with limit, checking each page's shape and the next_cursor/has_more contract;
 * items and key values appended. Returns the number of pages.
 */
CAT_FN int
cat_walk(const char *base, const char *key, int limit, kb_buf *items, kb_buf *keys)
{
    char *cursor = NULL;
    int pages = 0;
    for (;;) {
        char path[2048];
        snprintf(path, sizeof(path), "%s%slimit=%d%s%s", base, strchr(base, '?') ? "&" : "?", limit,
                 cursor ? "&cursor=" : "", cursor ? cursor : "");
        free(cursor);
        cursor = NULL;
        kbt_resp *r = cat_get(path);
        kbt_data_assert_keys(r->json, page_keys);
        const cJSON *data = cJSON_GetObjectItem(r->json, "data");
        const cJSON *more = cJSON_GetObjectItem(r->json, "has_more");
        const cJSON *next = cJSON_GetObjectItem(r->json, "next_cursor");
        ck_assert(cJSON_IsBool(more));
        ck_assert_msg(cJSON_IsTrue(more) == cJSON_IsString(next), "%s: has_more %d, cursor %s",
                      path, cJSON_IsTrue(more), cJSON_IsString(next) ? "set" : "null");
        if (cJSON_IsTrue(more))
            ck_assert_int_eq(cJSON_GetArraySize(data), limit);
        else
            ck_assert_int_le(cJSON_GetArraySize(data), limit);
        if (items != NULL)
            cat_items(data, items);
        if (keys != NULL)
            cat_join(data, key, keys);
        pages++;
        if (cJSON_IsTrue(more))
            cursor = strdup(next->valuestring);
        kbt_resp_free(r);
        if (cursor == NULL)
            return pages;
        ck_assert_msg(pages < 100000, "%s: no end", base);
    }
}

#endif
