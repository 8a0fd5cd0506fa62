/* test_security.c - TLS, security headers, nginx limits and constant-time comparisons.
 *
 * TLS is checked on real handshakes with OpenSSL (the client allows every
 * version, at security level 0, so a refusal can only come from the server's
 * protocol_version alert). Slow and oversized requests go over raw TLS
 * sockets. Constant-time comparisons are checked on the built objects: every
 * module that compares a secret must import the constant-time primitive
 * (nm -u), and that primitive must behave.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check_main.h"
#include "kb_crypto.h"
#include "kbt.h"
#include "kb_banned.h"

/* The port of the URL in environment variable var (KB_BASE_URL, KB_HTTP_URL). */
static int
url_port(const char *var)
{
    const char *u = kbt_env(var); /* http(s)://127.0.0.1:PORT */
    const char *c = strrchr(u, ':');
    ck_assert_ptr_nonnull(c);
    char *end;
    errno = 0;
    long port = strtol(c + 1, &end, 10);
    ck_assert_msg(errno == 0 && end != c + 1 && (*end == '\0' || *end == '/') && port > 0 &&
                      port <= 65535,
                  "no port in %s '%s'", var, u);
    return (int)port;
}

static int
tcp_connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static int
tcp_connect(void)
{
    return tcp_connect_to(url_port("KB_BASE_URL"));
}

/* Handshake with exactly version v; returns the negotiated version, or 0 with *reason the
 * OpenSSL reason code of the failure. */
static int
handshake(int v, int *reason, SSL **out, SSL_CTX **octx, int *ofd)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(ctx, v);
    SSL_CTX_set_max_proto_version(ctx, v);
    int fd = tcp_connect();
    SSL *s = SSL_new(ctx);
    SSL_set_fd(s, fd);
    SSL_set_tlsext_host_name(s, "localhost");
    ERR_clear_error();
    int got = 0;
    *reason = 0;
    if (SSL_connect(s) == 1)
        got = SSL_version(s);
    else
        *reason = ERR_GET_REASON(ERR_peek_last_error());
    if (out != NULL) {
        *out = s;
        *octx = ctx;
        *ofd = fd;
    } else {
        SSL_free(s);
        SSL_CTX_free(ctx);
        close(fd);
    }
    return got;
}

START_TEST(tls_1_0_and_1_1_refused_by_the_server)
{
    const int old[] = {TLS1_VERSION, TLS1_1_VERSION};
    for (int i = 0; i < 2; i++) {
        int reason;
        int got = handshake(old[i], &reason, NULL, NULL, NULL);
        ck_assert_int_eq(got, 0);
        /* the server's alert, not a client-side refusal */
        ck_assert_msg(reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION ||
                          reason == SSL_R_UNSUPPORTED_PROTOCOL,
                      "TLS version %x: unexpected failure reason %d (%s)", old[i], reason,
                      ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, reason)));
    }
}
END_TEST

