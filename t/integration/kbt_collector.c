/* kbt_collector.c - harness for kalshibook-collector tests; see kbt_collector.h. */
#include "kbt_collector.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kb_spool.h"
#include "kb_banned.h"

static char keydir[300], ca[320], key[320], pub[320], other[320], tlskey[320];
static char ctl_url[64], ws_url[96], rest_url[96];
static pid_t standin = -1;
static kbtc_coll colls[8];
static int ncolls, seq;

long
kbtc_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A TCP port nobody listens on now (the kernel's pick). */
static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof(a);
    ck_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    ck_assert(getsockname(fd, (struct sockaddr *)&a, &l) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void
run_ok(const char *cmd)
{
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "'%s' failed (%d)", cmd, rc);
}

static void
keys_once(void)
{
    snprintf(keydir, sizeof(keydir), "%s/collector-keys", kbt_env("KB_STACK_DIR"));
    snprintf(ca, sizeof(ca), "%s/cert.pem", keydir);
    snprintf(tlskey, sizeof(tlskey), "%s/tls-key.pem", keydir);
    snprintf(key, sizeof(key), "%s/kalshi.key", keydir);
    snprintf(pub, sizeof(pub), "%s/kalshi.pub", keydir);
    snprintf(other, sizeof(other), "%s/other.key", keydir);
    if (access(other, R_OK) == 0)
        return;
    mkdir(keydir, 0700);
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
             "-keyout %s -out %s >/dev/null 2>&1 && "
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null && "
             "openssl pkey -in %s -pubout -out %s && "
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s.tmp 2>/dev/null"
             " && mv %s.tmp %s",
             tlskey, ca, key, key, pub, other, other, other);
    run_ok(cmd);
}

const char *
kbtc_control_url(void)
{
    return ctl_url;
}
const char *
kbtc_ws_url(void)
{
    return ws_url;
}
const char *
kbtc_rest_url(void)
{
    return rest_url;
}
const char *
kbtc_ca_file(void)
{
    return ca;
}
const char *
kbtc_key_file(void)
{
    return key;
}
const char *
kbtc_other_key(void)
{
    return other;
}

void
kbtc_setup(void)
{
    keys_once();
    PGconn *db = kbt_db();
    kbt_sql_ok(db, "TRUNCATE gaps, collector_leader, collector_progress, collector_status, "
                   "collector_markets");
    PQfinish(db);
    ncolls = 0;
    standin = -1;
}

/* fork + exec argv with extra environment, output appended to log; own session. It dies
 * with the test process (PR_SET_PDEATHSIG): a failed assertion ends the test without its
 * teardown, and the stand-in or collector must not outlive it. */
