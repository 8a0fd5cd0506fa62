/* books.c - outside gaps, the API's books equal the true books.
 *
 * Pairs: a market of the truth log with stored data, an instant drawn uniformly (in
 * ms) between its first snapshot and its last stored delta, redrawn while it falls in
 * one of the market's orderbook gaps (an open gap: from its start on). The book comes
 * from POST /orderbook (depth: all) through nginx with a key of a project account made
 * for the check; prices and quantities are read from price_dollars / quantity_fp when
 * the answer has them (exact), else from the integer cents and contracts.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "check.h"
#include "kb_buf.h"
#include "kb_crypto.h"
#include "kb_time.h"
#include "kb_banned.h"

static uint64_t rng;

static uint64_t
rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A project account with room for every request of the check; its raw key. */
static void
make_key(PGconn *db, char key[64])
{
    snprintf(key, 64, "kb-collectorcheck%024" PRIx64 "%02d", rnd(), (int)(rnd() % 100));
    char hash[KB_SHA256_HEX_LEN + 1], email[80];
    kb_sha256_hex(key, strlen(key), hash);
    snprintf(email, sizeof(email), "collector-check-%" PRIx64 "@example.test", rnd());
    const char *p[] = {email, hash};
    PQclear(
        cc_sql(db,
               "WITH u AS (INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id),"
               " k AS (INSERT INTO api_keys (user_id, key_hash, key_prefix, name)"
               "       SELECT id, $2, 'kb-coll', 'collector-check' FROM u)"
               " INSERT INTO billing_accounts (user_id, tier, credits_total, credits_override,"
               "       rpm_override) SELECT id, 'project', 100000000, 100000000, 1000000 FROM u",
               2, p));
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    kb_buf_append(arg, p, size * n);
    return size * n;
}

/* "0.0550" / "12.50" -> integer units (4 / 2 decimals); -1 when malformed. */
static int64_t
fixed(const char *s, int decimals)
{
    int64_t v = 0;
    int seen = -1;
    for (const char *c = s; *c; c++) {
        if (*c == '.' && seen < 0) {
            seen = 0;
            continue;
        }
        if (*c < '0' || *c > '9')
            return -1;
        v = v * 10 + (*c - '0');
        if (seen >= 0)
            seen++;
    }
    for (int k = seen < 0 ? 0 : seen; k < decimals; k++)
        v *= 10;
    return seen > decimals ? -1 : v;
}

/* The API's side as qty per price index; false when a level is unreadable. */
static bool
side(const cJSON *arr, int64_t out[1000])
{
    memset(out, 0, sizeof(int64_t) * 1000);
    const cJSON *l;
    cJSON_ArrayForEach(l, arr) {
        const cJSON *pd = cJSON_GetObjectItemCaseSensitive(l, "price_dollars");
        const cJSON *qf = cJSON_GetObjectItemCaseSensitive(l, "quantity_fp");
        int64_t p, q;
        if (cJSON_IsString(pd) && cJSON_IsString(qf)) {
            p = fixed(pd->valuestring, 4);
            q = fixed(qf->valuestring, 2);
        } else {
            const cJSON *pi = cJSON_GetObjectItemCaseSensitive(l, "price");
            const cJSON *qi = cJSON_GetObjectItemCaseSensitive(l, "quantity");
            if (!cJSON_IsNumber(pi) || !cJSON_IsNumber(qi))
                return false;
            p = (int64_t)pi->valuedouble * 100;
            q = (int64_t)qi->valuedouble * 100;
        }
        if (p <= 0 || p >= 10000 || p % 10 != 0 || q <= 0)
            return false;
        out[p / 10] += q;
    }
    return true;
}

typedef struct span {
    int64_t lo, hi; /* ms */
} span;

