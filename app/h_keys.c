/* h_keys.c - the /keys routes (API.md §5.5, §7.8, §7.11, §7.16).
 *
 * Every statement is scoped by the token's user id, so a user can never see,
 * change or revoke another user's key: someone else's key id is simply
 * "not found". Only the SHA-256 and the display prefix of a key are stored;
 * the raw key appears once, in the POST /keys response, and reveal always
 * answers 404 key_not_found.
 */
#include "app.h"

#include <string.h>

#include "kb_auth.h"
#include "kb_time.h"
#include "kb_banned.h"

#define KEY_NAME_MAX 100
/* Instants as microseconds since the epoch, formatted by kb_time_format. */
#define US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"
#define KEY_COLS "id, name, key_prefix, key_type, " US("created_at") ", " US("last_used_at")

/*
 * A token from an outside issuer (Supabase, via KB_JWT_JWKS_FILE or its
 * HS256 secret) names a user this database may not have yet: the first key
 * creates that user row, with a password hash that never verifies.
 */
static const kb_stmt key_insert = {
    "keys_insert",
    "WITH u AS (INSERT INTO users (id, email, password_hash) "
    "  VALUES ($1::uuid, lower(coalesce(nullif($2, ''), $1 || '@external.invalid')), "
    "          '!external') ON CONFLICT DO NOTHING) "
    "INSERT INTO api_keys (user_id, key_hash, key_prefix, name, key_type) "
    "VALUES ($1::uuid, $3, $4, $5, $6) RETURNING " KEY_COLS,
    6, false};
static const kb_stmt key_list = {
    "keys_list",
    "SELECT " KEY_COLS " FROM api_keys WHERE user_id = $1::uuid AND revoked_at IS NULL "
    "ORDER BY created_at DESC, id DESC",
    1, true};
/* credits_used in the cycle metering would see now (kb_roll_cycle, 0003). */
static const kb_stmt key_usage = {
    "keys_usage",
    "SELECT k.id, k.name, k.key_prefix, k.key_type, " US("k.created_at") ", "
    US("k.last_used_at") ", "
    "  coalesce((SELECT sum(u.credits_used) FROM api_key_usage u "
    "            WHERE u.api_key_id = k.id AND u.cycle_start = c.cs), 0)::bigint "
    "FROM api_keys k "
    "LEFT JOIN LATERAL (SELECT (kb_roll_cycle(ba, kb_now())).billing_cycle_start AS cs "
    "                   FROM billing_accounts ba WHERE ba.user_id = k.user_id) c ON true "
    "WHERE k.user_id = $1::uuid AND k.revoked_at IS NULL "
    "ORDER BY k.created_at DESC, k.id DESC",
    1, true};
static const kb_stmt key_update = {
    "keys_update",
    "UPDATE api_keys SET name = coalesce($3, name), key_type = coalesce($4, key_type) "
    "WHERE id = $2::uuid AND user_id = $1::uuid AND revoked_at IS NULL RETURNING " KEY_COLS,
    4, false};
static const kb_stmt key_revoke = {
    "keys_revoke",
    "UPDATE api_keys SET revoked_at = now() "
    "WHERE id = $2::uuid AND user_id = $1::uuid AND revoked_at IS NULL RETURNING id",
    2, false};

static void
write_time(kb_jw *w, const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) {
        kb_jw_null(w);
        return;
    }
    int64_t us = 0;
    const char *why = NULL;
    char out[40];
    if (!kb_parse_i64(kb_str_c(PQgetvalue(r, row, col)), INT64_MIN, INT64_MAX, &us, &why)) {
        kb_jw_null(w);
        return;
    }
    kb_time_format(us, out, sizeof(out));
    kb_jw_str(w, out);
}

/* One key object from a KEY_COLS row; raw (POST only) goes after id. */
static void
write_key(kb_jw *w, const PGresult *r, int row, const char *raw, bool usage)
{
    kb_jw_obj(w);
    kb_jw_key(w, "id");
    kb_jw_str(w, PQgetvalue(r, row, 0));
    if (raw != NULL) {
        kb_jw_key(w, "key");
        kb_jw_str(w, raw);
    }
    kb_jw_key(w, "name");
    kb_jw_str(w, PQgetvalue(r, row, 1));
    kb_jw_key(w, "key_prefix");
    kb_jw_str(w, PQgetvalue(r, row, 2));
    kb_jw_key(w, "key_type");
    kb_jw_str(w, PQgetvalue(r, row, 3));
    kb_jw_key(w, "created_at");
    write_time(w, r, row, 4);
    if (raw == NULL) {
        kb_jw_key(w, "last_used_at");
        write_time(w, r, row, 5);
    }
    if (usage) {
        int64_t used = 0;
        const char *why = NULL;
        kb_parse_i64(kb_str_c(PQgetvalue(r, row, 6)), 0, INT64_MAX, &used, &why);
        kb_jw_key(w, "credits_used");
        kb_jw_int(w, used);
    }
    kb_jw_obj_end(w);
}

static bool
valid_key_type(const char *t)
{
    return strcmp(t, "dev") == 0 || strcmp(t, "prod") == 0;
}