START_TEST(tls_1_2_and_1_3_accepted)
{
    const int ok[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (int i = 0; i < 2; i++) {
        int reason;
        ck_assert_int_eq(handshake(ok[i], &reason, NULL, NULL, NULL), ok[i]);
    }
}
END_TEST

START_TEST(security_headers_on_api_and_static_answers)
{
    const char *paths[] = {"/health",       "/nope", "/keys",   "/llms.txt",
                           "/openapi.json", "/docs", "/billing"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        kbt_resp *r = kbt_get(paths[i]);
        ck_assert_int_eq(r->curl_code, 0);
        char *hsts = kbt_header(r, "Strict-Transport-Security");
        ck_assert_msg(hsts != NULL && strstr(hsts, "max-age=") != NULL, "%s: no HSTS", paths[i]);
        const char *age = strstr(hsts, "max-age=") + 8;
        char *end;
        errno = 0;
        long secs = strtol(age, &end, 10);
        ck_assert_msg(errno == 0 && end != age && (*end == '\0' || *end == ';'),
                      "%s: HSTS max-age '%s'", paths[i], hsts);
        ck_assert_int_ge(secs, 31536000);
        char *nos = kbt_header(r, "X-Content-Type-Options");
        ck_assert_msg(nos != NULL && strcmp(nos, "nosniff") == 0, "%s: no nosniff", paths[i]);
        char *srv = kbt_header(r, "Server");
        ck_assert_msg(srv == NULL || strpbrk(srv, "0123456789") == NULL,
                      "%s: Server header shows a version: %s", paths[i], srv);
        ck_assert_msg(kbt_header(r, "X-Powered-By") == NULL, "%s: X-Powered-By", paths[i]);
        if (strcmp(paths[i], "/billing") == 0 || strcmp(paths[i], "/docs") == 0) {
            char *csp = kbt_header(r, "Content-Security-Policy");
            ck_assert_msg(csp != NULL && strstr(csp, "default-src") != NULL, "%s: no CSP",
                          paths[i]);
            free(csp);
        }
        free(hsts);
        free(nos);
        free(srv);
        kbt_resp_free(r);
    }
}
END_TEST

/* A client that sends half its headers and stops is cut off by client_header_timeout
 * (10 s in nginx/kalshibook-server.conf), not held open. */
START_TEST(slow_header_client_is_cut_off_within_the_timeout)
{
    SSL *s;
    SSL_CTX *ctx;
    int fd, reason;
    ck_assert_int_ne(handshake(TLS1_3_VERSION, &reason, &s, &ctx, &fd), 0);
    const char part[] = "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    ck_assert_int_gt(SSL_write(s, part, (int)strlen(part)), 0);
    long t0 = kbt_now_ms();
    char buf[4096];
    int n = SSL_read(s, buf, sizeof(buf)); /* blocks until nginx gives up (or 20 s) */
    long waited = kbt_now_ms() - t0;
    ck_assert_msg(waited >= 8000 && waited <= 14000, "cut off after %ld ms", waited);
    /* nothing but a close (or nginx's 408 envelope) came back */
    if (n > 0) {
        buf[n] = '\0';
        ck_assert_msg(strstr(buf, " 408 ") != NULL, "unexpected answer: %.200s", buf);
    }
    SSL_free(s);
    SSL_CTX_free(ctx);
    close(fd);
}
END_TEST

/* Status of the HTTP/1.1 response in, 0 when its status line is malformed; its header block
 * (when head is not NULL) and body are malloc'd copies. Releases in. */
static long
split_response(kb_buf *in, char **head, char **body)
{
    long status = 0;
    const char *t = kb_buf_cstr(in);
    if (strncmp(t, "HTTP/1.1 ", 9) == 0) {
        char *end;
        long v = strtol(t + 9, &end, 10);
        if (end == t + 12 && *end == ' ')
            status = v; /* a malformed status line stays 0 and fails the caller's check */
    }
    const char *e = strstr(t, "\r\n\r\n");
    if (head != NULL)
        *head = e ? strndup(t, (size_t)(e - t) + 2) : strdup(t);
    *body = strdup(e ? e + 4 : "");
    kb_buf_release(in);
    return status;
}

/* Send raw bytes over HTTP/1.1 + TLS and read the answer until the server closes;
 * returns the status (0 when none) and the body in *body (malloc'd). */
static long
raw_exchange(const char *req, size_t len, char **body)
{
    SSL *s;
    SSL_CTX *ctx;
    int fd, reason;
    ck_assert_int_ne(handshake(TLS1_3_VERSION, &reason, &s, &ctx, &fd), 0);
    size_t off = 0;
    while (off < len) {
        int w = SSL_write(s, req + off, (int)(len - off > 16384 ? 16384 : len - off));
        if (w <= 0)
            break; /* the server may answer and close before reading everything */
        off += (size_t)w;
    }
    kb_buf in = KB_BUF_INIT;
    char buf[8192];
    int n;
    while ((n = SSL_read(s, buf, sizeof(buf))) > 0)
        kb_buf_append(&in, buf, (size_t)n);
    long status = split_response(&in, NULL, body);
    SSL_free(s);
    SSL_CTX_free(ctx);
    close(fd);
    return status;
}

/* The same over plain TCP to the HTTP (redirect) port; the header block in *head. */
static long
plain_exchange(const char *req, size_t len, char **head, char **body)
{
    int fd = tcp_connect_to(url_port("KB_HTTP_URL"));
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may answer and close before reading everything */
        off += (size_t)w;
    }
    kb_buf in = KB_BUF_INIT;
    char buf[8192];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
        kb_buf_append(&in, buf, (size_t)n);
    close(fd);
    return split_response(&in, head, body);
}

