/* test_pool.c - the prefork pool: respawn, crash-loop backoff, recycling,
 * SIGHUP reload under load with zero failures, SIGTERM drain (and its bound). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

#define MAXW 64

static size_t
nworkers(void)
{
    return (size_t)strtol(kbt_env("KB_WORKERS"), NULL, 10);
}

static bool
contains(const pid_t *set, size_t n, pid_t p)
{
    for (size_t i = 0; i < n; i++) {
        if (set[i] == p)
            return true;
    }
    return false;
}

typedef struct pool_state {
    pid_t master;
    pid_t gone[MAXW]; /* none of these may remain */
    size_t ngone;
} pool_state;

/* Pool is back to full size and holds none of st->gone. */
static bool
pool_replaced(void *arg)
{
    pool_state *st = arg;
    pid_t now[MAXW];
    size_t n = kbt_children(st->master, now, MAXW);
    if (n != nworkers())
        return false;
    for (size_t i = 0; i < n; i++) {
        if (contains(st->gone, st->ngone, now[i]))
            return false;
    }
    return true;
}

static void
all_ok(int n)
{
    for (int i = 0; i < n; i++) {
        kbt_resp *r = kbt_get("/health");
        ck_assert_msg(r->status == 200, "request %d: %ld %s", i, r->status, kb_buf_cstr(&r->body));
        kbt_resp_free(r);
    }
}

START_TEST(sigkilled_worker_is_respawned)
{
    pool_state st = {kbt_master_pid(), {0}, 0};
    ck_assert(st.master > 0);
    /* Start from a full pool (an earlier suite may have just killed a worker). */
    ck_assert(kbt_wait_until(pool_replaced, &st, 10000));
    pid_t w[MAXW];
    size_t n = kbt_children(st.master, w, MAXW);
    ck_assert_uint_eq(n, nworkers());
    ck_assert_int_eq(kill(w[0], SIGKILL), 0);
    st.gone[st.ngone++] = w[0];
    ck_assert_msg(kbt_wait_until(pool_replaced, &st, 10000), "worker not respawned");
    all_ok(20);
}
END_TEST

START_TEST(all_workers_killed_pool_recovers)
{
    pool_state st = {kbt_master_pid(), {0}, 0};
    st.ngone = kbt_children(st.master, st.gone, MAXW);
    for (size_t i = 0; i < st.ngone; i++)
        kill(st.gone[i], SIGKILL);
    ck_assert_msg(kbt_wait_until(pool_replaced, &st, 15000), "pool not rebuilt");
    all_ok(20);
}
END_TEST

typedef struct young {
    pid_t master;
    pid_t avoid[MAXW];
    size_t navoid;
    pid_t found;
} young;

/* A worker that was not there before has appeared. */
static bool
new_worker(void *arg)
{
    young *y = arg;
    pid_t now[MAXW];
    size_t n = kbt_children(y->master, now, MAXW);
    for (size_t i = 0; i < n; i++) {
        if (!contains(y->avoid, y->navoid, now[i])) {
            y->found = now[i];
            return true;
        }
    }
    return false;
}

static bool
log_has(void *needle)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/app.log", kbt_env("KB_STACK_DIR"));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[4096];
    bool hit = false;
    while (!hit && fgets(line, sizeof(line), f) != NULL)
        hit = strstr(line, needle) != NULL;
    fclose(f);
    return hit;
}

START_TEST(crash_loop_backs_off)
{
    young y = {kbt_master_pid(), {0}, 0, 0};
    y.navoid = kbt_children(y.master, y.avoid, MAXW);
    pool_state st = {y.master, {0}, 0};
    /* Kill each replacement as soon as it appears: four quick crashes. */
    for (int i = 0; i < 4; i++) {
        if (i == 0) {
            y.found = y.avoid[0];
        } else {
            ck_assert(kbt_wait_until(new_worker, &y, 15000));
            y.avoid[y.navoid++] = y.found;
        }
        ck_assert_int_eq(kill(y.found, SIGKILL), 0);
        st.gone[st.ngone++] = y.found;
    }
    ck_assert_msg(kbt_wait_until(log_has, (void *)(uintptr_t) "respawning in 400 ms", 15000),
                  "no growing backoff in app.log");
    ck_assert(kbt_wait_until(pool_replaced, &st, 20000));
    all_ok(10);
}
END_TEST

