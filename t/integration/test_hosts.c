/* test_hosts.c - app hosts sharing one Postgres (issue 22; lib/kb_host.h,
 * db/migrations/0024_app_hosts.sql):
 *   - a second live pool with the stack's host id refuses to start, naming the holder;
 *   - a lease held elsewhere is waited for: taken over once it expires, refused when
 *     its holder renews it meanwhile;
 *   - the charges a dead host left in flight are settled exactly once while two
 *     "hosts" (connections) settle at once, and the stack's own keeper too; a
 *     restarted pool's first charges on the same journal entries keep them;
 *   - a whole pool SIGKILLed (master, workers, keeper) with a charge committed and
 *     unanswered: the restarted pool takes the lease over and refunds it, and
 *     another host does so when the dead one's lease runs out. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "check_main.h"
#include "kb_meter.h"
#include "kbt.h"

#define MAXW 64

static char log_path[512];

/* Start a kalshibook-fcgi pool of its own (2 workers) as host id with lease_ms. */
static pid_t
start_pool(const char *id, const char *lease_ms, const char *sock)
{
    char bin[512];
    snprintf(bin, sizeof(bin), "%s/kalshibook-fcgi", kbt_env("KB_BIN_DIR"));
    snprintf(log_path, sizeof(log_path), "%s/hosts-test.log", kbt_env("KB_STACK_DIR"));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(127);
        int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (logfd < 0)
            _exit(127);
        dup2(logfd, 1);
        dup2(logfd, 2);
        setenv("KB_HOST_ID", id, 1);
        setenv("KB_HOST_LEASE_MS", lease_ms, 1);
        setenv("KB_SOCKET", sock, 1);
        char journal[600];
        snprintf(journal, sizeof(journal), "%s/journal-%s", kbt_env("KB_STACK_DIR"), id);
        setenv("KB_JOURNAL_DIR", journal, 1);
        setenv("KB_WORKERS", "2", 1);
        setenv("KB_USAGE_REPORTER", "0", 1);
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("NOTIFY_SOCKET");
        execl(bin, "kalshibook-fcgi", (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

/* Exit status of pid within timeout_ms, or -1 (then it is killed). */
static int
exit_within(pid_t pid, long timeout_ms)
{
    long t0 = kbt_now_ms();
    int st;
    while (kbt_now_ms() - t0 < timeout_ms) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static void
stop_pool(pid_t pid)
{
    kill(pid, SIGTERM);
    ck_assert_int_eq(exit_within(pid, 20000), 0);
}

/* The whole log of the test pools. */
static char *
pool_log(void)
{
    FILE *f = fopen(log_path, "r");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 18];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void
tag(char *out, size_t outsz, const char *prefix)
{
    unsigned char r[4];
    char hex[9];
    randombytes_buf(r, sizeof(r));
    sodium_bin2hex(hex, sizeof(hex), r, sizeof(r));
    snprintf(out, outsz, "%s-%s", prefix, hex);
}

START_TEST(second_live_pool_with_the_same_host_id_refuses_to_start)
{
    PGconn *c = kbt_db();
    char pid[16];
    snprintf(pid, sizeof(pid), "%ld", (long)kbt_master_pid());
    char *id = kbt_sqlp_value(c,
                              "SELECT host_id FROM app_hosts WHERE pid = $1::int"
                              " AND life IS NOT NULL AND expires_at > now()",
                              1, pid);
    ck_assert_msg(id != NULL, "the stack's pool holds no lease");
    char *life = kbt_sqlp_value(c, "SELECT life FROM app_hosts WHERE host_id = $1", 1, id);

    char sock[512];
    snprintf(sock, sizeof(sock), "%s/dup.sock", kbt_env("KB_STACK_DIR"));
    long t0 = kbt_now_ms();
    pid_t p = start_pool(id, "15000", sock);
    /* The holder runs on this machine: refused at once, not after the lease. */
    ck_assert_int_eq(exit_within(p, 10000), 78);
    ck_assert_int_lt(kbt_now_ms() - t0, 5000);
    const char *log = pool_log();
    ck_assert_msg(strstr(log, "is held by a live pool") != NULL && strstr(log, pid) != NULL &&
                      strstr(log, "KB_HOST_ID") != NULL,
                  "%s", log);
    ck_assert_int_ne(access(sock, F_OK), 0); /* it bound nothing */
    /* The holder is untouched and still serves. */
    char *now = kbt_sqlp_value(c, "SELECT life FROM app_hosts WHERE host_id = $1", 1, id);
    ck_assert_str_eq(now, life);
    kbt_resp *r = kbt_get("/health");
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
    free(now);
    free(life);
    free(id);
    PQfinish(c);
}
END_TEST

/* A lease held by a pool on another machine (boot id not ours), expiring soon. */
static void
foreign_lease(PGconn *c, const char *id, const char *ms)
{
    kbt_sqlp_ok(c,
                "INSERT INTO app_hosts (host_id, life, hostname, pid, boot_id, expires_at,"
                "                       lease_ms)"
                " VALUES ($1, gen_random_uuid(), 'elsewhere', 4242, 'another-machine',"
                "         clock_timestamp() + $2::int * interval '1 millisecond', $2::int)",
                2, id, ms);
}

typedef struct renewer {
    const char *id;
    volatile bool stop;
} renewer;

static void *
renew_thread(void *arg)
{
    renewer *rn = arg;
    PGconn *c = kbt_db();
    while (!rn->stop) {
        kbt_sqlp_ok(c,
                    "UPDATE app_hosts SET renewed_at = clock_timestamp(),"
                    " expires_at = clock_timestamp() + interval '1500 ms' WHERE host_id = $1",
                    1, rn->id);
        usleep(300000);
    }
    PQfinish(c);
    return NULL;
}

START_TEST(lease_held_elsewhere_is_taken_over_after_expiry_refused_while_renewed)
{
    PGconn *c = kbt_db();
    char id[40], sock[512];
    snprintf(sock, sizeof(sock), "%s/lease.sock", kbt_env("KB_STACK_DIR"));

    /* Renewed meanwhile: a live pool elsewhere holds it. */
    tag(id, sizeof(id), "renewed");
    foreign_lease(c, id, "1500");
    renewer rn = {id, false};
    pthread_t th;
    pthread_create(&th, NULL, renew_thread, &rn);
    pid_t p = start_pool(id, "2000", sock);
    ck_assert_int_eq(exit_within(p, 15000), 78);
    rn.stop = true;
    pthread_join(th, NULL);
    ck_assert_msg(strstr(pool_log(), "host 'elsewhere', pid 4242") != NULL, "%s", pool_log());
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM app_hosts WHERE host_id = $1 AND"
                                   " hostname = 'elsewhere'",
                                   id),
                     1);

    /* Not renewed: taken over once it expires, not before. */
    tag(id, sizeof(id), "expired");
    foreign_lease(c, id, "1500");
    long t0 = kbt_now_ms();
    p = start_pool(id, "2000", sock);
    long waited = -1;
    while (kbt_now_ms() - t0 < 15000) {
        if (kbt_sql_long1(c,
                          "SELECT count(*) FROM app_hosts WHERE host_id = $1 AND"
                          " hostname <> 'elsewhere' AND life IS NOT NULL",
                          id) == 1) {
            waited = kbt_now_ms() - t0;
            break;
        }
        usleep(20000);
    }
    ck_assert_msg(waited >= 1000, "taken over after %ld ms (log: %s)", waited, log_path);
    ck_assert_int_eq(kbt_sql_long1(c, "SELECT pid FROM app_hosts WHERE host_id = $1", id), p);
    /* Stop it once it runs (its workers are forked after it handles SIGTERM itself). */
    pid_t kids[8];
    t0 = kbt_now_ms();
    while (kbt_children(p, kids, 8) < 2 && kbt_now_ms() - t0 < 15000)
        usleep(20000);
    stop_pool(p);
    /* A clean stop ends the lease at once. */
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM app_hosts WHERE host_id = $1 AND"
                                   " life IS NULL AND expires_at <= now()",
                                   id),
                     1);
    PQfinish(c);
}
END_TEST

