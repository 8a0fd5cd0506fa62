/* test_import.c - kbctl import's delta routes (issue 6) through the real database.
 *
 * Each test writes its own capture (tickers KXIMP-*, February 2026, so no
 * other suite's data is touched): a snapshot, then deltas with ties on ts,
 * repeated messages (same sid/seq/ts, near and far apart), and a few lines in
 * the forms only the cJSON parser takes (dollar price, escaped ticker,
 * fractional seconds, extra members, received_at). Invariants checked after
 * every import: each message stored once, market_stats equal to counts over
 * the rows, the "N new" figures summing to the rows stored, and the
 * checkpoints equal to 0004's definition of kb_rebuild_checkpoints.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "kbt.h"

#define T0 INT64_C(1771000000) /* 2026-02-13T16:26:40Z */

/* Delta i of a capture: ts ms (every 10th shares the previous ts), price, amount, side. */
static void
delta_line(FILE *f, const char *ticker, long i)
{
    long long ms = (long long)T0 * 1000 + 5 + (i - (i % 10 == 9)) * 37;
    int price = 1 + (int)((i * 13) % 99);
    int amount = (int)(i % 7) - 3 + (i % 7 == 3 ? 5 : 0);
    const char *side = i % 2 ? "no" : "yes";
    switch (i % 97) {
    case 11: /* price in dollars: cJSON path */
        fprintf(
            f,
            "{\"type\":\"orderbook_delta\",\"sid\":7,\"seq\":%ld,\"msg\":{\"market_ticker\":"
            "\"%s\",\"price_dollars\":\"0.%02d00\",\"delta\":%d,\"side\":\"%s\",\"ts\":%lld}}\n",
            i + 1, ticker, price, amount, side, ms);
        return;
    case 23: /* escaped ticker ("K" as \u004b), members reordered */
        fprintf(f,
                "{\"msg\":{\"ts\":%lld,\"side\":\"%s\",\"delta\":%d,\"price\":%d,\"market_ticker\":"
                "\"\\u004b%s\"},\"seq\":%ld,\"type\":\"orderbook_delta\",\"sid\":7}\n",
                ms, side, amount, price, ticker + 1, i + 1);
        return;
    case 31: /* fractional seconds and an extra member: both parsers agree on the instant */
        fprintf(
            f,
            "{\"type\":\"orderbook_delta\",\"sid\":7,\"seq\":%ld,\"note\":\"x\",\"msg\":"
            "{\"market_ticker\":\"%s\",\"price\":%d,\"delta\":%d,\"side\":\"%s\",\"ts\":%lld.%03lld}}\n",
            i + 1, ticker, price, amount, side, ms / 1000, ms % 1000);
        return;
    case 47: /* received_at recorded by the collector */
        fprintf(
            f,
            "{\"type\":\"orderbook_delta\",\"sid\":7,\"seq\":%ld,\"received_at\":%lld,\"msg\":"
            "{\"market_ticker\":\"%s\",\"price\":%d,\"delta\":%d,\"side\":\"%s\",\"ts\":%lld}}\n",
            i + 1, ms + 3, ticker, price, amount, side, ms);
        return;
    default:
        fprintf(f,
                "{\"type\":\"orderbook_delta\",\"sid\":7,\"seq\":%ld,\"msg\":{\"market_ticker\":"
                "\"%s\",\"price\":%d,\"delta\":%d,\"side\":\"%s\",\"ts\":%lld}}\n",
                i + 1, ticker, price, amount, side, ms);
    }
}

/* Write deltas [from, to) of ticker (only those with i % skip != 0 when skip > 1) to a
 * fresh file, after the snapshot at T0; every 50th delta repeated next, and every
 * 400th again at the end of the file. Returns the path (static buffer per slot). */
