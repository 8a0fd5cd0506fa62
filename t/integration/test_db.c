/* test_db.c - database outage and recovery, migrations, configuration checks. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "kb_db.h"
#include "kbt.h"
#include "kb_banned.h"

static bool
health_is(void *want)
{
    kbt_resp *r = kbt_get("/health");
    bool ok = r->status == *(long *)want;
    kbt_resp_free(r);
    return ok;
}

static bool
all_healthy(void *arg)
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
outage_then_recovery(const char *mode)
{
    long ok = 200;
    ck_assert(kbt_wait_until(health_is, &ok, 10000));
    ck_assert_int_eq(kbt_stack("pg-stop", mode), 0);

    /* Every worker answers 503 in the envelope, quickly, with Retry-After. */
    for (int i = 0; i < 12; i++) {
        long t0 = kbt_now_ms();
        kbt_resp *r = kbt_get("/health");
        ck_assert_msg(kbt_now_ms() - t0 < 5000, "503 took %ld ms", kbt_now_ms() - t0);
        kbt_assert_envelope(r, 503, "service_unavailable");
        char *ra = kbt_header(r, "Retry-After");
        ck_assert_msg(ra != NULL && strtol(ra, NULL, 10) >= 1, "Retry-After");
        free(ra);
        kbt_resp_free(r);
    }

    ck_assert_int_eq(kbt_stack("pg-start", NULL), 0);
    /* Each worker reconnects by itself at its next backoff step (at most 5 s
     * apart): wait until every worker answers, i.e. 30 successes in a row. */
    ck_assert_msg(kbt_wait_until(all_healthy, NULL, 30000), "no full recovery after restart");
}

/* Unchecked teardown: an outage test that failed half-way leaves Postgres
 * stopped; the later tests need it (pg-start on a running server is a no-op). */
static void
pg_back_up(void)
{
    kbt_stack("pg-start", NULL);
}

START_TEST(db_down_is_503_then_recovers_fast_shutdown)
{
    outage_then_recovery("fast");
}
END_TEST

START_TEST(db_down_is_503_then_recovers_immediate_shutdown)
{
    outage_then_recovery("immediate");
}
END_TEST

/* ---- /health's answer window (KB_HEALTH_MAX_AGE_MS) ---- */

/* With a minute-long window a worker whose connection answered seconds ago
 * would still say 200 if it trusted the window alone: the socket check must
 * see the server hang up, on every worker, at once. */
START_TEST(health_window_still_sees_a_stopped_database_fast_shutdown)
{
    ck_assert(kbt_wait_until(all_healthy, NULL, 30000));
    outage_then_recovery("fast");
}
END_TEST

START_TEST(health_window_still_sees_a_stopped_database_immediate_shutdown)
{
    ck_assert(kbt_wait_until(all_healthy, NULL, 30000));
    outage_then_recovery("immediate");
}
END_TEST

static void
health_window_long(void)
{
    kbt_app_env_set("KB_HEALTH_MAX_AGE_MS", "60000");
}

/* Unchecked teardown (runs in the parent), so a failure never leaves the
 * shared stack with the long window. */
static void
health_window_default(void)
{
    pg_back_up();
    kbt_app_env_set("KB_HEALTH_MAX_AGE_MS", NULL);
    kbt_wait_until(all_healthy, NULL, 30000);
}

static bool
db_not_answered_within_minute(void *db)
{
    return !kb_db_answered_within(db, 60 * 1000000LL);
}

static bool
db_answer_older_than_1ms(void *db)
{
    return !kb_db_answered_within(db, 1000);
}

/* The window's two tests, on a connection of the test's own: its age, and a
 * server that ended the connection (pg_terminate_backend) without a query. */
