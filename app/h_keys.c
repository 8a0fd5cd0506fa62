/* h_keys.c - the /keys routes (API.md §5.5, §7.8, §7.11, §7.16; GET /keys/usage by
 * day: README "Usage by day").
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
/* credits_used in the cycle metering would see now (kb_roll_cycle, 0003): the
 * key's counted rows plus the counter its account carries (0015_meter_fast_path). */
static const kb_stmt key_usage = {
    "keys_usage",
    "SELECT k.id, k.name, k.key_prefix, k.key_type, " US("k.created_at") ", "
    US("k.last_used_at") ", "
    "  (coalesce((SELECT sum(u.credits_used) FROM api_key_usage_day u "
    "             WHERE u.api_key_id = k.id AND u.cycle_start = c.cs), 0)"
    "   + CASE WHEN c.usage_key = k.id AND c.usage_cycle = c.cs THEN c.usage_credits"
    "          ELSE 0 END)::bigint "
    "FROM api_keys k "
    "LEFT JOIN LATERAL (SELECT (kb_roll_cycle(ba, kb_now())).billing_cycle_start AS cs, "
    "                          ba.usage_key, ba.usage_cycle, ba.usage_credits "
    "                   FROM billing_accounts ba WHERE ba.user_id = k.user_id) c ON true "
    "WHERE k.user_id = $1::uuid AND k.revoked_at IS NULL "
    "ORDER BY k.created_at DESC, k.id DESC",
    1, true};
/* Usage per UTC day, key (live or revoked) and route of the user's keys in
 * [$2, $3]: counted rows plus the counter the account carries. */
static const kb_stmt key_usage_days = {
    "keys_usage_days",
    "WITH d AS ("
    " SELECT u.day, u.api_key_id, u.endpoint, u.credits_used, u.requests"
    "   FROM api_key_usage_day u JOIN api_keys k ON k.id = u.api_key_id"
    "  WHERE k.user_id = $1::uuid AND u.day BETWEEN $2::date AND $3::date"
    " UNION ALL"
    " SELECT ba.usage_day, ba.usage_key, ba.usage_endpoint, ba.usage_credits, ba.usage_requests"
    "   FROM billing_accounts ba JOIN api_keys k ON k.id = ba.usage_key"
    "  WHERE ba.user_id = $1::uuid AND k.user_id = $1::uuid"
    "    AND ba.usage_day BETWEEN $2::date AND $3::date) "
    "SELECT to_char(day, 'YYYY-MM-DD'), api_key_id::text, endpoint,"
    "       sum(credits_used)::bigint, sum(requests)::bigint"
    "  FROM d GROUP BY day, api_key_id, endpoint HAVING sum(requests) > 0"
    " ORDER BY day, api_key_id, endpoint COLLATE \"C\"",
    3, true};
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

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* A calendar date "YYYY-MM-DD" (UTC day) into days since the epoch. */
static bool
parse_date(kb_str s, int64_t *days)
{
    if (s.p == NULL || s.len != 10 || s.p[4] != '-' || s.p[7] != '-')
        return false;
    int v[3] = {0, 0, 0};
    const int at[3] = {0, 5, 8}, len[3] = {4, 2, 2};
    for (int f = 0; f < 3; f++) {
        for (int i = 0; i < len[f]; i++) {
            char c = s.p[at[f] + i];
            if (c < '0' || c > '9')
                return false;
            v[f] = v[f] * 10 + (c - '0');
        }
    }
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (v[0] < 1 || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > mdays[v[1] - 1])
        return false;
    bool leap = (v[0] % 4 == 0 && v[0] % 100 != 0) || v[0] % 400 == 0;
    if (v[1] == 2 && v[2] == 29 && !leap)
        return false;
    *days = days_from_civil(v[0], v[1], v[2]);
    return true;
}

#define USAGE_MAX_SPAN_DAYS 366

