/* h_keys.c - the /keys routes (API.md §5.5, §7.8, §7.11, §7.16; GET /keys/usage by
 * day: README "Usage by day").
 *
 * Validate, authenticate, then lib/keys.c, which scopes every statement by the
 * token's user id (someone else's key id is simply "not found"). The raw key
 * appears once, in the POST /keys response; reveal always answers 404
 * key_not_found.
 */
#include "app.h"

#include <string.h>

#include "kb_auth.h"
#include "kb_keys.h"
#include "kb_time.h"
#include "kb_banned.h"

#define KEY_NAME_MAX 100

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
    if (kb_json_get_str(ctx, body, "key_type", 0, 0, &type, NULL) == KB_OK && !valid_key_type(type))
        kb_json_problem(ctx, "body.key_type", "Input should be 'dev' or 'prod'");
    if (ctx->err)
        return ctx->err;

    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    err = kb_keys_create(&ctx->w->db, ctx->arena, &u, name, type, &w, &ctx->key_prefix);
    /* An outside user whose email is already taken by another account: no row to own keys. */
    if (err == KB_E_INVALID_API_KEY)
        return kb_fail(ctx, err, "Unknown user for this access token.");
    if (err)
        return kb_fail(ctx, err, "unable to create an API key");
    kb_resp_json_end(ctx, req, &w, false);
    return KB_OK;
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
        if (has[i] && !kb_time_parse_date(v[i].p, v[i].len, &days[i]))
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
                       "query.end_date: the range may span at most %d days", USAGE_MAX_SPAN_DAYS);
    *range = true;
    *start = kb_str_dup(ctx->arena, v[0]);
    *end = kb_str_dup(ctx->arena, v[1]);
    return KB_OK;
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
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    err = kb_keys_list(&ctx->w->db, ctx->arena, u.id, usage, range ? start : NULL, end, &w);
    if (err)
        return kb_fail(ctx, err, "unable to list API keys");
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

/* The key id of the path, when it is a UUID; else key_not_found (API.md §7.11). */
static kb_err
key_id(const kb_req *req, kb_ctx *ctx, const char **id)
{
    if (!kb_auth_is_uuid(req->params[0]))
        return kb_fail(ctx, KB_E_KEY_NOT_FOUND, "API key not found.");
    *id = kb_str_dup(ctx->arena, req->params[0]);
    return KB_OK;
}

/* A lib/keys.c failure: someone else's or a revoked key looks absent. */
static kb_err
key_fail(kb_ctx *ctx, kb_err err, const char *verb)
{
    if (err == KB_E_KEY_NOT_FOUND)
        return kb_fail(ctx, err, "API key not found.");
    return kb_fail(ctx, err, "unable to %s an API key", verb);
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
    const char *id = NULL;
    if ((err = key_id(req, ctx, &id)))
        return err;
    kb_jw w;
    kb_resp_json_begin(ctx, &w);
    err = kb_keys_update(&ctx->w->db, ctx->arena, u.id, id, name, type, &w);
    if (err)
        return key_fail(ctx, err, "update");
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
    const char *id = NULL;
    if ((err = key_id(req, ctx, &id)))
        return err;
    if ((err = kb_keys_revoke(&ctx->w->db, ctx->arena, u.id, id)))
        return key_fail(ctx, err, "revoke");
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
