/* fuzz_jwt.c - libFuzzer target for the JWT parser/verifier and the JWKS
 * parser (kb_jwt_verify, kb_jwks_parse).
 *
 * The verifier holds a fixed HS256 secret and a JWKS with one ES256 key
 * generated at start-up. The first input byte picks a mode:
 *   0: the rest is a token; an accepted HS256 token must carry the real
 *      HMAC of its first two segments (recomputed here);
 *   1: the rest is a JWKS document for a fresh verifier;
 *   2: the rest is a payload, signed HS256 with the secret, with a wrong
 *      secret (must fail) and as alg "none" (must fail);
 *   3: the rest is a header JSON, with a valid payload, signed with the secret.
 */
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../jwt_forge.h"
#include "kb_b64.h"
#include "kb_jwt.h"
#include "kb_banned.h"

#define NOW 1767225600
static const char secret[] = "fuzz-secret-0123456789abcdef0123456789abcdef";
static kb_jwt_verifier ver;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
init(void)
{
    ver.hs_secret = (const unsigned char *)secret;
    ver.hs_secret_len = strlen(secret);
    EVP_PKEY *k = forge_ec_key();
    char *jwks = forge_jwks(k, "fuzz-kid");
    const char *why;
    if (!kb_jwks_parse(&ver, jwks, strlen(jwks), &why))
        abort();
    free(jwks);
    EVP_PKEY_free(k);
}

static char *
cstr(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1);
    memcpy(s, d, n);
    s[n] = '\0';
    return s;
}

static void
check_hs256(const char *tok, size_t len)
{
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (d2 == NULL)
        abort();
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)tok, (size_t)(d2 - tok),
         mac, &ml);
    char *want = forge_b64(mac, 32);
    size_t sl = len - (size_t)(d2 + 1 - tok);
    if (sl != strlen(want) || memcmp(d2 + 1, want, sl) != 0)
        abort();
    free(want);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        init();
        inited = 1;
    }
    if (size == 0)
        return 0;
    int mode = data[0] & 3;
    data++;
    size--;
    kb_jwt_claims c;
    const char *why = NULL;
    if (mode == 0) {
        if (kb_jwt_verify(&ver, (const char *)data, size, NOW, &c, &why)) {
            if (c.alg == KB_JWT_HS256)
                check_hs256((const char *)data, size);
            if (c.sub[0] == '\0' || memchr(c.sub, 0, sizeof(c.sub)) == NULL)
                abort();
        } else if (why == NULL) {
            abort();
        }
    } else if (mode == 1) {
        kb_jwt_verifier v;
        memset(&v, 0, sizeof(v));
        (void)kb_jwks_parse(&v, (const char *)data, size, &why);
        if (v.nkeys > KB_JWT_MAX_KEYS)
            abort();
        kb_jwt_verifier_release(&v);
    } else {
        char *in = cstr(data, size);
        const char *hdr = mode == 2 ? "{\"alg\":\"HS256\",\"typ\":\"JWT\"}" : in;
        const char *pl = mode == 2 ? in
                                   : "{\"sub\":\"7d8c2f0e-4b1a-4c3d-9e5f-0a1b2c3d4e5f\","
                                     "\"aud\":\"authenticated\",\"exp\":1767229200}";
        char *good = forge_jwt(hdr, pl, "HS256", secret);
        if (kb_jwt_verify(&ver, good, strlen(good), NOW, &c, &why)) {
            if (c.alg != KB_JWT_HS256)
                abort();
            check_hs256(good, strlen(good));
        }
        char *bad = forge_jwt(hdr, pl, "HS256", "another-secret-0123456789abcdef0123");
        if (kb_jwt_verify(&ver, bad, strlen(bad), NOW, &c, &why))
            abort();
        char *none = forge_jwt(hdr, pl, "none", NULL);
        if (kb_jwt_verify(&ver, none, strlen(none), NOW, &c, &why))
            abort();
        free(good);
        free(bad);
        free(none);
        free(in);
    }
    return 0;
}
