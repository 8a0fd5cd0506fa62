/* h_auth.c - POST /auth/signup and POST /auth/login (API.md §5.3, §5.4).
 *
 * Both answer {access_token, refresh_token, user_id, request_id}. Signup
 * creates only the user (no billing account, no default key: API.md §7.17).
 * Login takes as long for an unknown email as for a wrong password: the
 * password is checked against a dummy hash then. Password hashing runs under
 * the host-wide hash slots and answers 503 when they are all busy.
 */
#include "app.h"

#include <string.h>

#include "kb_auth.h"
#include "kb_banned.h"

static const kb_stmt user_exists = {
    "auth_user_exists", "SELECT 1 FROM users WHERE email = lower($1)", 1, true};
static const kb_stmt user_insert = {
    "auth_user_insert",
    "INSERT INTO users (email, password_hash) VALUES (lower($1), $2) "
    "ON CONFLICT (email) DO NOTHING RETURNING id, email",
    2, false};
static const kb_stmt user_find = {
    "auth_user_find", "SELECT id, email, password_hash FROM users WHERE email = lower($1)", 1,
    true};

/* The email/password body shared by both routes. */
static kb_err
read_credentials(const kb_req *req, kb_ctx *ctx, const char **email, const char **password)
{
    cJSON *body = NULL;
    kb_err err = kb_json_body(req, ctx, &body);
    if (err)
        return err;
    kb_json_get_str(ctx, body, "email", KB_JSON_REQUIRED, 320, email, NULL);
    kb_json_get_str(ctx, body, "password", KB_JSON_REQUIRED, KB_PASSWORD_MAX, password, NULL);
    return ctx->err;
}

static kb_err
respond(const kb_req *req, kb_ctx *ctx, const char *user_id, const char *email)
{
    const char *token = NULL;
    kb_err err = kb_auth_issue_token(ctx, user_id, email, &token);
    if (err)
        return err;
    ctx->user_id = user_id;
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    kb_jw_key(&w, "access_token");
    kb_jw_str(&w, token);
    /* No refresh endpoint exists (API.md §5.3): an empty opaque string. */
    kb_jw_key(&w, "refresh_token");
    kb_jw_str(&w, "");
    kb_jw_key(&w, "user_id");
    kb_jw_str(&w, user_id);
    kb_resp_json_end(ctx, req, &w, false);
    return KB_OK;
}

static size_t
utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

kb_err
h_auth_signup(const kb_req *req, kb_ctx *ctx)
{
    const char *email = NULL, *password = NULL;
    kb_err err = read_credentials(req, ctx, &email, &password);
    if (err)
        return err;
    if (utf8_chars(password) < KB_PASSWORD_MIN)
        return kb_fail(ctx, KB_E_WEAK_PASSWORD, "Password should be at least %d characters.",
                       KB_PASSWORD_MIN);
    if (email[0] == '\0')
        return kb_fail(ctx, KB_E_SIGNUP_FAILED, "An email address is required.");

    /* Cheap check first, so a taken email costs no argon2 run. The insert
     * below stays the arbiter when two signups race. */
    const char *p1[] = {email};
    PGresult *r = NULL;
    err = kb_db_exec(&ctx->w->db, ctx->arena, &user_exists, p1, &r);
    if (err)
        return kb_fail(ctx, err, "unable to look up a user");
    if (PQntuples(r) > 0)
        return kb_fail(ctx, KB_E_USER_EXISTS, "A user with this email address already exists.");

    char hash[KB_PWHASH_LEN];
    err = kb_auth_password_hash(ctx, password, hash);
    if (err)
        return err;
    const char *p2[] = {email, hash};
    err = kb_db_exec(&ctx->w->db, ctx->arena, &user_insert, p2, &r);
    if (err)
        return kb_fail(ctx, err, "unable to create a user");
    if (PQntuples(r) != 1)
        return kb_fail(ctx, KB_E_USER_EXISTS, "A user with this email address already exists.");
    return respond(req, ctx, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
}

kb_err
h_auth_login(const kb_req *req, kb_ctx *ctx)
{
    const char *email = NULL, *password = NULL;
    kb_err err = read_credentials(req, ctx, &email, &password);
    if (err)
        return err;
    const char *p[] = {email};
    PGresult *r = NULL;
    err = kb_db_exec(&ctx->w->db, ctx->arena, &user_find, p, &r);
    if (err)
        return kb_fail(ctx, err, "unable to look up a user");
    bool found = PQntuples(r) == 1, ok = false;
    err = kb_auth_password_verify(ctx, found ? PQgetvalue(r, 0, 2) : NULL, password, &ok);
    if (err)
        return err;
    if (!ok)
        return kb_fail(ctx, KB_E_INVALID_CREDENTIALS, "Invalid email or password.");
    return respond(req, ctx, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
}
