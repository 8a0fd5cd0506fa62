/* stripe.c - Stripe HTTP client over the worker's reused libcurl handle; see kb_stripe.h.
 *
 * Invariants: the secret key appears only in the Authorization header (never
 * in a log line or an error message); every POST carries an Idempotency-Key;
 * at most 1 + STRIPE_MAX_RETRIES attempts per call, each bounded by
 * STRIPE_TIMEOUT_S, with jittered exponential backoff in between.
 */
#include "kb_stripe.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "kb_config.h"
#include "kb_crypto.h"
#include "kb_log.h"
#include "kb_worker.h"
#include "kb_banned.h"

#define BACKOFF_BASE_MS 300
#define BACKOFF_MAX_MS 5000
#define MAX_RESPONSE (4 * 1024 * 1024)

/* libcurl's percent-encoder (every byte but A-Z a-z 0-9 - . _ ~ as %XX), the
 * one the project uses; NULL means out of memory (values are far below its
 * 8 MB cap). */
static void
form_escape(kb_buf *b, const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    if (e == NULL)
        kb_oom(strlen(s) * 3 + 1);
    kb_buf_puts(b, e);
    curl_free(e);
}

void
kb_stripe_form_add(kb_stripe_form *f, const char *key, const char *value)
{
    if (f->body.len > 0)
        kb_buf_putc(&f->body, '&');
    form_escape(&f->body, key);
    kb_buf_putc(&f->body, '=');
    form_escape(&f->body, value ? value : "");
}

void
kb_stripe_form_addf(kb_stripe_form *f, const char *value, const char *keyfmt, ...)
{
    char key[256];
    va_list ap;
    va_start(ap, keyfmt);
    vsnprintf(key, sizeof(key), keyfmt, ap);
    va_end(ap);
    kb_stripe_form_add(f, key, value);
}

void
kb_stripe_form_release(kb_stripe_form *f)
{
    kb_buf_release(&f->body);
}

bool
kb_stripe_configured(void)
{
    return kb_cfg.stripe_secret_key != NULL && kb_cfg.stripe_secret_key[0] != '\0';
}

const char *
kb_stripe_str(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void
kb_stripe_release(kb_worker *w)
{
    if (w != NULL && w->stripe_curl != NULL)
        curl_easy_cleanup(w->stripe_curl);
    if (w != NULL)
        w->stripe_curl = NULL;
}

typedef struct exchange {
    kb_buf body;
    char should_retry[8]; /* "true" / "false" / "" */
    char replayed[8];     /* Idempotent-Replayed: "true" / "" */
    char request_id[64];
} exchange;

static size_t
on_body(char *p, size_t size, size_t n, void *ud)
{
    exchange *x = ud;
    if (x->body.len + size * n > MAX_RESPONSE)
        return 0;
    kb_buf_append(&x->body, p, size * n);
    return size * n;
}

static void
header_value(const char *p, size_t len, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(p, name, nl) != 0 || p[nl] != ':')
        return;
    p += nl + 1;
    len -= nl + 1;
    while (len > 0 && (*p == ' ' || *p == '\t'))
        p++, len--;
    while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n' || p[len - 1] == ' '))
        len--;
    snprintf(out, outsz, "%.*s", (int)len, p);
}

static size_t
on_header(char *p, size_t size, size_t n, void *ud)
{
    exchange *x = ud;
    header_value(p, size * n, "Stripe-Should-Retry", x->should_retry, sizeof(x->should_retry));
    header_value(p, size * n, "Request-Id", x->request_id, sizeof(x->request_id));
    header_value(p, size * n, "Idempotent-Replayed", x->replayed, sizeof(x->replayed));
    return size * n;
}

/* The worker's handle (made on first use), or for w == NULL a handle of its own
 * that the caller cleans up. */
static CURL *
get_handle(kb_worker *w)
{
    if (w == NULL)
        return curl_easy_init();
    if (w->stripe_curl == NULL) {
        w->stripe_curl = curl_easy_init();
        if (w->stripe_curl == NULL)
            return NULL;
    }
    curl_easy_reset(w->stripe_curl);
    return w->stripe_curl;
}

static void
backoff(int attempt)
{
    long ms = BACKOFF_BASE_MS << (attempt > 5 ? 5 : attempt);
    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    ms = ms / 2 + (long)randombytes_uniform((uint32_t)(ms / 2 + 1)); /* jitter: [ms/2, ms] */
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void
parse_error(kb_arena *a, kb_stripe_res *res)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(res->json, "error");
    if (!cJSON_IsObject(e))
        return;
    const char *s;
    if ((s = kb_stripe_str(e, "type")) != NULL)
        res->err_type = kb_arena_strdup(a, s);
    if ((s = kb_stripe_str(e, "code")) != NULL)
        res->err_code = kb_arena_strdup(a, s);
    if ((s = kb_stripe_str(e, "param")) != NULL)
        res->err_param = kb_arena_strdup(a, s);
    if ((s = kb_stripe_str(e, "message")) != NULL)
        res->err_message = kb_arena_strdup(a, s);
}

