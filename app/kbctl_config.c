/* kbctl_config.c - `kbctl check-config`: validate the environment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbctl.h"
#include "kb_auth.h"
#include "kb_config.h"
#include "kb_kalshi.h"
#include "kb_banned.h"

int
kbctl_check_config(int argc, char **argv)
{
    bool list = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: kbctl check-config [--list]\n\n"
                   "Validates every KB_* variable and names each missing or malformed one;\n"
                   "with KALSHI_API_KEY_ID set, also kalshibook-collector's (the key file\n"
                   "loads as an RSA key, the Kalshi URLs, the CA file, the backoff bounds).\n"
                   "--list prints every variable with its default and meaning.\n"
                   "Secret values are never printed.\n");
            return KBCTL_OK;
        } else if (strcmp(argv[i], "--list") == 0) {
            list = true;
        } else {
            fprintf(stderr, "kbctl check-config: unknown option '%s'\n", argv[i]);
            return KBCTL_USAGE;
        }
    }
    if (list) {
        for (size_t i = 0; i < kb_config_nvars; i++) {
            const kb_config_var *v = &kb_config_vars[i];
            printf("%-28s %-9s default=%-28s %s\n", v->name,
                   v->required ? "required" : "optional", v->def ? v->def : "-", v->help);
        }
        return KBCTL_OK;
    }
    kb_config cfg;
    kb_buf problems = KB_BUF_INIT;
    int bad = kb_config_load(&cfg, &problems);
    bad += kb_auth_check_config(&cfg, &problems);
    /* kalshibook-collector's settings, when this host runs it (KALSHI_API_KEY_ID set). */
    bad += kb_kalshi_check_config(&cfg, &problems);
    if (bad) {
        fprintf(stderr, "configuration has %d problem%s:\n%s", bad, bad == 1 ? "" : "s",
                kb_buf_cstr(&problems));
        kb_buf_release(&problems);
        return KBCTL_CONFIG;
    }
    kb_buf_release(&problems);
    for (size_t i = 0; i < kb_config_nvars; i++) {
        const kb_config_var *v = &kb_config_vars[i];
        const char *set = getenv(v->name);
        printf("%-28s %s\n", v->name,
               set && *set ? (v->kind == KB_CFG_SECRET ? "set (secret, not shown)" : set)
                           : "(default)");
    }
    printf("configuration ok\n");
    return KBCTL_OK;
}
