/* kbctl.h - the admin CLI: one file per subcommand. */
#ifndef KB_KBCTL_H
#define KB_KBCTL_H

/* Exit codes (documented in README). */
#define KBCTL_OK 0
#define KBCTL_FAIL 1    /* the operation failed */
#define KBCTL_USAGE 64  /* bad command line (EX_USAGE) */
#define KBCTL_CONFIG 78 /* invalid configuration (EX_CONFIG) */

/* Load the configuration into kb_cfg, or name every problem on stderr ("kbctl cmd: invalid
 * configuration:") and return KBCTL_CONFIG. main() does it for the commands its table marks;
 * a command that needs it only sometimes (demo-data without --out) calls it itself. */
int kbctl_load_config(const char *cmd);

int kbctl_migrate(int argc, char **argv);
int kbctl_check_config(int argc, char **argv);
int kbctl_report_usage(int argc, char **argv); /* app/kbctl_stripe.c */
int kbctl_stripe_sync(int argc, char **argv);
int kbctl_stripe_setup(int argc, char **argv);
int kbctl_user(int argc, char **argv);
int kbctl_status(int argc, char **argv);
int kbctl_import(int argc, char **argv);
int kbctl_demo_data(int argc, char **argv);
int kbctl_partitions(int argc, char **argv);

#endif