/*
 * GET /keys/usage?start_date&end_date (helpers/usage_contract.md): both or
 * neither. *range is false without them; with them, start/end are the dates
 * as given. 422 for a malformed date or only one of them, 400 for start after
 * end or a span over USAGE_MAX_SPAN_DAYS days.
 */
static kb_err
usage_range(const kb_req *req, kb_ctx *ctx, bool *range, const char **start, const char **end)
{
    kb_str v[2];
    const char *names[2] = {"start_date", "end_date"};
    bool has[2];
    int64_t days[2] = {0, 0};
    *range = false;
    for (int i = 0; i < 2; i++) {
        has[i] = kb_query_get(ctx->arena, req->query, names[i], &v[i]);
        if (has[i] && !parse_date(v[i], &days[i]))
            return kb_fail(ctx, KB_E_VALIDATION,
                           "query.%s: Input should be a valid date in the format YYYY-MM-DD",
                           names[i]);
    }
    if (!has[0] && !has[1])
        return KB_OK;
    if (!has[0] || !has[1])
        return kb_fail(ctx, KB_E_VALIDATION,
                       "query.%s: Field required (start_date and end_date go together)",
                       names[has[0] ? 1 : 0]);
    if (days[0] > days[1])
        return kb_fail(ctx, KB_E_INVALID_TIMESTAMP,
                       "query.start_date: start_date must not be after end_date");
    if (days[1] - days[0] > USAGE_MAX_SPAN_DAYS)
        return kb_fail(ctx, KB_E_INVALID_TIMESTAMP,
                       "query.end_date: the range may span at most %d days",
                       USAGE_MAX_SPAN_DAYS);
    *range = true;
    *start = kb_str_dup(ctx->arena, v[0]);
    *end = kb_str_dup(ctx->arena, v[1]);
    return KB_OK;
}

/* "days": one object per (UTC day, key, route) with requests in the range. */
static void
write_days(kb_jw *w, const PGresult *r)
{
    kb_jw_key(w, "days");
    kb_jw_arr(w);
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t credits = 0, requests = 0;
        const char *why = NULL;
        kb_parse_i64(kb_str_c(PQgetvalue(r, i, 3)), 0, INT64_MAX, &credits, &why);
        kb_parse_i64(kb_str_c(PQgetvalue(r, i, 4)), 0, INT64_MAX, &requests, &why);
        kb_jw_obj(w);
        kb_jw_key(w, "date");
        kb_jw_str(w, PQgetvalue(r, i, 0));
        kb_jw_key(w, "key_id");
        kb_jw_str(w, PQgetvalue(r, i, 1));
        kb_jw_key(w, "endpoint");
        kb_jw_str(w, PQgetvalue(r, i, 2));
        kb_jw_key(w, "credits_used");
        kb_jw_int(w, credits);
        kb_jw_key(w, "requests");
        kb_jw_int(w, requests);
        kb_jw_obj_end(w);
    }
    kb_jw_arr_end(w);
}

static kb_err
list(const kb_req *req, kb_ctx *ctx, bool usage)
{
    kb_user u;
    kb_err err = kb_auth_user(req, ctx, &u);
    if (err)
        return err;
    bool range = false;
    const char *start = NULL, *end = NULL;
    if (usage && (err = usage_range(req, ctx, &range, &start, &end)))
        return err;
    const char *p[] = {u.id, start, end};
    PGresult *r = NULL, *days = NULL;
    err = kb_db_exec(&ctx->w->db, ctx->arena, usage ? &key_usage : &key_list, p, &r);
    if (!err && range)
        err = kb_db_exec(&ctx->w->db, ctx->arena, &key_usage_days, p, &days);
    if (err)
        return kb_fail(ctx, err, "unable to list API keys");
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    kb_jw_key(&w, "data");
    kb_jw_arr(&w);
    for (int i = 0; i < PQntuples(r); i++)
        write_key(&w, r, i, NULL, usage);
    kb_jw_arr_end(&w);
    if (range)
        write_days(&w, days);
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