/* ---- dead hosts' charges ---- */

/* A committed charge of a (the meter's slow path, as a worker runs it) with its row in
 * meter_inflight for host/life at slot; answered as given. Returns the request id. */
static void
charge_in_flight(PGconn *c, const kbt_account *a, const char *host, const char *life, int slot,
                 bool answered, char *rid, size_t ridsz)
{
    tag(rid, ridsz, "req_host");
    char s[16];
    snprintf(s, sizeof(s), "%d", slot);
    kbt_sql_ok(c, "BEGIN");
    kbt_sqlp_ok(c,
                "WITH m AS (SELECT * FROM kb_meter_slow($1, 1, '/markets', $2))"
                " INSERT INTO meter_inflight (host_id, slot, life, request_id, answered, xid,"
                "   token, seq, user_id, key_id, cost, endpoint, cycle_start, day, outbox_id)"
                " SELECT $3, $4::int, $5::uuid, $2, $6::bool, m.xid, m.token, m.seq, m.user_id,"
                "   m.key_id, m.cost, '/markets', m.cycle_start, m.day, m.outbox_id"
                " FROM m WHERE m.outcome = 'ok'",
                6, a->key_hash, rid, host, s, life, answered ? "t" : "f");
    kbt_sql_ok(c, "COMMIT");
}

typedef struct settler {
    long refunded, rounds;
} settler;

static void *
settle_thread(void *arg)
{
    settler *s = arg;
    PGconn *c = kbt_db();
    for (;;) {
        PGresult *r = PQexec(c, "SELECT refunded, cleared, pending FROM kb_host_settle(3)");
        ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
        long refunded = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        long cleared = strtol(PQgetvalue(r, 0, 1), NULL, 10);
        PQclear(r);
        s->refunded += refunded;
        s->rounds++;
        if (refunded == 0 && cleared == 0)
            break;
    }
    PQfinish(c);
    return NULL;
}

