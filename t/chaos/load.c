/* load.c - the chaos load: accounts of every kind, metered requests, the client threads. */
#include "chaos.h"
#include "kb_banned.h"

/* ---- accounts -------------------------------------------------------------------------- */

static void
rand_hex(char *out, size_t bytes)
{
    static const char hx[] = "0123456789abcdef";
    FILE *f = fopen("/dev/urandom", "rb");
    for (size_t i = 0; i < bytes; i++) {
        int b = f ? fgetc(f) : rand();
        out[2 * i] = hx[(b >> 4) & 15];
        out[2 * i + 1] = hx[b & 15];
    }
    out[2 * bytes] = '\0';
    if (f)
        fclose(f);
}

void
account_new(PGconn *c, account *a, const char *kind)
{
    char hex[65], tag[17];
    rand_hex(hex, 32);
    rand_hex(tag, 8);
    snprintf(a->kind, sizeof(a->kind), "%s", kind);
    snprintf(a->key, sizeof(a->key), "kb-%.43s", hex); /* shape: kb- + 43 url-safe chars */
    bool payg = strncmp(kind, "payg", 4) == 0;
    const char *tier = payg ? "payg" : strcmp(kind, "free") == 0 ? "free" : "project";
    const char *credits = strcmp(kind, "free") == 0 ? "200" : payg ? "100" : "100000000";
    const char *cap = strcmp(kind, "payg_cap") == 0 ? "150" : NULL;
    char email[80];
    snprintf(email, sizeof(email), "chaos-%s@example.test", tag);
    if (payg)
        snprintf(a->cus, sizeof(a->cus), "cus_chaos%s", tag);
    char prefix[8];
    memcpy(prefix, a->key, 7);
    prefix[7] = '\0';
    const char *p[] = {email,   a->key,           prefix, tier,
                       credits, payg ? "t" : "f", cap,    payg ? a->cus : NULL};
    PGresult *r = PQexecParams(
        c,
        "WITH u AS (INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id),"
        " k AS (INSERT INTO api_keys (user_id, key_hash, key_prefix)"
        "       SELECT id, encode(sha256(convert_to($2, 'UTF8')), 'hex'), $3 FROM u"
        "       RETURNING id, user_id),"
        " b AS (INSERT INTO billing_accounts (user_id, tier, credits_total, credits_override,"
        "       rpm_override, payg_enabled, payg_requested, overage_cap, stripe_customer_id,"
        "       billing_cycle_start)"
        "       SELECT id, $4, $5::int, $5::int, 1000000, $6::bool, $6::bool, $7::int, $8,"
        "              kb_cycle_month(kb_now()) FROM u)"
        " SELECT k.user_id, k.id FROM k",
        8, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "chaos: account: %s", PQresultErrorMessage(r));
        exit(2);
    }
    snprintf(a->user_id, sizeof(a->user_id), "%s", PQgetvalue(r, 0, 0));
    snprintf(a->key_id, sizeof(a->key_id), "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    a->payg = payg;
    a->total = strtol(credits, NULL, 10);
    a->cap = cap ? strtol(cap, NULL, 10) : -1;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

typedef struct hdrs {
    long cost; /* -1 = no X-Credits-Cost */
    char rid[32];
} hdrs;

static size_t
on_header(char *b, size_t sz, size_t n, void *u)
{
    hdrs *h = u;
    size_t len = sz * n;
    if (len > 15 && strncasecmp(b, "X-Credits-Cost:", 15) == 0)
        h->cost = strtol(b + 15, NULL, 10);
    else if (len > 14 && strncasecmp(b, "X-Request-ID: ", 14) == 0)
        snprintf(h->rid, sizeof(h->rid), "%.*s", (int)strcspn(b + 14, "\r\n"), b + 14);
    else if (len > 5 && strncmp(b, "HTTP/", 5) == 0)
        h->cost = -1; /* a new response (e.g. after 100-continue) */
    return len;
}

static size_t
on_body(char *b, size_t sz, size_t n, void *u)
{
    (void)b;
    (void)u;
    return sz * n;
}

/* One request; returns the status (0 on transport failure), *cost the header value or -1. */
long
req(CURL *cu, const account *a, int route, long *cost)
{
    return req_on(cu, rand() % nhosts, a, route, cost);
}

long
req_on(CURL *cu, int host, const account *a, int route, long *cost)
{
    const char *b = bases[host];
    char url[512], body[256], auth[128];
    struct curl_slist *hl = NULL;
    hdrs h = {-1, ""};
    const char *t = tickers[rand() % nticker];
    curl_easy_reset(cu);
    if (route == 0) {
        snprintf(url, sizeof(url), "%s/markets?limit=5", b);
    } else if (route == 1) {
        snprintf(url, sizeof(url), "%s/markets/%s", b, t);
    } else if (route == 2) {
        snprintf(url, sizeof(url), "%s/orderbook", b);
        snprintf(body, sizeof(body),
                 "{\"market_ticker\":\"%s\",\"timestamp\":\"2026-01-14T%02d:30:00Z\","
                 "\"depth\":5}",
                 t, 12 + rand() % 10);
        curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
        hl = curl_slist_append(hl, "Content-Type: application/json");
    } else {
        snprintf(url, sizeof(url), "%s/health", b);
    }
    if (a != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", a->key);
        hl = curl_slist_append(hl, auth);
    }
    curl_easy_setopt(cu, CURLOPT_URL, url);
    curl_easy_setopt(cu, CURLOPT_CAINFO, ca);
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(cu, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(cu, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    long st = 0;
    if (curl_easy_perform(cu) == CURLE_OK)
        curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(hl);
    *cost = h.cost;
    /* CHAOS_TRACE=FILE: one line per metered request as the client saw it. */
    static FILE *trace;
    static pthread_mutex_t tm = PTHREAD_MUTEX_INITIALIZER;
    if (a != NULL && getenv("CHAOS_TRACE") != NULL) {
        pthread_mutex_lock(&tm);
        if (trace == NULL)
            trace = fopen(getenv("CHAOS_TRACE"), "a");
        if (trace != NULL) {
            fprintf(trace, "%s %d %s %ld %ld\n", a->user_id, host, h.rid[0] ? h.rid : "-", st,
                    h.cost);
            fflush(trace);
        }
        pthread_mutex_unlock(&tm);
    }
    return st;
}

typedef struct body {
    char *p;
    size_t n;
} body;

static size_t
on_keep(char *b, size_t sz, size_t n, void *u)
{
    body *o = u;
    char *np = realloc(o->p, o->n + sz * n + 1);
    if (np == NULL)
        return 0;
    o->p = np;
    memcpy(o->p + o->n, b, sz * n);
    o->n += sz * n;
    o->p[o->n] = '\0';
    return sz * n;
}

/* METHOD url with an optional bearer token and JSON body; parsed JSON answer or NULL. */
cJSON *
http_json(const char *method, const char *url, const char *token, const char *json, long *st)
{
    CURL *cu = curl_easy_init();
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[1200];
    body o = {NULL, 0};
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hl = curl_slist_append(hl, auth);
    }
    curl_easy_setopt(cu, CURLOPT_URL, url);
    curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, method);
    if (json)
        curl_easy_setopt(cu, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(cu, CURLOPT_CAINFO, ca);
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_keep);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, &o);
    curl_easy_setopt(cu, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    *st = 0;
    if (curl_easy_perform(cu) == CURLE_OK)
        curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, st);
    curl_slist_free_all(hl);
    curl_easy_cleanup(cu);
    cJSON *j = o.p ? cJSON_Parse(o.p) : NULL;
    free(o.p);
    return j;
}

