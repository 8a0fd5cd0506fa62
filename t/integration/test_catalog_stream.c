/* test_catalog_stream.c - the whole-list answers of GET /markets and GET /events are streamed
 * (issue 23; lib/kb_http.h kb_resp_send_body, app/fcgi/fcgi.c):
 *   - a database failure after the first byte never ends the answer as if it were whole:
 *     the worker sends what it has, then a malformed FastCGI record and closes without
 *     END_REQUEST (seen on the FastCGI socket itself, with the worker held mid-list by a
 *     client that stops reading), the charge is refunded from the journal, and the worker
 *     serves on;
 *   - through nginx the client sees the transfer fail (no last chunk / stream reset) and a
 *     body that does not parse;
 *   - gzip on the wire for the streamed list and for pages, decoding to the same rows;
 *   - first_data_at/last_data_at equal MIN(snapshot)/MAX(delta) after imports running at
 *     the same time (the collector writes through the same ingest statements).
 * Fixture: catalog_fixture.h, plus bulk KXCATBIG-* markets where a long list is needed.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "catalog_fixture.h"
#include "kb_banned.h"

#define MAXW 64
#define BIG_N 24000
#define BIG_MARKETS "24000" /* ~5 MB of list: many pieces past any socket buffer */

/* n markets named <prefix>-NNNNNN, discovered one per second from 2026-01-02 on. */
static void
insert_bulk(PGconn *c, const char *prefix, const char *n)
{
    kbt_sqlp_ok(c,
                "INSERT INTO markets (ticker, title, status, discovered_at)"
                " SELECT $1 || '-' || lpad(i::text, 6, '0'), 'Bulk market ' || i, 'active',"
                "        timestamptz '2026-01-02' + i * interval '1 second'"
                "   FROM generate_series(1, $2::int) i",
                2, prefix, n);
    kbt_sql_ok(c, "ANALYZE markets");
}

/* Where the data queries run: the replica when the suite has one. */
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

static long
used(PGconn *c, const kbt_account *a)
{
    return kbt_sql_long1(c, "SELECT credits_used FROM billing_accounts WHERE user_id = $1",
                         a->user_id);
}

typedef struct used_wait {
    PGconn *c;
    const kbt_account *a;
    long want;
} used_wait;

static bool
used_is(void *arg)
{
    used_wait *w = arg;
    return used(w->c, w->a) == w->want;
}

/* A worker's data backend in the middle of a list: between two FETCHes (or held there
 * because its worker cannot write). *pid is set when found. */
typedef struct listing {
    PGconn *data;
    char pid[16];
    bool done; /* no worker is in a list transaction any more */
} listing;

static bool
list_paused(void *arg)
{
    listing *l = arg;
    char *pid = kbt_sql_value(l->data, "SELECT pid FROM pg_stat_activity"
                                       " WHERE application_name LIKE 'kalshibook-worker%'"
                                       "   AND state = 'idle in transaction'"
                                       "   AND query LIKE 'FETCH%'");
    if (pid != NULL) {
        snprintf(l->pid, sizeof(l->pid), "%s", pid);
        free(pid);
        return true;
    }
    char *busy = kbt_sql_value(l->data, "SELECT count(*) FROM pg_stat_activity"
                                        " WHERE application_name LIKE 'kalshibook-worker%'"
                                        "   AND state <> 'idle'");
    l->done = busy != NULL && strcmp(busy, "0") == 0;
    free(busy);
    return l->done;
}

static void
terminate(PGconn *data, const char *pid)
{
    char *ok = kbt_sqlp_value(data, "SELECT pg_terminate_backend($1::int)", 1, pid);
    ck_assert_ptr_nonnull(ok);
    ck_assert_str_eq(ok, "t");
    free(ok);
}

/* ---- a FastCGI client on the pool's socket ---- */

static void
fcgi_record(kb_buf *b, unsigned char type, const char *content, size_t len)
{
    unsigned char h[8] = {1, type, 0, 1, (unsigned char)(len >> 8), (unsigned char)len, 0, 0};
    kb_buf_append(b, h, sizeof(h));
    if (len > 0)
        kb_buf_append(b, content, len);
}

static void
fcgi_param(kb_buf *b, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value);
    ck_assert(n < 128 && v < 128);
    kb_buf_putc(b, (char)n);
    kb_buf_putc(b, (char)v);
    kb_buf_append(b, name, n);
    kb_buf_append(b, value, v);
}