static pid_t
spawn(const char *const *argv, const char *const *env, const char *log)
{
    pid_t parent = getpid();
    pid_t p = fork();
    ck_assert(p >= 0);
    if (p == 0) {
        setsid();
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        for (size_t i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return p;
}

static void
standin_path(char *out, size_t n)
{
    const char *bin = getenv("KB_STANDIN_BIN");
    if (bin != NULL) {
        snprintf(out, n, "%s", bin);
        return;
    }
    snprintf(out, n, "%s/../t/kalshi/kalshi-standin", kbt_env("KB_BIN_DIR"));
    if (access(out, X_OK) != 0)
        snprintf(out, n, "%s/build/release/t/kalshi/kalshi-standin", kbt_env("KB_REPO_ROOT"));
}

static bool
standin_up(void *arg)
{
    (void)arg;
    kbt_resp *r = kbtc_control("GET", "/_control/state");
    bool ok = r->status == 200;
    kbt_resp_free(r);
    return ok;
}

void
kbtc_standin_start(int markets, int mps, const char *extra)
{
    char bin[512], log[400], p1[16], p2[16], m[16], r[16], faults[400], args[256];
    standin_path(bin, sizeof(bin));
    int port = free_port(), cport = free_port();
    snprintf(p1, sizeof(p1), "%d", port);
    snprintf(p2, sizeof(p2), "%d", cport);
    snprintf(m, sizeof(m), "%d", markets);
    snprintf(r, sizeof(r), "%d", mps);
    snprintf(log, sizeof(log), "%s/standin-%d-%d.log", kbt_env("KB_STACK_DIR"), (int)getpid(),
             ++seq);
    snprintf(faults, sizeof(faults), "%s/standin-%d-%d.faults", kbt_env("KB_STACK_DIR"),
             (int)getpid(), seq);
    const char *argv[32] = {bin,        "--port",    p1,     "--control-port", p2,  "--cert",
                            ca,         "--key",     tlskey, "--pubkey",       pub, "--key-id",
                            "kbtc-key", "--markets", m,      "--mps",          r,   "--ping-ms",
                            "1000",     "--faults",  faults};
    int n = 21;
    snprintf(args, sizeof(args), "%s", extra);
    /* extra: space-separated words */
    char *save = NULL;
    for (char *t = strtok_r(args, " ", &save); t != NULL && n < 30; t = strtok_r(NULL, " ", &save))
        argv[n++] = t;
    argv[n] = NULL;
    standin = spawn(argv, NULL, log);
    snprintf(ctl_url, sizeof(ctl_url), "http://127.0.0.1:%d", cport);
    snprintf(ws_url, sizeof(ws_url), "wss://127.0.0.1:%d/trade-api/ws/v2", port);
    snprintf(rest_url, sizeof(rest_url), "https://127.0.0.1:%d/trade-api/v2", port);
    ck_assert_msg(kbt_wait_until(standin_up, NULL, 15000), "the stand-in did not start (%s)", log);
}

kbt_resp *
kbtc_control(const char *method, const char *path)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", ctl_url, path);
    return kbt_request_url(method, url, NULL, NULL, 0);
}

kbt_resp *
kbtc_fault(const char *query)
{
    char path[400];
    snprintf(path, sizeof(path), "/_control/fault?%s", query);
    return kbtc_control("POST", path);
}

kbtc_coll *
kbtc_coll_start(const char *name, const char *keyfile, const char *const *env)
{
    ck_assert_msg(ncolls < 8, "too many collectors in one test");
    kbtc_coll *c = &colls[ncolls++];
    memset(c, 0, sizeof(*c));
    c->status = -1;
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->metrics_port = free_port();
    const char *dir = kbt_env("KB_STACK_DIR");
    int n = ++seq;
    snprintf(c->spool, sizeof(c->spool), "%s/spool-%s-%d-%d", dir, name, (int)getpid(), n);
    snprintf(c->log, sizeof(c->log), "%s/collector-%s-%d-%d.log", dir, name, (int)getpid(), n);
    static char e[16][400];
    int k = 0;
    snprintf(e[k++], 400, "KALSHI_API_KEY_ID=kbtc-key");
    snprintf(e[k++], 400, "KALSHI_PRIVATE_KEY_FILE=%s", keyfile ? keyfile : key);
    snprintf(e[k++], 400, "KALSHI_WS_URL=%s", ws_url);
    snprintf(e[k++], 400, "KALSHI_REST_URL=%s", rest_url);
    snprintf(e[k++], 400, "KALSHI_CA_FILE=%s", ca);
    snprintf(e[k++], 400, "KB_COLLECTOR_SPOOL_DIR=%s", c->spool);
    snprintf(e[k++], 400, "KB_COLLECTOR_METRICS_PORT=%d", c->metrics_port);
    snprintf(e[k++], 400, "KB_COLLECTOR_INSTANCE=kbtc-%s", name);
    snprintf(e[k++], 400, "KB_COLLECTOR_HEARTBEAT_S=1");
    snprintf(e[k++], 400, "KB_COLLECTOR_MARKETS_PER_SUB=4");
    snprintf(e[k++], 400, "KB_COLLECTOR_SUBS_PER_CONN=2");
    snprintf(e[k++], 400, "KB_COLLECTOR_BACKOFF_MIN_MS=100");
    snprintf(e[k++], 400, "KB_COLLECTOR_COMMIT_MS=50");
    const char *all[40];
    int a = 0;
    for (int i = 0; i < k; i++)
        all[a++] = e[i];
    for (size_t i = 0; env != NULL && env[i] != NULL && a < 38; i++)
        all[a++] = env[i];
    all[a] = NULL;
    char bin[400];
    snprintf(bin, sizeof(bin), "%s/kalshibook-collector", kbt_env("KB_BIN_DIR"));
    const char *argv[] = {bin, NULL};
    c->pid = spawn(argv, all, c->log);
    return c;
}

static int
exit_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int
kbtc_coll_wait_exit(kbtc_coll *c, long ms)
{
    if (c->status >= 0)
        return c->status;
    long deadline = kbt_now_ms() + ms;
    for (;;) {
        int st;
        pid_t p = waitpid(c->pid, &st, WNOHANG);
        if (p == c->pid) {
            c->status = exit_code(st);
            return c->status;
        }
        if (kbt_now_ms() >= deadline)
            return -1;
        struct timespec d = {0, 20 * 1000000};
        nanosleep(&d, NULL);
    }
}

int
kbtc_coll_stop(kbtc_coll *c, int sig)
{
    if (c->status >= 0)
        return c->status;
    kill(c->pid, sig);
    int st = kbtc_coll_wait_exit(c, 15000);
    if (st < 0) {
        kill(c->pid, SIGKILL);
        st = kbtc_coll_wait_exit(c, 5000);
    }
    return st;
}

void
kbtc_teardown(void)
{
    for (int i = 0; i < ncolls; i++)
        kbtc_coll_stop(&colls[i], SIGTERM);
    ncolls = 0;
    if (standin > 0) {
        kill(standin, SIGTERM);
        int st;
        long deadline = kbt_now_ms() + 5000;
        while (waitpid(standin, &st, WNOHANG) == 0 && kbt_now_ms() < deadline) {
            struct timespec d = {0, 20 * 1000000};
            nanosleep(&d, NULL);
        }
        kill(standin, SIGKILL);
        waitpid(standin, &st, 0);
    }
    standin = -1;
}

bool
kbtc_log_has(const kbtc_coll *c, const char *text)
{
    FILE *f = fopen(c->log, "r");
    if (f == NULL)
        return false;
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

double
kbtc_metric(const kbtc_coll *c, const char *series)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", c->metrics_port);
    kbt_resp *r = kbt_request_url("GET", url, NULL, NULL, 0);
    double v = r->status == 200 ? kbt_metrics_sample(kb_buf_cstr(&r->body), series) : -1;
    kbt_resp_free(r);
    return v;
}

typedef struct metric_wait {
    const kbtc_coll *c;
    const char *series;
    double v;
} metric_wait;

static bool
metric_is(void *arg)
{
    metric_wait *m = arg;
    return kbtc_metric(m->c, m->series) == m->v;
}

bool
kbtc_wait_metric(const kbtc_coll *c, const char *series, double v, long ms)
{
    metric_wait m = {c, series, v};
    return kbt_wait_until(metric_is, &m, ms);
}

static int
json_len(const char *path)
{
    kbt_resp *r = kbtc_control("GET", path);
    int n = cJSON_IsArray(r->json) ? cJSON_GetArraySize(r->json) : -1;
    kbt_resp_free(r);
    return n;
}

typedef struct live_wait {
    const kbtc_coll *c;
    int n;
} live_wait;

static bool
live(void *arg)
{
    live_wait *l = arg;
    return kbtc_metric(l->c, "kalshibook_collector_markets{state=\"live\"}") == l->n &&
           kbtc_metric(l->c, "kalshibook_collector_markets{state=\"wanted\"}") == l->n &&
           json_len("/_control/subscribed") == l->n;
}

bool
kbtc_wait_live(const kbtc_coll *c, int n, long ms)
{
    live_wait l = {c, n};
    return kbt_wait_until(live, &l, ms);
}

static bool
subscribed_equals_wanted(void *arg)
{
    (void)arg;
    kbt_resp *a = kbtc_control("GET", "/_control/markets?paused=1");
    kbt_resp *b = kbtc_control("GET", "/_control/subscribed");
    char *x = cJSON_PrintUnformatted(a->json), *y = cJSON_PrintUnformatted(b->json);
    bool eq = x != NULL && y != NULL && strcmp(x, y) == 0;
    free(x);
    free(y);
    kbt_resp_free(a);
    kbt_resp_free(b);
    return eq;
}

bool
kbtc_wait_subscribed_equals_wanted(long ms)
{
    return kbt_wait_until(subscribed_equals_wanted, NULL, ms);
}

typedef struct flow_wait {
    const kbtc_coll *c;
    double until;
} flow_wait;

static bool
flowed(void *arg)
{
    flow_wait *f = arg;
    return kbtc_metric(f->c, "kalshibook_collector_messages_total{type=\"orderbook_delta\"}") >=
           f->until;
}

void
kbtc_wait_flow(const kbtc_coll *c, long min)
{
    flow_wait f = {c,
                   kbtc_metric(c, "kalshibook_collector_messages_total{type=\"orderbook_delta\"}") +
                       (double)min};
    ck_assert_msg(kbt_wait_until(flowed, &f, 20000), "no data flowing");
}

typedef struct sql_wait {
    PGconn *db;
    const char *sql;
    long want;
} sql_wait;

static bool
sql_is(void *arg)
{
    sql_wait *s = arg;
    char *v = kbt_sql_value(s->db, s->sql);
    long n = v ? strtol(v, NULL, 10) : -1;
    free(v);
    return n == s->want;
}

bool
kbtc_wait_sql(PGconn *db, const char *sql, long want, long ms)
{
    sql_wait s = {db, sql, want};
    return kbt_wait_until(sql_is, &s, ms);
}

typedef struct progress_wait {
    PGconn *db;
    const kbtc_coll *c;
    long bytes;
} progress_wait;

static bool
progressed(void *arg)
{
    progress_wait *p = arg;
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT file_offset FROM collector_progress WHERE instance = "
             "'kbtc-%s'",
             p->c->name);
    char *v = kbt_sql_value(p->db, sql);
    long off = v ? strtol(v, NULL, 10) : -1;
    free(v);
    return off >= p->bytes;
}

