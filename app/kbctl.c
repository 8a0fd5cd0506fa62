/* kbctl.c - admin CLI entry point: `kbctl <command> [options]`. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "kbctl.h"
#include "kb_config.h"
#include "kb_log.h"
#include "kb_banned.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    bool needs_jwt; /* signs or verifies tokens, or judges the server's configuration */
    const char *help;
} command;

/* No command but check-config touches a token, so only it asks for KB_JWT_SECRET (it reports
 * what the server would refuse); the server's own loader always does. */
static const command commands[] = {
    {"migrate", kbctl_migrate, false, "apply db/migrations/*.sql in order (idempotent)"},
    {"check-config", kbctl_check_config, true,
     "validate the environment and name every problem"},
    {"report-usage", kbctl_report_usage, false,
     "send due PAYG overage to Stripe (one reporter run)"},
    {"stripe-sync", kbctl_stripe_sync, false, "repair billing state from Stripe's subscriptions"},
    {"stripe-setup", kbctl_stripe_setup, false, "create product, prices and meter in Stripe"},
    {"user", kbctl_user, false, "show an account, set its tier or custom limits, grant credits"},
    {"status", kbctl_status, false, "pool processes, database, usage outbox and last webhook"},
    {"import", kbctl_import, false, "load Kalshi capture files (JSON lines) idempotently"},
    {"demo-data", kbctl_demo_data, false, "generate and load a deterministic demo data set"},
    {"partitions", kbctl_partitions, false, "create market-data partitions ahead of time"},
};

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
        if (strcmp(argv[1], commands[i].name) == 0) {
            kb_config_require_jwt(commands[i].needs_jwt);
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "kbctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return KBCTL_USAGE;
}