kb_err
h_keys_create(const kb_req *req, kb_ctx *ctx)
{
    cJSON *body = NULL;
    kb_user u;
    kb_err err = kb_json_body(req, ctx, &body);
    if (!err)
        err = kb_auth_user(req, ctx, &u);
    if (err)
        return err;
    const char *name = "Default", *type = "dev";
    kb_json_get_str(ctx, body, "name", 0, KEY_NAME_MAX, &name, NULL);
    if (kb_json_get_str(ctx, body, "key_type", 0, 0, &type, NULL) == KB_OK &&
        !valid_key_type(type))
        kb_json_problem(ctx, "body.key_type", "Input should be 'dev' or 'prod'");
    if (ctx->err)
        return ctx->err;

    char key[KB_API_KEY_LEN + 1], hash[65], prefix[KB_API_KEY_PREFIX_LEN + 1];
    kb_auth_key_new(key, hash, prefix);
    const char *p[] = {u.id, u.email, hash, prefix, name, type};
    PGresult *r = NULL;
    err = kb_db_exec(&ctx->w->db, ctx->arena, &key_insert, p, &r);
    /* An outside user whose email is already taken by another account: no row to own keys. */
    if (err == KB_E_INTERNAL && kb_db_sqlstate_is(&ctx->w->db, "23503"))
        return kb_fail(ctx, KB_E_INVALID_API_KEY, "Unknown user for this access token.");
    if (err)
        return kb_fail(ctx, err, "unable to create an API key");
    if (PQntuples(r) != 1)
        return kb_fail(ctx, KB_E_INTERNAL, "API key insert returned no row");
    ctx->key_prefix = kb_arena_strdup(ctx->arena, prefix);
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    kb_jw_key(&w, "data");
    write_key(&w, r, 0, key, false);
    kb_resp_json_end(ctx, req, &w, false);
    return KB_OK;
}

static kb_err
list(const kb_req *req, kb_ctx *ctx, bool usage)
{
    kb_user u;
    kb_err err = kb_auth_user(req, ctx, &u);
    if (err)
        return err;
    const char *p[] = {u.id};
    PGresult *r = NULL;
    err = kb_db_exec(&ctx->w->db, ctx->arena, usage ? &key_usage : &key_list, p, &r);
    if (err)
        return kb_fail(ctx, err, "unable to list API keys");
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    kb_jw_key(&w, "data");
    kb_jw_arr(&w);
    for (int i = 0; i < PQntuples(r); i++)
        write_key(&w, r, i, NULL, usage);
    kb_jw_arr_end(&w);
    kb_resp_json_end(ctx, req, &w, false);
    return KB_OK;
}

kb_err
h_keys_list(const kb_req *req, kb_ctx *ctx)
{
    return list(req, ctx, false);
}

kb_err
h_keys_usage(const kb_req *req, kb_ctx *ctx)
{
    return list(req, ctx, true);
}

static kb_err
not_found(kb_ctx *ctx)
{
    return kb_fail(ctx, KB_E_KEY_NOT_FOUND, "API key not found.");
}

/*
 * Run s on the key req->params[0] of the user u: p[0] and p[1] are filled with the user and
 * key ids (the caller sets the rest). The one row it returns in *out; key_not_found when
 * the id is no UUID or no live key of this user matched (someone else's key looks absent).
 */
static kb_err
own_key_exec(const kb_req *req, kb_ctx *ctx, const kb_user *u, const kb_stmt *s,
             const char **p, const char *verb, PGresult **out)
{
    if (!kb_auth_is_uuid(req->params[0]))
        return not_found(ctx);
    p[0] = u->id;
    p[1] = kb_str_dup(ctx->arena, req->params[0]);
    kb_err err = kb_db_exec(&ctx->w->db, ctx->arena, s, p, out);
    if (err)
        return kb_fail(ctx, err, "unable to %s an API key", verb);
    if (PQntuples(*out) != 1)
        return not_found(ctx);
    return KB_OK;
}

kb_err
h_keys_update(const kb_req *req, kb_ctx *ctx)
{
    cJSON *body = NULL;
    kb_user u;
    kb_err err = kb_json_body(req, ctx, &body);
    if (!err)
        err = kb_auth_user(req, ctx, &u);
    if (err)
        return err;
    const char *name = NULL, *type = NULL;
    kb_json_get_str(ctx, body, "name", KB_JSON_NULLABLE, KEY_NAME_MAX, &name, NULL);
    kb_json_get_str(ctx, body, "key_type", KB_JSON_NULLABLE, 0, &type, NULL);
    if (ctx->err)
        return ctx->err;
    /* Order of API.md §5.5: no_fields, invalid_key_type, key_not_found. */
    if (name == NULL && type == NULL)
        return kb_fail(ctx, KB_E_NO_FIELDS, "Provide at least one of name or key_type.");
    if (type != NULL && !valid_key_type(type))
        return kb_fail(ctx, KB_E_INVALID_KEY_TYPE, "key_type must be 'dev' or 'prod'.");
    const char *p[] = {NULL, NULL, name, type};
    PGresult *r = NULL;
    if ((err = own_key_exec(req, ctx, &u, &key_update, p, "update", &r)))
        return err;
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    kb_jw_key(&w, "data");
    write_key(&w, r, 0, NULL, false);
    kb_resp_json_end(ctx, req, &w, false);
    return KB_OK;
}

kb_err
h_keys_delete(const kb_req *req, kb_ctx *ctx)
{
    kb_user u;
    kb_err err = kb_auth_user(req, ctx, &u);
    if (err)
        return err;
    const char *p[] = {NULL, NULL};
    PGresult *r = NULL;
    if ((err = own_key_exec(req, ctx, &u, &key_revoke, p, "revoke", &r)))
        return err;
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    kb_jw_key(&w, "message");
    kb_jw_str(&w, "API key revoked.");
    kb_resp_json_end(ctx, req, &w, false);
    return KB_OK;
}

kb_err
h_keys_reveal(const kb_req *req, kb_ctx *ctx)
{
    kb_user u;
    kb_err err = kb_auth_user(req, ctx, &u);
    if (err)
        return err;
    /* Raw keys are never stored (API.md §7.8): nothing can be revealed. */
    return kb_fail(ctx, KB_E_KEY_NOT_FOUND,
                   "API keys are shown only once, at creation; create a new key instead.");
}