void
cc_check_books(PGconn *db, const cc_args *a, cc_truth *t)
{
    rng = a->seed * 0x9E3779B97F4A7C15ULL | 1;
    const char *base = getenv("KB_BASE_URL"), *ca = getenv("KB_CA_CERT");
    if (base == NULL || ca == NULL) {
        cc_verdict("books", false, "KB_BASE_URL and KB_CA_CERT must be set");
        return;
    }
    char key[64];
    make_key(db, key);
    /* Markets with data: their span. */
    PGresult *r = cc_sql(db,
                         "SELECT s.market_ticker, kb_us(min(s.captured_at)) / 1000,"
                         "  (SELECT kb_us(max(ts)) / 1000 FROM deltas d WHERE d.market_ticker ="
                         "     s.market_ticker)"
                         " FROM snapshots s GROUP BY 1 ORDER BY 1",
                         0, NULL);
    int nm = PQntuples(r);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    char url[256];
    snprintf(url, sizeof(url), "%s/orderbook", base);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    long done = 0, wrong = 0, errors = 0, draws = 0;
    char first[768] = "";
    int64_t ty[1000], tn[1000], ay[1000], an[1000];
    for (int i = 0; nm > 0 && i < a->pairs && draws < (long)a->pairs * 50; draws++) {
        int k = (int)(rnd() % (uint64_t)nm);
        const char *tk = PQgetvalue(r, k, 0);
        cc_market *m = cc_truth_find(t, tk);
        if (m == NULL || PQgetisnull(r, k, 2))
            continue;
        int64_t lo = strtoll(PQgetvalue(r, k, 1), NULL, 10),
                hi = strtoll(PQgetvalue(r, k, 2), NULL, 10);
        if (hi <= lo)
            continue;
        int64_t at = lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
        char ats[24];
        snprintf(ats, sizeof(ats), "%" PRId64, at);
        const char *p[] = {tk, ats};
        PGresult *g = cc_sql(db,
                             "SELECT count(*) FROM gaps WHERE market_ticker = $1 AND channel = "
                             "'orderbook' AND 'epoch'::timestamptz + $2::bigint * interval '1 ms'"
                             " BETWEEN start_at AND coalesce(end_at, 'infinity')",
                             2, p);
        bool in_gap = strcmp(PQgetvalue(g, 0, 0), "0") != 0;
        PQclear(g);
        if (in_gap)
            continue;
        i++;
        char ts[KB_TIME_FMT_MAX];
        kb_time_format(at * 1000, ts, sizeof(ts));
        kb_buf body = KB_BUF_INIT, out = KB_BUF_INIT;
        kb_buf_printf(&body, "{\"market_ticker\":\"%s\",\"timestamp\":\"%s\"}", tk, ts);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.buf);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
        long status = 0;
        CURLcode rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        cJSON *j = rc == CURLE_OK && status == 200 ? cJSON_ParseWithLength(out.buf, out.len) : NULL;
        if (j == NULL || !side(cJSON_GetObjectItemCaseSensitive(j, "yes"), ay) ||
            !side(cJSON_GetObjectItemCaseSensitive(j, "no"), an)) {
            if (errors++ == 0 && first[0] == '\0')
                snprintf(first, sizeof(first), "%s at %s: HTTP %ld %.300s", tk, ts, status,
                         kb_buf_cstr(&out));
        } else {
            cc_truth_book(m, at, ty, tn);
            bool same = true;
            for (int x = 1; x < 1000 && same; x++)
                same = (ty[x] > 0 ? ty[x] : 0) == ay[x] && (tn[x] > 0 ? tn[x] : 0) == an[x];
            done++;
            if (!same && wrong++ == 0 && first[0] == '\0') {
                char *got = cJSON_PrintUnformatted(j);
                snprintf(first, sizeof(first), "%s at %s: the API says %.400s", tk, ts, got);
                free(got);
            }
        }
        cJSON_Delete(j);
        kb_buf_release(&body);
        kb_buf_release(&out);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    PQclear(r);
    cc_verdict("books", done == a->pairs && wrong == 0 && errors == 0,
               "%ld (market, instant) pairs outside gaps over %d markets: %ld differ from the "
               "true book, %ld unreadable%s%s",
               done, nm, wrong, errors, first[0] ? "; first: " : "", first);
}