typedef struct expired {
    PGconn *c;
    const char *host;
} expired;

static bool
lease_expired(void *arg)
{
    expired *e = arg;
    return kbt_sql_long1(e->c,
                         "SELECT count(*) FROM app_hosts a WHERE host_id = $1"
                         " AND kb_host_lease_over(a)",
                         e->host) == 1;
}

START_TEST(dead_host_charges_are_settled_exactly_once_by_racing_hosts)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 1000, 0, false);
    char host[40];
    tag(host, sizeof(host), "dead");
    char *life = kbt_sql_value(c, "SELECT gen_random_uuid()");
    /* Alive for now: nobody may touch its rows. */
    kbt_sqlp_ok(c,
                "INSERT INTO app_hosts (host_id, life, boot_id, expires_at, lease_ms)"
                " VALUES ($1, $2::uuid, 'another-machine', clock_timestamp() + interval '2 s',"
                "         2000)",
                2, host, life);
    enum { N = 24 };
    char rid[N][40];
    for (int i = 0; i < N; i++)
        charge_in_flight(c, &a, host, life, i, i % 4 == 0, rid[i], sizeof(rid[i]));
    /* One unanswered charge was refunded on its error path before the host died. */
    kbt_sqlp_ok(c,
                "SELECT kb_meter_refund($1, m.user_id, m.key_id, m.cost, m.endpoint,"
                " m.cycle_start, m.day, m.outbox_id) FROM meter_inflight m WHERE request_id = $1",
                1, rid[1]);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a.user_id),
                     N - 1);
    PGresult *r = PQexec(c, "SELECT ended FROM kb_host_settle(100)");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM meter_inflight WHERE host_id = $1", host), N);

    /* The lease runs out; two settlers race (and the stack's keeper may join). */
    expired ex = {c, host};
    ck_assert(kbt_wait_until(lease_expired, &ex, 10000));
    settler s1 = {0, 0}, s2 = {0, 0};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, settle_thread, &s1);
    pthread_create(&t2, NULL, settle_thread, &s2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);

    /* Each unanswered charge refunded once, the answered ones stand. */
    int unanswered = 0;
    for (int i = 0; i < N; i++) {
        long n = kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1",
                               rid[i]);
        ck_assert_int_eq(n, i % 4 == 0 ? 0 : 1);
        unanswered += i % 4 != 0;
    }
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a.user_id),
                     N - unanswered);
    ck_assert_int_le(s1.refunded + s2.refunded, unanswered - 1);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM meter_inflight WHERE host_id = $1"
                                   " AND NOT answered",
                                   host),
                     0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM app_hosts WHERE host_id = $1"
                                   " AND life IS NULL AND ended_at IS NOT NULL",
                                   host),
                     1);
    /* Settling again changes nothing. */
    r = PQexec(c, "SELECT refunded FROM kb_host_settle(100)");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a.user_id),
                     N - unanswered);
    free(life);
    PQfinish(c);
}
END_TEST

/* A pool restarted on the same host id charges on the same journal entries at once: its
 * rows must not replace what the dead life left there unsettled (found by chaos: three
 * charges of a SIGKILLed pool lost their refund to the new pool's first charges). */
START_TEST(restarted_pool_on_the_same_slot_keeps_what_the_dead_life_left)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    char host[40], rid[40], rid2[40];
    tag(host, sizeof(host), "restarted");
    char *l1 = kbt_sql_value(c, "SELECT gen_random_uuid()");
    char *l2 = kbt_sql_value(c, "SELECT gen_random_uuid()");
    kbt_sqlp_ok(c,
                "INSERT INTO app_hosts (host_id, life, expires_at, lease_ms)"
                " VALUES ($1, $2::uuid, clock_timestamp() + interval '1 min', 60000)",
                2, host, l1);
    /* The dead life's charge on entry 0, committed, never answered. */
    charge_in_flight(c, &a, host, l1, 0, false, rid, sizeof(rid));
    /* The restart takes the lease over (kb_host_claim with the dead life proven)... */
    kbt_sqlp_ok(c, "UPDATE app_hosts SET life = $2::uuid WHERE host_id = $1", 2, host, l2);
    /* ...and its first charge lands on entry 0 through the workers' fast path. */
    char *token = kbt_sqlp_value(c, "SELECT charge_token FROM billing_accounts WHERE user_id = $1",
                                 1, a.user_id);
    tag(rid2, sizeof(rid2), "req_host");
    const char *fast[] = {a.user_id, a.key_id, "1", "/markets", rid2, token, host, "0", l2};
    kbt_sql_ok(c, "BEGIN");
    PGresult *r = PQexecParams(c, kb_meter_row_stmt.sql, 9, NULL, fast, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1,
                  "fast path did not charge: %s", PQresultErrorMessage(r));
    PQclear(r);
    kbt_sql_ok(c, "COMMIT");
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM meter_inflight WHERE host_id = $1", host), 2);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a.user_id),
                     2);
    /* Any keeper's round settles the dead life's row, and only it. */
    PGresult *st = PQexec(c, "SELECT refunded FROM kb_host_settle(100)");
    ck_assert_int_eq(PQresultStatus(st), PGRES_TUPLES_OK);
    PQclear(st);
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1", rid), 1);
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1", rid2), 0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a.user_id),
                     1);
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM meter_inflight WHERE request_id = $1", rid2), 1);
    free(token);
    free(l1);
    free(l2);
    PQfinish(c);
}
END_TEST

