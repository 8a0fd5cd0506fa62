/* test_stack_demo.c - `make run`'s demo set (t/stack.sh demo_setup, run here as `t/stack.sh
 * demo DIR` with a small KB_DEMO_ARGS): a first run stopped while the set loads leaves part of
 * it and no DIR/demo.loaded, and the next run completes it (the import is idempotent); once it
 * is complete, a run does not load it again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

#define DEMO_ARGS                                                                                  \
    "--markets 1 --fp-markets 0 --days 1 --snapshot-minutes 60 --deltas-per-hour 30 "              \
    "--trades-per-hour 3 --seed 20"

#define STARTS(s, lit) (strncmp((s), (lit), sizeof(lit) - 1) == 0)

typedef struct counts {
    long deltas, trades, snapshots;
} counts;

static void
db_counts(PGconn *db, const char *ticker, counts *c)
{
    c->deltas = kbt_sql_long1(db, "SELECT count(*) FROM deltas WHERE market_ticker = $1", ticker);
    c->trades = kbt_sql_long1(db, "SELECT count(*) FROM trades WHERE market_ticker = $1", ticker);
    c->snapshots = kbt_sql_long1(db, "SELECT count(*) FROM snapshots WHERE market_ticker = $1",
                                 ticker);
}

static char *
marker_path(void)
{
    char *p = malloc(4200);
    snprintf(p, 4200, "%s/demo.loaded", kbt_env("KB_STACK_DIR"));
    return p;
}

START_TEST(demo_set_stopped_part_way_is_completed_by_the_next_run)
{
    /* The whole set as a file, and what it holds. */
    char full[] = "/tmp/kbdemo-full.XXXXXX", part[] = "/tmp/kbdemo-part.XXXXXX";
    close(mkstemp(full));
    close(mkstemp(part));
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "demo-data " DEMO_ARGS " --out %s", full);
    ck_assert_int_eq(kbt_data_kbctl(cmd, NULL), 0);
    size_t len = 0;
    char *text = kbt_file_read(full, &len);
    ck_assert_ptr_nonnull(text);
    counts want = {0, 0, 0};
    char ticker[64] = "";
    long lines = 0;
    for (char *l = text; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
        lines++;
        want.deltas += STARTS(l, "{\"type\":\"orderbook_delta\"");
        want.trades += STARTS(l, "{\"type\":\"trade\"");
        want.snapshots += STARTS(l, "{\"type\":\"orderbook_snapshot\"");
        if (STARTS(l, "{\"market\":{\"ticker\":\""))
            sscanf(l + sizeof("{\"market\":{\"ticker\":\"") - 1, "%63[^\"]", ticker);
    }
    ck_assert_msg(ticker[0] != '\0' && want.deltas > 100 && want.trades > 10 && want.snapshots > 10,
                  "demo set: %s %ld/%ld/%ld", ticker, want.deltas, want.trades, want.snapshots);

    /* A clean slate for the set's market (the suite's database may hold it from before). */
    PGconn *db = kbt_db();
    static const char *const tables[] = {"deltas", "trades", "snapshots"};
    for (size_t i = 0; i < 3; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE market_ticker = $1", tables[i]);
        kbt_sqlp_ok(db, sql, 1, ticker);
    }

    /* What a first run stopped while loading leaves: its markets and the first rows. */
    FILE *f = fopen(part, "w");
    ck_assert_ptr_nonnull(f);
    long keep = lines / 2, n = 0;
    for (char *l = text; *l && n < keep; n++) {
        char *nl = strchr(l, '\n');
        size_t k = nl ? (size_t)(nl - l + 1) : strlen(l);
        fwrite(l, 1, k, f);
        l += k;
    }
    fclose(f);
    snprintf(cmd, sizeof(cmd), "import --quiet %s", part);
    ck_assert_int_eq(kbt_data_kbctl(cmd, NULL), 0);
    char *marker = marker_path();
    unlink(marker); /* a stopped run never wrote it */
    counts got;
    db_counts(db, ticker, &got);
    ck_assert_msg(got.deltas > 0 && got.deltas < want.deltas, "partial: %ld of %ld deltas",
                  got.deltas, want.deltas);

    /* The next run completes it, and says so. */
    setenv("KB_DEMO_ARGS", DEMO_ARGS, 1);
    ck_assert_int_eq(kbt_stack("demo", NULL), 0);
    db_counts(db, ticker, &got);
    ck_assert_msg(got.deltas == want.deltas && got.trades == want.trades &&
                      got.snapshots == want.snapshots,
                  "after the next run: %ld/%ld/%ld, the set has %ld/%ld/%ld", got.deltas,
                  got.trades, got.snapshots, want.deltas, want.trades, want.snapshots);
    char *m = kbt_file_read(marker, NULL);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m, "2 " DEMO_ARGS "\n");
    free(m);

    /* Complete: a later run does not load it again (a row taken away stays away). */
    kbt_sqlp_ok(db,
                "DELETE FROM trades WHERE market_ticker = $1 AND ts = (SELECT min(ts) FROM"
                " trades WHERE market_ticker = $1)",
                1, ticker);
    ck_assert_int_eq(kbt_stack("demo", NULL), 0);
    db_counts(db, ticker, &got);
    ck_assert_int_lt(got.trades, want.trades);
    unsetenv("KB_DEMO_ARGS");

    PQfinish(db);
    free(marker);
    free(text);
    unlink(full);
    unlink(part);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("stack_demo");
    TCase *tc = tcase_create("demo");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, demo_set_stopped_part_way_is_completed_by_the_next_run);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
