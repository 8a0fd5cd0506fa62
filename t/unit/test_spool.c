/* test_spool.c - the collector's spool format (lib/spool.c) and its Kalshi credentials
 * (lib/kalshi.c): records round-trip with any bytes, damage and truncation are told
 * apart, files are found and read back from an offset; signatures verify with the
 * public key under RSA-PSS SHA-256 / salt = digest length, over the path without its
 * query; URLs and bad keys are judged. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "check_main.h"
#include "kb_kalshi.h"
#include "kb_spool.h"
#include "kb_banned.h"

typedef struct rec_case {
    char kind;
    const char *data;
    size_t len;
} rec_case;

static const rec_case recs[] = {
    {'F', "{\"type\":\"orderbook_delta\",\"sid\":1,\"seq\":2}", 42},
    {'F', "", 0},
    {'F', "not json\nwith\nnewlines\n", 23},
    {'R', "{\"markets\":[]}", 14},
    {'E', "{\"kb\":\"gap_open\"}", 17},
    {'F', "nul\0inside", 10},
    {'F', "F 1 2 3 4\n", 10}, /* bytes that look like a record header */
};

START_TEST(spool_record_round_trips_any_bytes)
{
    const rec_case *c = &recs[_i];
    kb_buf b = KB_BUF_INIT;
    kb_spool_append(&b, c->kind, 1765000000123456789LL, 987654321, 7, c->data, c->len);
    kb_spool_rec r;
    long n = kb_spool_parse(b.buf, b.len, &r);
    ck_assert_int_eq(n, (long)b.len);
    ck_assert_int_eq(r.kind, c->kind);
    ck_assert(r.wall_ns == 1765000000123456789LL && r.mono_ns == 987654321 && r.epoch == 7);
    ck_assert_uint_eq(r.len, c->len);
    ck_assert(memcmp(r.data, c->data, c->len) == 0);
    /* Every proper prefix is incomplete, never a record and never damage. */
    for (size_t k = 0; k < b.len; k++)
        ck_assert_int_eq(kb_spool_parse(b.buf, k, &r), 0);
    kb_buf_release(&b);
}
END_TEST

START_TEST(spool_parse_refuses_damage)
{
    static const char *const bad[] = {
        "X 1 2 3 4\nabcd\n",   /* unknown kind */
        "F 1 2 3 4\nabcdX",    /* no newline after the payload */
        "F 1 2 3 -4\nabcd\n",  /* negative length */
        "F a 2 3 4\nabcd\n",   /* not a number */
        "F 1 2 3\nabcd\n",     /* a field missing */
        "F 1 2 3 4 5\nabcd\n", /* one too many */
        "F 1 2 3 99999999999999999999\nx\n",
        "F 1 2 3 2000000000\nx\n", /* beyond KB_SPOOL_REC_MAX */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kb_spool_rec r;
        ck_assert_msg(kb_spool_parse(bad[i], strlen(bad[i]), &r) == -1, "accepted: %s", bad[i]);
    }
    /* A long line without a newline is damage, not a record still to come. */
    char junk[200];
    memset(junk, 'F', sizeof(junk));
    kb_spool_rec r;
    ck_assert_int_eq(kb_spool_parse(junk, sizeof(junk), &r), -1);
}
END_TEST

static char dir[64];

static void
mkdir_tmp(void)
{
    snprintf(dir, sizeof(dir), "/tmp/kbspool.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
write_file(const char *path, const kb_buf *b)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, b->buf, b->len), (ssize_t)b->len);
    close(fd);
}