/* The body is one API.md error envelope with this code and status. */
static void
assert_json_error(const char *body, long status, const char *code)
{
    cJSON *j = cJSON_Parse(body);
    ck_assert_msg(j != NULL, "not JSON: %.200s", body);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "status");
    ck_assert_msg(cJSON_IsString(c) && strcmp(c->valuestring, code) == 0, "code: %.200s", body);
    ck_assert_msg(cJSON_IsNumber(st) && st->valueint == status, "status: %.200s", body);
    ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "request_id")));
    cJSON_Delete(j);
}

START_TEST(oversized_header_block_is_431_json)
{
    /* one 64 KiB header line (past large_client_header_buffers) */
    size_t n = 64 * 1024;
    char *req = malloc(n + 256);
    int k = snprintf(req, 256, "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ");
    memset(req + k, 'a', n);
    const char tail[] = "\r\nConnection: close\r\n\r\n";
    memcpy(req + k + n, tail, sizeof(tail) - 1);
    char *body;
    long st = raw_exchange(req, (size_t)k + n + sizeof(tail) - 1, &body);
    fprintf(stderr, "security: 64 KiB header line -> %ld %.120s\n", st, body);
    ck_assert_msg(st == 431, "status %ld", st); /* nginx's 494, mapped by error_page */
    assert_json_error(body, 431, "request_header_too_large");
    free(body);
    free(req);
}
END_TEST

START_TEST(long_uri_is_414_json)
{
    size_t n = 70 * 1024;
    char *req = malloc(n + 256);
    int k = snprintf(req, 256, "GET /markets/");
    memset(req + k, 'A', n);
    int t = snprintf(req + k + n, 200, " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    char *body;
    long st = raw_exchange(req, (size_t)k + n + (size_t)t, &body);
    fprintf(stderr, "security: 70 KiB URI -> %ld %.120s\n", st, body);
    ck_assert_msg(st == 414, "status %ld", st);
    assert_json_error(body, 414, "uri_too_long");
    free(body);
    free(req);
}
END_TEST

/* The plain-HTTP redirect server's own errors are the same JSON envelope as on HTTPS, with
 * the request id in X-Request-ID (nginx/kalshibook-errors.conf). */
static const struct {
    const char *what, *head, *tail;
    size_t fill; /* 'a' bytes between head and tail */
    long status;
    const char *code;
} plain_errors[] = {
    {"malformed request line", "GARBAGE", "\r\n\r\n", 0, 400, "bad_request"},
    {"bad percent-encoding", "GET /%zz HTTP/1.1\r\nHost: localhost\r\n",
     "Connection: close\r\n\r\n", 0, 400, "bad_request"},
    {"70 KiB URI", "GET /", " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 70 * 1024,
     414, "uri_too_long"},
    {"64 KiB header line", "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ",
     "\r\nConnection: close\r\n\r\n", 64 * 1024, 431, "request_header_too_large"},
};

START_TEST(plain_http_errors_are_json)
{
    size_t hl = strlen(plain_errors[_i].head), fl = plain_errors[_i].fill,
           tl = strlen(plain_errors[_i].tail);
    char *req = malloc(hl + fl + tl);
    memcpy(req, plain_errors[_i].head, hl);
    memset(req + hl, 'a', fl);
    memcpy(req + hl + fl, plain_errors[_i].tail, tl);
    char *head, *body;
    long st = plain_exchange(req, hl + fl + tl, &head, &body);
    fprintf(stderr, "security: port 80, %s -> %ld %.120s\n", plain_errors[_i].what, st, body);
    ck_assert_msg(st == plain_errors[_i].status, "%s: status %ld", plain_errors[_i].what, st);
    assert_json_error(body, plain_errors[_i].status, plain_errors[_i].code);
    ck_assert_msg(strstr(head, "\r\nContent-Type: application/json\r\n") != NULL, "%s", head);
    cJSON *j = cJSON_Parse(body);
    const char *rid = cJSON_GetObjectItemCaseSensitive(j, "request_id")->valuestring;
    char want[64];
    snprintf(want, sizeof(want), "\r\nX-Request-ID: %s\r\n", rid);
    ck_assert_msg(strstr(head, want) != NULL, "no %s in %s", rid, head);
    cJSON_Delete(j);
    free(head);
    free(body);
    free(req);
}
END_TEST

/* Over 1 MiB on a metered route: 413 JSON from nginx, nothing charged. */
START_TEST(body_over_1mib_is_413_json_and_not_charged)
{
    PGconn *c = kbt_db();
    kbt_account a;
    kbt_data_account(c, &a);
    long before = kbt_sql_long1(c, "SELECT credits_used FROM billing_accounts WHERE user_id = $1",
                                a.user_id);
    size_t n = 1024 * 1024 + 1;
    char *b = malloc(n);
    memset(b, ' ', n);
    b[0] = '{';
    b[n - 1] = '}';
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", a.key);
    const char *h[] = {auth, "Content-Type: application/json", NULL};
    const char *paths[] = {"/orderbook", "/deltas", "/auth/login", "/billing/webhook"};
    for (size_t i = 0; i < 4; i++) {
        kbt_resp *r = kbt_request("POST", paths[i], h, b, n);
        kbt_assert_envelope(r, 413, "payload_too_large");
        kbt_resp_free(r);
    }
    long after = kbt_sql_long1(c, "SELECT credits_used FROM billing_accounts WHERE user_id = $1",
                               a.user_id);
    ck_assert_int_eq(before, after);
    free(b);
    PQfinish(c);
}
END_TEST

/* ---- constant-time comparisons ------------------------------------------------------- */

/* The undefined symbols (nm -u) of object lib/<name>.o of this build, one per line, in out. */
static void
object_imports_all(const char *name, kb_buf *out)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "nm -u '%s/../lib/%s.o' 2>/dev/null", kbt_env("KB_BIN_DIR"), name);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char line[256];
    kb_buf_reset(out);
    while (fgets(line, sizeof(line), p) != NULL) {
        char *s = strrchr(line, ' ');
        s = s ? s + 1 : line;
        s[strcspn(s, "\n")] = '\0';
        kb_buf_printf(out, "\n%s\n", s);
    }
    pclose(p);
    ck_assert_msg(out->len > 0, "nm found no object %s.o next to KB_BIN_DIR", name);
}

