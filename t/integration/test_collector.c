/* test_collector.c - kalshibook-collector against the Kalshi stand-in (t/kalshi), with the
 * stack's Postgres: subscriptions, every network fault and the gap it must leave,
 * backoff, REST 429s, command errors, lifecycle churn, standby takeover, a Postgres
 * outage, every spool record stored once, the spool replayed by kbctl import,
 * configuration errors and a wrong key. Each test starts its own stand-in and
 * collector(s) (logs in KB_STACK_DIR, scanned for sanitizer reports) and stops them. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "kbt.h"
#include "kbt_collector.h"
#include "kb_spool.h"
#include "kb_banned.h"

/* ---- one fault, the gap it leaves ---------------------------------------------- */

typedef struct fault_case {
    const char *query;   /* /_control/fault?... */
    const char *reason;  /* gaps.reason it must leave */
    const char *channel; /* the channel that lost messages */
} fault_case;

static const fault_case faults[] = {
    {"kind=skip&n=2", "seq_jump", "orderbook"},
    {"kind=dup_run&n=3", "seq_duplicate", "orderbook"},
    {"kind=reorder", "seq_jump", "orderbook"},
    {"kind=badjson", "seq_jump", "orderbook"},
    {"kind=error25&n=4", "overflow", "orderbook"},
    {"kind=skip&n=1&ch=trade", "seq_jump", "trade"},
    {"kind=reset", "disconnect", "orderbook"},
    {"kind=halfopen", "heartbeat", "orderbook"},
    {"kind=close", "disconnect", "trade"},
};

typedef struct gap_wait {
    PGconn *db;
    const char *reason, *channel;
    long at; /* 0: any time; else the gaps must cover this instant (ms) */
    long want;
} gap_wait;

/* Closed gaps of the reason and channel (covering g->at): as many as the fault touched. */
static long
gaps_count(const gap_wait *g)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM gaps WHERE reason = '%s' AND channel = '%s'"
             " AND end_at IS NOT NULL AND (%ld = 0 OR"
             " %ld * interval '1 ms' + 'epoch'::timestamptz BETWEEN start_at AND end_at)",
             g->reason, g->channel, g->at, g->at);
    char *v = kbt_sql_value(g->db, sql);
    long n = v ? strtol(v, NULL, 10) : -1;
    free(v);
    return n;
}

static bool
gaps_closed(void *arg)
{
    gap_wait *g = arg;
    return gaps_count(g) == g->want;
}