START_TEST(spool_files_are_found_and_read_from_an_offset)
{
    mkdir_tmp();
    ck_assert_int_eq(kb_spool_max_no(dir), 0);
    kb_buf path = KB_BUF_INIT, b = KB_BUF_INIT;
    int64_t t = 1765000000000000LL; /* 2025-12-06T05:46:40Z */
    kb_spool_path(&path, dir, 12, t);
    ck_assert(strstr(path.buf, "/kb-00000012-20251206T05.spool") != NULL);
    kb_spool_header(&b, "host a\n", 12, t);
    ck_assert(memchr(b.buf, '\n', b.len) == b.buf + b.len - 1); /* one line, whatever the name */
    long hl = (long)b.len;
    ck_assert_int_eq(kb_spool_header_len(b.buf, b.len), hl);
    for (int i = 0; i < 100; i++)
        kb_spool_append(&b, 'F', i, i, 1, "{\"i\":1}", 7);
    write_file(path.buf, &b);
    ck_assert_int_eq(kb_spool_max_no(dir), 12);
    char *found = kb_spool_find(dir, 12);
    ck_assert_str_eq(found, path.buf);
    free(found);
    ck_assert_ptr_null(kb_spool_find(dir, 11));

    kb_spool_reader r;
    ck_assert(kb_spool_reader_open(&r, path.buf, 0));
    kb_spool_rec rec;
    int64_t end = 0, mid = 0;
    int n = 0;
    while (kb_spool_reader_next(&r, &rec, &end) == 1) {
        ck_assert_int_eq(rec.wall_ns, n);
        if (++n == 40)
            mid = end;
    }
    ck_assert_int_eq(n, 100);
    ck_assert_int_eq(end, (int64_t)b.len);
    kb_spool_reader_close(&r);
    /* From the end of record 40 on: records 40..99. */
    ck_assert(kb_spool_reader_open(&r, path.buf, mid));
    n = 0;
    while (kb_spool_reader_next(&r, &rec, &end) == 1)
        ck_assert_int_eq(rec.wall_ns, 40 + n++);
    ck_assert_int_eq(n, 60);
    kb_spool_reader_close(&r);

    /* A record cut short at the end: the reader stops before it (0), not damage. */
    kb_buf_append(&b, "F 1 1 1 500\n{\"cut", 17);
    write_file(path.buf, &b);
    ck_assert(kb_spool_reader_open(&r, path.buf, mid));
    n = 0;
    int rc;
    while ((rc = kb_spool_reader_next(&r, &rec, &end)) == 1)
        n++;
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(n, 60);
    kb_spool_reader_close(&r);
    /* A file without the header is no spool file. */
    kb_buf_reset(&b);
    kb_buf_puts(&b, "{\"type\":\"trade\"}\n");
    write_file(path.buf, &b);
    ck_assert(!kb_spool_reader_open(&r, path.buf, 0));
    ck_assert_int_eq(errno, EINVAL);
    unlink(path.buf);
    rmdir(dir);
    kb_buf_release(&b);
    kb_buf_release(&path);
}
END_TEST

/* ---- Kalshi credentials ------------------------------------------------------------- */

static char keyfile[80];
static EVP_PKEY *pub;

/* Kalshi hands out PKCS#1 ("BEGIN RSA PRIVATE KEY"): made the same way here. */
static void
make_key(int bits, const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "openssl genrsa -traditional -out %s %d 2>/dev/null", path, bits);
    ck_assert_int_eq(system(cmd), 0);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[64] = "";
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
    ck_assert_str_eq(line, "-----BEGIN RSA PRIVATE KEY-----\n");
    rewind(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert_ptr_nonnull(k);
    if (pub == NULL && bits >= 2048)
        pub = k;
    else
        EVP_PKEY_free(k);
}

