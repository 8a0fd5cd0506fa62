/* rest.c - discovery over Kalshi's REST API, on a thread of its own so the reader never
 * waits for HTTP: GET /markets?status=open (cursor paging, 1000 a page) at start and
 * every KB_COLLECTOR_RECONCILE_S, and GET /markets/{ticker} for markets the reader
 * wants checked (gone from the listing, or refused by Kalshi with error 16).
 *
 * Every request takes a token from a bucket of KB_COLLECTOR_REST_RPS (Kalshi's read
 * limit is per user); a 429 (which carries no Retry-After), a 5xx or a network error
 * waits a jittered, doubling delay and tries again. Requests are signed like the
 * WebSocket handshake. Results go to the reader through a mailbox; page bodies go to
 * the spool as R records, so the writer stores the markets' metadata.
 */
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "collector.h"
#include "kb_log.h"
#include "kb_banned.h"

enum { MSG_PAGE, MSG_LIST_DONE, MSG_LIST_FAILED, MSG_MARKET, MSG_MARKET_GONE };

typedef struct msg {
    struct msg *next;
    int kind;
    char *body; /* malloc'd */
    size_t len;
    char *ticker;
} msg;

static struct {
    pthread_t th;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool want_list;
    char **checks;
    int nchecks, capchecks;
    msg *head, *tail;
    CURL *curl;
    kb_buf body;
    char prefix[256]; /* the REST URL's path ("/trade-api/v2"), for signing */
    int64_t tokens, tokens_at_us;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void
post(int kind, char *body, size_t len, const char *ticker)
{
    msg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        abort();
    m->kind = kind;
    m->body = body;
    m->len = len;
    m->ticker = ticker ? strdup(ticker) : NULL;
    pthread_mutex_lock(&R.mu);
    if (R.tail != NULL)
        R.tail->next = m;
    else
        R.head = m;
    R.tail = m;
    pthread_mutex_unlock(&R.mu);
    kc_ws_wake();
}

/* Sleep ms, waking early when stopping. */
static void
nap(int64_t ms)
{
    while (ms > 0 && !atomic_load(&K.stop)) {
        int64_t s = ms > 100 ? 100 : ms;
        usleep((useconds_t)s * 1000);
        ms -= s;
    }
}

/* Token bucket: capacity and refill rate are KB_COLLECTOR_REST_RPS (tokens in 1e-6). */
static void
take_token(void)
{
    int64_t rps = K.cfg->collector_rest_rps, cap = rps * 1000000;
    for (;;) {
        int64_t now = kc_mono_ns() / 1000;
        R.tokens += (now - R.tokens_at_us) * rps;
        R.tokens_at_us = now;
        if (R.tokens > cap)
            R.tokens = cap;
        if (R.tokens >= 1000000) {
            R.tokens -= 1000000;
            return;
        }
        nap((1000000 - R.tokens) / rps / 1000 + 1);
        if (atomic_load(&K.stop))
            return;
    }
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    (void)arg;
    if (R.body.len + size * n > (64u << 20))
        return 0;
    kb_buf_append(&R.body, p, size * n);
    return size * n;
}

/*
 * GET path_q (under the REST URL) into R.body. Returns the HTTP status of the final
 * answer (2xx, 404, another 4xx), or 0 when it gave up after retrying 429, 5xx and
 * network errors.
 */
static long
get(const char *path_q)
{
    kb_buf url = KB_BUF_INIT, path = KB_BUF_INIT;
    kb_buf_printf(&url, "%s%s", K.cfg->kalshi_rest_url, path_q);
    kb_buf_printf(&path, "%s%s", R.prefix, path_q);
    long status = 0;
    int64_t backoff = K.cfg->collector_backoff_min_ms;
    for (int attempt = 0; attempt < 10 && !atomic_load(&K.stop); attempt++) {
        take_token();
        kb_buf_reset(&R.body);
        struct curl_slist *h = NULL;
        char line[KB_KALSHI_SIG_MAX + 64], sig[KB_KALSHI_SIG_MAX];
        int64_t ms = kc_now_ns() / 1000000;
        if (K.key.pkey != NULL && kb_kalshi_sign(&K.key, ms, "GET", path.buf, sig, sizeof(sig))) {
            snprintf(line, sizeof(line), "KALSHI-ACCESS-KEY: %s", K.key.id);
            h = curl_slist_append(h, line);
            snprintf(line, sizeof(line), "KALSHI-ACCESS-TIMESTAMP: %" PRId64, ms);
            h = curl_slist_append(h, line);
            snprintf(line, sizeof(line), "KALSHI-ACCESS-SIGNATURE: %s", sig);
            h = curl_slist_append(h, line);
        }
        h = curl_slist_append(h, "Accept: application/json");
        curl_easy_setopt(R.curl, CURLOPT_URL, url.buf);
        curl_easy_setopt(R.curl, CURLOPT_HTTPHEADER, h);
        CURLcode rc = curl_easy_perform(R.curl);
        curl_slist_free_all(h);
        status = 0;
        if (rc == CURLE_OK)
            curl_easy_getinfo(R.curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            kc_metric_add(KC_M_REST_OK, 1);
            break;
        }
        if (status == 429)
            kc_metric_add(KC_M_REST_429, 1);
        else if (status >= 500)
            kc_metric_add(KC_M_REST_5XX, 1);
        else if (rc != CURLE_OK)
            kc_metric_add(KC_M_REST_ERR, 1);
        if (rc == CURLE_OK && status != 429 && status < 500)
            break; /* a 4xx answer is final */
        kb_log_warn("REST GET %s: %s; retrying in about %" PRId64 " ms", path_q,
                    rc != CURLE_OK  ? curl_easy_strerror(rc)
                    : status == 429 ? "429"
                                    : "5xx",
                    backoff);
        nap(kc_jitter_ms(backoff));
        backoff = backoff * 2 > K.cfg->collector_backoff_max_ms ? K.cfg->collector_backoff_max_ms
                                                                : backoff * 2;
        status = 0;
    }
    kb_buf_release(&url);
    kb_buf_release(&path);
    return status;
}

static void
list_open(void)
{
    char *cursor = strdup("");
    for (;;) {
        kb_buf q = KB_BUF_INIT;
        kb_buf_puts(&q, "/markets?status=open&limit=1000");
        if (*cursor) {
            char *esc = curl_easy_escape(R.curl, cursor, 0);
            kb_buf_printf(&q, "&cursor=%s", esc ? esc : "");
            curl_free(esc);
        }
        long st = get(q.buf);
        kb_buf_release(&q);
        cJSON *j = st >= 200 && st < 300 ? cJSON_ParseWithLength(R.body.buf, R.body.len) : NULL;
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "cursor");
        if (j == NULL || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "markets"))) {
            kb_log_warn("REST market listing failed (status %ld); trying again later", st);
            cJSON_Delete(j);
            post(MSG_LIST_FAILED, NULL, 0, NULL);
            break;
        }
        size_t len;
        char *body = kb_buf_detach(&R.body, &len);
        post(MSG_PAGE, body, len, NULL);
        free(cursor);
        cursor = strdup(cJSON_IsString(next) ? next->valuestring : "");
        cJSON_Delete(j);
        if (*cursor == '\0') {
            post(MSG_LIST_DONE, NULL, 0, NULL);
            break;
        }
    }
    free(cursor);
}

