/* kbctl_partitions.c - `kbctl partitions`: create market-data partitions ahead of time.
 *
 * Runs kb_ensure_partitions() (0004_market_data.sql): monthly snapshots and
 * daily deltas/trades partitions covering [now - back, now + ahead]. Safe to
 * run from cron or a systemd timer at any frequency (idempotent, locked).
 */
#include <stdio.h>
#include <string.h>

#include "kbctl.h"
#include "kb_config.h"
#include "kb_db.h"
#include "kb_str.h"
#include "kb_banned.h"

static const kb_stmt ensure_stmt = {
    "partitions_ensure",
    "SELECT kb_ensure_partitions(now() - make_interval(days => $1::int),"
    " now() + make_interval(days => $2::int))",
    2, false};

int
kbctl_partitions(int argc, char **argv)
{
    const char *back = "1", *ahead = "14";
    for (int i = 1; i < argc; i++) {
        int64_t v;
        const char *e;
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: kbctl partitions [--days-back N] [--days-ahead N]\n\n"
                   "Creates the missing snapshots (monthly), deltas and trades (daily)\n"
                   "partitions from N days back (default 1) to N days ahead (default 14).\n"
                   "kbctl import also creates the partitions each batch needs.\n");
            return KBCTL_OK;
        } else if ((strcmp(argv[i], "--days-back") == 0 || strcmp(argv[i], "--days-ahead") == 0) &&
                   i + 1 < argc && kb_parse_i64(kb_str_c(argv[i + 1]), 0, 3660, &v, &e)) {
            if (strcmp(argv[i], "--days-back") == 0)
                back = argv[++i];
            else
                ahead = argv[++i];
        } else {
            fprintf(stderr, "kbctl partitions: bad option '%s' (see --help)\n", argv[i]);
            return KBCTL_USAGE;
        }
    }
    kb_db db;
    kb_db_init(&db, kb_cfg.database_url, "kbctl-partitions", kb_cfg.db_connect_timeout_s, 0);
    kb_arena arena;
    kb_arena_init(&arena, 0);
    PGresult *r;
    const char *params[] = {back, ahead};
    int rc = KBCTL_FAIL;
    if (kb_db_exec(&db, &arena, &ensure_stmt, params, &r) == KB_OK) {
        printf("partitions: %s created (%s days back .. %s days ahead)\n", PQgetvalue(r, 0, 0),
               back, ahead);
        rc = KBCTL_OK;
    } else {
        fprintf(stderr, "kbctl partitions: failed\n");
    }
    kb_arena_release(&arena);
    kb_db_release(&db);
    return rc;
}
