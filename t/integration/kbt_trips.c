/* kbt_trips.c - the harness for charges whose lookup and commit ride in the meter's round
 * trip (test_metered_http.c, test_one_trip_http.c, test_journal_crash.c): the app on the
 * primary alone, the market they ask for, the one-round-trip counters, and warmed workers.
 * Declarations in kbt.h. */
#include "kbt.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_banned.h"

static char *replica_url; /* the suite's KB_DATABASE_READ_URL, put back afterwards */

void
kbt_primary_only(void)
{
    const char *r = getenv("KB_DATABASE_READ_URL");
    if (r != NULL && r[0] != '\0') {
        replica_url = strdup(r);
        unsetenv("KB_DATABASE_READ_URL"); /* the app inherits this environment too */
        kbt_app_env_set("KB_DATABASE_READ_URL", NULL);
    }
}

void
kbt_replica_back(void)
{
    if (replica_url == NULL)
        return;
    char v[4200];
    snprintf(v, sizeof(v), "'%s'", replica_url); /* app.env is sourced by a shell */
    setenv("KB_DATABASE_READ_URL", replica_url, 1);
    kbt_app_env_set("KB_DATABASE_READ_URL", v);
    free(replica_url);
    replica_url = NULL;
}

void
kbt_ahead_markets(PGconn *c)
{
    kbt_sql_ok(c, "INSERT INTO events (event_ticker, series_ticker, title)"
                  " VALUES ('KBT-AHEAD-EV', 'KBT-AHEAD', 'ahead') ON CONFLICT DO NOTHING");
    kbt_sql_ok(c, "INSERT INTO markets (ticker, event_ticker, title) VALUES"
                  " ('KBT-AHEAD-A', 'KBT-AHEAD-EV', 'market a'),"
                  " ('KBT-AHEAD-B', 'KBT-AHEAD-EV', 'market b') ON CONFLICT DO NOTHING");
}

void
kbt_trips_read(kbt_trips *t)
{
    kbt_resp *r = kbt_get("/metrics");
    ck_assert_msg(r->status == 200, "metrics: %ld %s", r->status, kb_buf_cstr(&r->body));
    const char *text = kb_buf_cstr(&r->body);
    t->sent = kbt_metrics_sample(text, "kalshibook_charges_one_trip_total");
    t->missed = kbt_metrics_sample(text, "kalshibook_charges_one_trip_missed_total");
    t->sent_ahead = kbt_metrics_sample(text, "kalshibook_db_sent_ahead_total");
    ck_assert_msg(t->sent >= 0 && t->missed >= 0 && t->sent_ahead >= 0, "%s", text);
    kbt_resp_free(r);
}

#define WARM_MAX_WORKERS 16

static void *
metrics_thread(void *arg)
{
    kbt_resp *r = kbt_get("/metrics");
    *(long *)arg = r->status;
    kbt_resp_free(r);
    return NULL;
}

/* kbt_wait_until: each of the *arg workers has its connection to the database, after a
 * round of concurrent GET /metrics: a worker finds a connection that Postgres closed
 * (as it does when it restarts) only on its next use, when a charge would fail with it. */
static bool
workers_connected(void *arg)
{
    long workers = *(long *)arg, status[WARM_MAX_WORKERS];
    pthread_t th[WARM_MAX_WORKERS];
    for (long i = 0; i < workers; i++)
        pthread_create(&th[i], NULL, metrics_thread, &status[i]);
    for (long i = 0; i < workers; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(status[i], 200);
    }
    PGconn *c = kbt_db();
    long n = kbt_sql_long1(c,
                           "SELECT count(*) FROM pg_stat_activity"
                           " WHERE application_name = 'kalshibook-worker'",
                           NULL);
    PQfinish(c);
    return n >= workers;
}

static long
workers_count(void)
{
    const char *env = getenv("KB_WORKERS");
    long workers = env != NULL ? strtol(env, NULL, 10) : 0;
    if (workers <= 0)
        workers = 3;
    ck_assert_int_le(workers, WARM_MAX_WORKERS);
    return workers;
}

void
kbt_workers_connect(void)
{
    long workers = workers_count();
    ck_assert_msg(kbt_wait_until(workers_connected, &workers, 10000), "workers not connected");
}

long
kbt_one_trip_warm(const char *key, const char *path, kbt_trips *after)
{
    long workers = workers_count();
    kbt_workers_connect();
    long sent = 0;
    kbt_trips t;
    kbt_trips_read(&t);
    for (int pair = 0; pair < 8; pair++) {
        double before = t.sent;
        for (int round = 0; round < 2; round++) {
            kbt_keyed_get g[WARM_MAX_WORKERS];
            pthread_t th[WARM_MAX_WORKERS];
            for (long i = 0; i < workers; i++) {
                g[i] = (kbt_keyed_get){key, path, NULL};
                pthread_create(&th[i], NULL, kbt_keyed_get_thread, &g[i]);
            }
            for (long i = 0; i < workers; i++) {
                pthread_join(th[i], NULL);
                ck_assert_msg(g[i].resp->status == 200, "warming %s: %ld %s", path,
                              g[i].resp->status, kb_buf_cstr(&g[i].resp->body));
                kbt_resp_free(g[i].resp);
            }
            sent += workers;
        }
        kbt_trips_read(&t);
        if (t.sent - before >= 2 * workers - 1) {
            if (after != NULL)
                *after = t;
            return sent;
        }
    }
    ck_abort_msg("%s: the workers' charges never went in one round trip", path);
    return sent;
}

/* The account's charge_xid as text, "" when it has none. */
static void
charge_xid(PGconn *c, const kbt_account *a, char *out, size_t size)
{
    char *v = kbt_sqlp_value(c, "SELECT charge_xid::text FROM billing_accounts WHERE user_id = $1",
                             1, a->user_id);
    snprintf(out, size, "%s", v != NULL ? v : "");
    free(v);
}

double
kbt_one_trip_prime(PGconn *c, const kbt_account *a, const char *path, kbt_trips *before)
{
    char x0[24], x1[24];
    kbt_trips_read(before);
    charge_xid(c, a, x0, sizeof(x0));
    kbt_keyed_get g = {a->key, path, NULL};
    kbt_keyed_get_thread(&g);
    ck_assert_msg(g.resp->status == 200, "%s: %ld %s", path, g.resp->status,
                  kb_buf_cstr(&g.resp->body));
    kbt_resp_free(g.resp);
    charge_xid(c, a, x1, sizeof(x1));
    return strcmp(x0, x1) != 0 ? 1 : 0;
}
