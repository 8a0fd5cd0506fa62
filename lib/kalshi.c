/* kalshi.c - Kalshi key loading, RSA-PSS request signatures, URL checks; see kb_kalshi.h. */
#include "kb_kalshi.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "kb_log.h"
#include "kb_banned.h"

bool
kb_kalshi_key_load(kb_kalshi_key *k, const char *id, const char *path, kb_buf *why)
{
    memset(k, 0, sizeof(*k));
    if (id == NULL || *id == '\0' || strlen(id) >= sizeof(k->id)) {
        kb_buf_printf(why, "KALSHI_API_KEY_ID: must be set (at most %zu bytes)", sizeof(k->id) - 1);
        return false;
    }
    if (path == NULL) {
        kb_buf_puts(why, "KALSHI_PRIVATE_KEY_FILE: is required when KALSHI_API_KEY_ID is set");
        return false;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        kb_buf_printf(why, "KALSHI_PRIVATE_KEY_FILE: cannot read '%s'", path);
        return false;
    }
    EVP_PKEY *p = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    if (p == NULL) {
        kb_buf_printf(why,
                      "KALSHI_PRIVATE_KEY_FILE: '%s' holds no PEM private key "
                      "(or one with a passphrase)",
                      path);
        return false;
    }
    if (EVP_PKEY_base_id(p) != EVP_PKEY_RSA || EVP_PKEY_bits(p) < 2048) {
        kb_buf_printf(why, "KALSHI_PRIVATE_KEY_FILE: '%s' is not an RSA key of 2048 bits or more",
                      path);
        EVP_PKEY_free(p);
        return false;
    }
    k->pkey = p;
    memcpy(k->id, id, strlen(id) + 1);
    return true;
}

void
kb_kalshi_key_release(kb_kalshi_key *k)
{
    if (k->pkey != NULL)
        EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
}

bool
kb_kalshi_sign(const kb_kalshi_key *k, int64_t ts_ms, const char *method, const char *path,
               char *sig, size_t sigsz)
{
    char msg[2048];
    const char *q = strchr(path, '?');
    int plen = q != NULL ? (int)(q - path) : (int)strlen(path);
    int n = snprintf(msg, sizeof(msg), "%lld%s%.*s", (long long)ts_ms, method, plen, path);
    if (k->pkey == NULL || n < 0 || (size_t)n >= sizeof(msg))
        return false;
    unsigned char raw[1024];
    size_t rawlen = sizeof(raw);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = ctx != NULL && EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, k->pkey) == 1 &&
              EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
              EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
              EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
              EVP_DigestSign(ctx, raw, &rawlen, (const unsigned char *)msg, (size_t)n) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok || (rawlen + 2) / 3 * 4 + 1 > sigsz) {
        ERR_clear_error();
        kb_log_error("unable to sign a Kalshi request for key '%s'", k->id);
        return false;
    }
    EVP_EncodeBlock((unsigned char *)sig, raw, (int)rawlen);
    return true;
}

bool
kb_kalshi_url_split(const char *url, char *host, size_t hostsz, int *port, bool *tls,
                    const char **path)
{
    static const struct {
        const char *scheme;
        int port;
        bool tls;
    } schemes[] = {{"wss://", 443, true},
                   {"https://", 443, true},
                   {"ws://", 80, false},
                   {"http://", 80, false}};
    const char *rest = NULL;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]) && rest == NULL; i++) {
        size_t sl = strlen(schemes[i].scheme);
        if (strncmp(url, schemes[i].scheme, sl) == 0) {
            rest = url + sl;
            *port = schemes[i].port;
            *tls = schemes[i].tls;
        }
    }
    if (rest == NULL || strpbrk(rest, "@#") != NULL)
        return false;
    const char *slash = strchr(rest, '/');
    const char *end = slash != NULL ? slash : rest + strlen(rest);
    const char *colon = memchr(rest, ':', (size_t)(end - rest));
    size_t hl = (size_t)((colon != NULL ? colon : end) - rest);
    if (hl == 0 || hl >= hostsz)
        return false;
    memcpy(host, rest, hl);
    host[hl] = '\0';
    if (colon != NULL) {
        long p = 0;
        for (const char *c = colon + 1; c < end; c++) {
            if (*c < '0' || *c > '9' || (p = p * 10 + (*c - '0')) > 65535)
                return false;
        }
        if (p < 1)
            return false;
        *port = (int)p;
    }
    *path = slash != NULL ? slash : "/";
    return true;
}

static int
check_url(const char *name, const char *url, const char *want1, const char *want2, kb_buf *p)
{
    char host[256];
    int port;
    bool tls;
    const char *path;
    if (url == NULL || !kb_kalshi_url_split(url, host, sizeof(host), &port, &tls, &path) ||
        (strncmp(url, want1, strlen(want1)) != 0 && strncmp(url, want2, strlen(want2)) != 0)) {
        kb_buf_printf(p, "%s: must be a %s URL with a host, e.g. %s<host>/trade-api/...\n", name,
                      want1, want1);
        return 1;
    }
    if (!tls)
        kb_log_warn("%s is not TLS (%s): only for local tests", name, url);
    return 0;
}

int
kb_kalshi_check_config(const kb_config *cfg, kb_buf *problems)
{
    if (cfg->kalshi_key_id == NULL)
        return 0;
    int bad = 0;
    kb_kalshi_key k;
    kb_buf why = KB_BUF_INIT;
    if (!kb_kalshi_key_load(&k, cfg->kalshi_key_id, cfg->kalshi_key_file, &why)) {
        kb_buf_printf(problems, "%s\n", kb_buf_cstr(&why));
        bad++;
    }
    kb_kalshi_key_release(&k);
    kb_buf_release(&why);
    bad += check_url("KALSHI_WS_URL", cfg->kalshi_ws_url, "wss://", "ws://", problems);
    bad += check_url("KALSHI_REST_URL", cfg->kalshi_rest_url, "https://", "http://", problems);
    if (cfg->kalshi_ca_file != NULL && access(cfg->kalshi_ca_file, R_OK) != 0) {
        kb_buf_printf(problems, "KALSHI_CA_FILE: cannot read '%s'\n", cfg->kalshi_ca_file);
        bad++;
    }
    if (cfg->collector_backoff_min_ms > cfg->collector_backoff_max_ms) {
        kb_buf_puts(problems,
                    "KB_COLLECTOR_BACKOFF_MIN_MS: must not exceed KB_COLLECTOR_BACKOFF_MAX_MS\n");
        bad++;
    }
    if (cfg->collector_spool_dir == NULL || cfg->collector_spool_dir[0] != '/') {
        kb_buf_puts(problems, "KB_COLLECTOR_SPOOL_DIR: must be an absolute path\n");
        bad++;
    }
    return bad;
}
