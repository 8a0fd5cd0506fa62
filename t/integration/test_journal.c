/* test_journal.c - charges of requests that never got a 2xx answer are refunded
 * even when the worker dies or the refund itself fails (DESIGN.md money rule 3;
 * lib/kb_journal.h, db/migrations/0015_meter_fast_path.sql):
 *   - a worker SIGKILLed after its charge committed, while its data query waits
 *     on a lock: the client gets 503, and another worker refunds the charge
 *     from the journal (the transaction id it holds committed);
 *   - a worker SIGKILLed while its meter statement waits on a lock: the
 *     statement's transaction never gets its commit, so the orphaned backend
 *     aborts it: nothing charged, nothing to refund;
 *   - a refund that cannot reach the database (its connection killed twice):
 *     the 404 goes out without credit headers and the idle worker refunds it
 *     as soon as the database answers again;
 *   - a worker SIGKILLed after its 2xx answer reached nginx, as it closes
 *     the FastCGI connection (stopped there with ptrace): the client has its
 *     200 and the charge stands; nothing is left to settle. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "kbt.h"

#define MAXW 64

static long
used(PGconn *c, const kbt_account *a)
{
    return kbt_sql_long1(c, "SELECT credits_used FROM billing_accounts WHERE user_id = $1",
                         a->user_id);
}

static size_t
nworkers(void)
{
    return (size_t)strtol(kbt_env("KB_WORKERS"), NULL, 10);
}

static bool
pool_full(void *arg)
{
    (void)arg;
    pid_t w[MAXW];
    return kbt_children(kbt_master_pid(), w, MAXW) == nworkers();
}

/* SIGKILL every worker of the pool. */
static void
kill_all_workers(void)
{
    pid_t w[MAXW];
    size_t n = kbt_children(kbt_master_pid(), w, MAXW);
    ck_assert_uint_eq(n, nworkers());
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(kill(w[i], SIGKILL), 0);
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

START_TEST(charge_of_a_killed_worker_is_refunded_by_another)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    long before = (long)kbt_metric("kalshibook_charges_settled_total");

    /* The data query (after the charge committed) will wait on this lock; on a
     * streaming replica too (the lock is WAL-logged: flush it and wait for it). */
    PGconn *lock = kbt_db();
    kbt_sql_ok(lock, "BEGIN");
    kbt_sql_ok(lock, "LOCK TABLE markets IN ACCESS EXCLUSIVE MODE");
    PGconn *data = data_db();
    if (getenv("KB_DATABASE_READ_URL") != NULL && getenv("KB_DATABASE_READ_URL")[0] != '\0') {
        kbt_sql_ok(c, "SELECT pg_switch_wal()");
        kbt_data_wait_replica();
    }

    kbt_keyed_get f = {a.key, "/markets", NULL};
    pthread_t th;
    pthread_create(&th, NULL, kbt_keyed_get_thread, &f);
    ck_assert_msg(kbt_wait_until(kbt_one_worker_waits_on_lock, data, 10000),
                  "request not in flight");
    /* It did commit: the refund below is not vacuous. */
    ck_assert_int_eq(used(c, &a), 1);

    /* Kill every worker: the one in flight dies with its charge unanswered. */
    kill_all_workers();
    pthread_join(th, NULL);
    /* nginx turns the dead upstream's 502 into its JSON 503. */
    kbt_assert_envelope(f.resp, 503, "service_unavailable");
    char *rid = kbt_header(f.resp, "X-Request-ID");
    ck_assert_ptr_nonnull(rid);
    ck_assert_ptr_null(kbt_header(f.resp, "X-Credits-Cost"));

    /* Another worker settles the journal entry the dead one left. */
    kbt_request_ref rr = {c, rid};
    ck_assert_msg(kbt_wait_until(kbt_refund_recorded, &rr, 15000), "charge of %s not refunded",
                  rid);
    kbt_sql_ok(lock, "COMMIT");
    ck_assert_int_eq(used(c, &a), 0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT coalesce(sum(requests), 0) FROM api_key_usage"
                                   " WHERE api_key_id = $1",
                                   a.key_id),
                     0);
    ck_assert_msg(kbt_wait_until(pool_full, NULL, 15000), "pool not back");
    ck_assert_int_eq((long)kbt_metric("kalshibook_charges_settled_total"), before + 1);

    /* The account works normally afterwards, and that charge stands. */
    kbt_keyed_get g = {a.key, "/markets", NULL};
    kbt_keyed_get_thread(&g);
    ck_assert_int_eq(g.resp->status, 200);
    ck_assert_int_eq(used(c, &a), 1);
    kbt_resp_free(g.resp);
    kbt_resp_free(f.resp);
    free(rid);
    PQfinish(data);
    PQfinish(lock);
    PQfinish(c);
}
END_TEST

typedef struct backend {
    PGconn *c;
    char pid[16];
} backend;

