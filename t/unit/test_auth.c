/* test_auth.c - base64url, API key format, Bearer parsing and JWT verification (table-driven). */
#include <check.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "check_main.h"
#include "jwt_forge.h"
#include "kb_auth.h"
#include "kb_b64.h"
#include "kb_crypto.h"
#include "kb_jwt.h"
#include "kb_banned.h"

/* ---- base64url ---- */

typedef struct b64case {
    const char *raw;
    size_t n;
    const char *enc;
} b64case;

static const b64case b64_cases[] = {
    {"", 0, ""},
    {"f", 1, "Zg"},
    {"fo", 2, "Zm8"},
    {"foo", 3, "Zm9v"},
    {"foob", 4, "Zm9vYg"},
    {"\xfb\xff", 2, "-_8"},
    {"\xff\xff\xff", 3, "____"},
};

START_TEST(b64url_encodes_and_decodes_vectors)
{
    const b64case *c = &b64_cases[_i];
    char enc[32];
    unsigned char dec[32];
    size_t n = 99;
    ck_assert_uint_eq(kb_b64url_encode(c->raw, c->n, enc), strlen(c->enc));
    ck_assert_str_eq(enc, c->enc);
    ck_assert(kb_b64url_decode(c->enc, strlen(c->enc), dec, sizeof(dec), &n));
    ck_assert_uint_eq(n, c->n);
    ck_assert(memcmp(dec, c->raw, n) == 0);
}
END_TEST

static const char *const b64_bad[] = {
    "Zg==",  "Zg=",   "Z",      "Zh",    "Zm9",   "Zm+v", "Zm/v",
    "Zm9v!", " Zm9v", "Zm9v\n", "Zm 9v", "Zm9vY", "AAB",
};

START_TEST(b64url_refuses_padding_foreign_chars_and_noncanonical_tails)
{
    unsigned char dec[32];
    size_t n;
    const char *s = b64_bad[_i];
    ck_assert_msg(!kb_b64url_decode(s, strlen(s), dec, sizeof(dec), &n), "accepted '%s'", s);
}
END_TEST

START_TEST(b64url_decode_respects_output_size)
{
    unsigned char dec[2];
    size_t n;
    ck_assert(!kb_b64url_decode("Zm9v", 4, dec, sizeof(dec), &n));
    ck_assert(kb_b64url_decode("Zm8", 3, dec, sizeof(dec), &n));
}
END_TEST

/* ---- API keys ---- */

START_TEST(api_key_is_kb_dash_43_base64url_with_hash_and_prefix)
{
    char key[KB_API_KEY_LEN + 1], hash[65], prefix[KB_API_KEY_PREFIX_LEN + 1];
    char key2[KB_API_KEY_LEN + 1], hash2[65], prefix2[KB_API_KEY_PREFIX_LEN + 1];
    kb_auth_key_new(key, hash, prefix);
    kb_auth_key_new(key2, hash2, prefix2);
    ck_assert_uint_eq(strlen(key), 46);
    ck_assert(strncmp(key, "kb-", 3) == 0);
    unsigned char raw[40];
    size_t n = 0;
    ck_assert(kb_b64url_decode(key + 3, 43, raw, sizeof(raw), &n));
    ck_assert_uint_eq(n, 32);
    ck_assert_uint_eq(strlen(prefix), 7);
    ck_assert(strncmp(prefix, key, 7) == 0);
    char want[65];
    kb_sha256_hex(key, strlen(key), want);
    ck_assert_str_eq(hash, want);
    ck_assert_str_ne(key, key2);
    ck_assert_str_ne(hash, hash2);
}
END_TEST

START_TEST(uuid_check_is_strict)
{
    ck_assert(kb_auth_is_uuid(kb_str_c("0f8fad5b-d9cb-469f-a165-70867728950e")));
    ck_assert(kb_auth_is_uuid(kb_str_c("0F8FAD5B-D9CB-469F-A165-70867728950E")));
    ck_assert(!kb_auth_is_uuid(kb_str_c("0f8fad5bd9cb469fa16570867728950e")));
    ck_assert(!kb_auth_is_uuid(kb_str_c("0f8fad5b-d9cb-469f-a165-70867728950")));
    ck_assert(!kb_auth_is_uuid(kb_str_c("0f8fad5b-d9cb-469f-a165-70867728950g")));
    ck_assert(!kb_auth_is_uuid(kb_str_c("usage")));
    ck_assert(!kb_auth_is_uuid(KB_STR_NULL));
}
END_TEST