START_TEST(db_answered_within_tracks_age_and_a_closed_connection)
{
    static const kb_stmt one = {"kbt_one", "SELECT 1", 0, true};
    kb_db db;
    kb_db_init(&db, kbt_env("KB_DATABASE_URL"), "kbt-answered-within", 3, 0);
    ck_assert(!kb_db_answered_within(&db, 60 * 1000000LL)); /* never asked yet */
    ck_assert_int_eq(kb_db_exec(&db, NULL, &one, NULL, NULL), KB_OK);
    ck_assert(kb_db_answered_within(&db, 60 * 1000000LL));
    ck_assert(!kb_db_answered_within(&db, 0));
    /* 1 ms: that answer gets older than that, and then stays so. */
    ck_assert(kbt_wait_until(db_answer_older_than_1ms, &db, 1000));
    ck_assert(kb_db_answered_within(&db, 60 * 1000000LL));

    int old_pid = PQbackendPID(db.conn);
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", old_pid);
    PGconn *c = kbt_db();
    char *done = kbt_sqlp_value(c, "SELECT pg_terminate_backend($1::int)::text", 1, pid);
    ck_assert_str_eq(done, "true");
    free(done);
    ck_assert_msg(kbt_wait_until(db_not_answered_within_minute, &db, 5000),
                  "a terminated connection still counts as answering");

    /* The next statement finds the connection gone and asks on a new one. */
    ck_assert_int_eq(kb_db_exec(&db, NULL, &one, NULL, NULL), KB_OK);
    ck_assert(kb_db_answered_within(&db, 60 * 1000000LL));
    ck_assert_int_ne(PQbackendPID(db.conn), old_pid);
    kb_db_release(&db);
    PQfinish(c);
}
END_TEST

/* ---- a server that stops answering without closing anything ---- */

/* Backends of the pool's primary connections, frozen with SIGSTOP by the test. */
static pid_t frozen[64];
static size_t nfrozen;

static void
thaw(void)
{
    for (size_t i = 0; i < nfrozen; i++)
        kill(frozen[i], SIGCONT);
    nfrozen = 0;
}

static void
freeze(pid_t pid)
{
    ck_assert_uint_lt(nfrozen, 64);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    frozen[nfrozen++] = pid;
}

/* Backends whose application_name is one of the comma-separated names. */
static PGresult *
backends_of(PGconn *c, const char *names)
{
    const char *params[] = {names};
    return PQexecParams(c,
                        "SELECT pid FROM pg_stat_activity"
                        " WHERE application_name = ANY(string_to_array($1, ','))",
                        1, NULL, params, NULL, NULL, 0);
}

static void
reply_deadline_on(void)
{
    /* Every /health asks (no answer window), and statements time out after 1 s. */
    kbt_app_env_set("KB_HEALTH_MAX_AGE_MS", "0");
    kbt_app_env_set("KB_DB_STATEMENT_TIMEOUT_MS", "1000");
}

/* Unchecked teardown (in the parent, which does not know what a failed test
 * froze): SIGCONT every backend the tests may have stopped, restore the
 * defaults. */
static void
reply_deadline_off(void)
{
    PGconn *c = kbt_db();
    PGresult *r = backends_of(c, "kalshibook-worker,kbt-deadline");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++)
        kill((pid_t)strtol(PQgetvalue(r, i, 0), NULL, 10), SIGCONT);
    PQclear(r);
    PQfinish(c);
    kbt_app_env_set("KB_DB_STATEMENT_TIMEOUT_MS", NULL);
    kbt_app_env_set("KB_HEALTH_MAX_AGE_MS", NULL);
    kbt_wait_until(all_healthy, NULL, 30000);
}

static bool
every_worker_connected(void *c)
{
    pid_t kids[64];
    size_t n = kbt_children(kbt_master_pid(), kids, 64);
    PGresult *r = backends_of(c, "kalshibook-worker");
    bool ok = n > 0 && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == (int)n;
    PQclear(r);
    return ok;
}

/* SIGSTOP every worker's backend: the sockets stay open and nothing ever
 * answers, as with a hung or partitioned server. */
static void
freeze_worker_backends(PGconn *c)
{
    PGresult *r = backends_of(c, "kalshibook-worker");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_ge(PQntuples(r), 1);
    for (int i = 0; i < PQntuples(r); i++)
        freeze((pid_t)strtol(PQgetvalue(r, i, 0), NULL, 10));
    PQclear(r);
}