static bool
backend_gone(void *arg)
{
    backend *b = arg;
    return kbt_sql_long1(b->c, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int",
                         b->pid) == 0;
}

/* A worker killed while its meter statement waits on the account row: the
 * statement's transaction was never sent its commit, so when the orphaned
 * backend gets the row it finishes the statement and aborts. Nothing is
 * charged and nothing needs a refund. */
START_TEST(meter_statement_of_a_killed_worker_never_commits)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);

    PGconn *lock = kbt_db();
    kbt_sql_ok(lock, "BEGIN");
    const char *p[] = {a.user_id};
    PGresult *res = PQexecParams(lock,
                                 "SELECT 1 FROM billing_accounts WHERE user_id = $1"
                                 " FOR UPDATE",
                                 1, NULL, p, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);

    kbt_keyed_get f = {a.key, "/markets", NULL};
    pthread_t th;
    pthread_create(&th, NULL, kbt_keyed_get_thread, &f);
    ck_assert_msg(kbt_wait_until(kbt_one_worker_waits_on_lock, c, 10000), "request not in flight");
    backend b = {c, ""};
    char *pid = kbt_sql_value(c, "SELECT pid FROM pg_stat_activity WHERE application_name"
                                 " LIKE 'kalshibook-worker%' AND wait_event_type = 'Lock'");
    ck_assert_ptr_nonnull(pid);
    snprintf(b.pid, sizeof(b.pid), "%s", pid);
    free(pid);

    kill_all_workers();
    pthread_join(th, NULL);
    kbt_assert_envelope(f.resp, 503, "service_unavailable");
    char *rid = kbt_header(f.resp, "X-Request-ID");
    ck_assert_ptr_nonnull(rid);

    /* Let the orphaned statement go on; its backend then sees its client gone. */
    kbt_sql_ok(lock, "COMMIT");
    ck_assert_msg(kbt_wait_until(backend_gone, &b, 15000), "backend %s still there", b.pid);
    ck_assert_int_eq(used(c, &a), 0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT coalesce(sum(requests), 0) FROM api_key_usage"
                                   " WHERE api_key_id = $1",
                                   a.key_id),
                     0);
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1", rid), 0);
    ck_assert_msg(kbt_wait_until(pool_full, NULL, 15000), "pool not back");

    kbt_keyed_get g = {a.key, "/markets", NULL};
    kbt_keyed_get_thread(&g);
    ck_assert_int_eq(g.resp->status, 200);
    ck_assert_int_eq(used(c, &a), 1);
    kbt_resp_free(g.resp);
    kbt_resp_free(f.resp);
    free(rid);
    PQfinish(lock);
    PQfinish(c);
}
END_TEST

START_TEST(refund_that_failed_is_settled_when_the_database_answers)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);

    /* Refunds wait on this lock; their connections are then killed. */
    PGconn *lock = kbt_db();
    kbt_sql_ok(lock, "BEGIN");
    kbt_sql_ok(lock, "LOCK TABLE meter_refunds IN EXCLUSIVE MODE");

    kbt_keyed_get f = {a.key, "/markets/KB-NO-SUCH-MARKET", NULL};
    pthread_t th;
    pthread_create(&th, NULL, kbt_keyed_get_thread, &f);
    /* The refund, then its one retry on a fresh connection. */
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(kbt_wait_until(kbt_one_worker_waits_on_lock, c, 10000),
                      "refund %d not waiting", i);
        /* With a timeout, pg_terminate_backend returns once the backend is gone,
         * so the next wait sees the retry, not this one. */
        kbt_sql_ok(c, "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE"
                      " application_name LIKE 'kalshibook-worker%' AND wait_event_type = 'Lock'");
    }
    pthread_join(th, NULL);
    kbt_assert_envelope(f.resp, 404, "market_not_found");
    /* The refund did not happen: no credit headers, the charge still on the account. */
    ck_assert_ptr_null(kbt_header(f.resp, "X-Credits-Cost"));
    ck_assert_int_eq(used(c, &a), 1);
    char *rid = kbt_header(f.resp, "X-Request-ID");
    ck_assert_ptr_nonnull(rid);

    kbt_sql_ok(lock, "ROLLBACK");
    kbt_request_ref rr = {c, rid};
    ck_assert_msg(kbt_wait_until(kbt_refund_recorded, &rr, 15000), "charge of %s not refunded",
                  rid);
    ck_assert_int_eq(used(c, &a), 0);
    kbt_resp_free(f.resp);
    free(rid);
    PQfinish(lock);
    PQfinish(c);
}
END_TEST

/* The pool's workers, traced: stopped at each system call until one of them
 * enters close(2) or shutdown(2) on a socket (the FastCGI connection: a worker closes
 * no other socket while it serves a request), which it does to close a FastCGI
 * connection once the answer, end of request included, has been written to
 * nginx (app/fcgi/fcgi.c closes at once; libfcgi's way starts with shutdown). That
 * one is SIGKILLed there; the others are let go. Returns the killed worker's
 * pid. */
