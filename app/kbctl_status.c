/* kbctl_status.c - `kbctl status`: the pool on this host (from /proc), the
 * database, the usage outbox, the last webhook and the collector, in one screen. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbctl.h"
#include "kb_config.h"
#include "kb_db.h"
#include "kb_banned.h"

static const kb_stmt status_stmt = {
    "kbctl_status",
    "SELECT (SELECT max(version) FROM schema_migrations),"
    " (SELECT count(*) FROM usage_outbox WHERE reported_at IS NULL),"
    " (SELECT coalesce(round(extract(epoch FROM now() - min(created_at))), 0) FROM usage_outbox"
    "   WHERE reported_at IS NULL),"
    " (SELECT count(*) FROM usage_outbox WHERE reported_at IS NULL AND flagged_at IS NOT NULL),"
    " (SELECT type || ' ' || outcome || ' at ' || received_at FROM stripe_events"
    "   ORDER BY received_at DESC LIMIT 1),"
    " (SELECT count(*) FROM users), (SELECT count(*) FROM api_keys WHERE revoked_at IS NULL)",
    0, true};

/* kalshibook-collector: the leader, every instance's last report, the gaps. */
static const kb_stmt collector_stmt = {
    "kbctl_status_collector",
    "SELECT l.instance, l.epoch, l.since, round(extract(epoch FROM now() - l.heartbeat_at)),"
    " s.stats->>'markets_open', s.stats->>'markets_wanted', s.stats->>'markets_live',"
    " s.stats->>'markets_gap', s.stats->>'connections_up', s.stats->>'writer_lag_bytes',"
    " s.stats->>'reconnects',"
    " (SELECT string_agg(format('%s %s (%s s ago)', instance, role,"
    "     round(extract(epoch FROM now() - heartbeat_at))), ', ' ORDER BY instance)"
    "    FROM collector_status),"
    " (SELECT count(*) FROM gaps WHERE end_at IS NULL),"
    " (SELECT count(*) FROM gaps WHERE start_at > now() - interval '24 hours')"
    " FROM (SELECT 1) one LEFT JOIN collector_leader l ON true"
    " LEFT JOIN collector_status s ON s.instance = l.instance",
    0, true};

/* Processes named comm (as /proc shows it, 15 bytes at most) on this host. */
static int
count_comm(const char *comm_want)
{
    int n = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(comm, sizeof(comm), f) != NULL) {
            comm[strcspn(comm, "\n")] = '\0';
            n += strcmp(comm, comm_want) == 0;
        }
        fclose(f);
    }
    closedir(d);
    return n;
}

static void
print_collector(kb_db *db, kb_arena *a)
{
    PGresult *r = NULL;
    int here = count_comm("kalshibook-coll");
    if (kb_db_exec(db, a, &collector_stmt, NULL, &r) != KB_OK) {
        printf("collector  unknown (schema before 0018?); %d on this host\n", here);
        return;
    }
    if (PQgetisnull(r, 0, 0)) {
        printf("collector  none has led yet; %d on this host\n", here);
        return;
    }
#define V(i) (PQgetisnull(r, 0, i) ? "?" : PQgetvalue(r, 0, i))
    printf("collector  leader %s (epoch %s) since %s, heartbeat %s s ago; %d on this host\n",
           V(0), V(1), V(2), V(3), here);
    printf("           markets: %s open on Kalshi, %s wanted, %s live, %s in a gap; "
           "%s connections, %s reconnects, writer %s bytes behind\n",
           V(4), V(5), V(6), V(7), V(8), V(10), V(9));
    printf("           instances: %s\n", V(11));
    printf("gaps       %s open, %s started in the last 24 h\n", V(12), V(13));
#undef V
}

/* kalshibook-fcgi processes on this host: masters (parent is not one) and workers. */
static void
count_pool(int *masters, int *workers)
{
    *masters = *workers = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        long ppid = 0;
        if (fscanf(f, "%*d (%63[^)]) %*c %ld", comm, &ppid) == 2 &&
            strcmp(comm, "kalshibook-fcgi") == 0) {
            char ppath[64], pcomm[64] = "";
            snprintf(ppath, sizeof(ppath), "/proc/%ld/stat", ppid);
            FILE *p = fopen(ppath, "r");
            if (p != NULL) {
                if (fscanf(p, "%*d (%63[^)])", pcomm) != 1)
                    pcomm[0] = '\0';
                fclose(p);
            }
            if (strcmp(pcomm, "kalshibook-fcgi") == 0)
                (*workers)++;
            else
                (*masters)++;
        }
        fclose(f);
    }
    closedir(d);
}

int
kbctl_status(int argc, char **argv)
{
    if (argc > 1) {
        bool help = strcmp(argv[1], "--help") == 0;
        fprintf(help ? stdout : stderr,
                "usage: kbctl status\n\n"
                "Prints the kalshibook-fcgi processes on this host (masters; workers and the\n"
                "reporter are counted as children), the database (reachable, schema version,\n"
                "users, live keys), the PAYG usage outbox (unreported rows, oldest age, rows\n"
                "flagged too old), the last Stripe webhook, and kalshibook-collector (the\n"
                "leader, its markets and connections, every instance, the gaps). Exit codes:\n"
                "0 ok, 1 database unreachable, 78 configuration.\n");
        return help ? KBCTL_OK : KBCTL_USAGE;
    }
    int masters, children;
    count_pool(&masters, &children);
    printf("pool       %d master%s, %d children (workers + reporter)\n", masters,
           masters == 1 ? "" : "s", children);

    kb_db db;
    kb_db_init(&db, kb_cfg.database_url, "kbctl-status", kb_cfg.db_connect_timeout_s, 0);
    kb_arena a;
    kb_arena_init(&a, 0);
    PGresult *r = NULL;
    int rc = KBCTL_OK;
    if (kb_db_exec(&db, &a, &status_stmt, NULL, &r) != KB_OK) {
        printf("database   UNREACHABLE or not migrated\n");
        rc = KBCTL_FAIL;
    } else {
        printf("database   ok, schema %s, %s users, %s live keys\n", PQgetvalue(r, 0, 0),
               PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 6));
        printf("outbox     %s unreported, oldest %s s, %s flagged too old\n",
               PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3));
        printf("webhook    %s\n", PQgetisnull(r, 0, 4) ? "none received" : PQgetvalue(r, 0, 4));
        print_collector(&db, &a);
    }
    kb_arena_release(&a);
    kb_db_release(&db);
    return rc;
}
