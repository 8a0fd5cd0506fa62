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
#include "kb_users.h"
#include "kb_banned.h"

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
    kb_db_init(db, kb_cfg.database_url, "kbctl-user", kb_cfg.db_connect_timeout_s, 0);
    if (kb_db_connect(db)) {
        fprintf(stderr, "kbctl user: unable to connect to the database\n");
        return KBCTL_FAIL;
    }
    return KBCTL_OK;
}

static const char *
val(const char *v)
{
    return v != NULL ? v : "-";
}

static int
show(kb_db *db, kb_arena *a, const char *email)
{
    const char *vals[KB_USERS_SHOW_FIELDS];
    kb_err err = kb_users_show(db, a, email, vals);
    if (err == KB_E_NOT_FOUND)
        fprintf(stderr, "kbctl user: no user '%s'\n", email);
    if (err)
        return KBCTL_FAIL;
    for (int i = 0; i < KB_USERS_SHOW_FIELDS; i++)
        printf("%-20s %s\n", kb_users_show_names[i], val(vals[i]));
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
            (strcmp(arg, "free") == 0 || strcmp(arg, "payg") == 0 || strcmp(arg, "project") == 0)) {
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
        kb_users_change c = {email,   tier,
                             credits, rpm,
                             cap,     grant,
                             actor,   strcmp(cmd, "grant") == 0 ? "grant_credits" : "set_account",
                             reason};
        kb_users_changed out;
        kb_err err = kb_users_apply(&db, &a, &c, &out);
        rc = err ? KBCTL_FAIL : KBCTL_OK;
        if (err == KB_E_NOT_FOUND)
            fprintf(stderr, "kbctl user: no user '%s'\n", email);
        else if (err)
            fprintf(stderr, "kbctl user: change refused (see the error above)\n");
        else
            printf("tier=%s credits_total=%s credits_used=%s rpm_override=%s audit_id=%s\n",
                   val(out.tier), val(out.credits_total), val(out.credits_used),
                   val(out.rpm_override), val(out.audit_id));
    }
    kb_arena_release(&a);
    kb_db_release(&db);
    return rc;
}
