/* kb_jwt.h - JSON Web Tokens: HS256 signing, HS256/ES256/RS256 verification.
 *
 * Tokens are checked locally, with no network call: the header's alg must be
 * exactly HS256 (with the shared secret) or ES256/RS256 (with a public key
 * from a JWKS, chosen by kid), never "none" or anything else, and never a
 * key of the other kind (no alg confusion). Then exp (30 s leeway), nbf and
 * aud ("authenticated") are checked. Every parser is bounded: the token is at
 * most KB_JWT_MAX_LEN bytes, segments are strict unpadded base64url, and the
 * header and payload go through the strict JSON parser (no duplicate keys).
 */
#ifndef KB_JWT_H
#define KB_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_arena.h"

#define KB_JWT_MAX_LEN 8192
#define KB_JWT_LEEWAY_S 30
#define KB_JWT_AUDIENCE "authenticated"
#define KB_JWT_MAX_KEYS 16

typedef enum kb_jwt_alg { KB_JWT_HS256 = 1, KB_JWT_ES256, KB_JWT_RS256 } kb_jwt_alg;

typedef struct kb_jwk {
    char kid[128];  /* "" when the JWK has none */
    kb_jwt_alg alg; /* ES256 for P-256 EC keys, RS256 for RSA keys */
    void *pkey;     /* EVP_PKEY *, owned */
} kb_jwk;

/* What a token may be verified with. Zeroed = accepts nothing. */
typedef struct kb_jwt_verifier {
    const unsigned char *hs_secret; /* borrowed; NULL refuses HS256 */
    size_t hs_secret_len;
    kb_jwk keys[KB_JWT_MAX_KEYS];
    size_t nkeys;
} kb_jwt_verifier;

typedef struct kb_jwt_claims {
    char sub[64];
    char email[321];
    char role[64];
    int64_t iat; /* 0 when absent */
    int64_t exp;
    kb_jwt_alg alg;
} kb_jwt_claims;

/*
 * Add the public signature keys of a JWKS document ({"keys":[...]}) to v:
 * EC P-256 (x, y) as ES256 and RSA (n, e; at least 2048 bits) as RS256; keys
 * whose "use" is not "sig" or whose "alg" disagrees are skipped. Returns
 * false with *why set when the document is malformed or holds no usable key.
 */
bool kb_jwks_parse(kb_jwt_verifier *v, const char *json, size_t len, const char **why);

/* Free the keys of v (the secret is borrowed and left alone). */
void kb_jwt_verifier_release(kb_jwt_verifier *v);

/*
 * Verify token at wall-clock time now_s (Unix seconds). On success fills
 * *out and returns true; otherwise false with *why a static reason for the
 * log (never shown with the token).
 */
bool kb_jwt_verify(const kb_jwt_verifier *v, const char *token, size_t len, int64_t now_s,
                   kb_jwt_claims *out, const char **why);

/*
 * An HS256 token with the claims sub, email, aud "authenticated", role
 * "authenticated", iat and exp. Arena-owned, NUL-terminated.
 */
char *kb_jwt_sign_hs256(kb_arena *a, const unsigned char *secret, size_t secret_len,
                        const char *sub, const char *email, int64_t iat, int64_t exp);

#endif