static bool
verify(const char *msg, const char *b64)
{
    unsigned char sig[1024];
    int n = EVP_DecodeBlock(sig, (const unsigned char *)b64, (int)strlen(b64));
    ck_assert_int_gt(n, 0);
    n -= (int)(strlen(b64) > 0 && b64[strlen(b64) - 1] == '=') +
         (int)(strlen(b64) > 1 && b64[strlen(b64) - 2] == '=');
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *p = NULL;
    bool ok = EVP_DigestVerifyInit(ctx, &p, EVP_sha256(), NULL, pub) == 1 &&
              EVP_PKEY_CTX_set_rsa_padding(p, RSA_PKCS1_PSS_PADDING) == 1 &&
              EVP_PKEY_CTX_set_rsa_pss_saltlen(p, RSA_PSS_SALTLEN_DIGEST) == 1 &&
              EVP_PKEY_CTX_set_rsa_mgf1_md(p, EVP_sha256()) == 1 &&
              EVP_DigestVerify(ctx, sig, (size_t)n, (const unsigned char *)msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

START_TEST(kalshi_signature_verifies_over_timestamp_method_path)
{
    snprintf(keyfile, sizeof(keyfile), "/tmp/kbkey.%d.pem", (int)getpid());
    make_key(2048, keyfile);
    kb_kalshi_key k;
    kb_buf why = KB_BUF_INIT;
    ck_assert_msg(kb_kalshi_key_load(&k, "key-1", keyfile, &why), "%s", kb_buf_cstr(&why));
    char sig[KB_KALSHI_SIG_MAX], sig2[KB_KALSHI_SIG_MAX];
    ck_assert(kb_kalshi_sign(&k, 1765000000123, "GET", "/trade-api/ws/v2", sig, sizeof(sig)));
    ck_assert(verify("1765000000123GET/trade-api/ws/v2", sig));
    ck_assert(!verify("1765000000124GET/trade-api/ws/v2", sig));
    /* The query is not signed; PSS is randomised, so two signatures differ. */
    ck_assert(kb_kalshi_sign(&k, 1765000000123, "GET", "/trade-api/v2/markets?status=open&limit=1000",
                             sig2, sizeof(sig2)));
    ck_assert(verify("1765000000123GET/trade-api/v2/markets", sig2));
    ck_assert(kb_kalshi_sign(&k, 1765000000123, "GET", "/trade-api/ws/v2", sig2, sizeof(sig2)));
    ck_assert_str_ne(sig, sig2);
    /* Too small a buffer is a failure, not a truncated signature. */
    ck_assert(!kb_kalshi_sign(&k, 1, "GET", "/", sig2, 100));
    kb_kalshi_key_release(&k);
    kb_kalshi_key_release(&k);
    EVP_PKEY_free(pub);
    pub = NULL;
    unlink(keyfile);
    kb_buf_release(&why);
}
END_TEST

START_TEST(kalshi_key_load_names_what_is_wrong)
{
    kb_buf why = KB_BUF_INIT;
    kb_kalshi_key k;
    ck_assert(!kb_kalshi_key_load(&k, "id", "/nonexistent/key.pem", &why));
    ck_assert(strstr(why.buf, "cannot read '/nonexistent/key.pem'") != NULL);
    kb_buf_reset(&why);
    ck_assert(!kb_kalshi_key_load(&k, "", "/x", &why));
    ck_assert(strstr(why.buf, "KALSHI_API_KEY_ID") != NULL);
    kb_buf_reset(&why);
    snprintf(keyfile, sizeof(keyfile), "/tmp/kbkey.%d.pem", (int)getpid());
    make_key(1024, keyfile);
    ck_assert(!kb_kalshi_key_load(&k, "id", keyfile, &why));
    ck_assert(strstr(why.buf, "2048 bits") != NULL);
    kb_buf_reset(&why);
    FILE *f = fopen(keyfile, "w");
    fputs("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n", f);
    fclose(f);
    ck_assert(!kb_kalshi_key_load(&k, "id", keyfile, &why));
    ck_assert(strstr(why.buf, "no PEM private key") != NULL);
    unlink(keyfile);
    kb_buf_release(&why);
}
END_TEST

typedef struct url_case {
    const char *url;
    bool ok;
    const char *host, *path;
    int port;
    bool tls;
} url_case;

static const url_case urls[] = {
    {"wss://api.elections.kalshi.com/trade-api/ws/v2", true, "api.elections.kalshi.com",
     "/trade-api/ws/v2", 443, true},
    {"https://demo-api.kalshi.co/trade-api/v2", true, "demo-api.kalshi.co", "/trade-api/v2", 443,
     true},
    {"wss://127.0.0.1:24001/trade-api/ws/v2", true, "127.0.0.1", "/trade-api/ws/v2", 24001, true},
    {"ws://localhost:8080", true, "localhost", "/", 8080, false},
    {"ftp://example.com/x", false, NULL, NULL, 0, false},
    {"wss://user@example.com/x", false, NULL, NULL, 0, false},
    {"wss://example.com:0/x", false, NULL, NULL, 0, false},
    {"wss://example.com:99999/x", false, NULL, NULL, 0, false},
    {"wss:///x", false, NULL, NULL, 0, false},
    {"wss://example.com/x#frag", false, NULL, NULL, 0, false},
};

START_TEST(kalshi_urls_split_or_refused)
{
    const url_case *c = &urls[_i];
    char host[64];
    int port = -1;
    bool tls = false;
    const char *path = NULL;
    bool ok = kb_kalshi_url_split(c->url, host, sizeof(host), &port, &tls, &path);
    ck_assert_msg(ok == c->ok, "%s", c->url);
    if (!ok)
        return;
    ck_assert_str_eq(host, c->host);
    ck_assert_str_eq(path, c->path);
    ck_assert_int_eq(port, c->port);
    ck_assert(tls == c->tls);
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("spool");
    TCase *tc = tcase_create("spool");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, spool_record_round_trips_any_bytes, 0,
                        (int)(sizeof(recs) / sizeof(recs[0])));
    tcase_add_test(tc, spool_parse_refuses_damage);
    tcase_add_test(tc, spool_files_are_found_and_read_from_an_offset);
    tcase_add_test(tc, kalshi_signature_verifies_over_timestamp_method_path);
    tcase_add_test(tc, kalshi_key_load_names_what_is_wrong);
    tcase_add_loop_test(tc, kalshi_urls_split_or_refused, 0, (int)(sizeof(urls) / sizeof(urls[0])));
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return kb_check_run(suite());
}
