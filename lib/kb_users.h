/* kb_users.h - user rows and their billing account: signup, the login lookup,
 * the rows a token user gets on first use, the account as metering sees it,
 * and the operator's view and changes (kbctl user).
 *
 * Emails are compared in lower case. Strings returned are arena-owned.
 * Database failures are KB_E_UNAVAILABLE or KB_E_INTERNAL (logged).
 */
#ifndef KB_USERS_H
#define KB_USERS_H

#include <stdbool.h>
#include <stdint.h>

#include "kb_auth.h"
#include "kb_db.h"

/* *taken: a user with this email exists. */
kb_err kb_users_email_taken(kb_db *db, kb_arena *a, const char *email, bool *taken);

/* Create a password user; *out is its id and stored email. KB_E_USER_EXISTS
 * when the email is taken (the insert decides when two signups race). */
kb_err kb_users_create(kb_db *db, kb_arena *a, const char *email, const char *pwhash, kb_user *out);

/* The user with this email: *out and *pwhash, or out->id == NULL and
 * *pwhash == NULL when there is none. */
kb_err kb_users_find(kb_db *db, kb_arena *a, const char *email, kb_user *out, const char **pwhash);

/* A token user's users and billing_accounts rows, created when missing
 * (kb_account_ensure, migration 0021). KB_E_INVALID_API_KEY when the user
 * cannot exist here: the token's email belongs to another account. */
kb_err kb_users_ensure_account(kb_db *db, kb_arena *a, const kb_user *u);

/* The billing account of a user, as the next metered request would see it. */
typedef struct kb_account {
    const char *tier;
    int64_t credits_total, credits_used;
    bool payg_enabled;
    int64_t cycle_start_us;
} kb_account;

/* *out for token user u: kb_users_ensure_account (and its failures), then
 * its cycle rolled (kb_roll_cycle) without writing, so an ended cycle shows
 * as the new one. */
kb_err kb_users_account(kb_db *db, kb_arena *a, const kb_user *u, kb_account *out);

/* ---- the operator (kbctl user) ---- */

#define KB_USERS_SHOW_FIELDS 14
/* Names of kb_users_show's values: id, email, created_at, tier, ... live_keys. */
extern const char *const kb_users_show_names[KB_USERS_SHOW_FIELDS];

/* The account of the user with this email: vals[i] for kb_users_show_names[i]
 * (NULL where there is no value). KB_E_NOT_FOUND when there is no such user. */
kb_err
kb_users_show(kb_db *db, kb_arena *a, const char *email, const char *vals[KB_USERS_SHOW_FIELDS]);

/* A change to one account; NULL fields are kept. */
typedef struct kb_users_change {
    const char *email;
    const char *tier;                    /* free | payg | project */
    const char *credits;                 /* credits per cycle, or "default" (the tier's) */
    const char *rpm;                     /* requests per minute, or "default" */
    const char *overage_cap;             /* credits, or "none" */
    const char *grant;                   /* credits given back in this cycle */
    const char *actor, *action, *reason; /* for admin_audit */
} kb_users_change;

/* What the account is after a change. */
typedef struct kb_users_changed {
    const char *tier, *credits_total, *credits_used, *rpm_override, *audit_id;
} kb_users_changed;

/* Apply c in one transaction with its admin_audit row (before/after, reason);
 * the account is created when the user has none. KB_E_NOT_FOUND when there
 * is no such user; nothing changes on any failure. */
kb_err kb_users_apply(kb_db *db, kb_arena *a, const kb_users_change *c, kb_users_changed *out);

#endif