/* True when object lib/<name>.o of this build imports symbol. */
static bool
object_imports(const char *name, const char *symbol)
{
    kb_buf all = KB_BUF_INIT, want = KB_BUF_INIT;
    object_imports_all(name, &all);
    kb_buf_printf(&want, "\n%s\n", symbol);
    bool found = strstr(kb_buf_cstr(&all), kb_buf_cstr(&want)) != NULL;
    kb_buf_release(&all);
    kb_buf_release(&want);
    return found;
}

/* Byte compares that stop at the first difference: none may touch a secret. */
static const char *const early_exit_compares[] = {
    "memcmp",  "bcmp",    "strcmp",        "strncmp",   "strcasecmp",       "strncasecmp",
    "strcoll", "wmemcmp", "CRYPTO_memcmp", "kb_str_eq", "kb_str_eq_nocase", "kb_str_has_prefix",
};
/* Primitives that compute a MAC (a tag someone could then compare by hand). */
static const char *const mac_prefixes[] = {
    "crypto_auth", "HMAC", "EVP_MAC", "CMAC", "crypto_generichash", "crypto_onetimeauth"};

/*
 * Secrets (Stripe v1 signatures, HS256 tags) are compared only inside lib/crypto.c, the one
 * object that computes a MAC, with sodium_memcmp; crypto.o is built with -fno-builtin (see the
 * Makefile), so a memcmp there stays a call that nm sees instead of being inlined. Every other
 * object may compare public text, but can hold no tag to compare: it imports no MAC primitive.
 * Passwords go through libsodium's verifier, ES256/RS256 through EVP_DigestVerify, API keys
 * are compared in SQL by their SHA-256.
 */