/* ---- Bearer ---- */

typedef struct bearer_case {
    const char *header; /* NULL = no Authorization header */
    bool present;
    const char *token; /* NULL = not a Bearer header */
} bearer_case;

static const bearer_case bearer_cases[] = {
    {NULL, false, NULL},
    {"Bearer abc", true, "abc"},
    {"bearer abc", true, "abc"},
    {"BEARER abc", true, "abc"},
    {"BeArEr \t abc  ", true, "abc"},
    {"Bearer", true, ""},
    {"Bearer   ", true, ""},
    {"Basic abc", true, NULL},
    {"Bearerabc", true, NULL},
    {"abc", true, NULL},
    {"", true, NULL},
    {"Token kb-x", true, NULL},
};

START_TEST(bearer_scheme_any_case_token_trimmed)
{
    const bearer_case *c = &bearer_cases[_i];
    kb_header h = {KB_STR_LIT("authorization"), kb_str_c(c->header)};
    kb_req req;
    memset(&req, 0, sizeof(req));
    req.headers = &h;
    req.nheaders = c->header ? 1 : 0;
    bool present = !c->present;
    kb_str tok = kb_auth_bearer(&req, &present);
    ck_assert_int_eq(present, c->present);
    if (c->token == NULL) {
        ck_assert_ptr_null(tok.p);
    } else {
        ck_assert_ptr_nonnull(tok.p);
        ck_assert_uint_eq(tok.len, strlen(c->token));
        ck_assert(memcmp(tok.p, c->token, tok.len) == 0);
    }
}
END_TEST

/* ---- JWT ---- */

#define SECRET "0123456789abcdef0123456789abcdef-test"
#define SUB "0f8fad5b-d9cb-469f-a165-70867728950e"
#define HS_HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static EVP_PKEY *ec, *ec_other, *rsa;
static kb_jwt_verifier both, jwks_only, hs_only;

static void
keys_setup(void)
{
    ec = forge_ec_key();
    ec_other = forge_ec_key();
    rsa = forge_rsa_key();
    const char *why = NULL;
    memset(&both, 0, sizeof(both));
    memset(&jwks_only, 0, sizeof(jwks_only));
    memset(&hs_only, 0, sizeof(hs_only));
    both.hs_secret = hs_only.hs_secret = (const unsigned char *)SECRET;
    both.hs_secret_len = hs_only.hs_secret_len = strlen(SECRET);
    char *j1 = forge_jwks(ec, "k1"), *j2 = forge_jwks(rsa, "r1");
    ck_assert_msg(kb_jwks_parse(&both, j1, strlen(j1), &why), "%s", why);
    ck_assert_msg(kb_jwks_parse(&both, j2, strlen(j2), &why), "%s", why);
    ck_assert(kb_jwks_parse(&jwks_only, j1, strlen(j1), &why));
    free(j1);
    free(j2);
}

static void
keys_teardown(void)
{
    kb_jwt_verifier_release(&both);
    kb_jwt_verifier_release(&jwks_only);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec_other);
    EVP_PKEY_free(rsa);
}

typedef enum vkind {
    V_HS,
    V_HS_WRONG_SECRET,
    V_EXPIRED_31,
    V_EXPIRED_29,
    V_AUD_OTHER,
    V_AUD_ARRAY,
    V_NO_EXP,
    V_NONE,
    V_NONE_CAPS,
    V_HS512,
    V_HS_LOWER,
    V_HS_ON_JWKS_ONLY,
    V_HS_KEYED_WITH_PUBKEY,
    V_ES,
    V_ES_NO_KID,
    V_ES_UNKNOWN_KID,
    V_ES_WRONG_KEY,
    V_ES_KID_OF_RSA,
    V_RS,
    V_RS_AS_ES,
    V_TAMPERED,
    V_FOUR_SEGMENTS,
    V_PADDED,
    V_OVERSIZE,
    V_CRIT,
    V_DUP_CLAIM,
    V_SUB_NUMBER,
    V_NBF_FUTURE,
    V_EMPTY,
    V_NO_ALG,
    V_EXP_STRING,
    V_NOT_OBJECT
} vkind;

typedef struct vcase {
    vkind kind;
    const kb_jwt_verifier *v;
    bool ok;
} vcase;

