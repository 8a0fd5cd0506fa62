/* auth.c - bearer parsing, user tokens, passwords and API key format; see kb_auth.h.
 *
 * The token verifier is the worker's (kb_worker.h), built from kb_cfg on its
 * first use (the JWKS file is read then), and never changes afterwards; a
 * restart picks up a new file. Nothing here logs a token, a password or a full key.
 */
#include "kb_auth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "kb_b64.h"
#include "kb_config.h"
#include "kb_crypto.h"
#include "kb_jwt.h"
#include "kb_log.h"
#include "kb_shared.h"
#include "kb_time.h"
#include "kb_worker.h"
#include "kb_banned.h"

#define JWKS_MAX (256 * 1024)

/* A hash of a random password nobody knows, verified for unknown emails. */
static const char dummy_hash[] = "$argon2id$v=19$m=65536,t=2,p=1$pTVU438aJQQcv2kmQo0gLQ$"
                                 "jG4rAOSLHzSM5J7RN8oOxo5AlqcHNbmfRRYhc+kAAyM";

/* Read the JWKS file into v; returns a static reason on failure. */
static const char *
load_jwks(kb_jwt_verifier *v, const char *path)
{
    static char buf[JWKS_MAX];
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return strerror(errno);
    size_t n = fread(buf, 1, sizeof(buf), f);
    bool too_big = n == sizeof(buf);
    fclose(f);
    if (too_big)
        return "file too large";
    const char *why = NULL;
    if (!kb_jwks_parse(v, buf, n, &why))
        return why;
    return NULL;
}

/* The worker's verifier (kb_worker.h), built from kb_cfg on first use. */
static const kb_jwt_verifier *
get_verifier(kb_worker *w)
{
    kb_jwt_verifier *v = &w->jwt;
    if (w->jwt_loaded)
        return v;
    w->jwt_loaded = true;
    memset(v, 0, sizeof(*v));
    if (kb_cfg.jwt_secret != NULL && strlen(kb_cfg.jwt_secret) >= KB_JWT_SECRET_MIN) {
        v->hs_secret = (const unsigned char *)kb_cfg.jwt_secret;
        v->hs_secret_len = strlen(kb_cfg.jwt_secret);
    }
    if (kb_cfg.jwt_jwks_file != NULL) {
        const char *why = load_jwks(v, kb_cfg.jwt_jwks_file);
        if (why != NULL)
            kb_log_error("unable to load KB_JWT_JWKS_FILE '%s': %s; ES256/RS256 tokens refused",
                         kb_cfg.jwt_jwks_file, why);
    }
    return v;
}

int
kb_auth_check_config(const kb_config *cfg, kb_buf *problems)
{
    if (cfg->jwt_jwks_file == NULL)
        return 0;
    kb_jwt_verifier v;
    memset(&v, 0, sizeof(v));
    const char *why = load_jwks(&v, cfg->jwt_jwks_file);
    kb_jwt_verifier_release(&v);
    if (why == NULL)
        return 0;
    kb_buf_printf(problems, "KB_JWT_JWKS_FILE: unusable: %s\n", why);
    return 1;
}

kb_str
kb_auth_bearer(const kb_req *req, bool *present)
{
    kb_str h = kb_req_header(req, "authorization");
    if (present != NULL)
        *present = h.p != NULL;
    if (h.p == NULL)
        return KB_STR_NULL;
    h = kb_str_trim(h);
    size_t i = 0;
    while (i < h.len && h.p[i] != ' ' && h.p[i] != '\t')
        i++;
    if (!kb_str_eq_nocase((kb_str){h.p, i}, "bearer"))
        return KB_STR_NULL;
    return kb_str_trim((kb_str){h.p + i, h.len - i});
}

