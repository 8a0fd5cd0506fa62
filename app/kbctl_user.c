/* kbctl_user.c - `kbctl user`: find an account, change its tier or custom
 * limits, grant credits. Every change is one transaction with its
 * admin_audit row (who, what, before/after). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kbctl.h"
#include "kb_config.h"
#include "kb_db.h"
#include "kb_str.h"
#include "kb_banned.h"

static const kb_stmt show_stmt = {
    "user_show",
    "SELECT u.id, u.email, u.created_at, coalesce(b.tier, 'free'), b.credits_total,"
    " b.credits_used, b.billing_cycle_start, b.billing_cycle_end, b.payg_enabled,"
    " b.overage_cap, b.credits_override, b.rpm_override, b.stripe_customer_id,"
    " (SELECT count(*) FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL)"
    " FROM users u LEFT JOIN billing_accounts b ON b.user_id = u.id WHERE u.email = lower($1)",
    1, true};

static const kb_stmt ensure_stmt = {
    "user_ensure",
    "INSERT INTO billing_accounts (user_id) SELECT id FROM users WHERE email = lower($1)"
    " ON CONFLICT DO NOTHING",
    1, false};

/* Apply the changes given (NULL = keep; 'default'/'none' = clear an
 * override), recompute the cycle allowance, and audit before/after. */
#define OVERRIDE(n, word, col)                                                  \
    "CASE WHEN $" #n "::text IS NULL THEN b." col " WHEN $" #n "::text = '" word "' THEN NULL" \
    " ELSE $" #n "::integer END"
static const kb_stmt set_stmt = {
    "user_set",
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

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: kbctl user show EMAIL\n"
            "       kbctl user set EMAIL [--tier free|payg|project] [--credits N|default]\n"
            "                            [--rpm N|default] [--overage-cap N|none] [--reason TEXT]\n"
            "       kbctl user grant EMAIL CREDITS [--reason TEXT]\n\n"
            "show   prints the account (tier, credits, cycle, PAYG, overrides, keys)\n"
            "set    changes the tier or the per-account overrides of credits per cycle and\n"
            "       requests per minute (custom deals), or the PAYG overage cap\n"
            "grant  gives CREDITS back in the current cycle (credits_used decreases)\n"
            "Every change writes an admin_audit row. Exit codes: 0 ok, 1 failure or\n"
            "unknown user, 64 usage, 78 configuration.\n");
}

static int
connect_db(kb_db *db)
{
    kb_buf problems = KB_BUF_INIT;
    if (kb_config_load(&kb_cfg, &problems)) {
        fprintf(stderr, "kbctl user: invalid configuration:\n%s", kb_buf_cstr(&problems));
        kb_buf_release(&problems);
        return KBCTL_CONFIG;
    }
    kb_buf_release(&problems);
    kb_db_init(db, kb_cfg.database_url, "kbctl-user", kb_cfg.db_connect_timeout_s, 0);
    if (kb_db_connect(db)) {
        fprintf(stderr, "kbctl user: unable to connect to the database\n");
        return KBCTL_FAIL;
    }
    return KBCTL_OK;
}

static const char *
val(const PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? "-" : PQgetvalue(r, 0, col);
}

static int
show(kb_db *db, kb_arena *a, const char *email)
{
    const char *p[] = {email};
    PGresult *r;
    if (kb_db_exec(db, a, &show_stmt, p, &r))
        return KBCTL_FAIL;
    if (PQntuples(r) == 0) {
        fprintf(stderr, "kbctl user: no user '%s'\n", email);
        return KBCTL_FAIL;
    }
    static const char *const names[] = {
        "id", "email", "created_at", "tier", "credits_total", "credits_used",
        "billing_cycle_start", "billing_cycle_end", "payg_enabled", "overage_cap",
        "credits_override", "rpm_override", "stripe_customer_id", "live_keys"};
    for (int i = 0; i < 14; i++)
        printf("%-20s %s\n", names[i], val(r, i));
    return KBCTL_OK;
}