/* Connect to the pool and send GET uri with the key and request id. */
static int
fcgi_get(const char *uri, const char *key, const char *request_id)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fcgi.sock", kbt_env("KB_STACK_DIR"));
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %s",
                  strerror(errno));
    char auth[128];
    snprintf(auth, sizeof(auth), "Bearer %s", key);
    kb_buf params = KB_BUF_INIT, req = KB_BUF_INIT;
    fcgi_param(&params, "REQUEST_METHOD", "GET");
    fcgi_param(&params, "REQUEST_URI", uri);
    fcgi_param(&params, "QUERY_STRING", "");
    fcgi_param(&params, "REMOTE_ADDR", "127.0.0.1");
    fcgi_param(&params, "KB_REQUEST_ID", request_id);
    fcgi_param(&params, "HTTP_AUTHORIZATION", auth);
    static const char begin[8] = {0, 1, 0, 0, 0, 0, 0, 0}; /* responder, no keep-alive */
    fcgi_record(&req, 1, begin, sizeof(begin));
    fcgi_record(&req, 4, params.buf, params.len);
    fcgi_record(&req, 4, NULL, 0);
    fcgi_record(&req, 5, NULL, 0);
    ck_assert_int_eq(write(fd, req.buf, req.len), (ssize_t)req.len);
    kb_buf_release(&params);
    kb_buf_release(&req);
    return fd;
}

/* Read exactly n bytes; false at EOF. */
static bool
read_full(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, (char *)p + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        got += (size_t)k;
    }
    return true;
}

typedef struct fcgi_answer {
    kb_buf out;       /* FCGI_STDOUT content */
    bool end_request; /* an FCGI_END_REQUEST record came */
    bool malformed;   /* a record whose version is not 1 came */
    bool eof;
} fcgi_answer;

/* Read one record into a; false at EOF or after a malformed record (the rest is drained). */
static bool
fcgi_read_record(int fd, fcgi_answer *a)
{
    unsigned char h[8];
    if (!read_full(fd, h, sizeof(h))) {
        a->eof = true;
        return false;
    }
    if (h[0] != 1) {
        a->malformed = true;
        char junk[4096];
        while (read(fd, junk, sizeof(junk)) > 0) {
        }
        a->eof = true;
        return false;
    }
    size_t len = ((size_t)h[4] << 8) | h[5], pad = h[6];
    char buf[65536 + 256];
    ck_assert(read_full(fd, buf, len + pad));
    if (h[1] == 6)
        kb_buf_append(&a->out, buf, len);
    else if (h[1] == 3)
        a->end_request = true;
    return true;
}

START_TEST(database_failure_mid_list_never_ends_the_answer)
{
    PGconn *c = kbt_db();
    insert_bulk(c, "KXCATBIG", BIG_MARKETS);
    kbt_data_wait_replica();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    kbt_secret_note(a.key);
    const char *rid = "req_5eed0000c0de";

    /* The worker sends its head and first rows, then blocks on a client that has
     * stopped reading: its list transaction is held between two FETCHes. */
    int fd = fcgi_get("/markets", a.key, rid);
    fcgi_answer ans = {KB_BUF_INIT, false, false, false};
    while (strstr(kb_buf_cstr(&ans.out), "\r\n\r\n") == NULL)
        ck_assert_msg(fcgi_read_record(fd, &ans), "answer ended in its head");
    const char *head = kb_buf_cstr(&ans.out);
    ck_assert_msg(strncmp(head, "Status: 200 OK\r\n", 16) == 0, "%.200s", head);
    ck_assert_ptr_null(strstr(head, "Content-Length"));
    ck_assert_ptr_nonnull(strstr(head, "X-Credits-Cost: 1\r\n"));
    ck_assert_int_eq(used(c, &a), 1);

    PGconn *data = data_db();
    listing l = {data, "", false};
    ck_assert_msg(kbt_wait_until(list_paused, &l, 15000) && !l.done,
                  "no worker held in the middle of the list");
    terminate(data, l.pid);

    /* Read on: the rows the worker still had, then no end of request. */
    while (fcgi_read_record(fd, &ans)) {
    }
    close(fd);
    ck_assert_msg(ans.malformed, "the answer was not aborted");
    ck_assert_msg(!ans.end_request, "the cut answer was ended as if whole");
    const char *body = strstr(kb_buf_cstr(&ans.out), "\r\n\r\n") + 4;
    ck_assert_msg(strncmp(body, "{\"data\":[{\"ticker\":", 19) == 0, "%.80s", body);
    cJSON *j = cJSON_Parse(body);
    ck_assert_msg(j == NULL, "a cut list parses as JSON");
    ck_assert_msg(strlen(body) < (size_t)BIG_N * 150, "the whole list came: %zu bytes",
                  strlen(body));

    /* Charged before the first byte, refunded after the cut (money rule 3). */
    kbt_request_ref w = {c, rid};
    ck_assert_msg(kbt_wait_until(kbt_refund_recorded, &w, 15000), "charge of %s not refunded", rid);
    ck_assert_int_eq(used(c, &a), 0);
    /* The worker (and its pool) serves on. */
    kbt_resp *r = kbt_data_get(&a, "/markets?limit=1");
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
    ck_assert_int_eq(used(c, &a), 1);
    kb_buf_release(&ans.out);
    cat_delete(c, "KXCATBIG%");
    PQfinish(data);
    PQfinish(c);
    kbt_data_wait_replica();
}
END_TEST

