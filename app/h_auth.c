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
#include "kb_users.h"
#include "kb_banned.h"

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

static kb_err
exists(kb_ctx *ctx)
{
    return kb_fail(ctx, KB_E_USER_EXISTS, "A user with this email address already exists.");
}

kb_err
h_auth_signup(const kb_req *req, kb_ctx *ctx)
{
    const char *email = NULL, *password = NULL;
    kb_err err = read_credentials(req, ctx, &email, &password);
    if (err)
        return err;
    if (kb_utf8_chars(password, strlen(password)) < KB_PASSWORD_MIN)
        return kb_fail(ctx, KB_E_WEAK_PASSWORD, "Password should be at least %d characters.",
                       KB_PASSWORD_MIN);
    if (email[0] == '\0')
        return kb_fail(ctx, KB_E_SIGNUP_FAILED, "An email address is required.");

    /* Cheap check first, so a taken email costs no argon2 run. The insert
     * below stays the arbiter when two signups race. */
    bool taken = false;
    err = kb_users_email_taken(&ctx->w->db, ctx->arena, email, &taken);
    if (err)
        return kb_fail(ctx, err, "unable to look up a user");
    if (taken)
        return exists(ctx);

    char hash[KB_PWHASH_LEN];
    err = kb_auth_password_hash(ctx, password, hash);
    if (err)
        return err;
    kb_user u;
    err = kb_users_create(&ctx->w->db, ctx->arena, email, hash, &u);
    if (err == KB_E_USER_EXISTS)
        return exists(ctx);
    if (err)
        return kb_fail(ctx, err, "unable to create a user");
    return respond(req, ctx, u.id, u.email);
}

kb_err
h_auth_login(const kb_req *req, kb_ctx *ctx)
{
    const char *email = NULL, *password = NULL;
    kb_err err = read_credentials(req, ctx, &email, &password);
    if (err)
        return err;
    kb_user u;
    const char *hash = NULL;
    err = kb_users_find(&ctx->w->db, ctx->arena, email, &u, &hash);
    if (err)
        return kb_fail(ctx, err, "unable to look up a user");
    bool ok = false;
    err = kb_auth_password_verify(ctx, hash, password, &ok);
    if (err)
        return err;
    if (!ok)
        return kb_fail(ctx, KB_E_INVALID_CREDENTIALS, "Invalid email or password.");
    return respond(req, ctx, u.id, u.email);
}
