/* jwt.c - JWT sign and verify; see kb_jwt.h.
 *
 * Hand-written rather than a JWT library: Debian has none we would trust to
 * refuse alg confusion, crit headers and non-canonical base64url as API.md
 * §7.9 requires, and the format is three segments over primitives we link.
 * HS256 tags are computed and compared in constant time by lib/crypto.c
 * (libsodium); ES256/RS256 signatures are checked by OpenSSL's
 * EVP_DigestVerify.
 *
 * The signature is checked before any claim is trusted. The verifier picks the
 * algorithm family from its own keys, never from the token: an HS256 token
 * is only ever checked with the shared secret, an ES256/RS256 token only
 * with a JWKS key of that algorithm.
 */
#include "kb_jwt.h"

#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "kb_b64.h"
#include "kb_buf.h"
#include "kb_crypto.h"
#include "kb_json.h"
#include "kb_banned.h"

#define SEG_MAX 4096 /* decoded header or payload bytes */

/* ---- keys --------------------------------------------------------------------- */

static const char *
str_member(const cJSON *o, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(m) ? m->valuestring : NULL;
}

/* Decode a base64url member into out; false when absent or malformed. */
static bool
b64_member(const cJSON *o, const char *name, unsigned char *out, size_t outsz, size_t *n)
{
    const char *s = str_member(o, name);
    return s != NULL && kb_b64url_decode(s, strlen(s), out, outsz, n);
}

static EVP_PKEY *
from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *
ec_key(const cJSON *jwk)
{
    unsigned char pub[65], x[40], y[40];
    size_t xn = 0, yn = 0;
    const char *crv = str_member(jwk, "crv");
    if (crv == NULL || strcmp(crv, "P-256") != 0)
        return NULL;
    if (!b64_member(jwk, "x", x, sizeof(x), &xn) || !b64_member(jwk, "y", y, sizeof(y), &yn) ||
        xn != 32 || yn != 32)
        return NULL;
    pub[0] = 4; /* uncompressed point; fromdata checks it is on the curve */
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (bld != NULL &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)))
        pkey = from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *
rsa_key(const cJSON *jwk)
{
    unsigned char n[1024], e[16];
    size_t nn = 0, en = 0;
    if (!b64_member(jwk, "n", n, sizeof(n), &nn) || !b64_member(jwk, "e", e, sizeof(e), &en) ||
        nn < 256 || en == 0)
        return NULL;
    BIGNUM *bn = BN_bin2bn(n, (int)nn, NULL), *be = BN_bin2bn(e, (int)en, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (bn != NULL && be != NULL && bld != NULL && BN_num_bits(bn) >= 2048 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pkey = from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

bool
kb_jwks_parse(kb_jwt_verifier *v, const char *json, size_t len, const char **why)
{
    cJSON *root = NULL;
    size_t at = 0;
    size_t before = v->nkeys;
    if (!kb_json_parse(json, len, &root, why, &at))
        return false;
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(root, "keys");
    if (!cJSON_IsArray(keys)) {
        *why = "no \"keys\" array";
        cJSON_Delete(root);
        return false;
    }
    const cJSON *jwk;
    cJSON_ArrayForEach(jwk, keys) {
        if (!cJSON_IsObject(jwk) || v->nkeys >= KB_JWT_MAX_KEYS)
            continue;
        const char *kty = str_member(jwk, "kty");
        const char *use = str_member(jwk, "use");
        const char *alg = str_member(jwk, "alg");
        const char *kid = str_member(jwk, "kid");
        if (kty == NULL || (use != NULL && strcmp(use, "sig") != 0))
            continue;
        kb_jwk *k = &v->keys[v->nkeys];
        memset(k, 0, sizeof(*k));
        if (strcmp(kty, "EC") == 0 && (alg == NULL || strcmp(alg, "ES256") == 0)) {
            k->alg = KB_JWT_ES256;
            k->pkey = ec_key(jwk);
        } else if (strcmp(kty, "RSA") == 0 && (alg == NULL || strcmp(alg, "RS256") == 0)) {
            k->alg = KB_JWT_RS256;
            k->pkey = rsa_key(jwk);
        }
        if (k->pkey == NULL)
            continue;
        if (kid != NULL && strlen(kid) < sizeof(k->kid))
            memcpy(k->kid, kid, strlen(kid) + 1);
        else if (kid != NULL) {
            EVP_PKEY_free(k->pkey);
            continue;
        }
        v->nkeys++;
    }
    cJSON_Delete(root);
    if (v->nkeys == before) {
        *why = "no usable ES256 or RS256 signing key";
        return false;
    }
    return true;
}

void
kb_jwt_verifier_release(kb_jwt_verifier *v)
{
    for (size_t i = 0; i < v->nkeys; i++)
        EVP_PKEY_free(v->keys[i].pkey);
    v->nkeys = 0;
}

/* ---- verify ------------------------------------------------------------------- */

static const kb_jwk *
pick_key(const kb_jwt_verifier *v, kb_jwt_alg alg, const char *kid)
{
    const kb_jwk *found = NULL;
    size_t matches = 0;
    for (size_t i = 0; i < v->nkeys; i++) {
        const kb_jwk *k = &v->keys[i];
        if (k->alg != alg)
            continue;
        if (kid != NULL) {
            if (strcmp(k->kid, kid) == 0)
                return k;
            continue;
        }
        found = k;
        matches++;
    }
    /* Without a kid, only an unambiguous key will do. */
    return matches == 1 ? found : NULL;
}

static bool
verify_hs256(const kb_jwt_verifier *v, const char *data, size_t n, const unsigned char *sig,
             size_t siglen)
{
    if (v->hs_secret == NULL || siglen != KB_HMAC_SHA256_LEN)
        return false;
    const kb_str parts[] = {{data, n}};
    return kb_hmac_sha256_verify(v->hs_secret, v->hs_secret_len, parts, 1,
                                 (const unsigned char(*)[KB_HMAC_SHA256_LEN])sig, 1);
}

static bool
verify_pkey(const kb_jwk *k, const char *data, size_t n, const unsigned char *sig, size_t siglen)
{
    unsigned char *der = NULL;
    const unsigned char *vsig = sig;
    size_t vlen = siglen;
    bool ok = false;
    if (k->alg == KB_JWT_ES256) {
        /* JWS carries r || s (32 bytes each); OpenSSL wants DER. */
        if (siglen != 64)
            return false;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return false;
        }
        int dl = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (dl <= 0)
            return false;
        vsig = der;
        vlen = (size_t)dl;
    } else if (siglen != (size_t)EVP_PKEY_get_size(k->pkey)) {
        return false;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
        EVP_DigestVerify(md, vsig, vlen, (const unsigned char *)data, n) == 1)
        ok = true;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    return ok;
}

/* Decode a segment and parse it as a JSON object; caller deletes. */
static cJSON *
segment_json(const char *s, size_t len)
{
    unsigned char buf[SEG_MAX];
    size_t n = 0;
    cJSON *root = NULL;
    const char *why;
    size_t at;
    if (!kb_b64url_decode(s, len, buf, sizeof(buf), &n))
        return NULL;
    if (!kb_json_parse((const char *)buf, n, &root, &why, &at))
        return NULL;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* A NumericDate claim as whole seconds; false when present but not a number. */
static bool
num_claim(const cJSON *o, const char *name, bool *present, int64_t *out)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, name);
    *present = m != NULL;
    if (m == NULL)
        return true;
    if (!cJSON_IsNumber(m) || !(m->valuedouble > -1e15 && m->valuedouble < 1e15))
        return false;
    *out = (int64_t)m->valuedouble;
    return true;
}

static bool
aud_ok(const cJSON *payload)
{
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(payload, "aud");
    if (cJSON_IsString(aud))
        return strcmp(aud->valuestring, KB_JWT_AUDIENCE) == 0;
    if (!cJSON_IsArray(aud))
        return false;
    const cJSON *a;
    cJSON_ArrayForEach(a, aud) {
        if (cJSON_IsString(a) && strcmp(a->valuestring, KB_JWT_AUDIENCE) == 0)
            return true;
    }
    return false;
}

static bool
copy_claim(const cJSON *o, const char *name, char *out, size_t outsz, bool required)
{
    const char *s = str_member(o, name);
    out[0] = '\0';
    if (s == NULL)
        return !required && cJSON_GetObjectItemCaseSensitive(o, name) == NULL;
    size_t n = strlen(s);
    if (n >= outsz || (required && n == 0))
        return false;
    memcpy(out, s, n + 1);
    return true;
}

static bool
check_claims(const cJSON *p, int64_t now_s, kb_jwt_claims *out, const char **why)
{
    bool has_exp, has_nbf, has_iat;
    int64_t nbf = 0;
    if (!num_claim(p, "exp", &has_exp, &out->exp) || !has_exp)
        return *why = "exp missing or not a number", false;
    if (now_s > out->exp + KB_JWT_LEEWAY_S)
        return *why = "token expired", false;
    if (!num_claim(p, "nbf", &has_nbf, &nbf))
        return *why = "nbf not a number", false;
    if (has_nbf && now_s + KB_JWT_LEEWAY_S < nbf)
        return *why = "token not yet valid", false;
    if (!num_claim(p, "iat", &has_iat, &out->iat))
        return *why = "iat not a number", false;
    if (!aud_ok(p))
        return *why = "wrong audience", false;
    if (!copy_claim(p, "sub", out->sub, sizeof(out->sub), true))
        return *why = "sub missing or malformed", false;
    if (!copy_claim(p, "email", out->email, sizeof(out->email), false))
        return *why = "email malformed", false;
    if (!copy_claim(p, "role", out->role, sizeof(out->role), false))
        return *why = "role malformed", false;
    return true;
}

bool
kb_jwt_verify(const kb_jwt_verifier *v, const char *token, size_t len, int64_t now_s,
              kb_jwt_claims *out, const char **why)
{
    unsigned char sig[1024];
    size_t siglen = 0;
    cJSON *hdr = NULL, *payload = NULL;
    bool ok = false;
    memset(out, 0, sizeof(*out));
    *why = "malformed token";
    if (token == NULL || len == 0 || len > KB_JWT_MAX_LEN)
        return false;
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL)
        return false;
    size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1);
    size_t slen = len - (size_t)(d2 + 1 - token);
    if (hlen == 0 || plen == 0 || !kb_b64url_decode(d2 + 1, slen, sig, sizeof(sig), &siglen))
        return false;
    hdr = segment_json(token, hlen);
    if (hdr == NULL)
        goto out;
    const char *alg = str_member(hdr, "alg");
    const char *kid = str_member(hdr, "kid");
    if (cJSON_GetObjectItemCaseSensitive(hdr, "crit") != NULL) {
        *why = "critical header extensions are not supported";
        goto out;
    }
    size_t signed_len = (size_t)(d2 - token);
    if (alg != NULL && strcmp(alg, "HS256") == 0) {
        out->alg = KB_JWT_HS256;
        if (!verify_hs256(v, token, signed_len, sig, siglen)) {
            *why = v->hs_secret ? "bad signature" : "HS256 not configured";
            goto out;
        }
    } else if (alg != NULL && (strcmp(alg, "ES256") == 0 || strcmp(alg, "RS256") == 0)) {
        out->alg = alg[0] == 'E' ? KB_JWT_ES256 : KB_JWT_RS256;
        const kb_jwk *k = pick_key(v, out->alg, kid);
        if (k == NULL) {
            *why = "no key for this alg/kid";
            goto out;
        }
        if (!verify_pkey(k, token, signed_len, sig, siglen)) {
            *why = "bad signature";
            goto out;
        }
    } else {
        *why = "alg not accepted";
        goto out;
    }
    payload = segment_json(d1 + 1, plen);
    if (payload == NULL) {
        *why = "malformed payload";
        goto out;
    }
    ok = check_claims(payload, now_s, out, why);