/* ---- the same through nginx ---- */

typedef struct held_get {
    const kbt_account *a;
    pid_t workers[MAXW];
    size_t nworkers;
    atomic_bool stopped;
    long status;
    int curl_code;
    kb_buf body;
} held_get;

/* At the end of the head (the first rows are out): stop the pool mid-list. */
static size_t
on_head(char *p, size_t size, size_t n, void *ud)
{
    held_get *g = ud;
    if (size * n == 2 && p[0] == '\r' && p[1] == '\n' && !atomic_load(&g->stopped)) {
        for (size_t i = 0; i < g->nworkers; i++)
            kill(g->workers[i], SIGSTOP);
        atomic_store(&g->stopped, true);
    }
    return size * n;
}

static size_t
on_data(char *p, size_t size, size_t n, void *ud)
{
    kb_buf_append(ud, p, size * n);
    return size * n;
}

static void *
held_get_thread(void *arg)
{
    held_get *g = arg;
    char url[512], auth[128];
    snprintf(url, sizeof(url), "%s/markets", kbt_env("KB_BASE_URL"));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", g->a->key);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, kbt_env("KB_CA_CERT"));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_head);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, g);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &g->body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    g->curl_code = (int)curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &g->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return NULL;
}

static bool
pool_stopped(void *arg)
{
    return atomic_load(&((held_get *)arg)->stopped);
}

START_TEST(cut_list_fails_the_transfer_through_nginx)
{
    PGconn *c = kbt_db();
    insert_bulk(c, "KXCATBIG", BIG_MARKETS);
    kbt_data_wait_replica();
    kbt_account a;
    kbt_account_new(c, &a, "project", 100, 0, false);
    kbt_secret_note(a.key);
    PGconn *data = data_db();
    int cuts = 0;
    /* The pool is stopped the moment the client has the head; the list is long, so it is
     * then almost always mid-way. An attempt where it had finished is checked as whole
     * and tried again. */
    for (int attempt = 0; attempt < 5 && cuts == 0; attempt++) {
        held_get g = {.a = &a, .body = KB_BUF_INIT};
        atomic_init(&g.stopped, false);
        g.nworkers = kbt_children(kbt_master_pid(), g.workers, MAXW);
        ck_assert_uint_gt(g.nworkers, 0);
        long before = used(c, &a);
        pthread_t th;
        pthread_create(&th, NULL, held_get_thread, &g);
        bool stopped = kbt_wait_until(pool_stopped, &g, 20000);
        listing l = {data, "", false};
        bool paused = stopped && kbt_wait_until(list_paused, &l, 10000) && !l.done;
        if (paused)
            terminate(data, l.pid);
        for (size_t i = 0; i < g.nworkers; i++)
            kill(g.workers[i], SIGCONT);
        pthread_join(th, NULL);
        ck_assert_msg(stopped, "the head never came");
        ck_assert_int_eq(g.status, 200);
        cJSON *j = cJSON_ParseWithLength(g.body.buf, g.body.len);
        if (paused && g.curl_code != 0) {
            /* HTTP/2: the stream is reset; HTTP/1.1: the last chunk never comes. */
            ck_assert_msg(g.curl_code == CURLE_HTTP2_STREAM || g.curl_code == CURLE_PARTIAL_FILE ||
                              g.curl_code == CURLE_RECV_ERROR,
                          "curl: %d", g.curl_code);
            ck_assert_msg(j == NULL, "a cut list parses as JSON");
            ck_assert_uint_gt(g.body.len, 0);
            cuts++;
            used_wait uw = {c, &a, before};
            ck_assert_msg(kbt_wait_until(used_is, &uw, 15000), "charge not refunded");
        } else {
            /* It had ended (or only its commit was left): a whole, parsing answer. */
            ck_assert_msg(g.curl_code == 0, "curl %d without a cut", g.curl_code);
            ck_assert_ptr_nonnull(j);
        }
        cJSON_Delete(j);
        kb_buf_release(&g.body);
    }
    ck_assert_msg(cuts == 1, "the list never ran long enough to be cut");
    cat_delete(c, "KXCATBIG%");
    PQfinish(data);
    PQfinish(c);
    kbt_data_wait_replica();
}
END_TEST