static const char *
capture(int slot, const char *ticker, long from, long to, long skip)
{
    static char paths[4][128];
    snprintf(paths[slot], sizeof(paths[slot]), "/tmp/kbt-import-%d-%d.jsonl", (int)getpid(), slot);
    FILE *f = fopen(paths[slot], "w");
    ck_assert(f != NULL);
    fprintf(
        f,
        "{\"type\":\"orderbook_snapshot\",\"sid\":7,\"seq\":0,\"msg\":{\"market_ticker\":\"%s\","
        "\"yes\":[[40,100],[41,5]],\"no\":[[55,20]],\"ts\":%lld}}\n",
        ticker, (long long)T0);
    for (long i = from; i < to; i++) {
        if (skip > 1 && i % skip == 0)
            continue;
        delta_line(f, ticker, i);
        if (i % 50 == 0)
            delta_line(f, ticker, i);
    }
    for (long i = from; i < to; i++) {
        if (i % 400 == 0 && !(skip > 1 && i % skip == 0))
            delta_line(f, ticker, i);
    }
    fclose(f);
    return paths[slot];
}

/* "deltas N (M new)" of kbctl import's summary: M. */
static long
new_deltas(const kb_buf *out)
{
    const char *p = strstr(kb_buf_cstr(out), " deltas ");
    long n = -1, m = -1;
    ck_assert_msg(p != NULL && sscanf(p, " deltas %ld (%ld new)", &n, &m) == 2, "%s",
                  kb_buf_cstr(out));
    return m;
}

static long
import(const char *args, const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "import --checkpoint-every 7 %s %s", args, path);
    kb_buf out = KB_BUF_INIT;
    int rc = kbt_data_kbctl(cmd, &out);
    ck_assert_msg(rc == 0, "kbctl %s: %d %s", cmd, rc, kb_buf_cstr(&out));
    long m = new_deltas(&out);
    kb_buf_release(&out);
    return m;
}

/* The rows of ticker: count, and market_stats agreeing with them. */
static long
stored(PGconn *c, const char *ticker)
{
    long n = kbt_sql_long1(c, "SELECT count(*) FROM deltas WHERE market_ticker = $1", ticker);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM (SELECT DISTINCT ts, sid, seq FROM deltas"
                                   " WHERE market_ticker = $1) d",
                                   ticker),
                     n);
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT delta_count FROM market_stats WHERE ticker = $1", ticker), n);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM market_stats m WHERE ticker = $1"
                                   " AND last_data_at = (SELECT max(ts) FROM deltas"
                                   "  WHERE market_ticker = $1)"
                                   " AND first_data_at = (SELECT min(captured_at) FROM snapshots"
                                   "  WHERE market_ticker = $1)"
                                   " AND snapshot_count = (SELECT count(*) FROM snapshots"
                                   "  WHERE market_ticker = $1)",
                                   ticker),
                     1);
    return n;
}