out:
    cJSON_Delete(hdr);
    cJSON_Delete(payload);
    return ok;
}

/* ---- sign --------------------------------------------------------------------- */

char *
kb_jwt_sign_hs256(kb_arena *a, const unsigned char *secret, size_t secret_len, const char *sub,
                  const char *email, int64_t iat, int64_t exp)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    kb_buf payload = KB_BUF_INIT, tok = KB_BUF_INIT;
    kb_jw w;
    kb_jw_init(&w, &payload);
    kb_jw_obj(&w);
    kb_jw_key(&w, "sub");
    kb_jw_str(&w, sub);
    kb_jw_key(&w, "email");
    kb_jw_str(&w, email);
    kb_jw_key(&w, "aud");
    kb_jw_str(&w, KB_JWT_AUDIENCE);
    kb_jw_key(&w, "role");
    kb_jw_str(&w, "authenticated");
    kb_jw_key(&w, "iat");
    kb_jw_int(&w, iat);
    kb_jw_key(&w, "exp");
    kb_jw_int(&w, exp);
    kb_jw_obj_end(&w);

    char *seg = kb_arena_alloc(
        a, KB_B64URL_LEN(payload.len > sizeof(header) ? payload.len : sizeof(header)) + 1);
    kb_b64url_encode(header, sizeof(header) - 1, seg);
    kb_buf_puts(&tok, seg);
    kb_buf_putc(&tok, '.');
    kb_b64url_encode(payload.buf, payload.len, seg);
    kb_buf_puts(&tok, seg);

    unsigned char md[KB_HMAC_SHA256_LEN];
    const kb_str parts[] = {{tok.buf, tok.len}};
    kb_hmac_sha256(secret, secret_len, parts, 1, md);
    char sigtxt[KB_B64URL_LEN(KB_HMAC_SHA256_LEN) + 1];
    kb_b64url_encode(md, sizeof(md), sigtxt);
    kb_buf_putc(&tok, '.');
    kb_buf_puts(&tok, sigtxt);
    char *out = kb_arena_strndup(a, tok.buf, tok.len);
    kb_buf_release(&payload);
    kb_buf_release(&tok);
    return out;
}