START_TEST(collector_leaves_a_closed_gap_for_every_fault)
{
    const fault_case *f = &faults[_i];
    kbtc_standin_start(24, 600, "");
    kbtc_coll *c = kbtc_coll_start("fault", NULL, NULL);
    ck_assert_msg(kbtc_wait_live(c, 24, 30000), "not every market subscribed and live");
    kbtc_wait_flow(c, 200);
    PGconn *db = kbt_db();
    gap_wait g = {db, f->reason, f->channel, 0, 0};
    kbt_resp *r = kbtc_fault(f->query);
    ck_assert_msg(r->status == 200, "fault %s: %ld", f->query, r->status);
    g.want = (long)cJSON_GetObjectItem(r->json, "markets")->valuedouble;
    ck_assert_msg(g.want > 0, "fault %s touched no market", f->query);
    kbt_resp_free(r);
    bool ok = kbt_wait_until(gaps_closed, &g, 30000);
    char *n = kbt_sql_value(db, "SELECT count(*) || ' gaps: ' || coalesce(string_agg(reason || "
                                "' ' || channel || coalesce(' closed', ' open'), ', '), '') "
                                "FROM gaps");
    ck_assert_msg(ok, "fault %s: want %ld closed '%s' %s gaps; have %s", f->query, g.want,
                  f->reason, f->channel, n);
    free(n);
    /* Each covers the exchange time at which the fault took effect (a lost message's). */
    r = kbtc_control("GET", "/_control/state");
    g.at = (long)cJSON_GetObjectItem(r->json, "last_effect_ms")->valuedouble;
    kbt_resp_free(r);
    ck_assert_int_gt(g.at, 0);
    ck_assert_msg(gaps_count(&g) == g.want, "fault %s: %ld of %ld gaps cover its effect at %ld",
                  f->query, gaps_count(&g), g.want, g.at);
    /* Afterwards every market is live again and no gap is left open. */
    ck_assert(kbtc_wait_live(c, 24, 30000));
    ck_assert_int_eq(kbt_sql_long1(db,
                                   "SELECT count(*) FROM gaps WHERE end_at IS NULL AND "
                                   "market_ticker <> $1",
                                   "-"),
                     0);
    /* The detail names what the collector saw. */
    if (strcmp(f->reason, "seq_jump") == 0) {
        char *d = kbt_sql_value(db, "SELECT detail->>'detail' FROM gaps WHERE reason = 'seq_jump'"
                                    " LIMIT 1");
        ck_assert_msg(d != NULL && strstr(d, "expected seq") != NULL, "detail %s", d);
        free(d);
    }
    PQfinish(db);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

/* ---- what must not leave a gap --------------------------------------------------- */

START_TEST(collector_takes_benign_faults_without_a_gap)
{
    kbtc_standin_start(12, 400, "--big 1");
    kbtc_coll *c = kbtc_coll_start("benign", NULL, NULL);
    ck_assert(kbtc_wait_live(c, 12, 30000));
    kbt_resp_free(kbtc_fault("kind=dup&n=3"));
    kbt_resp_free(kbtc_fault("kind=fragment&n=20"));
    kbt_resp_free(kbtc_fault("kind=unknown&n=5"));
    kbtc_wait_flow(c, 400);
    ck_assert_msg(kbtc_metric(c, "kalshibook_collector_duplicates_total") >= 3,
                  "duplicates not dropped");
    ck_assert_msg(kbtc_metric(c, "kalshibook_collector_messages_total{type=\"unknown\"}") >= 5,
                  "unknown types not counted");
    ck_assert_int_eq(kbtc_metric(c, "kalshibook_collector_messages_total{type=\"bad\"}"), 0);
    /* The big market's snapshot (several MB) came whole: every market live, one snapshot each. */
    ck_assert_int_eq(
        kbtc_metric(c, "kalshibook_collector_messages_total{type=\"orderbook_snapshot\"}"), 12);
    PGconn *db = kbt_db();
    ck_assert_int_eq(kbt_sql_long1(db, "SELECT count(*) FROM gaps WHERE reason <> $1", "-"), 0);
    PQfinish(db);
    /* The spool holds each fragmented message as one record. */
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
    long frames = kbtc_spool_count(c, 'F', "\"type\":\"orderbook_snapshot\"");
    ck_assert_int_eq(frames, 12);
    ck_assert_int_gt(kbtc_spool_largest(c), 3 << 20);
}
END_TEST

/* ---- network and REST refusals ---------------------------------------------------- */

START_TEST(collector_backs_off_refused_handshakes_then_resets)
{
    kbtc_standin_start(8, 200, "");
    const char *env[] = {"KB_COLLECTOR_BACKOFF_MIN_MS=300", NULL};
    kbtc_coll *c = kbtc_coll_start("backoff", NULL, env);
    ck_assert(kbtc_wait_live(c, 8, 30000));
    /* 401, 429, 503 in a row after a reset: three refusals, delays 300, 600, 1200 ms
     * (each jittered down to half), then a connection. */
    kbt_resp_free(kbtc_fault("kind=handshake&status=401&n=1"));
    kbt_resp_free(kbtc_fault("kind=handshake&status=429&n=1"));
    kbt_resp_free(kbtc_fault("kind=handshake&status=503&n=1"));
    long t0 = kbt_now_ms();
    kbt_resp_free(kbtc_fault("kind=reset"));
    ck_assert(kbtc_wait_live(c, 8, 30000));
    long took = kbt_now_ms() - t0;
    ck_assert_int_eq(kbtc_metric(c, "kalshibook_collector_connect_failures_total"), 3);
    ck_assert_msg(took >= (300 + 600 + 1200) / 2, "reconnected after %ld ms: no backoff", took);
    /* Healthy for 3 heartbeats (1 s each): the next loss starts at the first delay again. */
    ck_assert(kbtc_wait_metric(c, "kalshibook_collector_connections_healthy", 1, 10000));
    t0 = kbt_now_ms();
    kbt_resp_free(kbtc_fault("kind=reset"));
    ck_assert(kbtc_wait_live(c, 8, 30000));
    took = kbt_now_ms() - t0;
    ck_assert_msg(took < 2000, "backoff did not start over: %ld ms", took);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

START_TEST(collector_retries_rest_429_and_command_errors)
{
    kbtc_standin_start(6, 200, "");
    kbt_resp_free(kbtc_fault("kind=rest&status=429&n=3"));
    kbtc_coll *c = kbtc_coll_start("retry", NULL, NULL);
    ck_assert(kbtc_wait_live(c, 6, 30000));
    ck_assert_int_eq(kbtc_metric(c, "kalshibook_collector_rest_requests_total{result=\"429\"}"), 3);
    /* New markets are added with update_subscription; the first two tries fail (17, 18). */
    kbt_resp_free(kbtc_fault("kind=cmd_error&code=17&n=1"));
    kbt_resp_free(kbtc_fault("kind=cmd_error&code=18&n=1"));
    kbt_resp_free(kbtc_control("POST", "/_control/churn?create=3"));
    ck_assert_msg(kbtc_wait_live(c, 9, 30000), "created markets not subscribed");
    ck_assert_int_ge(kbtc_metric(c, "kalshibook_collector_messages_total{type=\"error\"}"), 2);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

/* Every other command error KALSHI.md lists, on the update_subscription that adds new
 * markets: 6 (already subscribed: the connection starts over), 7 (unknown sid: the shard
 * resubscribes), 16 (market not found: REST asked, then retried), 4, 12, 14 (malformed:
 * the shard resubscribes). Each time the new markets end up subscribed, the stand-in's
 * subscriptions equal its open markets, and every gap the recovery opened is closed. */
static const int command_errors[] = {6, 7, 16, 4, 12, 14};

START_TEST(collector_recovers_from_every_command_error)
{
    int code = command_errors[_i];
    kbtc_standin_start(6, 200, "");
    kbtc_coll *c = kbtc_coll_start("cmderr", NULL, NULL);
    ck_assert(kbtc_wait_live(c, 6, 30000));
    double errors = kbtc_metric(c, "kalshibook_collector_messages_total{type=\"error\"}");
    char q[64];
    snprintf(q, sizeof(q), "kind=cmd_error&code=%d&n=1", code);
    kbt_resp_free(kbtc_fault(q));
    kbt_resp_free(kbtc_control("POST", "/_control/churn?create=2"));
    ck_assert_msg(kbtc_wait_live(c, 8, 30000), "error %d: created markets not subscribed", code);
    ck_assert_msg(kbtc_wait_subscribed_equals_wanted(30000), "error %d", code);
    ck_assert_int_eq(kbtc_metric(c, "kalshibook_collector_messages_total{type=\"error\"}"),
                     errors + 1);
    PGconn *db = kbt_db();
    ck_assert_msg(kbtc_wait_sql(db, "SELECT count(*) FROM gaps WHERE end_at IS NULL", 0, 30000),
                  "error %d: a gap stays open", code);
    PQfinish(db);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

/* ---- lifecycle ------------------------------------------------------------------------ */

/* Discovery over REST: the stand-in answers at most 3 markets a page, so the 10 open ones
 * take 4 pages followed by cursor; 2 markets created later without any lifecycle message
 * are found by the reconcile (every 5 s here) and subscribed. */
START_TEST(collector_pages_rest_discovery_and_reconciles)
{
    kbtc_standin_start(10, 100, "--rest-page 3");
    static const char *const env[] = {"KB_COLLECTOR_RECONCILE_S=5", NULL};
    kbtc_coll *c = kbtc_coll_start("pages", NULL, env);
    ck_assert_msg(kbtc_wait_live(c, 10, 30000), "not every market of 4 pages subscribed");
    ck_assert_int_ge(kbtc_metric(c, "kalshibook_collector_rest_requests_total{result=\"ok\"}"), 4);
    kbt_resp_free(kbtc_control("POST", "/_control/churn?quiet=2"));
    ck_assert_msg(kbtc_wait_live(c, 12, 30000), "markets without lifecycle messages not found");
    ck_assert(kbtc_wait_subscribed_equals_wanted(10000));
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

START_TEST(collector_follows_lifecycle_churn)
{
    kbtc_standin_start(10, 300, "");
    kbtc_coll *c = kbtc_coll_start("churn", NULL, NULL);
    ck_assert(kbtc_wait_live(c, 10, 30000));
    /* 4 created, 2 paused (stay subscribed), 3 closed (unsubscribed): 11 subscribed. */
    kbt_resp_free(kbtc_control("POST", "/_control/churn?create=4&pause=2&close=3"));
    ck_assert_msg(kbtc_wait_live(c, 11, 30000), "subscriptions do not follow the churn");
    ck_assert(kbtc_wait_subscribed_equals_wanted(30000));
    PGconn *db = kbt_db();
    /* The closed markets left collector_markets' collecting set. */
    ck_assert(
        kbtc_wait_sql(db, "SELECT count(*) FROM collector_markets WHERE NOT collecting", 3, 10000));
    PQfinish(db);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

/* ---- high availability -------------------------------------------------------------- */

START_TEST(collector_standby_takes_over_within_5s)
{
    kbtc_standin_start(10, 300, "");
    kbtc_coll *a = kbtc_coll_start("leader", NULL, NULL);
    ck_assert(kbtc_wait_live(a, 10, 30000));
    kbtc_coll *b = kbtc_coll_start("standby", NULL, NULL);
    PGconn *db = kbt_db();
    ck_assert(kbtc_wait_sql(db, "SELECT count(*) FROM collector_status WHERE role = 'standby'", 1,
                            10000));
    ck_assert_int_eq(kbtc_metric(b, "kalshibook_collector_leader"), 0);
    kbtc_wait_flow(a, 300);
    long t0 = kbt_now_ms();
    kbtc_coll_stop(a, SIGKILL);
    ck_assert_msg(kbtc_wait_metric(b, "kalshibook_collector_leader", 1, 5000),
                  "the standby did not take the lock within 5 s");
    long took = kbt_now_ms() - t0;
    ck_assert(kbtc_wait_live(b, 10, 30000));
    /* The handover is a recorded gap for every collected market, closed by b's snapshots. */
    ck_assert(kbtc_wait_sql(db,
                            "SELECT count(*) FROM gaps WHERE reason = 'handover' AND end_at "
                            "IS NOT NULL AND channel = 'orderbook'",
                            10, 20000));
    char *who = kbt_sql_value(db, "SELECT instance FROM collector_leader");
    ck_assert_str_eq(who, "kbtc-standby");
    free(who);
    PQfinish(db);
    fprintf(stderr, "collector takeover: lock taken %ld ms after the leader's SIGKILL\n", took);
    ck_assert_int_eq(kbtc_coll_stop(b, SIGTERM), 0);
}
END_TEST

/* ---- Postgres down: the spool carries it -------------------------------------------- */

/* Postgres back, and every worker of the shared stack reconnected (30 /health answers
 * of 200 in a row, as test_db waits): an idle worker finds its dead session only at
 * its next request, so the suites after this one would meet a 503. */
static bool
stack_healthy(void *arg)
{
    (void)arg;
    for (int i = 0; i < 30; i++) {
        kbt_resp *r = kbt_get("/health");
        bool ok = r->status == 200;
        kbt_resp_free(r);
        if (!ok)
            return false;
    }
    return true;
}

static void
pg_start_and_stack_recovers(void)
{
    ck_assert_int_eq(kbt_stack("pg-start", NULL), 0);
    ck_assert_msg(kbt_wait_until(stack_healthy, NULL, 30000),
                  "the stack's workers did not reconnect after the Postgres restart");
}

START_TEST(collector_spools_through_a_postgres_outage)
{
    kbtc_standin_start(8, 300, "");
    kbtc_coll *c = kbtc_coll_start("pgdown", NULL, NULL);
    ck_assert(kbtc_wait_live(c, 8, 30000));
    ck_assert_int_eq(kbt_stack("pg-stop", "fast"), 0);
    ck_assert(kbtc_wait_metric(c, "kalshibook_collector_db_up", 0, 10000));
    /* A fault while Postgres is down: its gap reaches the database afterwards. */
    kbt_resp_free(kbtc_fault("kind=skip&n=1"));
    ck_assert(
        kbtc_wait_metric(c, "kalshibook_collector_gaps_total{reason=\"seq_jump\"}", 4, 10000));
    double spooled = kbtc_metric(c, "kalshibook_collector_spool_bytes_total");
    pg_start_and_stack_recovers();
    ck_assert(kbtc_wait_metric(c, "kalshibook_collector_db_up", 1, 20000));
    PGconn *db = kbt_db();
    ck_assert(kbtc_wait_sql(db,
                            "SELECT count(*) FROM gaps WHERE reason = 'seq_jump' AND channel "
                            "= 'orderbook'",
                            4, 20000));
    /* The writer is past everything spooled during the outage. */
    ck_assert(kbtc_wait_progress(db, c, (long)spooled, 20000));
    PQfinish(db);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

/*
 * A market the old leader began collecting while Postgres was down (its first snapshot
 * and the event that marks it collected only in the leftover, whose events are never
 * stored) is not among the markets the new leader's handover gap covers. The old leader,
 * back as the standby, stores its leftover: from that market's last data there to the new
 * leader's first snapshot of it, a gap must cover the book it did not see (before the fix
 * none did: the API served the old leader's last book there as the truth).
 */
START_TEST(collector_handover_gap_covers_a_market_begun_in_the_leftover)
{
    long t0 = kbtc_wall_ms();
    kbtc_standin_start(8, 300, "");
    kbtc_coll *a = kbtc_coll_start("oldlead", NULL, NULL);
    ck_assert(kbtc_wait_live(a, 8, 30000));
    kbtc_coll *b = kbtc_coll_start("newlead", NULL, NULL);
    PGconn *db = kbt_db();
    ck_assert(kbtc_wait_sql(db, "SELECT count(*) FROM collector_status WHERE role = 'standby'", 1,
                            10000));
    PQfinish(db);
    ck_assert_int_eq(kbt_stack("pg-stop", "fast"), 0);
    ck_assert(kbtc_wait_metric(a, "kalshibook_collector_db_up", 0, 10000));
    kbt_resp_free(kbtc_control("POST", "/_control/churn?create=1"));
    ck_assert(kbtc_wait_metric(a, "kalshibook_collector_markets{state=\"live\"}", 9, 20000));
    kbtc_wait_flow(a, 100);
    kbtc_coll_stop(a, SIGKILL);
    pg_start_and_stack_recovers();
    ck_assert(kbtc_wait_metric(b, "kalshibook_collector_leader", 1, 20000));
    ck_assert(kbtc_wait_live(b, 9, 30000));
    /* The old leader again, on its own spool: as the standby it stores the leftover. */
    static char spool[400];
    snprintf(spool, sizeof(spool), "KB_COLLECTOR_SPOOL_DIR=%s", a->spool);
    const char *const env[] = {spool, NULL};
    kbtc_coll_start("oldlead", NULL, env);
    db = kbt_db();
    /* The markets this test's old leader had data of (the stand-in's tickers recur from
     * test to test, and market data is not emptied between them). */
    char m[300], q[1600];
    snprintf(m, sizeof(m),
             "WITH l AS (SELECT since FROM collector_leader), m AS (SELECT market_ticker AS t"
             " FROM snapshots, l WHERE captured_at >= to_timestamp(%ld / 1000.0)"
             " AND captured_at < l.since GROUP BY 1) ",
             t0);
    snprintf(q, sizeof(q), "%sSELECT count(*) FROM m", m);
    ck_assert(kbtc_wait_sql(db, q, 9, 30000));
    /* Each: a gap from its last data before the takeover to the leader's first snapshot
     * after it. */
    snprintf(q, sizeof(q),
             "%sSELECT count(*) FROM m, l WHERE NOT EXISTS (SELECT 1 FROM gaps g"
             " WHERE g.market_ticker = m.t AND g.channel = 'orderbook'"
             " AND g.start_at <= greatest("
             "     (SELECT max(captured_at) FROM snapshots WHERE market_ticker = m.t"
             "       AND captured_at < l.since),"
             "     (SELECT max(ts) FROM deltas WHERE market_ticker = m.t AND ts < l.since))"
             " AND (g.end_at IS NULL OR g.end_at >= (SELECT min(captured_at) FROM snapshots"
             "      WHERE market_ticker = m.t AND captured_at >= l.since)))",
             m);
    ck_assert(kbtc_wait_sql(db, q, 0, 10000));
    PQfinish(db);
    ck_assert_int_eq(kbtc_coll_stop(b, SIGTERM), 0);
}
END_TEST

/* ---- the writer: every record once, from the queue or the file ----------------------- */

/*
 * A queue of 1 MB filled while Postgres is stopped: the writer then takes records from
 * the spool file (the dropped batches) and from the queue by turns. However it goes,
 * every spool record is stored exactly once: the number it reports equals the records
 * in the spool (before the fix it read the file on from where its reader had stopped,
 * records the queue had given it since).
 */
START_TEST(collector_writer_stores_every_record_once)
{
    kbtc_standin_start(16, 3000, "--big 1");
    static const char *const env[] = {"KB_COLLECTOR_QUEUE_MB=1", "KB_COLLECTOR_COMMIT_MS=20", NULL};
    kbtc_coll *c = kbtc_coll_start("once", NULL, env);
    ck_assert(kbtc_wait_live(c, 16, 30000));
    kbtc_wait_flow(c, 3000);
    ck_assert_int_eq(kbt_stack("pg-stop", "fast"), 0);
    ck_assert(kbtc_wait_metric(c, "kalshibook_collector_db_up", 0, 10000));
    /* 3,000 messages/s fill 1 MB in well under a second: batches are dropped. */
    kbtc_wait_flow(c, 6000);
    ck_assert_int_gt(kbtc_metric(c, "kalshibook_collector_queue_dropped_total"), 0);
    pg_start_and_stack_recovers();
    ck_assert(kbtc_wait_metric(c, "kalshibook_collector_db_up", 1, 20000));
    kbtc_wait_flow(c, 6000);
    kbt_resp_free(kbtc_control("POST", "/_control/feed?run=0"));
    PGconn *db = kbt_db();
    double spooled = kbtc_metric(c, "kalshibook_collector_spool_bytes_total");
    ck_assert(kbtc_wait_progress(db, c, (long)spooled, 20000));
    PQfinish(db);
    long records = kbtc_spool_count(c, 'E', NULL) + kbtc_spool_count(c, 'F', NULL) +
                   kbtc_spool_count(c, 'R', NULL);
    double stored = kbtc_metric(c, "kalshibook_collector_writer_records_total");
    double from_file = kbtc_metric(c, "kalshibook_collector_writer_spool_records_total");
    fprintf(stderr,
            "collector writer: %ld spool records, %.0f stored, %.0f of them read back "
            "from the file\n",
            records, stored, from_file);
    ck_assert_int_gt((long)from_file, 0);
    ck_assert_int_eq((long)stored, records);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

/* Spool files rotate on the wall clock (a file a second here, an hour by default): the
 * writer follows the records from file to file, stores each once, and a clean stop
 * leaves its progress at the end of the last file. */
START_TEST(collector_spool_rotates_and_the_writer_follows)
{
    kbtc_standin_start(6, 500, "");
    static const char *const env[] = {"KB_COLLECTOR_SPOOL_FILE_S=1", NULL};
    long t0 = kbtc_wall_ms();
    kbtc_coll *c = kbtc_coll_start("rotate", NULL, env);
    ck_assert(kbtc_wait_live(c, 6, 30000));
    kbtc_wait_flow(c, 2000);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
    long last = kb_spool_max_no(c->spool);
    ck_assert_int_ge(last, 3);
    long records = kbtc_spool_count(c, 'E', NULL) + kbtc_spool_count(c, 'F', NULL) +
                   kbtc_spool_count(c, 'R', NULL);
    ck_assert(kbtc_log_has(c, "stopped"));
    char *path = kb_spool_find(c->spool, last);
    ck_assert_ptr_nonnull(path);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    free(path);
    PGconn *db = kbt_db();
    char *progress = kbt_sql_value(db, "SELECT file_no || ' ' || file_offset FROM "
                                       "collector_progress WHERE instance = 'kbtc-rotate'");
    char want[64];
    snprintf(want, sizeof(want), "%ld %lld", last, (long long)st.st_size);
    ck_assert_ptr_nonnull(progress);
    ck_assert_str_eq(progress, want);
    free(progress);
    /* Every delta of every file stored once: the rows equal the spooled delta messages. */
    long spooled = kbtc_spool_count(c, 'F', "{\"type\":\"orderbook_delta\"");
    ck_assert_int_gt(spooled, 1500);
    char since[32];
    snprintf(since, sizeof(since), "%ld", t0);
    ck_assert_int_eq(kbt_sql_long1(db,
                                   "SELECT count(*) FROM deltas WHERE received_at >="
                                   " 'epoch'::timestamptz + $1::bigint * interval '1 ms'",
                                   since),
                     spooled);
    fprintf(stderr, "collector spool rotation: %ld files, %ld records, %ld deltas\n", last, records,
            spooled);
    PQfinish(db);
}
END_TEST

/* ---- the repair path: kbctl import replays the spool ---------------------------------- */

#define KXSI "market_ticker LIKE 'KXSI%'"

/* Everything the collector stored for the stand-in's markets, as one text. */
static char *
stored_digest(PGconn *db)
{
    return kbt_sql_value(
        db, "SELECT concat_ws(' | ',"
            " (SELECT concat_ws(',', count(*), sum(delta_e2), sum(price_e4::bigint * delta_e2),"
            "                  count(received_at), max(ts), sum(seq)) FROM deltas WHERE " KXSI "),"
            " (SELECT concat_ws(',', count(*), sum(count_e2), count(received_at))"
            "    FROM trades WHERE " KXSI "),"
            " (SELECT concat_ws(',', count(*), max(captured_at)) FROM snapshots WHERE " KXSI "),"
            " (SELECT string_agg(concat_ws(',', market_ticker, channel, start_at, end_at, reason,"
            "                              source), ';' ORDER BY market_ticker, channel, start_at,"
            "                              source) FROM gaps WHERE " KXSI "),"
            " (SELECT string_agg(concat_ws(',', ticker, first_data_at, last_data_at,"
            "                              snapshot_count, delta_count, trade_count), ';'"
            "                    ORDER BY ticker) FROM market_stats WHERE ticker LIKE 'KXSI%'))");
}

/* The digests are longer than check's message buffer: both go to stderr on a mismatch. */
static void
digest_same(const char *what, const char *got, const char *want)
{
    ck_assert_ptr_nonnull(got);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "collector spool replay: stored by the collector:\n%s\nafter %s:\n%s\n",
                want, what, got);
    ck_assert_msg(strcmp(got, want) == 0, "%s did not store what the collector had (stderr)", what);
}

static void
forget_markets(PGconn *db)
{
    kbt_sql_ok(db, "DELETE FROM deltas WHERE " KXSI);
    kbt_sql_ok(db, "DELETE FROM trades WHERE " KXSI);
    kbt_sql_ok(db, "DELETE FROM snapshots WHERE " KXSI);
    kbt_sql_ok(db, "DELETE FROM book_checkpoints WHERE " KXSI);
    kbt_sql_ok(db, "DELETE FROM gaps WHERE " KXSI);
    kbt_sql_ok(db, "DELETE FROM market_stats WHERE ticker LIKE 'KXSI%'");
    kbt_sql_ok(db, "DELETE FROM collector_markets WHERE ticker LIKE 'KXSI%'");
}

/*
 * A collector run with a gap, stopped; the database then loses those markets. `kbctl
 * import` of the spool files brings back exactly what the writer had stored (rows,
 * receive times, counts, gaps with their sources), and a second import adds nothing.
 */
START_TEST(collector_spool_replays_through_kbctl_import)
{
    PGconn *db = kbt_db();
    forget_markets(db);
    kbtc_standin_start(6, 400, "--trade-permille 100");
    kbtc_coll *c = kbtc_coll_start("replay", NULL, NULL);
    ck_assert(kbtc_wait_live(c, 6, 30000));
    kbtc_wait_flow(c, 1500);
    kbt_resp_free(kbtc_fault("kind=skip&n=2"));
    ck_assert(kbtc_wait_sql(db,
                            "SELECT (count(*) >= 2)::int FROM gaps WHERE reason = 'seq_jump'"
                            " AND end_at IS NOT NULL",
                            1, 20000));
    kbtc_wait_flow(c, 500);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
    /* A clean stop stores the whole spool, down to the shutdown gaps the reader writes
     * last: the progress is the end of the last file. */
    long last = kb_spool_max_no(c->spool);
    char *path = kb_spool_find(c->spool, last);
    ck_assert_ptr_nonnull(path);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    free(path);
    char *progress = kbt_sql_value(db, "SELECT file_no || ' ' || file_offset FROM "
                                       "collector_progress WHERE instance = 'kbtc-replay'");
    char want[64];
    snprintf(want, sizeof(want), "%ld %lld", last, (long long)st.st_size);
    ck_assert_ptr_nonnull(progress);
    ck_assert_str_eq(progress, want);
    free(progress);
    /* The collector's writes keep market_stats exact, as kbctl import's do (GET /markets'
     * updated_since and the catalogue read it): one row per market, counts and first/last
     * data equal to the rows stored. */
    ck_assert_int_eq(
        kbt_sql_long1(db, "SELECT count(*) FROM market_stats WHERE ticker LIKE $1", "KXSI%"), 6);
    ck_assert_int_eq(
        kbt_sql_long1(db,
                      "SELECT count(*) FROM market_stats s WHERE s.ticker LIKE $1 AND"
                      " (s.snapshot_count, s.delta_count, s.trade_count, s.first_data_at,"
                      "  s.last_data_at) IS DISTINCT FROM"
                      " ((SELECT count(*) FROM snapshots WHERE market_ticker = s.ticker),"
                      "  (SELECT count(*) FROM deltas WHERE market_ticker = s.ticker),"
                      "  (SELECT count(*) FROM trades WHERE market_ticker = s.ticker),"
                      "  (SELECT min(captured_at) FROM snapshots WHERE market_ticker = s.ticker),"
                      "  (SELECT max(ts) FROM deltas WHERE market_ticker = s.ticker))",
                      "KXSI%"),
        0);
    ck_assert_int_gt(
        kbt_sql_long1(db, "SELECT count(*) FROM trades WHERE market_ticker LIKE $1", "KXSI%"), 0);
    char *before = stored_digest(db);
    ck_assert_ptr_nonnull(before);
    forget_markets(db);
    char args[600];
    snprintf(args, sizeof(args), "import --quiet %s/*.spool", c->spool);
    kb_buf out = KB_BUF_INIT;
    ck_assert_msg(kbt_data_kbctl(args, &out) == 0, "%s", kb_buf_cstr(&out));
    char *after = stored_digest(db);
    digest_same("the first import", after, before);
    kb_buf_reset(&out);
    ck_assert_msg(kbt_data_kbctl(args, &out) == 0, "%s", kb_buf_cstr(&out));
    char *again = stored_digest(db);
    digest_same("the second import", again, before);
    fprintf(stderr, "collector spool replay: %s\n", before);
    kb_buf_release(&out);
    free(before);
    free(after);
    free(again);
    PQfinish(db);
}
END_TEST

/* ---- configuration and credentials --------------------------------------------------- */

START_TEST(collector_refuses_bad_configuration)
{
    kbtc_standin_start(2, 10, "");
    struct {
        const char *env;
        const char *says;
    } bad[] = {
        {"KALSHI_API_KEY_ID=", "KALSHI_API_KEY_ID"},
        {"KALSHI_PRIVATE_KEY_FILE=/nonexistent.pem", "cannot read '/nonexistent.pem'"},
        {"KALSHI_WS_URL=ftp://example.com/x", "KALSHI_WS_URL"},
        {"KB_COLLECTOR_MARKETS_PER_SUB=0", "KB_COLLECTOR_MARKETS_PER_SUB"},
        {"KB_COLLECTOR_BACKOFF_MIN_MS=5000", "must not exceed KB_COLLECTOR_BACKOFF_MAX_MS"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *env[] = {bad[i].env, "KB_COLLECTOR_BACKOFF_MAX_MS=1000", NULL};
        if (strncmp(bad[i].env, "KB_COLLECTOR_BACKOFF_MIN", 24) != 0)
            env[1] = NULL;
        kbtc_coll *c = kbtc_coll_start("badcfg", NULL, env);
        int st = kbtc_coll_wait_exit(c, 10000);
        ck_assert_msg(st == 78, "%s: exit %d, not 78", bad[i].env, st);
        ck_assert_msg(kbtc_log_has(c, bad[i].says), "%s: the error does not say '%s'", bad[i].env,
                      bad[i].says);
    }
}
END_TEST

/* The metrics issue 18 asks for, in Prometheus' text format: each family with its # TYPE,
 * messages by type, the message age histogram (cumulative buckets ending in +Inf equal to
 * its count), queue depth, spool bytes, gaps by reason, subscribed vs open markets,
 * reconnects; values that follow the feed and a fault. */
START_TEST(collector_metrics_in_prometheus_format)
{
    kbtc_standin_start(6, 300, "");
    kbtc_coll *c = kbtc_coll_start("metrics", NULL, NULL);
    ck_assert(kbtc_wait_live(c, 6, 30000));
    kbtc_wait_flow(c, 600);
    kbt_resp_free(kbtc_fault("kind=reset"));
    ck_assert(kbtc_wait_metric(c, "kalshibook_collector_reconnects_total", 1, 10000));
    ck_assert(kbtc_wait_live(c, 6, 30000));
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", c->metrics_port);
    kbt_resp *r = kbt_request_url("GET", url, NULL, NULL, 0);
    ck_assert_int_eq(r->status, 200);
    const char *m = kb_buf_cstr(&r->body);
    static const char *const types[] = {
        "# TYPE kalshibook_collector_messages_total counter",
        "# TYPE kalshibook_collector_message_age_seconds histogram",
        "# TYPE kalshibook_collector_queue_bytes gauge",
        "# TYPE kalshibook_collector_spool_bytes_total counter",
        "# TYPE kalshibook_collector_gaps_total counter",
        "# TYPE kalshibook_collector_markets gauge",
        "# TYPE kalshibook_collector_reconnects_total counter",
        "# TYPE kalshibook_collector_writer_lag_bytes gauge",
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        ck_assert_msg(strstr(m, types[i]) != NULL, "no '%s' in\n%s", types[i], m);
    const char *d = "kalshibook_collector_messages_total{type=\"orderbook_delta\"}";
    const char *sn = "kalshibook_collector_messages_total{type=\"orderbook_snapshot\"}";
    ck_assert_int_ge(kbt_metrics_sample(m, d), 600);
    ck_assert_int_ge(kbt_metrics_sample(m, sn), 12); /* before and after the reset */
    ck_assert_int_gt(kbt_metrics_sample(m, "kalshibook_collector_spool_bytes_total"), 0);
    ck_assert_int_ge(kbt_metrics_sample(m, "kalshibook_collector_queue_bytes"), 0);
    ck_assert_int_ge(
        kbt_metrics_sample(m, "kalshibook_collector_gaps_total{reason=\"disconnect\"}"), 6);
    ck_assert_int_eq(kbt_metrics_sample(m, "kalshibook_collector_markets{state=\"open\"}"), 6);
    ck_assert_int_eq(kbt_metrics_sample(m, "kalshibook_collector_markets{state=\"live\"}"), 6);
    /* The histogram: cumulative, its +Inf bucket is its count, which counts the deltas. */
    double prev = 0, inf = -1;
    int buckets = 0;
    for (const char *p = m;
         (p = strstr(p, "kalshibook_collector_message_age_seconds_bucket{le=\"")); p++) {
        const char *v = strchr(p, ' ');
        ck_assert_ptr_nonnull(v);
        double x = strtod(v + 1, NULL);
        ck_assert_msg(x >= prev, "bucket %d below the one before", buckets);
        prev = x;
        buckets++;
        if (strncmp(p + strlen("kalshibook_collector_message_age_seconds_bucket{le=\""), "+Inf",
                    4) == 0)
            inf = x;
    }
    ck_assert_int_ge(buckets, 5);
    ck_assert_msg(inf > 0, "no +Inf bucket");
    double count = kbt_metrics_sample(m, "kalshibook_collector_message_age_seconds_count");
    /* Read a moment apart while messages flow: equal but for those in between. */
    ck_assert_msg(count - inf < 1000 && inf - count < 1000, "+Inf %.0f, count %.0f", inf, count);
    ck_assert_int_ge(count, 600);
    ck_assert_int_ge(kbt_metrics_sample(m, "kalshibook_collector_message_age_seconds_sum"), 0);
    kbt_resp_free(r);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

/* kbctl check-config judges the collector's settings when KALSHI_API_KEY_ID is set (exit 78
 * naming the variable, 0 when they are good); kbctl status shows the leading collector,
 * its markets and every instance. */
typedef struct status_wait {
    kb_buf out;
    const char *want[3];
} status_wait;

static bool
status_says(void *arg)
{
    status_wait *w = arg;
    kb_buf_reset(&w->out);
    if (kbt_data_kbctl("status", &w->out) != 0)
        return false;
    for (int i = 0; i < 3; i++) {
        if (strstr(kb_buf_cstr(&w->out), w->want[i]) == NULL)
            return false;
    }
    return true;
}

START_TEST(collector_settings_in_check_config_and_kbctl_status)
{
    kbtc_standin_start(5, 50, "");
    setenv("KALSHI_API_KEY_ID", "kbtc-key", 1);
    setenv("KALSHI_PRIVATE_KEY_FILE", kbtc_key_file(), 1);
    setenv("KALSHI_REST_URL", kbtc_rest_url(), 1);
    setenv("KALSHI_WS_URL", "ftp://example.com/x", 1);
    kb_buf out = KB_BUF_INIT;
    ck_assert_int_eq(kbt_data_kbctl("check-config", &out), 78);
    ck_assert_msg(strstr(kb_buf_cstr(&out), "KALSHI_WS_URL") != NULL, "%s", kb_buf_cstr(&out));
    setenv("KALSHI_WS_URL", kbtc_ws_url(), 1);
    setenv("KALSHI_PRIVATE_KEY_FILE", "/nonexistent.pem", 1);
    kb_buf_reset(&out);
    ck_assert_int_eq(kbt_data_kbctl("check-config", &out), 78);
    ck_assert_msg(strstr(kb_buf_cstr(&out), "/nonexistent.pem") != NULL, "%s", kb_buf_cstr(&out));
    setenv("KALSHI_PRIVATE_KEY_FILE", kbtc_key_file(), 1);
    kb_buf_reset(&out);
    ck_assert_msg(kbt_data_kbctl("check-config", &out) == 0, "%s", kb_buf_cstr(&out));
    kb_buf_release(&out);

    kbtc_coll *c = kbtc_coll_start("status", NULL, NULL);
    ck_assert(kbtc_wait_live(c, 5, 30000));
    status_wait w = {KB_BUF_INIT,
                     {"collector  leader kbtc-status", "5 live, 0 in a gap",
                      "instances: kbtc-status leader"}};
    ck_assert_msg(kbt_wait_until(status_says, &w, 15000), "kbctl status: %s", kb_buf_cstr(&w.out));
    kb_buf_release(&w.out);
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

START_TEST(collector_with_a_wrong_key_is_refused)
{
    kbtc_standin_start(4, 50, "");
    kbtc_coll *c = kbtc_coll_start("wrongkey", kbtc_other_key(), NULL);
    ck_assert(kbtc_wait_metric(c, "kalshibook_collector_connect_failures_total", 2, 15000));
    ck_assert_int_eq(kbtc_metric(c, "kalshibook_collector_connections_up"), 0);
    kbt_resp *r = kbtc_control("GET", "/_control/state");
    ck_assert_int_ge((long)cJSON_GetObjectItem(r->json, "refused")->valuedouble, 2);
    kbt_resp_free(r);
    ck_assert(kbtc_log_has(c, "HTTP 401"));
    ck_assert_int_eq(kbtc_coll_stop(c, SIGTERM), 0);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("collector");
    TCase *tc = tcase_create("collector");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, kbtc_setup, kbtc_teardown);
    tcase_add_loop_test(tc, collector_leaves_a_closed_gap_for_every_fault, 0,
                        (int)(sizeof(faults) / sizeof(faults[0])));
    tcase_add_test(tc, collector_takes_benign_faults_without_a_gap);
    tcase_add_test(tc, collector_backs_off_refused_handshakes_then_resets);
    tcase_add_test(tc, collector_retries_rest_429_and_command_errors);
    tcase_add_loop_test(tc, collector_recovers_from_every_command_error, 0,
                        (int)(sizeof(command_errors) / sizeof(command_errors[0])));
    tcase_add_test(tc, collector_follows_lifecycle_churn);
    tcase_add_test(tc, collector_pages_rest_discovery_and_reconciles);
    tcase_add_test(tc, collector_standby_takes_over_within_5s);
    tcase_add_test(tc, collector_spools_through_a_postgres_outage);
    tcase_add_test(tc, collector_handover_gap_covers_a_market_begun_in_the_leftover);
    tcase_add_test(tc, collector_writer_stores_every_record_once);
    tcase_add_test(tc, collector_spool_rotates_and_the_writer_follows);
    tcase_add_test(tc, collector_spool_replays_through_kbctl_import);
    tcase_add_test(tc, collector_refuses_bad_configuration);
    tcase_add_test(tc, collector_with_a_wrong_key_is_refused);
    tcase_add_test(tc, collector_settings_in_check_config_and_kbctl_status);
    tcase_add_test(tc, collector_metrics_in_prometheus_format);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    kbt_init();
    return kb_check_run(suite());
}
