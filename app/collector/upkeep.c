/* upkeep.c - reconstruction checkpoints of the markets the collector feeds.
 *
 * A live market's latest snapshot window may stay open for days; without checkpoints
 * every POST /orderbook would sum all its deltas since that snapshot. While this
 * instance leads, a thread of its own (its own connection: the writer never waits for
 * it) runs kb_extend_checkpoints (0019) every KB_COLLECTOR_CHECKPOINT_S for each market
 * that got data since the previous round: a checkpoint every
 * KB_COLLECTOR_CHECKPOINT_EVERY deltas after the window's last one. Rebuilds and
 * batches exclude each other through the import lock (shared here, exclusive there).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "collector.h"
#include "kb_db.h"
#include "kb_log.h"
#include "kb_banned.h"

static const kb_stmt recent = {
    "kc_recent", "SELECT ticker FROM market_stats WHERE last_data_at >= to_timestamp($1::bigint)",
    1, true};
static const kb_stmt extend = {"kc_extend", "SELECT kb_extend_checkpoints($1, $2::int)", 2, false};

static pthread_t th;
static bool started;

static void *
run(void *arg)
{
    (void)arg;
    kb_db db;
    kb_arena a;
    kb_db_init(&db, K.cfg->database_url, "kalshibook-collector-upkeep", K.cfg->db_connect_timeout_s,
               0);
    kb_arena_init(&a, 0);
    /* From a round before this process: a restart re-extends what it may have missed. */
    int64_t since_s = kc_now_ns() / 1000000000 - K.cfg->collector_checkpoint_s * 2;
    char every[24];
    snprintf(every, sizeof(every), "%ld", K.cfg->collector_checkpoint_every);
    while (!atomic_load(&K.stop)) {
        for (long i = 0; i < K.cfg->collector_checkpoint_s * 10 && !atomic_load(&K.stop); i++)
            usleep(100000);
        if (atomic_load(&K.stop) || kc_metric_get(KC_G_LEADER) != 1)
            continue;
        /* Rows reach the database a commit after they arrive: overlap the rounds. */
        int64_t round_s = kc_now_ns() / 1000000000;
        char s[24];
        snprintf(s, sizeof(s), "%" PRId64, since_s - 5);
        const char *p[] = {s};
        PGresult *r;
        kb_arena_reset(&a);
        if (kb_db_exec(&db, &a, &recent, p, &r) != KB_OK)
            continue;
        long made = 0;
        bool ok = true;
        for (int i = 0; ok && i < PQntuples(r) && !atomic_load(&K.stop); i++) {
            const char *q[] = {PQgetvalue(r, i, 0), every};
            PGresult *e;
            ok = kb_db_exec(&db, &a, &extend, q, &e) == KB_OK;
            if (ok)
                made += strtol(PQgetvalue(e, 0, 0), NULL, 10);
        }
        if (ok) {
            since_s = round_s;
            kc_metric_add(KC_M_CHECKPOINTS, (uint64_t)made);
        }
    }
    kb_arena_release(&a);
    kb_db_release(&db);
    return NULL;
}

int
kc_upkeep_start(void)
{
    if (K.cfg->collector_checkpoint_every == 0)
        return 0;
    if (pthread_create(&th, NULL, run, NULL) != 0)
        return -1;
    started = true;
    return 0;
}

void
kc_upkeep_stop(void)
{
    if (started)
        pthread_join(th, NULL);
    started = false;
}