/* A dead host's charges are refunded when its lease runs out, which may be after a reporter
 * claimed their overage rows (KB_USAGE_MARGIN_S): such a row stays with its batch, as Stripe
 * receives it (0025; chaos-short caught a customer billed 5 credits the outbox had lost). */
START_TEST(late_refund_leaves_a_claimed_outbox_row_with_its_batch)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "payg", 1, 0, true);
    char cus[40];
    tag(cus, sizeof(cus), "cus_hosts");
    kbt_sqlp_ok(c, "UPDATE billing_accounts SET stripe_customer_id = $2 WHERE user_id = $1", 2,
                a.user_id, cus);
    char host[40], rid[3][40];
    tag(host, sizeof(host), "dead-payg");
    char *life = kbt_sql_value(c, "SELECT gen_random_uuid()");
    kbt_sqlp_ok(c,
                "INSERT INTO app_hosts (host_id, life, boot_id, expires_at, lease_ms)"
                " VALUES ($1, $2::uuid, 'another-machine', clock_timestamp(), 1000)",
                2, host, life);
    /* The first charge uses the account's one credit; the next two are overage. */
    for (int i = 0; i < 3; i++)
        charge_in_flight(c, &a, host, life, i, i == 0, rid[i], sizeof(rid[i]));
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM usage_outbox WHERE user_id = $1", a.user_id), 2);
    /* A reporter claims the overage row of the second charge (as if it were older than the
     * margin) and is sending it to Stripe; the third's is still unclaimed. */
    char *claimed = kbt_sqlp_value(c, "SELECT min(id) FROM usage_outbox WHERE user_id = $1", 1,
                                   a.user_id);
    kbt_sqlp_ok(
        c, "UPDATE usage_outbox SET batch_identifier = 'kbo_test_' || id WHERE id = $1::bigint", 1,
        claimed);
    expired ex = {c, host};
    ck_assert(kbt_wait_until(lease_expired, &ex, 10000));
    PGresult *r = PQexec(c, "SELECT refunded FROM kb_host_settle(100)");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    for (int i = 1; i < 3; i++)
        ck_assert_int_eq(
            kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1", rid[i]),
            1);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a.user_id),
                     1);
    /* The claimed row stays with its batch; the unclaimed one is gone. */
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM usage_outbox WHERE user_id = $1"
                                   " AND batch_identifier IS NOT NULL",
                                   a.user_id),
                     1);
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM usage_outbox WHERE user_id = $1", a.user_id), 1);
    free(claimed);
    free(life);
    PQfinish(c);
}
END_TEST

/* A pool whose lease another host ended can commit no charge. */
START_TEST(pool_whose_lease_was_ended_charges_nothing)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    char id[40], sock[512];
    tag(id, sizeof(id), "fenced");
    snprintf(sock, sizeof(sock), "%s/fenced.sock", kbt_env("KB_STACK_DIR"));
    pid_t p = start_pool(id, "60000", sock);
    long t0 = kbt_now_ms();
    while (kbt_now_ms() - t0 < 15000 && access(sock, F_OK) != 0)
        usleep(20000);
    /* As another host would after the lease ran out. */
    kbt_sqlp_ok(c, "UPDATE app_hosts SET life = NULL, ended_at = now() WHERE host_id = $1", 1, id);
    /* Its meter statement's row cannot be written: the charge's transaction fails. */
    char *life = kbt_sql_value(c, "SELECT gen_random_uuid()");
    PGresult *r;
    const char *p2[] = {a.key_hash, id, life};
    kbt_sql_ok(c, "BEGIN");
    r = PQexecParams(c,
                     "WITH m AS (SELECT * FROM kb_meter_slow($1, 1, '/markets', 'req_fenced'))"
                     " INSERT INTO meter_inflight (host_id, slot, life, request_id, xid, token,"
                     "   seq, user_id, key_id, cost, endpoint, cycle_start, day)"
                     " SELECT $2, 0, (SELECT a.life FROM app_hosts a WHERE a.host_id = $2"
                     "   AND a.life = $3::uuid), 'req_fenced', m.xid, m.token, m.seq,"
                     "   m.user_id, m.key_id, 1, '/markets', m.cycle_start, m.day FROM m",
                     3, NULL, p2, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23502");
    PQclear(r);
    kbt_sql_ok(c, "ROLLBACK");
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a.user_id),
                     0);
    /* The pool's keeper finds its lease gone and stops the pool. */
    ck_assert_int_eq(exit_within(p, 20000), 75);
    ck_assert_msg(strstr(pool_log(), "lost the lease of host id") != NULL, "%s", pool_log());
    free(life);
    PQfinish(c);
}
END_TEST

