/* fixed_capture.h - helpers of the fixed-point suites (test_data_fixed.c, test_data_subpenny.c):
 * a project account with unlimited credits, capture files the suite writes itself, kbctl
 * import of them, instants as §1.1 text. Functions here are static: one .c per test program
 * includes it.
 */
#ifndef FIXED_CAPTURE_H
#define FIXED_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kbt.h"
#include "kb_time.h"

static kbt_account account;

/* The suite's account (project tier, credits enough for every request). */
static void
setup(void)
{
    PGconn *c = kbt_db();
    kbt_data_account(c, &account);
    PQfinish(c);
}

/* A fresh capture file for this process; the path is static per slot. */
static FILE *
capture(int slot, const char **path)
{
    static char paths[4][96];
    snprintf(paths[slot], sizeof(paths[slot]), "/tmp/kbt-fixed-%d-%d.jsonl", (int)getpid(), slot);
    FILE *f = fopen(paths[slot], "w");
    ck_assert(f != NULL);
    *path = paths[slot];
    return f;
}

/* kbctl import --quiet ARGS PATH must succeed; the file is removed after it. */
static void
import_ok(const char *args, const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "import --quiet %s %s", args, path);
    kb_buf out = KB_BUF_INIT;
    int rc = kbt_data_kbctl(cmd, &out);
    ck_assert_msg(rc == 0, "kbctl %s: %d %s", cmd, rc, kb_buf_cstr(&out));
    kb_buf_release(&out);
    (void)unlink(path);
}

/* Milliseconds as §1.1 text (a rotating static buffer: four calls per expression at most). */
static char *
iso(int64_t ms)
{
    static char b[4][KB_TIME_FMT_MAX];
    static int k;
    k = (k + 1) % 4;
    kb_time_format(ms * 1000, b[k], sizeof(b[k]));
    return b[k];
}

#endif