/* "N" within [min, max], or one of the allowed words. */
static bool
valid_amount(const char *s, const char *word, long min, long max)
{
    int64_t v;
    const char *err;
    return (word != NULL && strcmp(s, word) == 0) || kb_parse_i64(kb_str_c(s), min, max, &v, &err);
}

int
kbctl_user(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 3 && !(argc == 2 && strcmp(argv[1], "--help") == 0) ? stderr : stdout);
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? KBCTL_OK : KBCTL_USAGE;
    }
    const char *cmd = argv[1], *email = argv[2];
    const char *tier = NULL, *credits = NULL, *rpm = NULL, *cap = NULL, *grant = NULL;
    const char *reason = "";
    int i = 3;
    if (strcmp(cmd, "grant") == 0) {
        if (argc < 4 || !valid_amount(argv[3], NULL, 1, 100000000)) {
            usage(stderr);
            return KBCTL_USAGE;
        }
        grant = argv[3];
        i = 4;
    } else if (strcmp(cmd, "show") != 0 && strcmp(cmd, "set") != 0) {
        usage(stderr);
        return KBCTL_USAGE;
    }
    for (; i < argc; i += 2) {
        const char *opt = argv[i], *arg = i + 1 < argc ? argv[i + 1] : NULL;
        if (arg == NULL) {
            fprintf(stderr, "kbctl user: '%s' needs a value\n", opt);
            return KBCTL_USAGE;
        }
        if (strcmp(opt, "--tier") == 0 && strcmp(cmd, "set") == 0 &&
            (strcmp(arg, "free") == 0 || strcmp(arg, "payg") == 0 ||
             strcmp(arg, "project") == 0)) {
            tier = arg;
        } else if (strcmp(opt, "--credits") == 0 && strcmp(cmd, "set") == 0 &&
                   valid_amount(arg, "default", 0, 1000000000)) {
            credits = arg;
        } else if (strcmp(opt, "--rpm") == 0 && strcmp(cmd, "set") == 0 &&
                   valid_amount(arg, "default", 1, 100000000)) {
            rpm = arg;
        } else if (strcmp(opt, "--overage-cap") == 0 && strcmp(cmd, "set") == 0 &&
                   valid_amount(arg, "none", 0, 1000000000)) {
            cap = arg;
        } else if (strcmp(opt, "--reason") == 0) {
            reason = arg;
        } else {
            fprintf(stderr, "kbctl user: bad option or value: %s %s\n", opt, arg);
            return KBCTL_USAGE;
        }
    }

    kb_db db;
    int rc = connect_db(&db);
    if (rc != KBCTL_OK)
        return rc;
    kb_arena a;
    kb_arena_init(&a, 0);
    if (strcmp(cmd, "show") == 0) {
        rc = show(&db, &a, email);
    } else {
        const char *actor = getenv("SUDO_USER");
        if (actor == NULL)
            actor = getenv("USER");
        if (actor == NULL)
            actor = "unknown";
        const char *p[] = {email, tier, credits, rpm, cap, grant, actor,
                           strcmp(cmd, "grant") == 0 ? "grant_credits" : "set_account", reason};
        PGresult *r;
        rc = KBCTL_FAIL;
        if (kb_db_command(&db, "BEGIN") == KB_OK &&
            kb_db_exec(&db, &a, &ensure_stmt, p, NULL) == KB_OK &&
            kb_db_exec(&db, &a, &set_stmt, p, &r) == KB_OK &&
            kb_db_command(&db, "COMMIT") == KB_OK) {
            if (PQntuples(r) == 0) {
                fprintf(stderr, "kbctl user: no user '%s'\n", email);
            } else {
                printf("tier=%s credits_total=%s credits_used=%s rpm_override=%s audit_id=%s\n",
                       val(r, 0), val(r, 1), val(r, 2), val(r, 3), val(r, 4));
                rc = KBCTL_OK;
            }
        } else {
            (void)kb_db_command(&db, "ROLLBACK");
            fprintf(stderr, "kbctl user: change refused (see the error above)\n");
        }
    }
    kb_arena_release(&a);
    kb_db_release(&db);
    return rc;
}