/* ---- meter_inflight rows while other hosts live (KB_HOST_ROWS=auto) ---- */

typedef struct rows_probe {
    PGconn *c;
    const char *key;
    long want; /* rows the next charge must leave: 0 or 1 */
} rows_probe;

/* One charged request; true when it left `want` rows in meter_inflight. */
static bool
charge_leaves_rows(void *arg)
{
    rows_probe *p = arg;
    kbt_keyed_get g = {p->key, "/markets?limit=1", NULL};
    kbt_keyed_get_thread(&g);
    ck_assert_int_eq(g.resp->status, 200);
    char *rid = kbt_header(g.resp, "X-Request-ID");
    ck_assert_ptr_nonnull(rid);
    long n = kbt_sql_long1(p->c, "SELECT count(*) FROM meter_inflight WHERE request_id = $1", rid);
    free(rid);
    kbt_resp_free(g.resp);
    return n == p->want;
}

/* A pool alone writes no meter_inflight rows (its journal file settles its restart);
 * once another host holds a lease its keeper sees it and charges write their rows,
 * and when that host stops they stop again. */
START_TEST(charges_write_inflight_rows_only_while_another_host_lives)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100000, 0, false);
    /* The probes charge as fast as they can. */
    kbt_sqlp_ok(c, "UPDATE billing_accounts SET rpm_override = 1000000 WHERE user_id = $1", 1,
                a.user_id);
    /* Leases earlier tests wrote for made-up hosts end now: the stack's pool is alone. */
    char master[24];
    snprintf(master, sizeof(master), "%ld", (long)kbt_master_pid());
    kbt_sqlp_ok(c,
                "UPDATE app_hosts SET life = NULL, expires_at = now()"
                " WHERE pid <> $1::integer AND life IS NOT NULL",
                1, master);
    rows_probe none = {c, a.key, 0}, one = {c, a.key, 1};
    ck_assert_msg(kbt_wait_until(charge_leaves_rows, &none, 15000), "a pool alone wrote rows");
    char id[40], sock[512];
    tag(id, sizeof(id), "rows");
    snprintf(sock, sizeof(sock), "%s/rows.sock", kbt_env("KB_STACK_DIR"));
    pid_t p = start_pool(id, "4000", sock);
    ck_assert_msg(kbt_wait_until(charge_leaves_rows, &one, 15000),
                  "no rows while another host lives");
    stop_pool(p);
    ck_assert_msg(kbt_wait_until(charge_leaves_rows, &none, 15000),
                  "rows still written after the other host stopped");
    PQfinish(c);
}
END_TEST

/* ---- a whole pool SIGKILLed with a charge in flight ---- */

static size_t
nworkers(void)
{
    return (size_t)strtol(kbt_env("KB_WORKERS"), NULL, 10);
}

/* SIGKILL the master and every child of it at once. */
static void
kill_pool(void)
{
    pid_t m = kbt_master_pid(), w[MAXW];
    size_t n = kbt_children(m, w, MAXW);
    ck_assert_uint_ge(n, nworkers());
    ck_assert_int_eq(kill(m, SIGSTOP), 0); /* no respawn in between */
    for (size_t i = 0; i < n; i++)
        kill(w[i], SIGKILL);
    ck_assert_int_eq(kill(m, SIGKILL), 0);
}

/* Where the data query runs: the replica when the suite has one. */
static PGconn *
data_db(void)
{
    const char *read = getenv("KB_DATABASE_READ_URL");
    if (read == NULL || read[0] == '\0')
        return kbt_db();
    PGconn *c = PQconnectdb(read);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "replica: %s", PQerrorMessage(c));
    return c;
}

/* A charge committed, its data query waiting on a lock, then the whole pool killed. The
 * client's answer and request id are returned. */
static kbt_resp *
charge_then_kill_pool(PGconn *c, const kbt_account *a, PGconn **lock)
{
    *lock = kbt_db();
    kbt_sql_ok(*lock, "BEGIN");
    kbt_sql_ok(*lock, "LOCK TABLE markets IN ACCESS EXCLUSIVE MODE");
    PGconn *data = data_db();
    if (getenv("KB_DATABASE_READ_URL") != NULL && getenv("KB_DATABASE_READ_URL")[0] != '\0') {
        kbt_sql_ok(c, "SELECT pg_switch_wal()");
        kbt_data_wait_replica();
    }
    kbt_keyed_get f = {a->key, "/markets", NULL};
    pthread_t th;
    pthread_create(&th, NULL, kbt_keyed_get_thread, &f);
    ck_assert_msg(kbt_wait_until(kbt_one_worker_waits_on_lock, data, 10000),
                  "request not in flight");
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a->user_id),
                     1);
    kill_pool();
    pthread_join(th, NULL);
    kbt_assert_envelope(f.resp, 503, "service_unavailable");
    PQfinish(data);
    return f.resp;
}

