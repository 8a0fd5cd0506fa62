/* users.c - user rows and their billing account; see kb_users.h. */
#include "kb_users.h"

#include <string.h>

#include "kb_str.h"
#include "kb_banned.h"

static const kb_stmt email_taken_stmt = {"users_email_taken",
                                         "SELECT 1 FROM users WHERE email = lower($1)", 1, true};
static const kb_stmt create_stmt = {
    "users_create",
    "INSERT INTO users (email, password_hash) VALUES (lower($1), $2) "
    "ON CONFLICT (email) DO NOTHING RETURNING id, email",
    2, false};
static const kb_stmt find_stmt = {
    "users_find", "SELECT id, email, password_hash FROM users WHERE email = lower($1)", 1, true};
static const kb_stmt ensure_stmt = {"users_ensure_account",
                                    "SELECT 1 FROM kb_account_ensure($1::uuid, $2)", 2, false};
/* The rolled cycle (kb_roll_cycle, 0003) is computed, not stored: the next
 * metered request stores it. */
static const kb_stmt account_stmt = {
    "users_account",
    "SELECT r.tier, coalesce(r.credits_override, t.credits_per_cycle), r.credits_used,"
    "       r.payg_enabled, kb_us(r.billing_cycle_start)"
    "  FROM kb_account_ensure($1::uuid, $2) a"
    " CROSS JOIN LATERAL kb_roll_cycle(a, kb_now()) r JOIN tiers t ON t.name = r.tier",
    2, false};

/* clang-format off */
const char *const kb_users_show_names[KB_USERS_SHOW_FIELDS] = {
    "id", "email", "created_at", "tier", "credits_total", "credits_used",
    "billing_cycle_start", "billing_cycle_end", "payg_enabled", "overage_cap",
    "credits_override", "rpm_override", "stripe_customer_id", "live_keys"};
/* clang-format on */
static const kb_stmt show_stmt = {
    "users_show",
    "SELECT u.id, u.email, u.created_at, coalesce(b.tier, 'free'), b.credits_total,"
    " b.credits_used, b.billing_cycle_start, b.billing_cycle_end, b.payg_enabled,"
    " b.overage_cap, b.credits_override, b.rpm_override, b.stripe_customer_id,"
    " (SELECT count(*) FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL)"
    " FROM users u LEFT JOIN billing_accounts b ON b.user_id = u.id WHERE u.email = lower($1)",
    1, true};
static const kb_stmt admin_ensure_stmt = {
    "users_admin_ensure",
    "INSERT INTO billing_accounts (user_id) SELECT id FROM users WHERE email = lower($1)"
    " ON CONFLICT DO NOTHING",
    1, false};
/* Apply the changes given (NULL = keep; 'default'/'none' = clear an
 * override), recompute the cycle allowance, and audit before/after. */
#define OVERRIDE(n, word, col)                                                                     \
    "CASE WHEN $" #n "::text IS NULL THEN b." col " WHEN $" #n "::text = '" word "' THEN NULL"     \
    " ELSE $" #n "::integer END"
/* SQL spliced with OVERRIDE() reads as SQL only in this layout. */
/* clang-format off */
static const kb_stmt admin_set_stmt = {
    "users_admin_set",
    "WITH before AS (SELECT b.* FROM billing_accounts b JOIN users u ON u.id = b.user_id"
    "                WHERE u.email = lower($1) FOR UPDATE OF b),"
    " upd AS (UPDATE billing_accounts b SET"
    "   tier = coalesce($2::text, b.tier),"
    "   credits_override = " OVERRIDE(3, "default", "credits_override") ","
    "   rpm_override = " OVERRIDE(4, "default", "rpm_override") ","
    "   overage_cap = " OVERRIDE(5, "none", "overage_cap") ","
    "   credits_total = coalesce(" OVERRIDE(3, "default", "credits_override") ","
    "     (SELECT t.credits_per_cycle FROM tiers t WHERE t.name = coalesce($2::text, b.tier))),"
    "   credits_used = greatest(0, b.credits_used - coalesce($6::integer, 0)),"
    "   updated_at = now()"
    "  FROM before WHERE b.user_id = before.user_id RETURNING b.*),"
    " audit AS (INSERT INTO admin_audit (actor, user_id, action, details)"
    "   SELECT $7::text, upd.user_id, $8::text, jsonb_build_object('before', to_jsonb(before),"
    "          'after', to_jsonb(upd), 'reason', $9::text) FROM upd, before RETURNING id)"
    " SELECT upd.tier, upd.credits_total, upd.credits_used, upd.rpm_override, audit.id"
    " FROM upd, audit",
    9, false};