static void
check_market(const char *ticker)
{
    char *esc = curl_easy_escape(R.curl, ticker, 0);
    kb_buf q = KB_BUF_INIT;
    kb_buf_printf(&q, "/markets/%s", esc ? esc : "");
    curl_free(esc);
    long st = get(q.buf);
    kb_buf_release(&q);
    if (st == 404) {
        post(MSG_MARKET_GONE, NULL, 0, ticker);
    } else if (st >= 200 && st < 300) {
        size_t len;
        char *body = kb_buf_detach(&R.body, &len);
        post(MSG_MARKET, body, len, ticker);
    } else {
        /* Unknown: the next reconcile asks again. */
        post(MSG_MARKET, NULL, 0, ticker);
    }
}

static void *
run(void *arg)
{
    (void)arg;
    while (!atomic_load(&K.stop)) {
        pthread_mutex_lock(&R.mu);
        if (!R.want_list && R.nchecks == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&R.cv, &R.mu, &ts);
        }
        bool list = R.want_list;
        R.want_list = false;
        char *one = R.nchecks > 0 ? R.checks[--R.nchecks] : NULL;
        pthread_mutex_unlock(&R.mu);
        if (list)
            list_open();
        if (one != NULL) {
            check_market(one);
            free(one);
        }
    }
    return NULL;
}