/* /health, a read, must come back 200 on a fresh connection once the 1 s
 * statement timeout plus the 5 s grace have passed: not at once (the frozen
 * backend cannot answer) and not never. */
static void
health_after_the_deadline(const char *phase)
{
    long t0 = kbt_now_ms();
    kbt_resp *h = kbt_get("/health");
    long took = kbt_now_ms() - t0;
    ck_assert_msg(h->status == 200, "%s: status %ld after %ld ms", phase, h->status, took);
    ck_assert_msg(took >= 5000 && took < 15000, "%s: answered after %ld ms", phase, took);
    kbt_resp_free(h);
}

START_TEST(frozen_backend_costs_a_deadline_not_a_hang)
{
    PGconn *c = kbt_db();
    ck_assert(kbt_wait_until(all_healthy, NULL, 30000));
    ck_assert(kbt_wait_until(every_worker_connected, c, 30000));
    freeze_worker_backends(c);
    health_after_the_deadline("pool");
    thaw();
    PQfinish(c);
}
END_TEST

static long
timed_exec(kb_db *db, const kb_stmt *st, kb_err *err)
{
    long t0 = kbt_now_ms();
    *err = kb_db_exec(db, NULL, st, NULL, NULL);
    return kbt_now_ms() - t0;
}

/* Both waits kb_db_exec can make, on a connection of the test's own with a
 * 1 s statement timeout: a statement's first use (prepare), a prepared
 * statement's execute, and a pipeline of two (kb_db_send_ahead). Each gives
 * up 5 s past the timeouts, reconnects and, the statements being reads,
 * succeeds on the new connection. */
START_TEST(db_exec_gives_up_on_a_frozen_server_in_prepare_and_execute)
{
    static const kb_stmt first = {"kbt_first", "SELECT 1", 0, true};
    static const kb_stmt second = {"kbt_second", "SELECT 2", 0, true};
    kb_db db;
    kb_err err;
    kb_db_init(&db, kbt_env("KB_DATABASE_URL"), "kbt-deadline", 3, 1000);
    ck_assert_int_eq(kb_db_exec(&db, NULL, &first, NULL, NULL), KB_OK);

    /* prepare: "second" was never used on this connection */
    freeze(PQbackendPID(db.conn));
    long took = timed_exec(&db, &second, &err);
    ck_assert_int_eq(err, KB_OK);
    ck_assert_msg(took >= 5000 && took < 12000, "prepare: %ld ms", took);
    thaw();

    /* execute: "second" is prepared on the new connection now */
    freeze(PQbackendPID(db.conn));
    took = timed_exec(&db, &second, &err);
    ck_assert_int_eq(err, KB_OK);
    ck_assert_msg(took >= 5000 && took < 12000, "execute: %ld ms", took);
    thaw();

    /* a pipeline: "first" with "second" sent ahead, both prepared on this
     * connection; the wait allows both statements' timeouts, 2 s, plus the 5 s */
    ck_assert_int_eq(kb_db_exec(&db, NULL, &first, NULL, NULL), KB_OK);
    kb_db_send_ahead(&db, &second, NULL);
    freeze(PQbackendPID(db.conn));
    took = timed_exec(&db, &first, &err);
    ck_assert_int_eq(err, KB_OK);
    ck_assert_msg(took >= 7000 && took < 14000, "pipeline: %ld ms", took);
    ck_assert_ptr_null(db.ahead); /* dropped with the connection */
    thaw();
    kb_db_release(&db);
}
END_TEST