START_TEST(secret_comparisons_use_constant_time_primitives)
{
    kb_buf crypto = KB_BUF_INIT;
    object_imports_all("crypto", &crypto);
    ck_assert_msg(strstr(kb_buf_cstr(&crypto), "\nsodium_memcmp\n") != NULL,
                  "crypto.o does not compare with sodium_memcmp");
    for (size_t i = 0; i < sizeof(early_exit_compares) / sizeof(early_exit_compares[0]); i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "\n%s\n", early_exit_compares[i]);
        ck_assert_msg(strstr(kb_buf_cstr(&crypto), needle) == NULL,
                      "lib/crypto.c, where secrets are compared, calls %s", early_exit_compares[i]);
    }
    kb_buf_release(&crypto);

    /* No other object of libkb computes a MAC. */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "ls '%s/../lib'", kbt_env("KB_BIN_DIR"));
    FILE *ls = popen(cmd, "r");
    ck_assert_ptr_nonnull(ls);
    char file[256];
    int objects = 0;
    kb_buf imp = KB_BUF_INIT;
    while (fgets(file, sizeof(file), ls) != NULL) {
        file[strcspn(file, "\n")] = '\0';
        size_t n = strlen(file);
        if (n < 3 || strcmp(file + n - 2, ".o") != 0 || strcmp(file, "crypto.o") == 0)
            continue;
        file[n - 2] = '\0';
        objects++;
        object_imports_all(file, &imp);
        for (size_t i = 0; i < sizeof(mac_prefixes) / sizeof(mac_prefixes[0]); i++) {
            char needle[64];
            snprintf(needle, sizeof(needle), "\n%s", mac_prefixes[i]);
            ck_assert_msg(strstr(kb_buf_cstr(&imp), needle) == NULL,
                          "lib/%s.c computes a MAC itself (%s...): only lib/crypto.c may", file,
                          mac_prefixes[i]);
        }
        /* kb_hmac_sha256 hands out a tag: only for signing tokens (lib/jwt.c), whose
         * verifying goes through kb_hmac_sha256_verify (asserted below). */
        ck_assert_msg(strcmp(file, "jwt") == 0 ||
                          strstr(kb_buf_cstr(&imp), "\nkb_hmac_sha256\n") == NULL,
                      "lib/%s.c holds an HMAC tag (kb_hmac_sha256): verify with "
                      "kb_hmac_sha256_verify",
                      file);
    }
    pclose(ls);
    kb_buf_release(&imp);
    ck_assert_int_ge(objects, 20);

    /* The verifiers go through it, and the other secrets through their libraries. */
    ck_assert(object_imports("webhook", "kb_hmac_sha256_verify"));
    ck_assert(object_imports("jwt", "kb_hmac_sha256_verify"));
    ck_assert(object_imports("jwt", "EVP_DigestVerify"));
    ck_assert(object_imports("auth", "crypto_pwhash_str_verify"));

    /* and the primitives themselves behave */
    ck_assert(kb_ct_equal("abcdef", 6, "abcdef", 6));
    ck_assert(!kb_ct_equal("abcdef", 6, "abcdeg", 6));
    ck_assert(!kb_ct_equal("abcdef", 6, "abcde", 5));
    ck_assert(!kb_ct_equal("", 0, "a", 1));
    unsigned char tag[2][KB_HMAC_SHA256_LEN];
    const kb_str parts[] = {KB_STR_LIT("12345"), KB_STR_LIT("."), KB_STR_LIT("{}")};
    kb_hmac_sha256("k", 1, parts, 3, tag[1]);
    memset(tag[0], 0, sizeof(tag[0]));
    ck_assert(kb_hmac_sha256_verify("k", 1, parts, 3, tag, 2));
    ck_assert(!kb_hmac_sha256_verify("k", 1, parts, 3, tag, 1));
    ck_assert(!kb_hmac_sha256_verify("K", 1, parts, 3, tag, 2));
}
END_TEST

int
main(void)
{
    kbt_init();
    signal(SIGPIPE, SIG_IGN); /* nginx may close before reading a whole oversized request */
    Suite *s = suite_create("security");
    TCase *tls = tcase_create("tls");
    tcase_add_test(tls, tls_1_0_and_1_1_refused_by_the_server);
    tcase_add_test(tls, tls_1_2_and_1_3_accepted);
    tcase_add_test(tls, security_headers_on_api_and_static_answers);
    suite_add_tcase(s, tls);
    TCase *lim = tcase_create("limits");
    tcase_set_timeout(lim, 60);
    tcase_add_test(lim, slow_header_client_is_cut_off_within_the_timeout);
    tcase_add_test(lim, oversized_header_block_is_431_json);
    tcase_add_test(lim, long_uri_is_414_json);
    tcase_add_loop_test(lim, plain_http_errors_are_json, 0,
                        (int)(sizeof(plain_errors) / sizeof(plain_errors[0])));
    tcase_add_test(lim, body_over_1mib_is_413_json_and_not_charged);
    suite_add_tcase(s, lim);
    TCase *ct = tcase_create("constant_time");
    tcase_add_test(ct, secret_comparisons_use_constant_time_primitives);
    suite_add_tcase(s, ct);
    return kb_check_run(s);
}
