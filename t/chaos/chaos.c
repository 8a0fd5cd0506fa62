/* chaos.c - metered load from many concurrent clients against the real stack while a fault
 * thread kills workers, restarts Postgres, kills reporters mid-batch and breaks the Stripe
 * stand-in; afterwards drains the usage outbox and checks the money invariants (README
 * "Reliability"). Prints every invariant with its figures; exit 1 on any violation.
 * Invariants: the client's view (X-Credits-Cost of each answer) is the only source of truth
 * compared against the database and the stand-in; nothing is weakened to pass.
 *
 * Usage: chaos REQUESTS CLIENTS FAULT_ROUNDS   (environment: the stack's run.env,
 *        KB_STACK_DIR, KB_BIN_DIR, KB_REPO_ROOT) */
#include "chaos.h"
#include "kb_banned.h"

account acc[NACC + 1]; /* acc[NACC] = the probe account of the fault thread */
char tickers[8][64];
int nticker;
const char *base, *ca, *dburl, *stripe_url, *stack_dir, *bin_dir, *repo;
const char *bases[MAXHOSTS];
int nhosts = 1;
long lease_ms = 15000;
atomic_long next_req, done_req, status_hist[6], transport_err;
long total_req;
atomic_int active_fault = -1;
fault_rec faults[MAXFAULT];
int nfault;
atomic_bool faults_done;
bool short_run; /* CHAOS_SHORT=1: shorter fault holds (make check) */

long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

const char *
env(const char *n)
{
    const char *v = getenv(n);
    if (v == NULL || *v == '\0') {
        fprintf(stderr, "chaos: %s is not set\n", n);
        exit(2);
    }
    return v;
}

PGconn *
db(void)
{
    PGconn *c = PQconnectdb(dburl);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "chaos: db: %s", PQerrorMessage(c));
        exit(2);
    }
    return c;
}

/* First value of sql (params text), or exit. Returns malloc'd or NULL when no row. */
char *
sqlv(PGconn *c, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "chaos: %s: %s", sql, PQresultErrorMessage(r));
        exit(2);
    }
    char *v = NULL;
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

long
sqll(PGconn *c, const char *sql, int n, const char *const *p)
{
    char *v = sqlv(c, sql, n, p);
    long x = v ? strtol(v, NULL, 10) : 0;
    free(v);
    return x;
}

void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int
main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: chaos REQUESTS CLIENTS FAULT_ROUNDS\n");
        return 2;
    }
    total_req = strtol(argv[1], NULL, 10);
    int nclients = (int)strtol(argv[2], NULL, 10);
    int rounds = (int)strtol(argv[3], NULL, 10);
    setenv("CHAOS_CLIENTS", argv[2], 1);
    short_run = getenv("CHAOS_SHORT") && strcmp(getenv("CHAOS_SHORT"), "1") == 0;
    base = env("KB_BASE_URL");
    ca = env("KB_CA_CERT");
    dburl = env("KB_DATABASE_URL");
    stripe_url = env("KB_STRIPE_URL");
    stack_dir = env("KB_STACK_DIR");
    bin_dir = env("KB_BIN_DIR");
    repo = env("KB_REPO_ROOT");
    bases[0] = base;
    if (getenv("CHAOS_HOSTS") && strcmp(getenv("CHAOS_HOSTS"), "2") == 0) {
        bases[1] = env("KB_BASE_URL_2");
        nhosts = 2;
    }
    if (getenv("KB_HOST_LEASE_MS"))
        lease_ms = strtol(getenv("KB_HOST_LEASE_MS"), NULL, 10);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);

    PGconn *c = db();
    /* The demo data's markets; the Kalshi stand-in's (series KXSI*) are the collector's. */
    PGresult *r = PQexec(c, "SELECT ticker FROM markets WHERE ticker NOT LIKE 'KXSI%'"
                            " ORDER BY ticker LIMIT 8");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++)
        snprintf(tickers[nticker++], sizeof(tickers[0]), "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    if (nticker == 0) {
        fprintf(stderr, "chaos: no markets (load demo data first)\n");
        return 2;
    }
    static const char *kinds[] = {"free", "payg", "payg_cap", "project"};
    for (int i = 0; i < NACC; i++)
        account_new(c, &acc[i], kinds[i % 4]);
    account_new(c, &acc[NACC], "project");
    snprintf(acc[NACC].kind, sizeof(acc[NACC].kind), "probe");
    for (int i = 0; i <= NACC; i++)
        acc[i].used_before = used_of(c, &acc[i]);
    subscribers_new();
    PQfinish(c);

    long t0 = now_ms();
    pthread_t *th = calloc((size_t)nclients, sizeof(*th));
    pthread_t ft;
    for (int i = 0; i < nclients; i++)
        pthread_create(&th[i], NULL, client, NULL);
    pthread_create(&ft, NULL, fault_thread, &rounds);
    pthread_join(ft, NULL);
    atomic_store(&faults_done, true);
    for (int i = 0; i < nclients; i++)
        pthread_join(th[i], NULL);
    long elapsed = now_ms() - t0;
    total_req = atomic_load(&done_req);
    free(th);

    c = db();
    check(c, elapsed);
    if (nhosts > 1)
        check_rate_limit_across_hosts(c);
    PQfinish(c);
    if (getenv("CHAOS_COLLECTOR") && *getenv("CHAOS_COLLECTOR"))
        check_collector(getenv("CHAOS_COLLECTOR"));
    printf("== chaos: %s (%d violations)\n", violations ? "FAILED" : "passed", violations);
    curl_global_cleanup();
    return violations ? 1 : 0;
}