/* Charges write their meter_inflight rows although this pool is alone (restarts it). */
static void
rows_on(void)
{
    kbt_app_env_set("KB_HOST_ROWS", "on");
}

START_TEST(whole_pool_killed_its_restart_refunds_the_charge_in_flight)
{
    rows_on();
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    PGconn *lock;
    kbt_resp *resp = charge_then_kill_pool(c, &a, &lock);
    char *rid = kbt_header(resp, "X-Request-ID");
    ck_assert_ptr_nonnull(rid);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM meter_inflight WHERE request_id = $1"
                                   " AND NOT answered",
                                   rid),
                     1);
    /* The journal died with the pool; nobody refunds before a pool sees it dead. */
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1", rid), 0);
    kbt_sql_ok(lock, "COMMIT");
    /* The restart on this machine takes the lease over at once (its holder's pid is gone). */
    ck_assert_int_eq(kbt_stack("app-start", NULL), 0);
    kbt_request_ref rr = {c, rid};
    ck_assert_msg(kbt_wait_until(kbt_refund_recorded, &rr, 15000), "charge of %s not refunded",
                  rid);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a.user_id),
                     0);
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM meter_inflight WHERE request_id = $1", rid), 0);
    /* And the account works through the new pool; that charge's row is answered. */
    kbt_keyed_get g = {a.key, "/markets", NULL};
    kbt_keyed_get_thread(&g);
    ck_assert_int_eq(g.resp->status, 200);
    char *rid2 = kbt_header(g.resp, "X-Request-ID");
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a.user_id),
                     1);
    kbt_resp_free(g.resp);
    kbt_resp_free(resp);
    free(rid);
    free(rid2);
    PQfinish(lock);
    PQfinish(c);
}
END_TEST

START_TEST(whole_pool_killed_another_host_refunds_when_its_lease_expires)
{
    PGconn *c = kbt_db();
    /* A short lease for the stack's pool, which is alone when it dies (restarts it). */
    rows_on();
    kbt_app_env_set("KB_HOST_LEASE_MS", "2000");
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    PGconn *lock;
    kbt_resp *resp = charge_then_kill_pool(c, &a, &lock);
    char *rid = kbt_header(resp, "X-Request-ID");
    ck_assert_ptr_nonnull(rid);
    kbt_sql_ok(lock, "COMMIT");
    long t0 = kbt_now_ms();
    /* Another host (its own id) settles it once the dead one's lease ran out. */
    char id[40], sock[512];
    tag(id, sizeof(id), "other");
    snprintf(sock, sizeof(sock), "%s/other.sock", kbt_env("KB_STACK_DIR"));
    pid_t p = start_pool(id, "2000", sock);
    kbt_request_ref rr = {c, rid};
    ck_assert_msg(kbt_wait_until(kbt_refund_recorded, &rr, 15000), "charge of %s not refunded",
                  rid);
    ck_assert_int_ge(kbt_now_ms() - t0, 500);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT credits_used FROM billing_accounts"
                                   " WHERE user_id = $1",
                                   a.user_id),
                     0);
    ck_assert_msg(strstr(pool_log(), "1 refunded") != NULL, "%s", pool_log());
    stop_pool(p);
    ck_assert_int_eq(kbt_stack("app-start", NULL), 0);
    kbt_resp_free(resp);
    free(rid);
    PQfinish(lock);
    PQfinish(c);
}
END_TEST

/* ---- a whole pool SIGKILLed around its answer's last write ---- */

/*
 * Where kill_pool_at() kills the pool while a worker ends a charged 2xx answer
 * (lib/kb_meter.h kb_meter_answered(), app/fcgi/fcgi.c kb_fcgi_complete()): the
 * answer is with nginx but for its held-back last byte; then the mark of the
 * charge's meter_inflight row is sent; then the journal entry is settled; then
 * the last byte goes out with the end of request.
 */
typedef enum kill_point {
    BEFORE_MARK,  /* entering the send of the mark: not sent */
    AFTER_MARK,   /* the mark sent, the journal entry still pending, no last byte */
    AFTER_ANSWER, /* the last write done: nginx has the whole answer */
} kill_point;

/* True when p's memory at [addr, addr + len) holds the Bind of the statement that
 * marks an answer ('B', length, unnamed portal, then its name). */
static bool
sends_mark(pid_t p, uint64_t addr, uint64_t len)
{
    static char buf[8192];
    size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
    struct iovec local = {buf, n}, remote = {(void *)(uintptr_t)addr, n};
    ssize_t got = process_vm_readv(p, &local, 1, &remote, 1, 0);
    const char *name = kb_meter_answered_stmt.name;
    size_t nl = strlen(name) + 1;
    for (ssize_t k = 6; got > 0 && k + (ssize_t)nl <= got; k++)
        if (buf[k - 6] == 'B' && buf[k - 1] == '\0' && memcmp(buf + k, name, nl) == 0)
            return true;
    return false;
}