/* Run kbctl with extra environment; returns exit status, output in out. */
static int
kbctl(const char *const *env, const char *const *args, kb_buf *out)
{
    int p[2];
    ck_assert(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        for (size_t i = 0; env != NULL && env[i] != NULL; i += 2) {
            if (env[i + 1] == NULL)
                unsetenv(env[i]);
            else
                setenv(env[i], env[i + 1], 1);
        }
        char bin[4096];
        snprintf(bin, sizeof(bin), "%s/kbctl", kbt_env("KB_BIN_DIR"));
        const char *argv[16] = {bin};
        size_t n = 1;
        for (size_t i = 0; args[i] != NULL && n < 15; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    char chunk[4096];
    ssize_t k;
    while ((k = read(p[0], chunk, sizeof(chunk))) > 0)
        kb_buf_append(out, chunk, (size_t)k);
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *
make_migrations_dir(void)
{
    char *dir = strdup("/tmp/kbt-migr-XXXXXX");
    ck_assert(mkdtemp(dir) != NULL);
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "cp %s/db/migrations/*.sql %s/", kbt_env("KB_REPO_ROOT"), dir);
    ck_assert_int_eq(system(cmd), 0);
    return dir;
}

static void
write_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void
remove_dir(char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}

START_TEST(migrate_is_idempotent_and_recorded)
{
    kb_buf out = KB_BUF_INIT;
    const char *args[] = {"migrate", NULL};
    ck_assert_int_eq(kbctl(NULL, args, &out), 0);
    ck_assert_msg(strstr(kb_buf_cstr(&out), "(0 applied now") != NULL, "%s", kb_buf_cstr(&out));
    PGconn *c = kbt_db();
    char *v = kbt_sql_value(c, "SELECT count(*) FROM schema_migrations WHERE version = '0001'"
                               " AND length(checksum) = 64");
    ck_assert_str_eq(v, "1");
    free(v);
    PQfinish(c);
    kb_buf_release(&out);
}
END_TEST

START_TEST(migrate_refuses_changed_applied_file)
{
    char *dir = make_migrations_dir();
    char path[4096];
    snprintf(path, sizeof(path), "%s/0001_clock.sql", dir);
    FILE *f = fopen(path, "a");
    ck_assert(f != NULL);
    fputs("\n-- edited after the fact\n", f);
    fclose(f);
    write_file(dir, "9001_never.sql", "CREATE TABLE kbt_never (x int);\n");
    kb_buf out = KB_BUF_INIT;
    const char *args[] = {"migrate", "--dir", dir, NULL};
    ck_assert_int_eq(kbctl(NULL, args, &out), 1);
    ck_assert_msg(strstr(kb_buf_cstr(&out), "changed since it was applied") != NULL, "%s",
                  kb_buf_cstr(&out));
    PGconn *c = kbt_db();
    char *v = kbt_sql_value(c, "SELECT to_regclass('kbt_never') IS NULL");
    ck_assert_str_eq(v, "t");
    free(v);
    PQfinish(c);
    kb_buf_release(&out);
    remove_dir(dir);
}
END_TEST

START_TEST(migrate_rolls_back_a_failing_file)
{
    char *dir = make_migrations_dir();
    write_file(dir, "9002_half.sql",
               "CREATE TABLE kbt_half (x int);\nSELECT no_such_function();\n");
    kb_buf out = KB_BUF_INIT;
    const char *args[] = {"migrate", "--dir", dir, NULL};
    ck_assert_int_eq(kbctl(NULL, args, &out), 1);
    ck_assert_msg(strstr(kb_buf_cstr(&out), "9002_half.sql' failed and was rolled back") != NULL,
                  "%s", kb_buf_cstr(&out));
    PGconn *c = kbt_db();
    char *v = kbt_sql_value(c, "SELECT to_regclass('kbt_half') IS NULL AND NOT EXISTS "
                               "(SELECT 1 FROM schema_migrations WHERE version = '9002')");
    ck_assert_str_eq(v, "t");
    free(v);
    PQfinish(c);
    kb_buf_release(&out);
    remove_dir(dir);
}
END_TEST

START_TEST(check_config_names_every_problem)
{
    kb_buf out = KB_BUF_INIT;
    const char *env[] = {"KB_DATABASE_URL", NULL,   "KB_WORKERS", "lots", "KB_SOCKET_MODE", "999",
                         "KB_LOG_LEVEL",    "loud", NULL};
    const char *args[] = {"check-config", NULL};
    ck_assert_int_eq(kbctl(env, args, &out), 78);
    const char *s = kb_buf_cstr(&out);
    ck_assert_msg(strstr(s, "KB_DATABASE_URL: is required") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "KB_WORKERS: must be an integer") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "KB_SOCKET_MODE: must be an octal mode") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "KB_LOG_LEVEL: must be") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "4 problems") != NULL, "%s", s);
    kb_buf_release(&out);
}
END_TEST