subscriber subs[NSUB];

void
subscribers_new(void)
{
    char url[512], json[4096], tag[13];
    for (int i = 0; i < NSUB; i++) {
        rand_hex(tag, 6);
        snprintf(subs[i].email, sizeof(subs[i].email), "chaos-sub-%s@example.test", tag);
        snprintf(url, sizeof(url), "%s/auth/signup", base);
        snprintf(json, sizeof(json), "{\"email\":\"%s\",\"password\":\"chaos-pw-%s-x\"}",
                 subs[i].email, tag);
        long st;
        cJSON *j = http_json("POST", url, NULL, json, &st);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "access_token");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
        if (!cJSON_IsString(t) && d)
            t = cJSON_GetObjectItemCaseSensitive(d, "access_token");
        if (cJSON_IsString(t))
            snprintf(subs[i].token, sizeof(subs[i].token), "%s", t->valuestring);
        else
            fprintf(stderr, "chaos: signup %s answered %ld\n", subs[i].email, st);
        cJSON_Delete(j);
    }
}

void
account_note(account *a, long st, long cost, int fault)
{
    if (st >= 200 && st < 300) {
        atomic_fetch_add(&a->ok_cost, cost > 0 ? cost : 0);
        atomic_fetch_add(&a->ok_n, 1);
    } else {
        atomic_fetch_add(&a->err_n, 1);
        if (cost > 0)
            atomic_fetch_add(&a->err_charged, 1);
        if (st >= 500 && fault >= 0)
            faults[fault].e503++; /* approximate under races; diagnostic only */
    }
}

void *
client(void *arg)
{
    (void)arg;
    CURL *cu = curl_easy_init();
    for (;;) {
        /* The load lasts until both the request count is reached and every fault ran. */
        long i = atomic_fetch_add(&next_req, 1);
        if (i >= total_req && atomic_load(&faults_done))
            break;
        account *a = &acc[rand() % NACC];
        long cost;
        long st = req(cu, a, rand() % 3, &cost);
        int f = atomic_load(&active_fault);
        atomic_fetch_add(&status_hist[st / 100 < 6 ? st / 100 : 0], 1);
        if (st == 0)
            atomic_fetch_add(&transport_err, 1);
        account_note(a, st, cost, f);
        atomic_fetch_add(&done_req, 1);
    }
    curl_easy_cleanup(cu);
    return NULL;
}