/* 0004's kb_rebuild_checkpoints (on 0012's columns), kept here as the reference for 0013's. */
static const char reference_sql[] =
    "CREATE FUNCTION pg_temp.ref_rebuild(p_ticker text, p_every integer) RETURNS integer"
    " LANGUAGE plpgsql AS $$"
    " DECLARE s0 timestamptz; made integer;"
    " BEGIN"
    "  SELECT min(captured_at) INTO s0 FROM snapshots WHERE market_ticker = p_ticker;"
    "  DELETE FROM book_checkpoints WHERE market_ticker = p_ticker;"
    "  WITH s AS (SELECT * FROM (SELECT captured_at AS basis,"
    "     lead(captured_at) OVER (ORDER BY captured_at) AS next_at"
    "     FROM (SELECT DISTINCT captured_at FROM snapshots"
    "           WHERE market_ticker = p_ticker AND captured_at >= s0) x) y),"
    "  d AS (SELECT s.basis, x.ts, x.side, x.price_e4, x.delta_e2,"
    "     row_number() OVER (PARTITION BY s.basis ORDER BY x.ts, x.id) AS rn"
    "     FROM s JOIN deltas x ON x.market_ticker = p_ticker AND x.ts > s.basis"
    "      AND (s.next_at IS NULL OR x.ts < s.next_at)),"
    "  d2 AS (SELECT d.*, min(rn) OVER (PARTITION BY basis, ts) AS m,"
    "     max(rn) OVER (PARTITION BY basis, ts) AS mx FROM d),"
    "  cp AS (SELECT basis, max(rn / p_every) AS j, ts AS at, max(mx) AS cnt"
    "     FROM d2 WHERE rn % p_every = 0 GROUP BY basis, ts),"
    "  seg AS (SELECT basis, (m + p_every - 1) / p_every AS j, side, price_e4,"
    "     sum(delta_e2) AS q FROM d2 GROUP BY 1, 2, 3, 4),"
    "  lv AS (SELECT cp.basis, cp.at, cp.cnt, sg.side, sg.price_e4, sum(sg.q) AS q"
    "     FROM cp JOIN seg sg ON sg.basis = cp.basis AND sg.j <= cp.j GROUP BY 1, 2, 3, 4, 5)"
    "  INSERT INTO book_checkpoints (market_ticker, basis, at, deltas, levels)"
    "  SELECT p_ticker, basis, at, cnt, jsonb_agg(jsonb_build_array(side, price_e4, q))"
    "    FROM lv GROUP BY basis, at, cnt;"
    "  GET DIAGNOSTICS made = ROW_COUNT;"
    "  RETURN made;"
    " END $$";

#define CANON                                                                                      \
    "SELECT market_ticker, basis, at, deltas,"                                                     \
    " (SELECT jsonb_agg(e ORDER BY e) FROM jsonb_array_elements(levels) e) AS levels"              \
    " FROM book_checkpoints WHERE market_ticker = $1"

/* The checkpoints kbctl built for ticker equal the reference's (and there are some). */
static void
assert_reference_checkpoints(PGconn *c, const char *ticker)
{
    kbt_sql_ok(c, "BEGIN");
    kbt_sql_ok(c, reference_sql);
    kbt_sql_ok(c, "CREATE TEMP TABLE got (market_ticker text, basis timestamptz,"
                  " at timestamptz, deltas bigint, levels jsonb) ON COMMIT DROP");
    long got = kbt_sql_long1(c,
                             "WITH i AS (INSERT INTO got " CANON " RETURNING 1)"
                             " SELECT count(*) FROM i",
                             ticker);
    long made = kbt_sql_long1(c, "SELECT pg_temp.ref_rebuild($1, 7)", ticker);
    ck_assert_int_gt(made, 10);
    ck_assert_int_eq(got, made);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM ((SELECT * FROM got EXCEPT " CANON
                                   ") UNION ALL (" CANON " EXCEPT SELECT * FROM got)) x",
                                   ticker),
                     0);
    kbt_sql_ok(c, "ROLLBACK");
}