/* ---- gzip on the wire ---- */

/* GET path with Accept-Encoding: gzip (libcurl decodes); the Content-Encoding seen. */
static cJSON *
get_gzip(const char *path, char *encoding, size_t encsz)
{
    char url[512], auth[128];
    snprintf(url, sizeof(url), "%s%s", kbt_env("KB_BASE_URL"), path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", cat_acct.key);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    kb_buf body = KB_BUF_INIT, head = KB_BUF_INIT;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, kbt_env("KB_CA_CERT"));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "gzip");
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &head);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    ck_assert_int_eq(status, 200);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    encoding[0] = '\0';
    const char *e = strcasestr(kb_buf_cstr(&head), "\ncontent-encoding: ");
    if (e != NULL)
        snprintf(encoding, encsz, "%.*s", (int)strcspn(e + 19, "\r\n"), e + 19);
    cJSON *j = cJSON_ParseWithLength(body.buf, body.len);
    ck_assert_msg(j != NULL, "%s: decoded body is not JSON", path);
    kb_buf_release(&body);
    kb_buf_release(&head);
    return j;
}

START_TEST(lists_are_gzipped_on_the_wire)
{
    static const char *const paths[] = {"/markets", "/markets?limit=1000", "/events",
                                        "/events?status=open&limit=50"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        char enc[32];
        cJSON *gz = get_gzip(paths[i], enc, sizeof(enc));
        ck_assert_msg(strcmp(enc, "gzip") == 0, "%s: Content-Encoding '%s'", paths[i], enc);
        kbt_resp *plain = cat_get(paths[i]);
        char *a = cJSON_PrintUnformatted(cJSON_GetObjectItem(gz, "data"));
        char *b = cJSON_PrintUnformatted(cJSON_GetObjectItem(plain->json, "data"));
        ck_assert_msg(strcmp(a, b) == 0, "%s: gzip answer differs", paths[i]);
        ck_assert_uint_gt(strlen(a), 1000);
        free(a);
        free(b);
        cJSON_Delete(gz);
        kbt_resp_free(plain);
    }
}
END_TEST

/* ---- first_data_at / last_data_at under concurrent imports ---- */

/* A capture: for each market a snapshot at snap, then n deltas from first on, one a second. */
static void
write_capture(const char *file, int sid, long snap, long first, int n)
{
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    static const char *const tickers[] = {"KXCATIMP-A", "KXCATIMP-B"};
    for (int t = 0; t < 2; t++) {
        fprintf(f,
                "{\"type\":\"orderbook_snapshot\",\"sid\":%d,\"seq\":1,\"msg\":{\"market_ticker\":"
                "\"%s\",\"yes\":[[40,100]],\"no\":[[55,10]],\"ts\":%ld}}\n",
                sid + t, tickers[t], snap);
        for (int k = 0; k < n; k++)
            fprintf(
                f,
                "{\"type\":\"orderbook_delta\",\"sid\":%d,\"seq\":%d,\"msg\":{\"market_ticker\":"
                "\"%s\",\"price\":40,\"delta\":1,\"side\":\"yes\",\"ts\":%ld}}\n",
                sid + t, k + 2, tickers[t], first + k);
    }
    ck_assert_int_eq(fclose(f), 0);
}

