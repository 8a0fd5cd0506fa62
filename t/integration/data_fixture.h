/* data_fixture.h - the market-data fixture shared by test_data_books.c and test_data_meta.c:
 * t/data/fixture.jsonl imported once per program (idempotent) and a project account with
 * unlimited credits. Expected values are computed by hand from the fixture (see
 * t/data/README.md). Functions here are static: one .c per test program includes it.
 */
#ifndef DATA_FIXTURE_H
#define DATA_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "kbt.h"

#define A "KXFIX-26JAN15-A"
#define B "KXFIX-26JAN15-B"

static kbt_account acct;

static void
setup(void)
{
    kb_buf out = KB_BUF_INIT;
    int rc = kbt_data_kbctl("import --quiet --checkpoint-every 2 t/data/fixture.jsonl", &out);
    if (rc != 0) {
        fprintf(stderr, "fixture import failed (%d): %s\n", rc, kb_buf_cstr(&out));
        abort();
    }
    kb_buf_release(&out);
    PGconn *c = kbt_db();
    kbt_data_account(c, &acct);
    PQfinish(c);
}

static char *
print(const cJSON *j)
{
    return cJSON_PrintUnformatted(j);
}

#endif