static void
delete_json(void *p)
{
    cJSON_Delete(p);
}

/* One attempt; returns the CURLcode and fills x and *status. */
static CURLcode
attempt_once(CURL *c, const char *method, const char *url, const kb_buf *body,
             struct curl_slist *hdrs, exchange *x, long *status)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->len ? body->buf : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    long total = kb_cfg.stripe_timeout_s > 0 ? kb_cfg.stripe_timeout_s : 20L;
    curl_easy_setopt(c, CURLOPT_TIMEOUT, total);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    if (kb_cfg.stripe_ca_file != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, kb_cfg.stripe_ca_file);
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    return rc;
}

static bool
retryable(CURLcode rc, long status, const exchange *x)
{
    if (strcmp(x->should_retry, "false") == 0)
        return false;
    if (strcmp(x->should_retry, "true") == 0)
        return true;
    if (rc != CURLE_OK)
        return true;
    return status == 409 || status == 429 || status >= 500;
}

kb_err
kb_stripe_call(kb_worker *w, kb_arena *a, const char *method, const char *path,
               const kb_stripe_form *form, const char *idem_key, kb_stripe_res *res)
{
    memset(res, 0, sizeof(*res));
    if (!kb_stripe_configured())
        return KB_E_BILLING_NOT_CONFIGURED;
    CURL *c = get_handle(w);
    if (c == NULL)
        return KB_E_STRIPE;

    static const kb_buf empty = KB_BUF_INIT;
    const kb_buf *body = form ? &form->body : &empty;
    bool post = strcmp(method, "POST") == 0;
    char *url = kb_arena_printf(a, "%s%s%s%s", kb_cfg.stripe_api_base, path,
                                !post && body->len ? "?" : "", !post ? kb_buf_cstr(body) : "");

    struct curl_slist *h = NULL;
    char *auth = kb_arena_printf(a, "Authorization: Bearer %s", kb_cfg.stripe_secret_key);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Stripe-Version: " KB_STRIPE_VERSION);
    h = curl_slist_append(h, "User-Agent: kalshibook/1 (libcurl)");
    if (post) {
        h = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded");
        char key[256];
        if (idem_key == NULL) {
            kb_buf in = KB_BUF_INIT;
            kb_buf_printf(&in, "%s %s\n%s", method, path, kb_buf_cstr(body));
            char hex[KB_SHA256_HEX_LEN + 1];
            kb_sha256_hex(in.buf, in.len, hex);
            kb_buf_release(&in);
            snprintf(key, sizeof(key), "kb-%s", hex);
        } else {
            snprintf(key, sizeof(key), "%s", idem_key);
        }
        h = curl_slist_append(h, kb_arena_printf(a, "Idempotency-Key: %s", key));
    }
    h = curl_slist_append(h, "Expect:");

    int max_attempts = 1 + (int)kb_cfg.stripe_max_retries;
    CURLcode rc = CURLE_OK;
    exchange x;
    memset(&x, 0, sizeof(x));
    for (int i = 0; i < max_attempts; i++) {
        if (i > 0)
            backoff(i - 1);
        kb_buf_reset(&x.body);
        x.should_retry[0] = '\0';
        x.replayed[0] = '\0';
        x.request_id[0] = '\0';
        rc = attempt_once(c, method, url, body, h, &x, &res->status);
        res->attempts = i + 1;
        if (rc == CURLE_OK && res->status >= 200 && res->status < 300)
            break;
        if (!retryable(rc, res->status, &x))
            break;
        kb_log_warn("stripe %s %s: attempt %d failed (%s, status %ld); %s", method, path, i + 1,
                    rc == CURLE_OK ? "http" : curl_easy_strerror(rc), res->status,
                    i + 1 < max_attempts ? "retrying" : "giving up");
    }
    curl_slist_free_all(h);
    if (w == NULL)
        curl_easy_cleanup(c);
    /* The Authorization line lives in the arena; wipe it now. */
    sodium_memzero(auth, strlen(auth));

    if (x.body.len > 0) {
        res->json = cJSON_ParseWithLength(x.body.buf, x.body.len);
        if (res->json != NULL)
            kb_arena_on_reset(a, delete_json, res->json);
    }
    kb_buf_release(&x.body);
    res->replayed = strcasecmp(x.replayed, "true") == 0;
    if (rc == CURLE_OK && res->status >= 200 && res->status < 300)
        return KB_OK;
    parse_error(a, res);
    kb_log_error("stripe %s %s failed: status=%ld curl=\"%s\" type=%s code=%s param=%s "
                 "message=\"%s\" request_id=%s attempts=%d",
                 method, path, res->status, rc == CURLE_OK ? "ok" : curl_easy_strerror(rc),
                 res->err_type ? res->err_type : "-", res->err_code ? res->err_code : "-",
                 res->err_param ? res->err_param : "-", res->err_message ? res->err_message : "-",
                 x.request_id[0] ? x.request_id : "-", res->attempts);
    return KB_E_STRIPE;
}