static const vcase verify_cases[] = {
    {V_HS, &both, true},
    {V_HS, &hs_only, true},
    {V_HS_WRONG_SECRET, &both, false},
    {V_EXPIRED_31, &both, false},
    {V_EXPIRED_29, &both, true},
    {V_AUD_OTHER, &both, false},
    {V_AUD_ARRAY, &both, true},
    {V_NO_EXP, &both, false},
    {V_NONE, &both, false},
    {V_NONE_CAPS, &both, false},
    {V_HS512, &both, false},
    {V_HS_LOWER, &both, false},
    {V_HS_ON_JWKS_ONLY, &jwks_only, false},
    {V_HS_KEYED_WITH_PUBKEY, &jwks_only, false},
    {V_ES, &both, true},
    {V_ES, &jwks_only, true},
    {V_ES, &hs_only, false},
    {V_ES_NO_KID, &jwks_only, true},
    {V_ES_UNKNOWN_KID, &both, false},
    {V_ES_WRONG_KEY, &both, false},
    {V_ES_KID_OF_RSA, &both, false},
    {V_RS, &both, true},
    {V_RS_AS_ES, &both, false},
    {V_TAMPERED, &both, false},
    {V_FOUR_SEGMENTS, &both, false},
    {V_PADDED, &both, false},
    {V_OVERSIZE, &both, false},
    {V_CRIT, &both, false},
    {V_DUP_CLAIM, &both, false},
    {V_SUB_NUMBER, &both, false},
    {V_NBF_FUTURE, &both, false},
    {V_EMPTY, &both, false},
    {V_NO_ALG, &both, false},
    {V_EXP_STRING, &both, false},
    {V_NOT_OBJECT, &both, false},
};