bool
kbtc_wait_progress(PGconn *db, const kbtc_coll *c, long bytes, long ms)
{
    progress_wait p = {db, c, bytes};
    return kbt_wait_until(progressed, &p, ms);
}

/* Every record of every file of c's spool: calls fn(rec, arg). */
static void
each_record(const kbtc_coll *c, void (*fn)(const kb_spool_rec *, void *), void *arg)
{
    long max = kb_spool_max_no(c->spool);
    for (long f = 1; f <= max; f++) {
        char *path = kb_spool_find(c->spool, f);
        if (path == NULL)
            continue;
        kb_spool_reader r;
        ck_assert_msg(kb_spool_reader_open(&r, path, 0), "cannot read %s", path);
        kb_spool_rec rec;
        int64_t end;
        int rc;
        while ((rc = kb_spool_reader_next(&r, &rec, &end)) == 1)
            fn(&rec, arg);
        ck_assert_msg(rc == 0, "damaged spool file %s", path);
        kb_spool_reader_close(&r);
        free(path);
    }
}

typedef struct count_arg {
    char kind;
    const char *text;
    long n, largest;
} count_arg;

static void
count_one(const kb_spool_rec *r, void *arg)
{
    count_arg *a = arg;
    if ((long)r->len > a->largest)
        a->largest = (long)r->len;
    if (r->kind == a->kind &&
        (a->text == NULL || memmem(r->data, r->len, a->text, strlen(a->text))))
        a->n++;
}

long
kbtc_spool_count(const kbtc_coll *c, char kind, const char *text)
{
    count_arg a = {kind, text, 0, 0};
    each_record(c, count_one, &a);
    return a.n;
}

long
kbtc_spool_largest(const kbtc_coll *c)
{
    count_arg a = {'F', NULL, 0, 0};
    each_record(c, count_one, &a);
    return a.largest;
}