/* Every command but check-config (which judges the configuration itself) gets it loaded by
 * kbctl's command table: an invalid one is exit 78 naming the problem, before the command
 * runs; --help needs none. */
START_TEST(kbctl_commands_refuse_an_invalid_configuration)
{
    static const char *const cmds[][3] = {
        {"migrate", NULL, NULL},       {"report-usage", NULL, NULL}, {"stripe-sync", NULL, NULL},
        {"stripe-setup", NULL, NULL},  {"user", "show", "a@b.test"}, {"status", NULL, NULL},
        {"import", "/dev/null", NULL}, {"demo-data", NULL, NULL},    {"partitions", NULL, NULL},
    };
    const char *env[] = {"KB_DATABASE_URL", NULL, NULL};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        kb_buf out = KB_BUF_INIT;
        int rc = kbctl(env, cmds[i], &out);
        ck_assert_msg(rc == 78, "%s: exit %d: %s", cmds[i][0], rc, kb_buf_cstr(&out));
        ck_assert_msg(strstr(kb_buf_cstr(&out), "invalid configuration") != NULL &&
                          strstr(kb_buf_cstr(&out), "KB_DATABASE_URL: is required") != NULL,
                      "%s: %s", cmds[i][0], kb_buf_cstr(&out));
        kb_buf_reset(&out);
        const char *help[] = {cmds[i][0], "--help", NULL};
        rc = kbctl(env, help, &out);
        ck_assert_msg(rc == 0, "%s --help: exit %d: %s", cmds[i][0], rc, kb_buf_cstr(&out));
        kb_buf_release(&out);
    }
    /* demo-data writing a file needs none either */
    const char *to_file[] = {"demo-data", "--markets", "1",     "--fp-markets", "0",
                             "--days",    "1",         "--out", "/dev/null",    NULL};
    kb_buf out = KB_BUF_INIT;
    ck_assert_int_eq(kbctl(env, to_file, &out), 0);
    kb_buf_release(&out);
}
END_TEST

START_TEST(check_config_never_prints_secrets)
{
    kb_buf out = KB_BUF_INIT;
    const char *env[] = {"KB_DATABASE_URL", "host=/nonexistent password=hunter2-secret", NULL};
    const char *args[] = {"check-config", NULL};
    ck_assert_int_eq(kbctl(env, args, &out), 0);
    ck_assert_msg(strstr(kb_buf_cstr(&out), "hunter2") == NULL, "%s", kb_buf_cstr(&out));
    ck_assert(strstr(kb_buf_cstr(&out), "configuration ok") != NULL);
    kb_buf_release(&out);
}
END_TEST

START_TEST(kbctl_user_sets_overrides_with_audit)
{
    PGconn *c = kbt_db();
    char email[64];
    snprintf(email, sizeof(email), "ops-%ld@example.test", (long)getpid());
    const char *p[] = {email};
    PQclear(PQexecParams(c, "INSERT INTO users (email, password_hash) VALUES ($1, 'x')", 1, NULL, p,
                         NULL, NULL, 0));
    kb_buf out = KB_BUF_INIT;
    const char *set[] = {"user", "set",   email, "--tier",   "project",     "--credits",
                         "50",   "--rpm", "9",   "--reason", "custom deal", NULL};
    ck_assert_int_eq(kbctl(NULL, set, &out), 0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT (tier = 'project' AND credits_total = 50 AND"
                                   " credits_override = 50 AND rpm_override = 9)::int FROM"
                                   " billing_accounts b JOIN users u ON u.id = b.user_id"
                                   " WHERE u.email = $1",
                                   email),
                     1);
    const char *back[] = {"user", "set", email, "--credits", "default", "--rpm", "default", NULL};
    ck_assert_int_eq(kbctl(NULL, back, &out), 0);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT (credits_total = 4000 AND credits_override IS NULL"
                                   " AND rpm_override IS NULL)::int FROM billing_accounts b"
                                   " JOIN users u ON u.id = b.user_id WHERE u.email = $1",
                                   email),
                     1);
    ck_assert_int_eq(kbt_sql_long1(c,
                                   "SELECT count(*) FROM admin_audit a JOIN users u ON"
                                   " u.id = a.user_id WHERE u.email = $1 AND a.details->>'reason'"
                                   " IS NOT NULL",
                                   email),
                     2);
    const char *bad[] = {"user", "set", email, "--rpm", "0", NULL};
    ck_assert_int_eq(kbctl(NULL, bad, &out), 64);
    const char *nobody[] = {"user", "set", "nobody@example.test", "--tier", "free", NULL};
    ck_assert_int_eq(kbctl(NULL, nobody, &out), 1);
    kb_buf_release(&out);
    PQfinish(c);
}
END_TEST