START_TEST(workers_recycle_after_max_requests)
{
    long max = strtol(kbt_env("KB_MAX_REQUESTS"), NULL, 10);
    ck_assert(max > 0 && max <= 1000);
    pool_state st = {kbt_master_pid(), {0}, 0};
    st.ngone = kbt_children(st.master, st.gone, MAXW);
    /* Enough requests that every worker passes its budget (+10% jitter). */
    all_ok((int)(max * 1.2) * (int)nworkers() + 50);
    ck_assert(kbt_wait_until(log_has, (void *)(uintptr_t) "recycled; respawning", 5000));
    pid_t now[MAXW];
    size_t n = kbt_children(st.master, now, MAXW);
    size_t replaced = 0;
    for (size_t i = 0; i < n; i++)
        replaced += !contains(st.gone, st.ngone, now[i]);
    ck_assert_msg(replaced > 0, "no worker was recycled");
}
END_TEST

typedef struct load {
    atomic_bool stop;
    atomic_long ok;
    atomic_long failed;
    char first_failure[512];
    pthread_mutex_t mu;
} load;

static void *
load_thread(void *arg)
{
    load *l = arg;
    while (!atomic_load(&l->stop)) {
        kbt_resp *r = kbt_get("/health");
        if (r->status == 200) {
            atomic_fetch_add(&l->ok, 1);
        } else {
            if (atomic_fetch_add(&l->failed, 1) == 0) {
                pthread_mutex_lock(&l->mu);
                snprintf(l->first_failure, sizeof(l->first_failure), "status %ld curl %d: %s",
                         r->status, r->curl_code, kb_buf_cstr(&r->body));
                pthread_mutex_unlock(&l->mu);
            }
        }
        kbt_resp_free(r);
    }
    return NULL;
}

static bool
ok_at_least(void *arg)
{
    void **a = arg;
    return atomic_load(&((load *)a[0])->ok) >= *(long *)a[1];
}

START_TEST(sighup_reload_under_load_drops_nothing)
{
    load l;
    memset(&l, 0, sizeof(l));
    pthread_mutex_init(&l.mu, NULL);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, load_thread, &l);

    long want = 100;
    void *args[2] = {&l, &want};
    ck_assert(kbt_wait_until(ok_at_least, args, 20000));

    pool_state st = {kbt_master_pid(), {0}, 0};
    st.ngone = kbt_children(st.master, st.gone, MAXW);
    ck_assert_int_eq(kill(st.master, SIGHUP), 0);
    bool replaced = kbt_wait_until(pool_replaced, &st, 30000);
    long during = atomic_load(&l.ok) - want;

    want = atomic_load(&l.ok) + 200;
    bool more = kbt_wait_until(ok_at_least, args, 20000);
    atomic_store(&l.stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);

    ck_assert_msg(replaced, "workers were not all replaced");
    ck_assert_msg(more, "no progress after reload");
    ck_assert_msg(atomic_load(&l.failed) == 0, "%ld failed requests; first: %s",
                  atomic_load(&l.failed), l.first_failure);
    ck_assert_msg(during > 0, "no request ran during the reload");
    pthread_mutex_destroy(&l.mu);
}
END_TEST

typedef struct inflight {
    pthread_t th;
    kbt_resp *resp;
} inflight;

/* A user token for GET /keys, the request held in flight (made once). */
static char *token;

static void *
inflight_thread(void *arg)
{
    inflight *f = arg;
    f->resp = kbt_auth_json("GET", "/keys", token, NULL);
    return NULL;
}

typedef struct waiting {
    PGconn *c;
    long want;
} waiting;

static bool
workers_waiting_on_lock(void *arg)
{
    waiting *w = arg;
    char *v = kbt_sql_value(w->c, "SELECT count(*) FROM pg_stat_activity WHERE application_name"
                                  " = 'kalshibook-worker' AND wait_event_type = 'Lock'");
    bool ok = v != NULL && strtol(v, NULL, 10) == w->want;
    free(v);
    return ok;
}

static bool
process_gone(void *arg)
{
    pid_t pid = *(pid_t *)arg;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    /* An exited but not yet reaped process is gone for our purpose. */
    char path[64], state = 0;
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true;
    if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
        state = 0;
    fclose(f);
    return state == 'Z' || state == 'X';
}