int
kc_rest_start(void)
{
    char host[256];
    int port;
    bool tls;
    const char *path;
    if (!kb_kalshi_url_split(K.cfg->kalshi_rest_url, host, sizeof(host), &port, &tls, &path) ||
        strlen(path) >= sizeof(R.prefix))
        return -1;
    /* "/trade-api/v2/" and "/trade-api/v2" sign the same way. */
    size_t pl = strlen(path);
    while (pl > 0 && path[pl - 1] == '/')
        pl--;
    memcpy(R.prefix, path, pl);
    R.prefix[pl] = '\0';
    R.curl = curl_easy_init();
    if (R.curl == NULL)
        return -1;
    curl_easy_setopt(R.curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(R.curl, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(R.curl, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(R.curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(R.curl, CURLOPT_USERAGENT, "kalshibook-collector");
    curl_easy_setopt(R.curl, CURLOPT_PROTOCOLS_STR, "https,http");
    if (K.cfg->kalshi_ca_file != NULL)
        curl_easy_setopt(R.curl, CURLOPT_CAINFO, K.cfg->kalshi_ca_file);
    R.tokens_at_us = kc_mono_ns() / 1000;
    R.tokens = K.cfg->collector_rest_rps * 1000000;
    if (pthread_create(&R.th, NULL, run, NULL) != 0)
        return -1;
    R.started = true;
    return 0;
}

void
kc_rest_stop(void)
{
    if (R.started) {
        pthread_cond_signal(&R.cv);
        pthread_join(R.th, NULL);
    }
    R.started = false;
    if (R.curl != NULL)
        curl_easy_cleanup(R.curl);
    R.curl = NULL;
    kb_buf_release(&R.body);
    for (int i = 0; i < R.nchecks; i++)
        free(R.checks[i]);
    free(R.checks);
    for (msg *m = R.head, *n; m != NULL; m = n) {
        n = m->next;
        free(m->body);
        free(m->ticker);
        free(m);
    }
    R.head = R.tail = NULL;
}

void
kc_rest_check(const char *ticker)
{
    pthread_mutex_lock(&R.mu);
    if (R.nchecks == R.capchecks) {
        R.capchecks = R.capchecks ? R.capchecks * 2 : 64;
        R.checks = realloc(R.checks, sizeof(*R.checks) * (size_t)R.capchecks);
        if (R.checks == NULL)
            abort();
    }
    R.checks[R.nchecks++] = strdup(ticker);
    pthread_cond_signal(&R.cv);
    pthread_mutex_unlock(&R.mu);
}

void
kc_rest_reconcile(void)
{
    pthread_mutex_lock(&R.mu);
    R.want_list = true;
    pthread_cond_signal(&R.cv);
    pthread_mutex_unlock(&R.mu);
}

/* ---- the reader's side ---------------------------------------------------------- */

static int listed; /* open markets in the listing being received */

static bool
status_open(const char *st)
{
    return st == NULL || strcmp(st, "active") == 0 || strcmp(st, "open") == 0;
}

static bool
status_over(const char *st)
{
    static const char *const over[] = {"closed", "settled", "determined", "finalized"};
    for (size_t i = 0; st != NULL && i < sizeof(over) / sizeof(over[0]); i++) {
        if (strcmp(st, over[i]) == 0)
            return true;
    }
    return false;
}

static void
on_page(const msg *m)
{
    kc_spool_rest(m->body, m->len);
    cJSON *j = cJSON_ParseWithLength(m->body, m->len);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "markets"), *it;
    cJSON_ArrayForEach(it, arr) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "ticker");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "status");
        if (!cJSON_IsString(t) || !status_open(cJSON_IsString(st) ? st->valuestring : NULL))
            continue;
        int32_t i = kc_market_want(t->valuestring, strlen(t->valuestring), true);
        if (i >= 0) {
            K.m[i].seen = true;
            listed++;
        }
    }
    cJSON_Delete(j);
}

/* The listing is complete: a wanted market missing from it is looked up on its own. */
static void
on_list_done(bool ok)
{
    for (int32_t i = 0; i < K.nm; i++) {
        kc_market *m = &K.m[i];
        if (ok && m->wanted && !m->seen && !m->checking) {
            m->checking = true;
            kc_rest_check(m->ticker);
        }
        m->seen = false;
    }
    if (ok)
        kc_metric_set(KC_G_OPEN_MARKETS_REST, listed);
    else
        K.reconcile_due_us = kc_mono_ns() / 1000 + 10 * 1000000LL;
    listed = 0;
}

static void
on_market(const msg *m)
{
    int32_t i = kc_market_find(m->ticker, strlen(m->ticker));
    if (i >= 0)
        K.m[i].checking = false;
    if (m->kind == MSG_MARKET_GONE) {
        kc_market_want(m->ticker, strlen(m->ticker), false);
        return;
    }
    if (m->body == NULL)
        return;
    kc_spool_rest(m->body, m->len);
    cJSON *j = cJSON_ParseWithLength(m->body, m->len);
    const cJSON *mk = cJSON_GetObjectItemCaseSensitive(j, "market");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(mk, "status");
    const char *s = cJSON_IsString(st) ? st->valuestring : "";
    if (strcmp(s, "active") == 0 || strcmp(s, "open") == 0)
        kc_market_want(m->ticker, strlen(m->ticker), true);
    else if (status_over(s))
        kc_market_want(m->ticker, strlen(m->ticker), false);
    /* inactive (paused), initialized: unchanged */
    cJSON_Delete(j);
}

void
kc_rest_drain(void)
{
    pthread_mutex_lock(&R.mu);
    msg *m = R.head;
    R.head = R.tail = NULL;
    pthread_mutex_unlock(&R.mu);
    while (m != NULL) {
        msg *n = m->next;
        switch (m->kind) {
        case MSG_PAGE:
            on_page(m);
            break;
        case MSG_LIST_DONE:
            on_list_done(true);
            break;
        case MSG_LIST_FAILED:
            on_list_done(false);
            break;
        default:
            on_market(m);
        }
        free(m->body);
        free(m->ticker);
        free(m);
        m = n;
    }
}
