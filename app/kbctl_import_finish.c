/* kbctl_import_finish.c - after the load: planner statistics and checkpoint rebuilds.
 *
 * The markets that got new rows (kb_touched, a temporary table of the
 * import's connection) are rebuilt one statement each
 * (kb_rebuild_checkpoints, its own transaction), on the import's connection
 * and on a second one at once: the rebuilds hold the import lock in shared
 * mode (0010), so they run side by side and still never interleave with an
 * import batch. The import's connection first refreshes the statistics of
 * the partitions loaded (kb_analyze_partitions). Widest spans go first, so
 * the two connections finish close together.
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbctl_import.h"
#include "kb_config.h"
#include "kb_time.h"
#include "kb_banned.h"

static const kb_stmt touched_stmt = {
    "imp_touched",
    "SELECT ticker, kb_us(from_ts), kb_us(to_ts) FROM kb_touched"
    " ORDER BY to_ts - from_ts DESC, ticker",
    0, false};

static const char analyze_sql[] =
    "SELECT kb_analyze_partitions(min(from_ts), max(to_ts)) FROM kb_touched"
    " HAVING count(*) > 0";

static const char rebuild_sql[] =
    "SELECT kb_rebuild_checkpoints($1, $2::timestamptz, $3::timestamptz, $4::int)";

typedef struct lane {
    PGconn *c;
    bool busy, counts; /* a statement is running; its result is a checkpoint count */
} lane;

/* Collect a finished statement's result; false if it failed. */
static bool
lane_collect(lane *l, long *made)
{
    PGresult *r;
    bool ok = true;
    while ((r = PQgetResult(l->c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_TUPLES_OK && l->counts && PQntuples(r) == 1)
            *made += strtol(PQgetvalue(r, 0, 0), NULL, 10);
        else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            fprintf(stderr, "kbctl import: %s", PQresultErrorMessage(r));
            ok = false;
        }
        PQclear(r);
    }
    l->busy = false;
    return ok;
}

/* Wait until one busy lane has its result; false on a connection failure. */
static bool
lane_wait(lane *lanes, int n)
{
    struct pollfd pf[2];
    int map[2], k = 0;
    for (int i = 0; i < n; i++) {
        if (lanes[i].busy && PQisBusy(lanes[i].c)) {
            pf[k] = (struct pollfd){.fd = PQsocket(lanes[i].c), .events = POLLIN};
            map[k++] = i;
        } else if (lanes[i].busy) {
            return true; /* already complete */
        }
    }
    if (k == 0)
        return true;
    if (poll(pf, (nfds_t)k, -1) < 0)
        return false;
    for (int j = 0; j < k; j++) {
        if ((pf[j].revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(lanes[map[j]].c)) {
            fprintf(stderr, "kbctl import: %s", PQerrorMessage(lanes[map[j]].c));
            return false;
        }
    }
    return true;
}

bool
kb_import_finish(kb_import *im, long every, long *checkpoints)
{
    PGresult *t;
    if (kb_db_exec(&im->db, &im->arena, &touched_stmt, NULL, &t) != KB_OK) {
        fprintf(stderr, "kbctl import: reading the markets to rebuild failed\n");
        return false;
    }
    int ntouched = PQntuples(t);
    if (ntouched == 0)
        return true;
    kb_db second;
    int nlanes = every > 0 && ntouched > 1 ? 2 : 1;
    if (nlanes == 2) {
        kb_db_init(&second, kb_cfg.database_url, "kbctl-import", kb_cfg.db_connect_timeout_s, 0);
        if (kb_db_connect(&second) != KB_OK ||
            kb_db_command(&second, "SET client_min_messages = warning; SET work_mem = '64MB'") !=
                KB_OK)
            nlanes = 1; /* one connection still does it all */
    }
    lane lanes[2] = {{im->db.conn, false, false}, {nlanes == 2 ? second.conn : NULL, false, false}};
    /* Statistics first on the import's connection: kb_touched lives there. */
    bool ok = PQsendQuery(lanes[0].c, analyze_sql) == 1;
    lanes[0].busy = ok;
    int next = 0;
    char ev[24];
    snprintf(ev, sizeof(ev), "%ld", every);
    while (ok && (lanes[0].busy || lanes[1].busy || (every > 0 && next < ntouched))) {
        for (int i = 0; ok && i < nlanes; i++) {
            lane *l = &lanes[i];
            if (l->busy && !PQisBusy(l->c))
                ok = lane_collect(l, checkpoints);
            if (ok && !l->busy && every > 0 && next < ntouched) {
                char lo[KB_TIME_FMT_MAX], hi[KB_TIME_FMT_MAX];
                kb_time_format(strtoll(PQgetvalue(t, next, 1), NULL, 10), lo, sizeof(lo));
                kb_time_format(strtoll(PQgetvalue(t, next, 2), NULL, 10), hi, sizeof(hi));
                const char *p[] = {PQgetvalue(t, next, 0), lo, hi, ev};
                next++;
                ok = PQsendQueryParams(l->c, rebuild_sql, 4, NULL, p, NULL, NULL, 0) == 1;
                l->busy = l->counts = ok;
                if (!ok)
                    fprintf(stderr, "kbctl import: %s", PQerrorMessage(l->c));
            }
        }
        if (ok && (lanes[0].busy || lanes[1].busy))
            ok = lane_wait(lanes, nlanes);
    }
    for (int i = 0; i < nlanes; i++) {
        if (lanes[i].busy)
            (void)lane_collect(&lanes[i], checkpoints);
    }
    if (ok && kb_db_command(&im->db, "TRUNCATE kb_touched") != KB_OK)
        ok = false;
    if (nlanes == 2)
        kb_db_release(&second);
    if (!ok)
        fprintf(stderr, "kbctl import: statistics or reconstruction checkpoints failed\n");
    return ok;
}