START_TEST(a_file_straddling_stored_data_adds_only_the_new_rows)
{
    static const char *const T = "KXIMP-26FEB13-S";
    PGconn *c = kbt_db();
    /* first third of the deltas missing in the stored part, so rows inside the stored
     * span are partly stored and partly new */
    const char *files[4];
    long first = import("--batch 500", files[0] = capture(0, T, 0, 1800, 3));
    ck_assert_int_eq(stored(c, T), first);
    ck_assert_int_eq(first, 1800 - 600);
    assert_reference_checkpoints(c, T); /* a new market: computed from the rows sent */
    long second = import("--batch 500", files[1] = capture(1, T, 1200, 3000, 0));
    ck_assert_int_eq(stored(c, T), first + second);
    ck_assert_int_eq(first + second, 1800 - 600 + 200 + 1200);
    long third = import("", files[2] = capture(2, T, 0, 3000, 0));
    ck_assert_int_eq(stored(c, T), 3000);
    ck_assert_int_eq(first + second + third, 3000);
    /* the forms only the cJSON path reads were stored as the plain ones would be */
    char q[512];
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM deltas WHERE market_ticker = $1 AND"
             " ((seq = 12 AND price_e4 = %d) OR (seq = 32 AND kb_us(ts) = %lld)"
             "  OR (seq = 48 AND received_at = ts + interval '3 ms')"
             "  OR (seq = 24 AND kb_us(ts) = %lld))",
             (1 + (11 * 13) % 99) * 100, (long long)(T0 * 1000 + 5 + 31 * 37) * 1000,
             (long long)(T0 * 1000 + 5 + 23 * 37) * 1000);
    ck_assert_int_eq(kbt_sql_long1(c, q, T), 4);
    assert_reference_checkpoints(c, T);
    /* and importing everything again changes nothing */
    char *before = kbt_sql_value(c, "SELECT md5(string_agg(m::text, ',')) FROM market_stats m"
                                    " WHERE ticker LIKE 'KXIMP-%'");
    ck_assert_int_eq(import("--batch 700", files[3] = capture(3, T, 0, 3000, 0)), 0);
    char *after = kbt_sql_value(c, "SELECT md5(string_agg(m::text, ',')) FROM market_stats m"
                                   " WHERE ticker LIKE 'KXIMP-%'");
    ck_assert_str_eq(before, after);
    ck_assert_int_eq(stored(c, T), 3000);
    free(before);
    free(after);
    /* a sparse file over dense stored data (the staged route: more stored rows in its
     * span than it has rows) with one new message in the middle */
    FILE *f = fopen(files[3], "w");
    ck_assert(f != NULL);
    for (long i = 0; i < 3000; i += 100)
        delta_line(f, T, i);
    fprintf(f,
            "{\"type\":\"orderbook_delta\",\"sid\":8,\"seq\":1,\"msg\":{\"market_ticker\":"
            "\"%s\",\"price\":50,\"delta\":4,\"side\":\"yes\",\"ts\":%lld}}\n",
            T, (long long)(T0 * 1000 + 5 + 1500 * 37 + 1));
    fclose(f);
    ck_assert_int_eq(import("", files[3]), 1);
    ck_assert_int_eq(stored(c, T), 3001);
    assert_reference_checkpoints(c, T);
    for (int i = 0; i < 4; i++)
        (void)unlink(files[i]);
    PQfinish(c);
}
END_TEST

START_TEST(two_imports_at_once_store_each_message_once)
{
    static const char *const T = "KXIMP-26FEB13-C";
    PGconn *c = kbt_db();
    const char *a = capture(0, T, 0, 2600, 0), *b = capture(1, T, 1000, 3600, 0);
    FILE *p[2];
    for (int i = 0; i < 2; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "cd '%s' && '%s/kbctl' import --batch 300 --checkpoint-every 7 %s 2>&1",
                 kbt_env("KB_REPO_ROOT"), kbt_env("KB_BIN_DIR"), i ? b : a);
        p[i] = popen(cmd, "r");
        ck_assert(p[i] != NULL);
    }
    long total = 0;
    for (int i = 0; i < 2; i++) {
        kb_buf out = KB_BUF_INIT;
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), p[i])) > 0)
            kb_buf_append(&out, chunk, n);
        int st = pclose(p[i]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", kb_buf_cstr(&out));
        total += new_deltas(&out);
        kb_buf_release(&out);
    }
    kbt_data_wait_replica();
    ck_assert_int_eq(total, 3600);
    ck_assert_int_eq(stored(c, T), 3600);
    assert_reference_checkpoints(c, T);
    (void)unlink(a);
    (void)unlink(b);
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("import");
    TCase *tc = tcase_create("import");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, a_file_straddling_stored_data_adds_only_the_new_rows);
    tcase_add_test(tc, two_imports_at_once_store_each_message_once);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