/* Hold a lock that GET /keys waits on, so requests stay in flight. */
static PGconn *
block_keys(void)
{
    if (token == NULL) {
        char *email = kbt_auth_email("pool");
        kbt_auth_signup(email, "pool-password-1", &token, NULL);
        free(email);
    }
    PGconn *c = kbt_db();
    kbt_sql_ok(c, "BEGIN");
    kbt_sql_ok(c, "LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE");
    return c;
}

static void
restart_app(void)
{
    ck_assert_int_eq(kbt_stack("app-start", NULL), 0);
    all_ok(5);
}

typedef struct kids {
    pid_t master;
    size_t want;
} kids;

static bool
children_are(void *arg)
{
    kids *k = arg;
    pid_t p[MAXW];
    return kbt_children(k->master, p, MAXW) == k->want;
}

START_TEST(sigterm_drains_in_flight_requests)
{
    pid_t master = kbt_master_pid();
    PGconn *lock = block_keys();
    inflight f[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&f[i].th, NULL, inflight_thread, &f[i]);
    PGconn *mon = kbt_db();
    waiting w = {mon, 2};
    ck_assert_msg(kbt_wait_until(workers_waiting_on_lock, &w, 10000), "requests not in flight");

    ck_assert_int_eq(kill(master, SIGTERM), 0);
    /* Idle workers leave at once; the two busy ones stay until they finish. */
    kids busy = {master, 2};
    ck_assert_msg(kbt_wait_until(children_are, &busy, 10000), "idle workers did not leave");
    ck_assert_msg(!process_gone(&master), "master exited with requests in flight");

    kbt_sql_ok(lock, "ROLLBACK");
    for (int i = 0; i < 2; i++) {
        pthread_join(f[i].th, NULL);
        ck_assert_msg(f[i].resp->status == 200, "in-flight request got %ld", f[i].resp->status);
        kbt_resp_free(f[i].resp);
    }
    ck_assert_msg(kbt_wait_until(process_gone, &master, 10000), "master did not exit");
    PQfinish(lock);
    PQfinish(mon);
    free(token);
    token = NULL;
    restart_app();
}
END_TEST

START_TEST(sigterm_drain_is_bounded)
{
    long bound_s = strtol(kbt_env("KB_DRAIN_TIMEOUT_S"), NULL, 10);
    ck_assert(bound_s > 0 && bound_s <= 10);
    pid_t master = kbt_master_pid();
    PGconn *lock = block_keys();
    inflight f;
    pthread_create(&f.th, NULL, inflight_thread, &f);
    PGconn *mon = kbt_db();
    waiting w = {mon, 1};
    ck_assert(kbt_wait_until(workers_waiting_on_lock, &w, 10000));

    long t0 = kbt_now_ms();
    ck_assert_int_eq(kill(master, SIGTERM), 0);
    ck_assert_msg(kbt_wait_until(process_gone, &master, bound_s * 1000 + 5000),
                  "master still running past the drain bound");
    long took = kbt_now_ms() - t0;
    ck_assert_msg(took >= bound_s * 1000 - 500, "gave up after %ld ms, before the bound", took);
    pthread_join(f.th, NULL);
    /* The stuck request was cut off: nginx answers in the JSON envelope. */
    kbt_assert_envelope(f.resp, 503, "service_unavailable");
    char *ra = kbt_header(f.resp, "Retry-After");
    ck_assert_msg(ra != NULL, "no Retry-After from nginx");
    free(ra);
    kbt_resp_free(f.resp);
    kbt_sql_ok(lock, "ROLLBACK");
    PQfinish(lock);
    PQfinish(mon);
    free(token);
    token = NULL;
    restart_app();
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, sigkilled_worker_is_respawned);
    tcase_add_test(tc, all_workers_killed_pool_recovers);
    tcase_add_test(tc, crash_loop_backs_off);
    tcase_add_test(tc, workers_recycle_after_max_requests);
    tcase_add_test(tc, sighup_reload_under_load_drops_nothing);
    tcase_add_test(tc, sigterm_drains_in_flight_requests);
    tcase_add_test(tc, sigterm_drain_is_bounded);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
