/* kbt_collector.h - harness for tests of kalshibook-collector: the Kalshi stand-in
 * (t/kalshi/kalshi-standin) and collector processes beside the stack, their metrics,
 * spools and logs. Processes log into KB_STACK_DIR (scanned by t/run-tests.sh); the
 * TLS certificate and the test's Kalshi key pairs are made once per stack dir. */
#ifndef KBT_COLLECTOR_H
#define KBT_COLLECTOR_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <sys/types.h>

#include "kbt.h"

typedef struct kbtc_coll {
    pid_t pid;
    char name[40];
    int metrics_port;
    char spool[300];
    char log[300];
    int status; /* exit status once reaped, -1 before */
} kbtc_coll;

/* Checked fixture: keys (once), empty collector tables, no process left from before. */
void kbtc_setup(void);
/* Stops every process the test started. */
void kbtc_teardown(void);

/* Start the stand-in with markets, feed rate and extra arguments ("--big 1"); waits for it. */
void kbtc_standin_start(int markets, int mps, const char *extra);
/* The stand-in's base URL (http://127.0.0.1:PORT) and its WebSocket URL. */
const char *kbtc_control_url(void);
const char *kbtc_ws_url(void);
const char *kbtc_rest_url(void);
const char *kbtc_ca_file(void);
const char *kbtc_key_file(void);
/* A valid RSA key the stand-in does not know. */
const char *kbtc_other_key(void);

kbt_resp *kbtc_control(const char *method, const char *path);
/* POST /_control/fault?<query>. */
kbt_resp *kbtc_fault(const char *query);

/*
 * Start a collector named name (instance "kbtc-<name>"), against the stand-in, with
 * a 1 s heartbeat, 4 markets per subscription, 2 per connection, its own spool and
 * metrics port. keyfile NULL = the stand-in's key; env: extra NAME=value (NULL-ended).
 * The harness owns the record (teardown stops whatever is still running).
 */
kbtc_coll *kbtc_coll_start(const char *name, const char *keyfile, const char *const *env);
/* Signal it and wait (10 s, then SIGKILL); its exit status (128 + signal if killed). */
int kbtc_coll_stop(kbtc_coll *c, int sig);
/* Wait for it to exit on its own; its exit status, or -1 after ms. */
int kbtc_coll_wait_exit(kbtc_coll *c, long ms);
bool kbtc_log_has(const kbtc_coll *c, const char *text);

/* A sample of its /metrics (-1 when absent or unreachable). */
double kbtc_metric(const kbtc_coll *c, const char *series);
bool kbtc_wait_metric(const kbtc_coll *c, const char *series, double v, long ms);
/* n markets wanted and live at the collector, and n subscribed at the stand-in. */
bool kbtc_wait_live(const kbtc_coll *c, int n, long ms);
/* The stand-in's subscribed markets are exactly its open and paused ones. */
bool kbtc_wait_subscribed_equals_wanted(long ms);
/* Until min more deltas reached the collector. */
void kbtc_wait_flow(const kbtc_coll *c, long min);

/* Until `sql` (one integer) answers want. */
bool kbtc_wait_sql(PGconn *db, const char *sql, long want, long ms);
/* Until the writer's committed progress covers bytes of spool (file 1 onwards). */
bool kbtc_wait_progress(PGconn *db, const kbtc_coll *c, long bytes, long ms);

/* Records of kind in c's spool whose bytes contain text (NULL: all). */
long kbtc_spool_count(const kbtc_coll *c, char kind, const char *text);
/* The largest record in c's spool, bytes. */
long kbtc_spool_largest(const kbtc_coll *c);

/* Wall-clock ms since the epoch. */
long kbtc_wall_ms(void);

#endif