/* The pool's children traced at every system call; the whole pool is SIGKILLed
 * (kill_pool()) when one of them reaches `at` while answering the request
 * request_fn runs in a thread. Returns the request's answer. */
static kbt_resp *
kill_pool_at(kill_point at, kbt_keyed_get *g)
{
    pid_t m = kbt_master_pid(), w[MAXW];
    size_t n = kbt_children(m, w, MAXW);
    ck_assert_uint_ge(n, nworkers());
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(ptrace(PTRACE_SEIZE, w[i], NULL, (void *)PTRACE_O_TRACESYSGOOD), 0);
        ck_assert_int_eq(ptrace(PTRACE_INTERRUPT, w[i], NULL, NULL), 0);
    }
    pthread_t th;
    pthread_create(&th, NULL, kbt_keyed_get_thread, g);
    uint64_t last_nr[MAXW] = {0};
    long last_fd[MAXW] = {0};
    pid_t marker = 0;
    long mark_fd = -1;
    bool killed = false;
    size_t running = n;
    long t0 = kbt_now_ms();
    while (running > 0) {
        int st;
        pid_t p = waitpid(-1, &st, __WALL);
        ck_assert_int_gt(p, 0);
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            running--;
            continue;
        }
        if (killed) {
            ptrace(PTRACE_DETACH, p, NULL, NULL); /* dies by the SIGKILL it has */
            continue;
        }
        ck_assert_msg(kbt_now_ms() - t0 < 30000, "no worker reached the kill point");
        size_t me = 0;
        while (me < n && w[me] != p)
            me++;
        ck_assert_uint_lt(me, n);
        int sig = WSTOPSIG(st);
        bool syscall_stop = sig == (SIGTRAP | 0x80);
        bool kill_now = false;
        if (syscall_stop) {
            struct __ptrace_syscall_info si;
            ck_assert_int_gt(ptrace(PTRACE_GET_SYSCALL_INFO, p, (void *)sizeof(si), &si), 0);
            if (si.op == PTRACE_SYSCALL_INFO_ENTRY) {
                last_nr[me] = si.entry.nr;
                last_fd[me] = (long)si.entry.args[0];
                if (si.entry.nr == SYS_sendto && marker == 0 &&
                    sends_mark(p, si.entry.args[1], si.entry.args[2])) {
                    marker = p;
                    mark_fd = (long)si.entry.args[0];
                    kill_now = at == BEFORE_MARK;
                }
            } else if (si.op == PTRACE_SYSCALL_INFO_EXIT && p == marker) {
                if (last_nr[me] == SYS_sendto && last_fd[me] == mark_fd)
                    kill_now = at == AFTER_MARK;
                else if (last_nr[me] == SYS_write && last_fd[me] != mark_fd &&
                         kbt_fd_is_socket(p, last_fd[me]))
                    kill_now = at == AFTER_ANSWER;
            }
        }
        if (kill_now) {
            kill_pool();
            killed = true;
            ptrace(PTRACE_DETACH, p, NULL, NULL);
            continue;
        }
        int deliver = syscall_stop || (st >> 16) != 0 || sig == SIGTRAP ? 0 : sig;
        ck_assert_int_eq(ptrace(PTRACE_SYSCALL, p, NULL, (void *)(long)deliver), 0);
    }
    ck_assert(killed);
    pthread_join(th, NULL);
    return g->resp;
}

typedef struct row_answered {
    PGconn *c;
    const char *request_id;
} row_answered;

static bool
inflight_row_answered(void *arg)
{
    row_answered *r = arg;
    return kbt_sql_long1(r->c,
                         "SELECT count(*) FROM meter_inflight WHERE request_id = $1 AND answered",
                         r->request_id) == 1;
}

static bool
inflight_row_gone(void *arg)
{
    row_answered *r = arg;
    return kbt_sql_long1(r->c, "SELECT count(*) FROM meter_inflight WHERE request_id = $1",
                         r->request_id) == 0;
}

/* The stack pool's log (app.log) from byte `from` on contains `line`. */
typedef struct log_line {
    long from;
    char line[160];
} log_line;

static long
stack_log_size(void)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/app.log", kbt_env("KB_STACK_DIR"));
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : 0;
}

static bool
stack_log_has(void *arg)
{
    log_line *l = arg;
    char p[600];
    snprintf(p, sizeof(p), "%s/app.log", kbt_env("KB_STACK_DIR"));
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return false;
    static char buf[1 << 20];
    fseek(f, l->from, SEEK_SET);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, l->line) != NULL;
}

/* Killed at `at`, restarted: the charge stands exactly when the client got the
 * whole 2xx answer. */
