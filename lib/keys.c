/* keys.c - a user's API keys; see kb_keys.h.
 *
 * The key object's columns are KEY_COLS in this order, written by write_key;
 * instants are kb_us() text.
 */
#include "kb_keys.h"

#include "kb_book.h"
#include "kb_str.h"
#include "kb_banned.h"

#define KEY_COLS "id, name, key_prefix, key_type, kb_us(created_at), kb_us(last_used_at)"

/* The users row of a token user comes first (kb_user_ensure, 0021): no row is
 * inserted when the user cannot exist. */
static const kb_stmt key_insert = {
    "keys_insert",
    "INSERT INTO api_keys (user_id, key_hash, key_prefix, name, key_type) "
    "SELECT $1::uuid, $3, $4, $5, $6 WHERE kb_user_ensure($1::uuid, $2) RETURNING " KEY_COLS,
    6, false};
static const kb_stmt key_list = {"keys_list",
                                 "SELECT " KEY_COLS
                                 " FROM api_keys WHERE user_id = $1::uuid AND revoked_at IS NULL "
                                 "ORDER BY created_at DESC, id DESC",
                                 1, true};
/* credits_used in the cycle metering would see now (kb_roll_cycle, 0003): the
 * key's counted rows plus the counter its account carries (0015_meter_fast_path). */
static const kb_stmt key_usage = {
    "keys_usage",
    "SELECT k.id, k.name, k.key_prefix, k.key_type, kb_us(k.created_at), "
    "       kb_us(k.last_used_at), "
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

/* A non-negative bigint column (0 when unreadable: the SQL casts make it a number). */
static int64_t
count_col(const PGresult *r, int row, int c)
{
    int64_t v = 0;
    const char *why = NULL;
    if (!kb_parse_i64(kb_str_c(PQgetvalue(r, row, c)), 0, INT64_MAX, &v, &why))
        v = 0;
    return v;
}

static void
ts_col(kb_jw *w, const char *key, const PGresult *r, int row, int c)
{
    kb_jw_key(w, key);
    kb_book_jw_ts(w, PQgetvalue(r, row, c), PQgetisnull(r, row, c));
}

/* One key object from a KEY_COLS row; raw (create only) goes after id and
 * replaces last_used_at; usage adds credits_used (column 6). */
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
    ts_col(w, "created_at", r, row, 4);
    if (raw == NULL)
        ts_col(w, "last_used_at", r, row, 5);
    if (usage) {
        kb_jw_key(w, "credits_used");
        kb_jw_int(w, count_col(r, row, 6));
    }
    kb_jw_obj_end(w);
}

/* "days": one object per (UTC day, key, route) with requests in the range. */
static void
write_days(kb_jw *w, const PGresult *r)
{
    kb_jw_key(w, "days");
    kb_jw_arr(w);
    for (int i = 0; i < PQntuples(r); i++) {
        kb_jw_obj(w);
        kb_jw_key(w, "date");
        kb_jw_str(w, PQgetvalue(r, i, 0));
        kb_jw_key(w, "key_id");
        kb_jw_str(w, PQgetvalue(r, i, 1));
        kb_jw_key(w, "endpoint");
        kb_jw_str(w, PQgetvalue(r, i, 2));
        kb_jw_key(w, "credits_used");
        kb_jw_int(w, count_col(r, i, 3));
        kb_jw_key(w, "requests");
        kb_jw_int(w, count_col(r, i, 4));
        kb_jw_obj_end(w);
    }
    kb_jw_arr_end(w);
}

kb_err
kb_keys_create(kb_db *db, kb_arena *a, const kb_user *u, const char *name, const char *key_type,
               kb_jw *w, const char **prefix)
{
    char key[KB_API_KEY_LEN + 1], hash[65], pfx[KB_API_KEY_PREFIX_LEN + 1];
    kb_auth_key_new(key, hash, pfx);
    const char *p[] = {u->id, u->email, hash, pfx, name, key_type};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(db, a, &key_insert, p, &r);
    if (err)
        return err;
    if (PQntuples(r) != 1)
        return KB_E_INVALID_API_KEY;
    *prefix = kb_arena_strdup(a, pfx);
    kb_jw_key(w, "data");
    write_key(w, r, 0, key, false);
    return KB_OK;
}

kb_err
kb_keys_list(kb_db *db, kb_arena *a, const char *user_id, bool usage, const char *start,
             const char *end, kb_jw *w)
{
    const char *p[] = {user_id, start, end};
    PGresult *r = NULL, *days = NULL;
    kb_err err = kb_db_exec(db, a, usage ? &key_usage : &key_list, p, &r);
    if (!err && start != NULL)
        err = kb_db_exec(db, a, &key_usage_days, p, &days);
    if (err)
        return err;
    kb_jw_key(w, "data");
    kb_jw_arr(w);
    for (int i = 0; i < PQntuples(r); i++)
        write_key(w, r, i, NULL, usage);
    kb_jw_arr_end(w);
    if (days != NULL)
        write_days(w, days);
    return KB_OK;
}

/* Run s on the live key key_id of the user: its one row, or KB_E_KEY_NOT_FOUND. */
static kb_err
own_key(kb_db *db, kb_arena *a, const kb_stmt *s, const char *const *p, PGresult **r)
{
    kb_err err = kb_db_exec(db, a, s, p, r);
    if (err)
        return err;
    return PQntuples(*r) == 1 ? KB_OK : KB_E_KEY_NOT_FOUND;
}

kb_err
kb_keys_update(kb_db *db, kb_arena *a, const char *user_id, const char *key_id, const char *name,
               const char *key_type, kb_jw *w)
{
    const char *p[] = {user_id, key_id, name, key_type};
    PGresult *r = NULL;
    kb_err err = own_key(db, a, &key_update, p, &r);
    if (err)
        return err;
    kb_jw_key(w, "data");
    write_key(w, r, 0, NULL, false);
    return KB_OK;
}

kb_err
kb_keys_revoke(kb_db *db, kb_arena *a, const char *user_id, const char *key_id)
{
    const char *p[] = {user_id, key_id};
    PGresult *r = NULL;
    return own_key(db, a, &key_revoke, p, &r);
}
