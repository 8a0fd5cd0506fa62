/* kbt.c - integration harness; see kbt.h. */
#include "kbt.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kb_banned.h"

static const char *source_addr;

void
kbt_set_source(const char *addr)
{
    source_addr = addr;
}

void
kbt_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *
kbt_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0') {
        fprintf(stderr, "kbt: %s is not set (run through t/run-tests.sh)\n", name);
        abort();
    }
    return v;
}

static size_t
on_body(char *p, size_t size, size_t n, void *ud)
{
    kb_buf_append(ud, p, size * n);
    return size * n;
}

static size_t
on_header(char *p, size_t size, size_t n, void *ud)
{
    kb_buf *b = ud;
    /* Keep only the last response's headers (a new status line resets). */
    if (n * size >= 5 && strncmp(p, "HTTP/", 5) == 0)
        kb_buf_reset(b);
    kb_buf_append(b, p, size * n);
    return size * n;
}

kbt_resp *
kbt_request_url(const char *method, const char *url, const char *const *headers, const char *body,
                size_t body_len)
{
    kbt_resp *r = calloc(1, sizeof(*r));
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        h = curl_slist_append(h, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_CAINFO, kbt_env("KB_CA_CERT"));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (source_addr != NULL)
        curl_easy_setopt(c, CURLOPT_INTERFACE, source_addr);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    r->curl_code = (int)curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body.len > 0)
        r->json = cJSON_ParseWithLength(r->body.buf, r->body.len);
    return r;
}

kbt_resp *
kbt_request(const char *method, const char *path, const char *const *headers, const char *body,
            size_t body_len)
{
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", kbt_env("KB_BASE_URL"), path);
    return kbt_request_url(method, url, headers, body, body_len);
}

kbt_resp *
kbt_get(const char *path)
{
    return kbt_request("GET", path, NULL, NULL, 0);
}

double
kbt_metrics_sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    const char *p = text;
    while (p && *p) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

double
kbt_metric(const char *series)
{
    kbt_resp *r = kbt_get("/metrics");
    ck_assert_msg(r->status == 200, "metrics: %ld %s", r->status, kb_buf_cstr(&r->body));
    double v = kbt_metrics_sample(kb_buf_cstr(&r->body), series);
    ck_assert_msg(v >= 0, "no %s in /metrics", series);
    kbt_resp_free(r);
    return v;
}

void
kbt_resp_free(kbt_resp *r)
{
    if (r == NULL)
        return;
    kb_buf_release(&r->body);
    kb_buf_release(&r->headers);
    cJSON_Delete(r->json);
    free(r);
}

char *
kbt_header(const kbt_resp *r, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = kb_buf_cstr(&r->headers);
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1;
            while (*v == ' ')
                v++;
            return strndup(v, (size_t)(p + len - v));
        }
        if (eol == NULL)
            break;
        p = eol + 2;
    }
    return NULL;
}

long
kbt_header_long(const kbt_resp *r, const char *name)
{
    char *v = kbt_header(r, name);
    if (v == NULL)
        return -1;
    char *end;
    long n = strtol(v, &end, 10);
    ck_assert_msg(*end == '\0' && end != v, "%s: '%s' is not an integer", name, v);
    free(v);
    return n;
}

void
kbt_assert_request_id(const kbt_resp *r)
{
    char *rid = kbt_header(r, "X-Request-ID");
    ck_assert_msg(rid != NULL, "no X-Request-ID header");
    ck_assert_uint_eq(strlen(rid), 16);
    ck_assert(strncmp(rid, "req_", 4) == 0);
    for (size_t i = 4; i < 16; i++)
        ck_assert(strchr("0123456789abcdef", rid[i]) != NULL);
    free(rid);
}

void
kbt_assert_envelope(const kbt_resp *r, long status, const char *code)
{
    ck_assert_msg(r->status == status, "status %ld, want %ld; body %s", r->status, status,
                  kb_buf_cstr(&r->body));
    char *ct = kbt_header(r, "Content-Type");
    ck_assert_msg(ct != NULL && strncmp(ct, "application/json", 16) == 0, "content-type %s",
                  ct ? ct : "(none)");
    free(ct);
    ck_assert_msg(r->json != NULL && cJSON_IsObject(r->json), "not a JSON object: %s",
                  kb_buf_cstr(&r->body));
    cJSON *err = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    ck_assert(cJSON_IsObject(err));
    cJSON *c = cJSON_GetObjectItemCaseSensitive(err, "code");
    ck_assert(cJSON_IsString(c));
    ck_assert_str_eq(c->valuestring, code);
    ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "message")));
    cJSON *st = cJSON_GetObjectItemCaseSensitive(err, "status");
    ck_assert(cJSON_IsNumber(st));
    ck_assert_int_eq((long)st->valuedouble, status);
    cJSON *rid = cJSON_GetObjectItemCaseSensitive(r->json, "request_id");
    ck_assert(cJSON_IsString(rid));
    kbt_assert_request_id(r);
    char *hdr = kbt_header(r, "X-Request-ID");
    ck_assert_str_eq(rid->valuestring, hdr);
    free(hdr);
}