START_TEST(kbctl_status_reports_pool_database_and_outbox)
{
    kb_buf out = KB_BUF_INIT;
    const char *args[] = {"status", NULL};
    ck_assert_int_eq(kbctl(NULL, args, &out), 0);
    const char *s = kb_buf_cstr(&out);
    ck_assert_msg(strstr(s, "database   ok, schema ") != NULL, "%s", s);
    ck_assert_msg(strstr(s, "outbox     ") != NULL && strstr(s, "webhook    ") != NULL, "%s", s);
    /* At least the test stack's own master and its workers. */
    int masters = 0, children = 0;
    const char *pool = strstr(s, "pool ");
    ck_assert_msg(pool != NULL && sscanf(pool, "pool %d master%*[s,] %d", &masters, &children) == 2,
                  "%s", s);
    ck_assert_int_ge(masters, 1);
    ck_assert_int_ge(children, 1);
    const char *bad[] = {"KB_DATABASE_URL", "host=/nonexistent-kb port=1", NULL};
    kb_buf_reset(&out);
    ck_assert_int_eq(kbctl(bad, args, &out), 1);
    ck_assert_msg(strstr(kb_buf_cstr(&out), "UNREACHABLE") != NULL, "%s", kb_buf_cstr(&out));
    kb_buf_release(&out);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("db");
    TCase *tc = tcase_create("outage");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, NULL, pg_back_up);
    tcase_add_test(tc, db_down_is_503_then_recovers_fast_shutdown);
    tcase_add_test(tc, db_down_is_503_then_recovers_immediate_shutdown);
    suite_add_tcase(s, tc);
    TCase *tw = tcase_create("health-window");
    tcase_set_timeout(tw, 120);
    tcase_add_unchecked_fixture(tw, health_window_long, health_window_default);
    tcase_add_test(tw, health_window_still_sees_a_stopped_database_fast_shutdown);
    tcase_add_test(tw, health_window_still_sees_a_stopped_database_immediate_shutdown);
    tcase_add_test(tw, db_answered_within_tracks_age_and_a_closed_connection);
    suite_add_tcase(s, tw);
    TCase *tf = tcase_create("reply-deadline");
    tcase_set_timeout(tf, 90);
    tcase_add_unchecked_fixture(tf, reply_deadline_on, reply_deadline_off);
    tcase_add_test(tf, frozen_backend_costs_a_deadline_not_a_hang);
    tcase_add_test(tf, db_exec_gives_up_on_a_frozen_server_in_prepare_and_execute);
    suite_add_tcase(s, tf);
    TCase *tm = tcase_create("migrate");
    tcase_set_timeout(tm, 60);
    tcase_add_test(tm, migrate_is_idempotent_and_recorded);
    tcase_add_test(tm, migrate_refuses_changed_applied_file);
    tcase_add_test(tm, migrate_rolls_back_a_failing_file);
    tcase_add_test(tm, check_config_names_every_problem);
    tcase_add_test(tm, check_config_never_prints_secrets);
    tcase_add_test(tm, kbctl_commands_refuse_an_invalid_configuration);
    tcase_add_test(tm, kbctl_user_sets_overrides_with_audit);
    tcase_add_test(tm, kbctl_status_reports_pool_database_and_outbox);
    suite_add_tcase(s, tm);
    return kb_check_run(s);
}