static char *
make_token(vkind k, long long now)
{
    char *claims = forge_claims(SUB, now, now + 600, "authenticated");
    char *t = NULL;
    char buf[1024];
    switch (k) {
    case V_HS:
        t = forge_jwt(HS_HDR, claims, "HS256", SECRET);
        break;
    case V_HS_WRONG_SECRET:
        t = forge_jwt(HS_HDR, claims, "HS256", "another-secret-another-secret-xx");
        break;
    case V_EXPIRED_31:
    case V_EXPIRED_29: {
        char *c = forge_claims(SUB, now - 4000, now - (k == V_EXPIRED_31 ? 31 : 29),
                               "authenticated");
        t = forge_jwt(HS_HDR, c, "HS256", SECRET);
        free(c);
        break;
    }
    case V_AUD_OTHER: {
        char *c = forge_claims(SUB, now, now + 600, "anon");
        t = forge_jwt(HS_HDR, c, "HS256", SECRET);
        free(c);
        break;
    }
    case V_AUD_ARRAY:
        snprintf(buf, sizeof(buf),
                 "{\"sub\":\"%s\",\"aud\":[\"x\",\"authenticated\"],\"exp\":%lld}", SUB, now + 60);
        t = forge_jwt(HS_HDR, buf, "HS256", SECRET);
        break;
    case V_NO_EXP:
        snprintf(buf, sizeof(buf), "{\"sub\":\"%s\",\"aud\":\"authenticated\"}", SUB);
        t = forge_jwt(HS_HDR, buf, "HS256", SECRET);
        break;
    case V_NONE:
        t = forge_jwt("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, "none", NULL);
        break;
    case V_NONE_CAPS:
        t = forge_jwt("{\"alg\":\"None\"}", claims, "HS256", SECRET);
        break;
    case V_HS512:
        t = forge_jwt("{\"alg\":\"HS512\"}", claims, "HS256", SECRET);
        break;
    case V_HS_LOWER:
        t = forge_jwt("{\"alg\":\"hs256\"}", claims, "HS256", SECRET);
        break;
    case V_HS_ON_JWKS_ONLY:
        t = forge_jwt(HS_HDR, claims, "HS256", SECRET);
        break;
    case V_HS_KEYED_WITH_PUBKEY: {
        /* Classic alg confusion: HMAC keyed with the public JWKS text. */
        char *jw = forge_jwks(ec, "k1");
        t = forge_jwt(HS_HDR, claims, "HS256", jw);
        free(jw);
        break;
    }
    case V_ES:
        t = forge_jwt("{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"JWT\"}", claims, "ES256", ec);
        break;
    case V_ES_NO_KID:
        t = forge_jwt("{\"alg\":\"ES256\"}", claims, "ES256", ec);
        break;
    case V_ES_UNKNOWN_KID:
        t = forge_jwt("{\"alg\":\"ES256\",\"kid\":\"zz\"}", claims, "ES256", ec);
        break;
    case V_ES_WRONG_KEY:
        t = forge_jwt("{\"alg\":\"ES256\",\"kid\":\"k1\"}", claims, "ES256", ec_other);
        break;
    case V_ES_KID_OF_RSA:
        t = forge_jwt("{\"alg\":\"ES256\",\"kid\":\"r1\"}", claims, "ES256", ec);
        break;
    case V_RS:
        t = forge_jwt("{\"alg\":\"RS256\",\"kid\":\"r1\"}", claims, "RS256", rsa);
        break;
    case V_RS_AS_ES:
        t = forge_jwt("{\"alg\":\"ES256\",\"kid\":\"k1\"}", claims, "RS256", rsa);
        break;
    case V_TAMPERED: {
        t = forge_jwt(HS_HDR, claims, "HS256", SECRET);
        char *other = forge_claims("11111111-d9cb-469f-a165-70867728950e", now, now + 600,
                                   "authenticated");
        char *p = forge_b64(other, strlen(other));
        char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
        size_t n = strlen(t) + strlen(p) + 4;
        char *x = malloc(n);
        snprintf(x, n, "%.*s.%s%s", (int)(d1 - t), t, p, d2);
        free(t);
        free(p);
        free(other);
        t = x;
        break;
    }
    case V_FOUR_SEGMENTS: {
        char *s = forge_jwt(HS_HDR, claims, "HS256", SECRET);
        size_t n = strlen(s) + 8;
        t = malloc(n);
        snprintf(t, n, "%s.abc", s);
        free(s);
        break;
    }
    case V_PADDED: {
        char *s = forge_jwt(HS_HDR, claims, "HS256", SECRET);
        size_t n = strlen(s) + 4;
        t = malloc(n);
        snprintf(t, n, "%s=", s);
        free(s);
        break;
    }
    case V_OVERSIZE: {
        size_t n = KB_JWT_MAX_LEN + 2000;
        char *big = malloc(n);
        int w = snprintf(big, n, "{\"sub\":\"%s\",\"aud\":\"authenticated\",\"exp\":%lld,\"x\":\"",
                         SUB, now + 60);
        memset(big + w, 'a', KB_JWT_MAX_LEN);
        memcpy(big + w + KB_JWT_MAX_LEN, "\"}", 3);
        t = forge_jwt(HS_HDR, big, "HS256", SECRET);
        free(big);
        break;
    }
    case V_CRIT:
        t = forge_jwt("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", claims, "HS256", SECRET);
        break;
    case V_DUP_CLAIM:
        snprintf(buf, sizeof(buf),
                 "{\"sub\":\"%s\",\"sub\":\"x\",\"aud\":\"authenticated\",\"exp\":%lld}", SUB,
                 now + 60);
        t = forge_jwt(HS_HDR, buf, "HS256", SECRET);
        break;
    case V_SUB_NUMBER:
        snprintf(buf, sizeof(buf), "{\"sub\":5,\"aud\":\"authenticated\",\"exp\":%lld}", now + 60);
        t = forge_jwt(HS_HDR, buf, "HS256", SECRET);
        break;
    case V_NBF_FUTURE:
        snprintf(buf, sizeof(buf),
                 "{\"sub\":\"%s\",\"aud\":\"authenticated\",\"exp\":%lld,\"nbf\":%lld}", SUB,
                 now + 600, now + 300);
        t = forge_jwt(HS_HDR, buf, "HS256", SECRET);
        break;
    case V_EMPTY:
        t = strdup("");
        break;
    case V_NO_ALG:
        t = forge_jwt("{\"typ\":\"JWT\"}", claims, "HS256", SECRET);
        break;
    case V_EXP_STRING:
        snprintf(buf, sizeof(buf), "{\"sub\":\"%s\",\"aud\":\"authenticated\",\"exp\":\"%lld\"}",
                 SUB, now + 60);
        t = forge_jwt(HS_HDR, buf, "HS256", SECRET);
        break;
    case V_NOT_OBJECT:
        t = forge_jwt(HS_HDR, "[1]", "HS256", SECRET);
        break;
    }
    free(claims);
    return t;
}

START_TEST(jwt_verify_accepts_only_exact_alg_key_and_claims)
{
    const vcase *c = &verify_cases[_i];
    long long now = (long long)time(NULL);
    char *tok = make_token(c->kind, now);
    kb_jwt_claims cl;
    const char *why = NULL;
    bool ok = kb_jwt_verify(c->v, tok, strlen(tok), now, &cl, &why);
    ck_assert_msg(ok == c->ok, "case %d (kind %d): got %d (%s)", _i, c->kind, ok, why ? why : "");
    if (ok)
        ck_assert_str_eq(cl.sub, SUB);
    free(tok);
}
END_TEST

START_TEST(jwt_signed_here_verifies_with_all_claims)
{
    kb_arena a;
    kb_arena_init(&a, 0);
    long long now = (long long)time(NULL);
    char *t = kb_jwt_sign_hs256(&a, (const unsigned char *)SECRET, strlen(SECRET), SUB, "a@b.io",
                                now, now + 3600);
    kb_jwt_claims cl;
    const char *why = NULL;
    ck_assert_msg(kb_jwt_verify(&hs_only, t, strlen(t), now, &cl, &why), "%s", why);
    ck_assert_str_eq(cl.sub, SUB);
    ck_assert_str_eq(cl.email, "a@b.io");
    ck_assert_str_eq(cl.role, "authenticated");
    ck_assert_int_eq(cl.iat, now);
    ck_assert_int_eq(cl.exp, now + 3600);
    ck_assert_int_eq(cl.alg, KB_JWT_HS256);
    ck_assert(strncmp(t, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37) == 0);
    ck_assert(!kb_jwt_verify(&hs_only, t, strlen(t), now + 3600 + 31, &cl, &why));
    ck_assert(!kb_jwt_verify(&jwks_only, t, strlen(t), now, &cl, &why));
    kb_arena_release(&a);
}
END_TEST

START_TEST(jwks_parse_refuses_documents_without_usable_keys)
{
    static const char *const docs[] = {
        "",
        "[]",
        "{}",
        "{\"keys\":{}}",
        "{\"keys\":[]}",
        "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        kb_jwt_verifier v;
        memset(&v, 0, sizeof(v));
        const char *why = NULL;
        ck_assert_msg(!kb_jwks_parse(&v, docs[i], strlen(docs[i]), &why), "accepted %s", docs[i]);
        ck_assert_uint_eq(v.nkeys, 0);
    }
    /* An EC key whose point is not on the curve is refused too. */
    char *j = forge_jwks(ec, "k1");
    char *x = strstr(j, "\"x\":\"") + 5;
    x[0] = x[0] == 'A' ? 'B' : 'A';
    kb_jwt_verifier v;
    memset(&v, 0, sizeof(v));
    const char *why = NULL;
    ck_assert(!kb_jwks_parse(&v, j, strlen(j), &why));
    free(j);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("formats");
    tcase_add_loop_test(tc, b64url_encodes_and_decodes_vectors, 0,
                        (int)(sizeof(b64_cases) / sizeof(b64_cases[0])));
    tcase_add_loop_test(tc, b64url_refuses_padding_foreign_chars_and_noncanonical_tails, 0,
                        (int)(sizeof(b64_bad) / sizeof(b64_bad[0])));
    tcase_add_test(tc, b64url_decode_respects_output_size);
    tcase_add_test(tc, api_key_is_kb_dash_43_base64url_with_hash_and_prefix);
    tcase_add_test(tc, uuid_check_is_strict);
    tcase_add_loop_test(tc, bearer_scheme_any_case_token_trimmed, 0,
                        (int)(sizeof(bearer_cases) / sizeof(bearer_cases[0])));
    suite_add_tcase(s, tc);
    TCase *tj = tcase_create("jwt");
    tcase_add_checked_fixture(tj, keys_setup, keys_teardown);
    tcase_add_loop_test(tj, jwt_verify_accepts_only_exact_alg_key_and_claims, 0,
                        (int)(sizeof(verify_cases) / sizeof(verify_cases[0])));
    tcase_add_test(tj, jwt_signed_here_verifies_with_all_claims);
    tcase_add_test(tj, jwks_parse_refuses_documents_without_usable_keys);
    suite_add_tcase(s, tj);
    return kb_check_run(s);
}