char *
kbt_file_read(const char *path, size_t *len)
{
    char full[4096];
    if (path[0] == '/')
        snprintf(full, sizeof(full), "%s", path);
    else
        snprintf(full, sizeof(full), "%s/%s", kbt_env("KB_REPO_ROOT"), path);
    FILE *f = fopen(full, "rb");
    if (f == NULL)
        return NULL;
    kb_buf b = KB_BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        kb_buf_append(&b, chunk, n);
    fclose(f);
    return kb_buf_detach(&b, len);
}

PGconn *
kbt_db(void)
{
    PGconn *c = PQconnectdb(kbt_env("KB_DATABASE_URL"));
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "db: %s", PQerrorMessage(c));
    return c;
}

char *
kbt_sql_value(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    char *v = NULL;
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

void
kbt_sql_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    ck_assert_msg(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQresultErrorMessage(r));
    PQclear(r);
}

int
kbt_stack(const char *cmd, const char *arg)
{
    const char *root = kbt_env("KB_REPO_ROOT");
    char script[4096];
    snprintf(script, sizeof(script), "%s/t/stack.sh", root);
    pid_t pid = fork();
    if (pid == 0) {
        /* stdout would interleave with check's; keep it in the stack dir log. */
        execl("/bin/bash", "bash", script, cmd, kbt_env("KB_STACK_DIR"), arg, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

void
kbt_app_env_set(const char *name, const char *value)
{
    char envf[4096], tmp[4200], line[4096];
    size_t n = strlen(name);
    snprintf(envf, sizeof(envf), "%s/app.env", kbt_env("KB_STACK_DIR"));
    snprintf(tmp, sizeof(tmp), "%s.tmp", envf);
    FILE *in = fopen(envf, "r"), *out = fopen(tmp, "w");
    ck_assert(out != NULL);
    while (in != NULL && fgets(line, sizeof(line), in) != NULL)
        if (strncmp(line, name, n) != 0 || line[n] != '=')
            fputs(line, out);
    if (value != NULL)
        fprintf(out, "%s=%s\n", name, value);
    if (in != NULL)
        fclose(in);
    ck_assert_int_eq(fclose(out), 0);
    ck_assert_int_eq(rename(tmp, envf), 0);
    ck_assert_int_eq(kbt_stack("app-stop", NULL), 0);
    ck_assert_int_eq(kbt_stack("app-start", NULL), 0);
}

pid_t
kbt_master_pid(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/fcgi.pid", kbt_env("KB_STACK_DIR"));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long pid = -1;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = -1;
    fclose(f);
    return (pid_t)pid;
}

size_t
kbt_children(pid_t pid, pid_t *out, size_t max)
{
    char path[128];
    snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children", (long)pid, (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = 0;
    long c;
    while (n < max && fscanf(f, "%ld", &c) == 1) {
        /* The host lease keeper (prctl name "kb-host") is no worker. */
        char cp[64], comm[32] = "";
        snprintf(cp, sizeof(cp), "/proc/%ld/comm", c);
        FILE *cf = fopen(cp, "r");
        if (cf != NULL) {
            if (fgets(comm, sizeof(comm), cf) == NULL)
                comm[0] = '\0';
            fclose(cf);
        }
        if (strncmp(comm, "kb-host", 7) != 0)
            out[n++] = (pid_t)c;
    }
    fclose(f);
    return n;
}

long
kbt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
kbt_wait_until(bool (*fn)(void *), void *arg, long timeout_ms)
{
    long deadline = kbt_now_ms() + timeout_ms;
    for (;;) {
        if (fn(arg))
            return true;
        if (kbt_now_ms() >= deadline)
            return false;
        struct timespec d = {0, 20 * 1000000};
        nanosleep(&d, NULL);
    }
}

void
kbt_secret_note(const char *secret)
{
    const char *path = getenv("KB_TEST_SECRETS");
    if (path == NULL || secret == NULL || strlen(secret) < 8)
        return;
    FILE *f = fopen(path, "a");
    if (f == NULL)
        return;
    fprintf(f, "%s\n", secret);
    fclose(f);
}