/* clang-format on */

/* Column c of row 0 (arena-owned), NULL when SQL NULL. */
static const char *
col(kb_arena *a, const PGresult *r, int c)
{
    return PQgetisnull(r, 0, c) ? NULL : kb_arena_strdup(a, PQgetvalue(r, 0, c));
}

static int64_t
i64_col(const PGresult *r, int c)
{
    int64_t v = 0;
    const char *why = NULL;
    if (!kb_parse_i64(kb_str_c(PQgetvalue(r, 0, c)), INT64_MIN, INT64_MAX, &v, &why))
        v = 0;
    return v;
}

kb_err
kb_users_email_taken(kb_db *db, kb_arena *a, const char *email, bool *taken)
{
    const char *p[] = {email};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(db, a, &email_taken_stmt, p, &r);
    if (err)
        return err;
    *taken = PQntuples(r) > 0;
    return KB_OK;
}

kb_err
kb_users_create(kb_db *db, kb_arena *a, const char *email, const char *pwhash, kb_user *out)
{
    const char *p[] = {email, pwhash};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(db, a, &create_stmt, p, &r);
    if (err)
        return err;
    if (PQntuples(r) != 1)
        return KB_E_USER_EXISTS;
    out->id = col(a, r, 0);
    out->email = col(a, r, 1);
    return KB_OK;
}

kb_err
kb_users_find(kb_db *db, kb_arena *a, const char *email, kb_user *out, const char **pwhash)
{
    const char *p[] = {email};
    PGresult *r = NULL;
    out->id = out->email = NULL;
    *pwhash = NULL;
    kb_err err = kb_db_exec(db, a, &find_stmt, p, &r);
    if (err || PQntuples(r) != 1)
        return err;
    out->id = col(a, r, 0);
    out->email = col(a, r, 1);
    *pwhash = col(a, r, 2);
    return KB_OK;
}

kb_err
kb_users_ensure_account(kb_db *db, kb_arena *a, const kb_user *u)
{
    const char *p[] = {u->id, u->email};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(db, a, &ensure_stmt, p, &r);
    if (err)
        return err;
    return PQntuples(r) == 1 ? KB_OK : KB_E_INVALID_API_KEY;
}

kb_err
kb_users_account(kb_db *db, kb_arena *a, const kb_user *u, kb_account *out)
{
    const char *p[] = {u->id, u->email};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(db, a, &account_stmt, p, &r);
    if (err)
        return err;
    if (PQntuples(r) != 1)
        return KB_E_INVALID_API_KEY;
    out->tier = col(a, r, 0);
    out->credits_total = i64_col(r, 1);
    out->credits_used = i64_col(r, 2);
    out->payg_enabled = PQgetvalue(r, 0, 3)[0] == 't';
    out->cycle_start_us = i64_col(r, 4);
    return KB_OK;
}

kb_err
kb_users_show(kb_db *db, kb_arena *a, const char *email, const char *vals[KB_USERS_SHOW_FIELDS])
{
    const char *p[] = {email};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(db, a, &show_stmt, p, &r);
    if (err)
        return err;
    if (PQntuples(r) == 0)
        return KB_E_NOT_FOUND;
    for (int i = 0; i < KB_USERS_SHOW_FIELDS; i++)
        vals[i] = col(a, r, i);
    return KB_OK;
}

kb_err
kb_users_apply(kb_db *db, kb_arena *a, const kb_users_change *c, kb_users_changed *out)
{
    const char *p[] = {c->email, c->tier,  c->credits, c->rpm,   c->overage_cap,
                       c->grant, c->actor, c->action,  c->reason};
    PGresult *r = NULL;
    kb_err err = kb_db_command(db, "BEGIN");
    if (!err)
        err = kb_db_exec(db, a, &admin_ensure_stmt, p, NULL);
    if (!err)
        err = kb_db_exec(db, a, &admin_set_stmt, p, &r);
    if (!err && PQntuples(r) == 0)
        err = KB_E_NOT_FOUND;
    if (err) {
        (void)kb_db_command(db, "ROLLBACK");
        return err;
    }
    if ((err = kb_db_command(db, "COMMIT")))
        return err;
    out->tier = col(a, r, 0);
    out->credits_total = col(a, r, 1);
    out->credits_used = col(a, r, 2);
    out->rpm_override = col(a, r, 3);
    out->audit_id = col(a, r, 4);
    return KB_OK;
}
