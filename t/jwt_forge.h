/* jwt_forge.h - build JWTs and JWKS documents in tests (header-only).
 *
 * Tests forge tokens the server must accept or refuse: any header and
 * payload, signed HS256 with a secret, ES256/RS256 with a key generated at
 * run time (no private key is ever committed), or not at all ("none").
 * Every function returns malloc'd text the caller frees.
 */
#ifndef KB_JWT_FORGE_H
#define KB_JWT_FORGE_H

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_b64.h"

static inline char *
forge_b64(const void *data, size_t n)
{
    char *out = malloc(KB_B64URL_LEN(n) + 1);
    kb_b64url_encode(data, n, out);
    return out;
}

/* Sign "h.p" with alg ("HS256", "ES256", "RS256", "none"); key is the secret
 * (HS256, NUL-terminated) or an EVP_PKEY * (ES256/RS256). */
static inline char *
forge_jwt(const char *header_json, const char *payload_json, const char *alg, const void *key)
{
    char *h = forge_b64(header_json, strlen(header_json));
    char *p = forge_b64(payload_json, strlen(payload_json));
    size_t n = strlen(h) + strlen(p) + 2;
    char *signing = malloc(n);
    snprintf(signing, n, "%s.%s", h, p);
    unsigned char sig[1024];
    size_t siglen = 0;
    if (strcmp(alg, "HS256") == 0) {
        unsigned int l = 0;
        HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)signing, strlen(signing),
             sig, &l);
        siglen = l;
    } else if (strcmp(alg, "ES256") == 0 || strcmp(alg, "RS256") == 0) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char der[1024];
        size_t dl = sizeof(der);
        EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, (EVP_PKEY *)key);
        EVP_DigestSign(md, der, &dl, (const unsigned char *)signing, strlen(signing));
        EVP_MD_CTX_free(md);
        if (alg[0] == 'E') {
            const unsigned char *q = der;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)dl);
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
            ECDSA_SIG_free(es);
            siglen = 64;
        } else {
            memcpy(sig, der, dl);
            siglen = dl;
        }
    }
    char *s = forge_b64(sig, siglen);
    size_t tn = strlen(signing) + strlen(s) + 2;
    char *tok = malloc(tn);
    snprintf(tok, tn, "%s.%s", signing, s);
    free(h);
    free(p);
    free(signing);
    free(s);
    return tok;
}

/* Standard claims for sub, exp offset from now. */
static inline char *
forge_claims(const char *sub, long long iat, long long exp, const char *aud)
{
    char *out = malloc(512);
    snprintf(out, 512,
             "{\"sub\":\"%s\",\"email\":\"x@example.com\",\"aud\":\"%s\",\"role\":"
             "\"authenticated\",\"iat\":%lld,\"exp\":%lld}",
             sub, aud, iat, exp);
    return out;
}

static inline EVP_PKEY *
forge_ec_key(void)
{
    return EVP_EC_gen("P-256");
}

static inline EVP_PKEY *
forge_rsa_key(void)
{
    return EVP_RSA_gen(2048);
}

/* A one-key JWKS for pkey (EC P-256 or RSA) with kid. */
static inline char *
forge_jwks(EVP_PKEY *pkey, const char *kid)
{
    char *out = malloc(4096);
    if (EVP_PKEY_is_a(pkey, "EC")) {
        unsigned char pub[65];
        size_t pl = 0;
        EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &pl);
        char *x = forge_b64(pub + 1, 32), *y = forge_b64(pub + 33, 32);
        snprintf(out, 4096,
                 "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"ES256\",\"use\":\"sig\","
                 "\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}]}",
                 kid, x, y);
        free(x);
        free(y);
    } else {
        BIGNUM *n = NULL, *e = NULL;
        EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n);
        EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e);
        unsigned char nb[512], eb[8];
        int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
        char *ns = forge_b64(nb, (size_t)nl), *es = forge_b64(eb, (size_t)el);
        snprintf(out, 4096,
                 "{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"RS256\",\"use\":\"sig\",\"kid\":\"%s\","
                 "\"n\":\"%s\",\"e\":\"%s\"}]}",
                 kid, ns, es);
        free(ns);
        free(es);
        BN_free(n);
        BN_free(e);
    }
    return out;
}

#endif