static pid_t
kill_worker_closing_its_connection(void)
{
    pid_t w[MAXW];
    size_t n = kbt_children(kbt_master_pid(), w, MAXW);
    ck_assert_uint_eq(n, nworkers());
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(ptrace(PTRACE_SEIZE, w[i], NULL, (void *)PTRACE_O_TRACESYSGOOD), 0);
        ck_assert_int_eq(ptrace(PTRACE_INTERRUPT, w[i], NULL, NULL), 0);
    }
    pid_t killed = 0;
    size_t running = n;
    while (running > 0) {
        int st;
        pid_t p = waitpid(-1, &st, __WALL);
        ck_assert_int_gt(p, 0);
        if (WIFEXITED(st) || WIFSIGNALED(st)) { /* the one killed below */
            running--;
            continue;
        }
        int sig = WSTOPSIG(st);
        bool syscall_stop = sig == (SIGTRAP | 0x80);
        if (killed != 0) {
            /* Done: let every other worker go where it stopped. */
            ck_assert_int_eq(ptrace(PTRACE_DETACH, p, NULL, NULL), 0);
            running--;
            continue;
        }
        if (syscall_stop) {
#if defined(__x86_64__)
            struct user_regs_struct regs;
            ck_assert_int_eq(ptrace(PTRACE_GETREGS, p, NULL, &regs), 0);
            long nr = (long)regs.orig_rax, fd = (long)regs.rdi;
#else
            long nr = -1, fd = -1;
            ck_abort_msg("reading the system call number is written for x86-64 only");
#endif
            if ((nr == SYS_shutdown || nr == SYS_close) && kbt_fd_is_socket(p, fd)) {
                ck_assert_int_eq(kill(p, SIGKILL), 0);
                killed = p;
                for (size_t i = 0; i < n; i++)
                    if (w[i] != p)
                        ptrace(PTRACE_INTERRUPT, w[i], NULL, NULL);
                continue;
            }
        }
        /* A stop of ours (interrupt, system call) delivers nothing; any other
         * signal goes on to the worker. */
        int deliver = syscall_stop || (st >> 16) != 0 || sig == SIGTRAP ? 0 : sig;
        ck_assert_int_eq(ptrace(PTRACE_SYSCALL, p, NULL, (void *)(long)deliver), 0);
    }
    return killed;
}

typedef struct restarted {
    double before;
} restarted;

static bool
worker_restarted(void *arg)
{
    return kbt_metric("kalshibook_worker_restarts_total") > ((restarted *)arg)->before;
}

/* The charge of an answer nginx has in full stands, whatever happens to the
 * worker afterwards (DESIGN.md money rules 1 and 3: charged = answered). */
START_TEST(charge_of_an_answer_sent_stands_when_its_worker_dies)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    ck_assert_msg(kbt_wait_until(pool_full, NULL, 15000), "pool not full");
    double orphaned = kbt_metric("kalshibook_charges_orphaned_total");
    double settled = kbt_metric("kalshibook_charges_settled_total");
    restarted r = {kbt_metric("kalshibook_worker_restarts_total")};

    kbt_keyed_get f = {a.key, "/markets", NULL};
    pthread_t th;
    pthread_create(&th, NULL, kbt_keyed_get_thread, &f);
    ck_assert_int_gt(kill_worker_closing_its_connection(), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(f.resp->status, 200);
    char *cost = kbt_header(f.resp, "X-Credits-Cost");
    ck_assert_ptr_nonnull(cost);
    ck_assert_str_eq(cost, "1");
    free(cost);

    /* The master reaps the worker (orphaning its entry, were it pending) before
     * it counts the restart. */
    ck_assert_msg(kbt_wait_until(worker_restarted, &r, 15000), "worker not reaped");
    ck_assert_msg(kbt_metric("kalshibook_charges_orphaned_total") == orphaned,
                  "the answered charge was left to be settled (refunded)");
    ck_assert_int_eq(used(c, &a), 1);
    char *rid = kbt_header(f.resp, "X-Request-ID");
    ck_assert_int_eq(
        kbt_sql_long1(c, "SELECT count(*) FROM meter_refunds WHERE request_id = $1", rid), 0);
    ck_assert_msg(kbt_wait_until(pool_full, NULL, 15000), "pool not back");
    ck_assert(kbt_metric("kalshibook_charges_settled_total") == settled);
    free(rid);
    kbt_resp_free(f.resp);
    PQfinish(c);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("journal");
    TCase *tc = tcase_create("journal");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, charge_of_a_killed_worker_is_refunded_by_another);
    tcase_add_test(tc, meter_statement_of_a_killed_worker_never_commits);
    tcase_add_test(tc, refund_that_failed_is_settled_when_the_database_answers);
    tcase_add_test(tc, charge_of_an_answer_sent_stands_when_its_worker_dies);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
