/* kb_auth.h - who is calling: bearer parsing, user tokens, passwords, API key format.
 *
 * User-token routes (/keys and /billing) call kb_auth_user(), which checks the
 * access token locally (kb_jwt.h) and answers exactly as API.md §2 orders
 * it. Passwords are argon2id (libsodium, interactive limits); each hash runs
 * under a host-wide slot (kb_shared.h), and a caller that finds none free
 * gets 503 service_unavailable with Retry-After instead of a queue.
 * API keys are "kb-" + 43 base64url characters (32 random bytes); only
 * their SHA-256 hex and the 7-character prefix are ever stored.
 */
#ifndef KB_AUTH_H
#define KB_AUTH_H

#include <stdbool.h>

#include "kb_config.h"
#include "kb_http.h"
#include "kb_str.h"

#define KB_PASSWORD_MIN 8       /* characters */
#define KB_PASSWORD_MAX 1024    /* characters; longer is a validation error */
#define KB_PWHASH_LEN 128       /* crypto_pwhash_STRBYTES */
#define KB_API_KEY_LEN 46       /* "kb-" + 43 */
#define KB_API_KEY_PREFIX_LEN 7 /* "kb-Ab3x" */

/* An authenticated user; strings are arena-owned. */
typedef struct kb_user {
    const char *id;    /* UUID (the token's sub) */
    const char *email; /* "" when the token has none */
} kb_user;

/*
 * The token of an `Authorization: Bearer <token>` header: the scheme is
 * matched in any letter case (API.md §7.14), separated by spaces or tabs,
 * and the token is trimmed. *present (may be NULL) says whether the header
 * exists at all. Returns the null string (p == NULL) when the header is
 * missing or not Bearer; an empty token is {p, 0}. Borrowed from req.
 */
kb_str kb_auth_bearer(const kb_req *req, bool *present);

/*
 * Authenticate a user-token route (API.md §2): no header or not Bearer ->
 * 401 invalid_api_key; token starting with "kb-" -> 401 invalid_auth_method;
 * bad, expired or empty token -> 401 invalid_api_key. On success fills *out
 * and sets ctx->user_id for the log line. Errors are recorded with kb_fail.
 */
kb_err kb_auth_user(const kb_req *req, kb_ctx *ctx, kb_user *out);

/*
 * Issue an access token (HS256 with KB_JWT_SECRET, lifetime KB_JWT_TTL).
 * Arena-owned. Fails with 500 when no HS256 secret is configured.
 */
kb_err kb_auth_issue_token(kb_ctx *ctx, const char *user_id, const char *email, const char **token);

/*
 * argon2id hash of a NUL-free password into out. 503 service_unavailable
 * (Retry-After: 1) when every hash slot of the host is busy; 500 when
 * libsodium fails (out of memory).
 */
kb_err kb_auth_password_hash(kb_ctx *ctx, const char *password, char out[KB_PWHASH_LEN]);

/*
 * Check password against hash. With hash == NULL (unknown email) a dummy
 * hash is verified instead, so the answer takes as long either way. *ok is
 * true only for a real match. Same 503 as kb_auth_password_hash.
 */
kb_err kb_auth_password_verify(kb_ctx *ctx, const char *hash, const char *password, bool *ok);

/* A new API key with its SHA-256 hex and display prefix (NUL-terminated). */
void kb_auth_key_new(char key[KB_API_KEY_LEN + 1], char hash[65],
                     char prefix[KB_API_KEY_PREFIX_LEN + 1]);

/* True when s is a UUID in 8-4-4-4-12 hex form (either case). */
bool kb_auth_is_uuid(kb_str s);

/*
 * Try loading cfg's JWKS file (when set) the way workers do on their first
 * token, and report a problem as a "NAME: reason\n" line; kbctl
 * check-config calls this to catch a bad file before a deploy. Returns the
 * number of problems.
 */
int kb_auth_check_config(const kb_config *cfg, kb_buf *problems);

#endif