static void
kill_around_the_answer(kill_point at)
{
    rows_on();
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    kbt_keyed_get f = {a.key, "/markets", NULL};
    kbt_resp *resp = kill_pool_at(at, &f);
    char *rid = kbt_header(resp, "X-Request-ID");
    ck_assert_ptr_nonnull(rid);
    row_answered ra = {c, rid};
    bool whole = resp->curl_code == 0 && resp->status == 200;
    if (at == AFTER_ANSWER) {
        ck_assert_msg(whole, "curl %d, status %ld", resp->curl_code, resp->status);
        ck_assert_msg(kbt_wait_until(inflight_row_answered, &ra, 10000), "mark not applied");
    } else {
        /* nginx never got the last byte: the client sees the answer fail. */
        ck_assert_msg(!whole, "the client got the whole answer");
        if (at == AFTER_MARK)
            ck_assert_msg(kbt_wait_until(inflight_row_answered, &ra, 10000), "mark not applied");
        else
            ck_assert_int_eq(kbt_sql_long1(c,
                                           "SELECT count(*) FROM meter_inflight"
                                           " WHERE request_id = $1 AND NOT answered",
                                           rid),
                             1);
    }
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT credits_used FROM billing_accounts WHERE user_id = $1", a.user_id),
        1);
    /* The restart takes the dead pool's journal over, and its lease: the journal
     * entry is pending (1 charge) unless the answer went out; the row is settled
     * from meter_inflight as for any dead host (refunded unless marked). */
    log_line took = {stack_log_size(), ""};
    snprintf(took.line, sizeof(took.line), "1 taken over with %d charges to settle",
             at == AFTER_ANSWER ? 0 : 1);
    ck_assert_int_eq(kbt_stack("app-start", NULL), 0);
    ck_assert_msg(kbt_wait_until(stack_log_has, &took, 15000), "no '%s' in app.log", took.line);
    ck_assert_msg(kbt_wait_until(inflight_row_gone, &ra, 15000), "row of %s not settled", rid);
    if (at == AFTER_ANSWER) {
        ck_assert_int_eq(
            kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1", rid), 0);
        ck_assert_int_eq(kbt_sql_long1(c,
                                       "SELECT credits_used FROM billing_accounts"
                                       " WHERE user_id = $1",
                                       a.user_id),
                         1);
    } else {
        kbt_request_ref rr = {c, rid};
        ck_assert_msg(kbt_wait_until(kbt_refund_recorded, &rr, 15000), "charge of %s not refunded",
                      rid);
        ck_assert_int_eq(kbt_sql_long1(c,
                                       "SELECT credits_used FROM billing_accounts"
                                       " WHERE user_id = $1",
                                       a.user_id),
                         0);
    }
    kbt_resp_free(resp);
    free(rid);
    PQfinish(c);
}

START_TEST(whole_pool_killed_before_the_mark_its_charge_is_refunded)
{
    kill_around_the_answer(BEFORE_MARK);
}
END_TEST

/* Postgres counts this charge as answered (a host settling it from meter_inflight
 * keeps it); the journal file says the last byte never went out, and the restart
 * refunds it. */
START_TEST(whole_pool_killed_after_the_mark_before_the_last_byte_is_refunded)
{
    kill_around_the_answer(AFTER_MARK);
}
END_TEST

START_TEST(whole_pool_killed_after_the_last_byte_its_charge_stands)
{
    kill_around_the_answer(AFTER_ANSWER);
}
END_TEST

static void
restore_lease(void)
{
    kbt_app_env_set("KB_HOST_ROWS", NULL);
    kbt_app_env_set("KB_HOST_LEASE_MS", NULL);
}

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("hosts");
    TCase *tc = tcase_create("lease");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, second_live_pool_with_the_same_host_id_refuses_to_start);
    tcase_add_test(tc, lease_held_elsewhere_is_taken_over_after_expiry_refused_while_renewed);
    tcase_add_test(tc, dead_host_charges_are_settled_exactly_once_by_racing_hosts);
    tcase_add_test(tc, restarted_pool_on_the_same_slot_keeps_what_the_dead_life_left);
    tcase_add_test(tc, late_refund_leaves_a_claimed_outbox_row_with_its_batch);
    tcase_add_test(tc, pool_whose_lease_was_ended_charges_nothing);
    tcase_add_test(tc, charges_write_inflight_rows_only_while_another_host_lives);
    suite_add_tcase(s, tc);
    TCase *tk = tcase_create("whole pool killed");
    tcase_set_timeout(tk, 120);
    tcase_add_unchecked_fixture(tk, NULL, restore_lease);
    tcase_add_test(tk, whole_pool_killed_its_restart_refunds_the_charge_in_flight);
    tcase_add_test(tk, whole_pool_killed_another_host_refunds_when_its_lease_expires);
    tcase_add_test(tk, whole_pool_killed_before_the_mark_its_charge_is_refunded);
    tcase_add_test(tk, whole_pool_killed_after_the_mark_before_the_last_byte_is_refunded);
    tcase_add_test(tk, whole_pool_killed_after_the_last_byte_its_charge_stands);
    suite_add_tcase(s, tk);
    return kb_check_run(s);
}
