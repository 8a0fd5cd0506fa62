/* fuzz_webhook.c - libFuzzer target for the Stripe-Signature parser and
 * verifier (kb_webhook_verify).
 *
 * Input: header bytes, a NUL, then the body. Invariants: an OK verdict means
 * some v1 in the header really is HMAC-SHA256("<t>.<body>") under one of the
 * secrets (recomputed here with OpenSSL's HMAC); and a header we sign
 * correctly for the fuzzed body is always accepted, also when the fuzzed
 * header's parts are appended to it.
 */
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kb_webhook.h"
#include "kb_banned.h"

#define NOW 1767225600
static const char *const secrets[] = {"whsec_fuzz_current", "whsec_fuzz_previous"};
static const char secret_list[] = "whsec_fuzz_current, whsec_fuzz_previous";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
sign_hex(const char *secret, const char *t, size_t tlen, const uint8_t *body, size_t blen,
         char hex[65])
{
    size_t n = tlen + 1 + blen;
    unsigned char *msg = malloc(n + 1);
    memcpy(msg, t, tlen);
    msg[tlen] = '.';
    if (blen)
        memcpy(msg + tlen + 1, body, blen);
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, n, mac, &ml);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    free(msg);
}

/* True when header holds "v1=<hex>" (any case) of a correct signature. */
static int
really_signed(const char *h, size_t hlen, const uint8_t *body, size_t blen)
{
    char *hdr = malloc(hlen + 1);
    memcpy(hdr, h, hlen);
    hdr[hlen] = '\0';
    int ok = 0;
    /* every t= candidate (the verifier uses the last one) */
    for (char *p = hdr; p != NULL && !ok; p = strchr(p + 1, 't')) {
        if (p[1] != '=')
            continue;
        char *e = p + 2;
        while (*e && *e != ',')
            e++;
        char *ts = p + 2;
        while (*ts == ' ' || *ts == '\t')
            ts++;
        char *te = e;
        while (te > ts && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        for (size_t s = 0; s < 2 && !ok; s++) {
            char hex[65];
            sign_hex(secrets[s], ts, (size_t)(te - ts), body, blen, hex);
            for (char *q = hdr; (q = strstr(q, "v1=")) != NULL; q++)
                if (strncasecmp(q + 3, hex, 64) == 0)
                    ok = 1;
        }
    }
    free(hdr);
    return ok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t hlen = nul ? (size_t)(nul - data) : size;
    const uint8_t *body = nul ? nul + 1 : data + size;
    size_t blen = nul ? size - hlen - 1 : 0;
    kb_str h = {(const char *)data, hlen};
    kb_str b = {(const char *)body, blen};

    kb_webhook_verdict v = kb_webhook_verify(h, b, secret_list, 300, NOW);
    if (v == KB_WEBHOOK_OK && !really_signed((const char *)data, hlen, body, blen))
        abort();
    if (kb_webhook_verdict_str(v) == NULL)
        abort();

    /* A correct signature for this body is accepted, with either secret. */
    char t[24], hex[65];
    int tl = snprintf(t, sizeof(t), "%d", NOW - 10);
    sign_hex(secrets[size & 1], t, (size_t)tl, body, blen, hex);
    size_t glen = 2 + (size_t)tl + 4 + 64;
    char *good = malloc(glen + 1 + hlen + 1);
    snprintf(good, glen + 1, "t=%s,v1=%s", t, hex);
    if (kb_webhook_verify((kb_str){good, glen}, b, secret_list, 300, NOW) != KB_WEBHOOK_OK)
        abort();
    /* Too old is never OK. */
    if (kb_webhook_verify((kb_str){good, glen}, b, secret_list, 300, NOW + 400) == KB_WEBHOOK_OK)
        abort();
    free(good);
    return 0;
}