static int
wait_exit(int pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void
delete_imported(PGconn *c)
{
    kbt_sqlp_ok(c, "DELETE FROM deltas WHERE market_ticker LIKE $1", 1, "KXCATIMP%");
    kbt_sqlp_ok(c, "DELETE FROM snapshots WHERE market_ticker LIKE $1", 1, "KXCATIMP%");
    kbt_sqlp_ok(c, "DELETE FROM book_checkpoints WHERE market_ticker LIKE $1", 1, "KXCATIMP%");
    cat_delete(c, "KXCATIMP%");
}

START_TEST(first_and_last_data_exact_under_concurrent_imports)
{
    PGconn *c = kbt_db();
    delete_imported(c);
    char dir[] = "/tmp/kbcatimpXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char f1[64], f2[64];
    snprintf(f1, sizeof(f1), "%s/one.jsonl", dir);
    snprintf(f2, sizeof(f2), "%s/two.jsonl", dir);
    /* One: snapshot 2026-02-10 00:00, deltas from 00:00:01. Two: an earlier snapshot
     * (2026-02-09 12:00) and later deltas (00:10:00 .. 00:16:39). */
    write_capture(f1, 11, 1770681600L, 1770681601L, 400);
    write_capture(f2, 21, 1770638400L, 1770682200L, 400);
    /* Twice, both at once in small batches: the second time nothing is new. */
    for (int round = 0; round < 2; round++) {
        const char *a1[] = {"import", "--quiet", "--batch", "50", f1, NULL};
        const char *a2[] = {"import", "--quiet", "--batch", "50", f2, NULL};
        int p1 = kbt_stripe_kbctl(true, a1), p2 = kbt_stripe_kbctl(true, a2);
        ck_assert_int_eq(wait_exit(p1), 0);
        ck_assert_int_eq(wait_exit(p2), 0);
    }
    kbt_data_wait_replica();
    kbt_resp *r = cat_get("/markets?ticker_prefix=KXCATIMP-");
    const cJSON *data = cJSON_GetObjectItem(r->json, "data");
    ck_assert_int_eq(cJSON_GetArraySize(data), 2);
    const cJSON *it;
    cJSON_ArrayForEach(it, data) {
        const char *t = cJSON_GetObjectItem(it, "ticker")->valuestring;
        ck_assert_str_eq(cJSON_GetObjectItem(it, "first_data_at")->valuestring,
                         "2026-02-09T12:00:00+00:00");
        ck_assert_str_eq(cJSON_GetObjectItem(it, "last_data_at")->valuestring,
                         "2026-02-10T00:16:39+00:00");
        /* The same as the data tables say, and counts moved by exactly the rows stored. */
        char *ok = kbt_sqlp_value(
            c,
            "SELECT (SELECT min(captured_at) FROM snapshots WHERE market_ticker = $1)"
            "         = st.first_data_at"
            "   AND (SELECT max(ts) FROM deltas WHERE market_ticker = $1) = st.last_data_at"
            "   AND (SELECT count(*) FROM snapshots WHERE market_ticker = $1) = st.snapshot_count"
            "   AND (SELECT count(*) FROM deltas WHERE market_ticker = $1) = st.delta_count"
            "   AND st.snapshot_count = 2 AND st.delta_count = 800"
            "  FROM market_stats st WHERE st.ticker = $1",
            1, t);
        ck_assert_ptr_nonnull(ok);
        ck_assert_msg(strcmp(ok, "t") == 0, "%s: market_stats disagrees with the rows", t);
        free(ok);
    }
    kbt_resp_free(r);
    unlink(f1);
    unlink(f2);
    rmdir(dir);
    delete_imported(c);
    PQfinish(c);
    kbt_data_wait_replica();
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("catalog_stream");
    TCase *tc = tcase_create("stream");
    tcase_add_unchecked_fixture(tc, cat_setup, cat_teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, database_failure_mid_list_never_ends_the_answer);
    tcase_add_test(tc, cut_list_fails_the_transfer_through_nginx);
    tcase_add_test(tc, lists_are_gzipped_on_the_wire);
    tcase_add_test(tc, first_and_last_data_exact_under_concurrent_imports);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
