/* chaos.h - what the parts of the chaos program share (t/chaos/: chaos.c main and common
 * helpers, load.c accounts and clients, faults.c the fault thread, invariants.c the checks).
 *
 * Invariants: the globals are set by main before any thread starts, except the atomics and
 * the per-account counters, which the client threads update; faults[] and nfault belong to
 * the fault thread until it is joined.
 */
#ifndef CHAOS_H
#define CHAOS_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NACC 48
#define MAXFAULT 64

typedef struct account {
    char kind[16]; /* free, payg, payg_cap, project, probe */
    char key[64];
    char user_id[40];
    char key_id[40];
    char cus[40];
    atomic_long ok_cost; /* Σ X-Credits-Cost of 2xx answers */
    atomic_long ok_n, err_n, err_charged;
    long used_before, used_after, total, cap; /* cap -1 = none */
    bool payg;
} account;

typedef struct fault_rec {
    char name[48];
    long start_ms, end_ms, recover_ms;
    long e503; /* metered 5xx answered while this fault was active (+ its recovery) */
} fault_rec;

/* Users who subscribe through Checkout while their webhooks are held, reordered and redelivered
 * (fault "webhooks"); checked for one Stripe customer each. */
#define NSUB 3
typedef struct subscriber {
    char email[80];
    char token[1024];
    char user_id[40];
    bool checkout_ok;
} subscriber;

/* ---- chaos.c: configuration, counters, common helpers ---- */

extern account acc[NACC + 1]; /* acc[NACC] = the probe account of the fault thread */
extern char tickers[8][64];
extern int nticker;
extern const char *base, *ca, *dburl, *stripe_url, *stack_dir, *bin_dir, *repo;
/* CHAOS_HOSTS=2: bases[1] is host 2 (t/stack.sh host-start); bases[0] = base. */
#define MAXHOSTS 2
extern const char *bases[MAXHOSTS];
extern int nhosts;
extern long lease_ms; /* KB_HOST_LEASE_MS of the pools */
extern atomic_long next_req, done_req, status_hist[6], transport_err;
extern long total_req;
extern atomic_int active_fault;
extern fault_rec faults[MAXFAULT];
extern int nfault;
extern atomic_bool faults_done;
extern bool short_run; /* CHAOS_SHORT=1: shorter fault holds (make check) */

long now_ms(void);
void sleep_ms(long ms);
/* Environment variable n, or exit 2. */
const char *env(const char *n);
/* A connection to KB_DATABASE_URL, or exit 2. */
PGconn *db(void);
/* First value of sql (params text), or exit. Returns malloc'd or NULL when no row. */
char *sqlv(PGconn *c, const char *sql, int n, const char *const *p);
long sqll(PGconn *c, const char *sql, int n, const char *const *p);

/* ---- load.c: accounts, HTTP, the client threads ---- */

extern subscriber subs[NSUB];

void account_new(PGconn *c, account *a, const char *kind);
/* One metered request (route 0-2) for a (route 3: /health) on a random host; the status (0 on
 * a transport error), *cost the X-Credits-Cost it carried. req_on: on host h (0-based). */
long req(CURL *cu, const account *a, int route, long *cost);
long req_on(CURL *cu, int h, const account *a, int route, long *cost);
/* method url with an optional bearer token and JSON body; the parsed answer (caller frees
 * with cJSON_Delete, may be NULL), *st its status. */
cJSON *
http_json(const char *method, const char *url, const char *token, const char *json, long *st);
void subscribers_new(void);
/* Count an answer for a (and for the active fault's 5xx tally). */
void account_note(account *a, long st, long cost, int fault);
/* Client thread: metered requests until the count is reached and every fault ran. */
void *client(void *arg);

/* ---- faults.c: the fault thread and the stand-in controls ---- */

/* POST json to the stand-in's /_control/<path>. */
void stand_in(const char *path, const char *json);
/* Spawn `kbctl report-usage` in the background; returns its pid. */
pid_t reporter_spawn(void);
/* Fault thread: arg points to the number of rounds over every fault kind. */
void *fault_thread(void *arg);

/* ---- invariants.c: drain the outbox, check and print every money invariant ---- */

extern int violations;

long used_of(PGconn *c, const account *a);
void check(PGconn *c, long elapsed);
/* Two hosts: N + k requests of one account (limit N per minute) split over both hosts within
 * one minute, exactly N pass. Run after the faults. */
void check_rate_limit_across_hosts(PGconn *c);
/* Two hosts, one collector each (CHAOS_COLLECTOR names t/chaos/collector.sh): its takeover
 * after the kills of the leading collector's host and collector-check's data checks, each
 * line an invariant. Run last. */
void check_collector(const char *script);

#endif
