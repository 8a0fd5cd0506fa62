/* kbctl.c - admin CLI entry point: `kbctl <command> [options]`. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "kbctl.h"
#include "kb_config.h"
#include "kb_log.h"
#include "kb_banned.h"

/* What main() does before a command runs. */
enum {
    NEEDS_CONFIG = 1, /* load the configuration into kb_cfg (exit 78 naming every problem) */
    NEEDS_JWT = 2,    /* signs or verifies tokens, or judges the server's configuration */
};

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    unsigned needs;
    const char *help;
} command;

/* No command but check-config touches a token, so only it asks for KB_JWT_SECRET (it reports
 * what the server would refuse, loading the configuration itself); the server's own loader
 * always does. */
static const command commands[] = {
    {"migrate", kbctl_migrate, NEEDS_CONFIG, "apply db/migrations/*.sql in order (idempotent)"},
    {"check-config", kbctl_check_config, NEEDS_JWT,
     "validate the environment and name every problem"},
    {"report-usage", kbctl_report_usage, NEEDS_CONFIG,
     "send due PAYG overage to Stripe (one reporter run)"},
    {"stripe-sync", kbctl_stripe_sync, NEEDS_CONFIG,
     "repair billing state from Stripe's subscriptions"},
    {"stripe-setup", kbctl_stripe_setup, NEEDS_CONFIG,
     "create product, prices and meter in Stripe"},
    {"user", kbctl_user, NEEDS_CONFIG,
     "show an account, set its tier or custom limits, grant credits"},
    {"status", kbctl_status, NEEDS_CONFIG,
     "pool processes, database, usage outbox and last webhook"},
    {"import", kbctl_import, NEEDS_CONFIG, "load Kalshi capture files (JSON lines) idempotently"},
    {"demo-data", kbctl_demo_data, 0, /* only to load the set: it calls kbctl_load_config */
     "generate and load a deterministic demo data set"},
    {"partitions", kbctl_partitions, NEEDS_CONFIG, "create market-data partitions ahead of time"},
};

/* --help or -h anywhere: the command prints its help, which needs no configuration. */
static bool
asks_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

int
kbctl_load_config(const char *cmd)
{
    kb_buf problems = KB_BUF_INIT;
    int rc = KBCTL_OK;
    if (kb_config_load(&kb_cfg, &problems)) {
        fprintf(stderr, "kbctl %s: invalid configuration:\n%s", cmd, kb_buf_cstr(&problems));
        rc = KBCTL_CONFIG;
    }
    kb_buf_release(&problems);
    return rc;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: kbctl <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nRun 'kbctl <command> --help' for a command's options.\n"
               "Exit codes: 0 ok, 1 failure, 64 usage, 78 configuration.\n");
}

int
main(int argc, char **argv)
{
    kb_log_init("kbctl", KB_LOG_INFO);
    if (sodium_init() < 0) {
        fprintf(stderr, "kbctl: unable to initialise libsodium\n");
        return KBCTL_FAIL;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? KBCTL_USAGE : KBCTL_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const command *c = &commands[i];
        if (strcmp(argv[1], c->name) != 0)
            continue;
        kb_config_require_jwt((c->needs & NEEDS_JWT) != 0);
        if ((c->needs & NEEDS_CONFIG) && !asks_help(argc - 1, argv + 1)) {
            int rc = kbctl_load_config(c->name);
            if (rc != KBCTL_OK)
                return rc;
        }
        return c->fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "kbctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return KBCTL_USAGE;
}