bool
kb_auth_is_uuid(kb_str s)
{
    if (s.p == NULL || s.len != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        char c = s.p[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

kb_err
kb_auth_user(const kb_req *req, kb_ctx *ctx, kb_user *out)
{
    bool present = false;
    kb_str tok = kb_auth_bearer(req, &present);
    if (!present)
        return kb_fail(ctx, KB_E_INVALID_API_KEY, "Missing Authorization header.");
    if (tok.p == NULL)
        return kb_fail(ctx, KB_E_INVALID_API_KEY,
                       "Authorization header must be 'Bearer <access_token>'.");
    if (kb_str_has_prefix(tok, "kb-"))
        return kb_fail(ctx, KB_E_INVALID_AUTH_METHOD,
                       "This endpoint needs a user access token, not an API key.");
    if (tok.len == 0)
        return kb_fail(ctx, KB_E_INVALID_API_KEY, "Empty access token.");
    kb_jwt_claims c;
    const char *why = NULL;
    if (!kb_jwt_verify(get_verifier(ctx->w), tok.p, tok.len, kb_now_us() / 1000000, &c, &why) ||
        !kb_auth_is_uuid(kb_str_c(c.sub))) {
        kb_log_debug("access token refused: %s", why ? why : "sub is not a UUID");
        return kb_fail(ctx, KB_E_INVALID_API_KEY, "Invalid or expired access token.");
    }
    /* Lower-case the id so it compares equal to Postgres's uuid output. */
    for (char *p = c.sub; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    out->id = kb_arena_strdup(ctx->arena, c.sub);
    out->email = kb_arena_strdup(ctx->arena, c.email);
    ctx->user_id = out->id;
    return KB_OK;
}

kb_err
kb_auth_issue_token(kb_ctx *ctx, const char *user_id, const char *email, const char **token)
{
    const kb_jwt_verifier *v = get_verifier(ctx->w);
    if (v->hs_secret == NULL)
        return kb_fail(ctx, KB_E_INTERNAL, "cannot issue tokens: KB_JWT_SECRET is not set");
    int64_t now = kb_now_us() / 1000000;
    *token = kb_jwt_sign_hs256(ctx->arena, v->hs_secret, v->hs_secret_len, user_id, email, now,
                               now + kb_cfg.jwt_ttl_s);
    return KB_OK;
}

static kb_err
busy(kb_ctx *ctx)
{
    ctx->retry_after = 1;
    return kb_fail(ctx, KB_E_UNAVAILABLE, "Too many sign-ins in progress, retry shortly.");
}

kb_err
kb_auth_password_hash(kb_ctx *ctx, const char *password, char out[KB_PWHASH_LEN])
{
    int slot = kb_shared_slot_acquire();
    if (slot < 0)
        return busy(ctx);
    int rc = crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                               crypto_pwhash_MEMLIMIT_INTERACTIVE);
    kb_shared_slot_release(slot);
    if (rc != 0)
        return kb_fail(ctx, KB_E_INTERNAL, "unable to hash a password (out of memory)");
    return KB_OK;
}

kb_err
kb_auth_password_verify(kb_ctx *ctx, const char *hash, const char *password, bool *ok)
{
    *ok = false;
    int slot = kb_shared_slot_acquire();
    if (slot < 0)
        return busy(ctx);
    int rc = crypto_pwhash_str_verify(hash ? hash : dummy_hash, password, strlen(password));
    kb_shared_slot_release(slot);
    *ok = hash != NULL && rc == 0;
    return KB_OK;
}

void
kb_auth_key_new(char key[KB_API_KEY_LEN + 1], char hash[65], char prefix[KB_API_KEY_PREFIX_LEN + 1])
{
    unsigned char rnd[32];
    randombytes_buf(rnd, sizeof(rnd));
    memcpy(key, "kb-", 3);
    kb_b64url_encode(rnd, sizeof(rnd), key + 3);
    sodium_memzero(rnd, sizeof(rnd));
    kb_sha256_hex(key, KB_API_KEY_LEN, hash);
    memcpy(prefix, key, KB_API_KEY_PREFIX_LEN);
    prefix[KB_API_KEY_PREFIX_LEN] = '\0';
}
