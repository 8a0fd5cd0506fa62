/* meter-sql.c - print a statement of the workers' meter for pgbench.
 *
 * Usage: meter-sql fast|chain|fast-row|slow|inflight|answered (chain: the fast path
 * in one round trip with its commit, kb_meter_chain_stmt; fast-row: the fast path
 * writing the charge's row in meter_inflight, as while other hosts hold leases;
 * the last two: that row after the slow path and its answered mark, migration 0024). bench.sh links this against libkb and runs the
 * exact text the workers prepare (kb_meter_stmt, kb_meter_slow_stmt), its
 * $1..$n replaced by pgbench variables, so the meter-sql row measures what the
 * workers run, not a copy of it.
 */
#include <stdio.h>
#include <string.h>

#include "kb_meter.h"

int
main(int argc, char **argv)
{
    static const struct {
        const char *name;
        const kb_stmt *st;
    } stmts[] = {{"fast", &kb_meter_stmt},
                 {"chain", &kb_meter_chain_stmt},
                 {"fast-row", &kb_meter_row_stmt},
                 {"slow", &kb_meter_slow_stmt},
                 {"inflight", &kb_meter_inflight_stmt},
                 {"answered", &kb_meter_answered_stmt}};
    const kb_stmt *st = NULL;
    for (size_t i = 0; argc == 2 && i < sizeof(stmts) / sizeof(stmts[0]); i++)
        if (strcmp(argv[1], stmts[i].name) == 0)
            st = stmts[i].st;
    if (st == NULL) {
        fputs("usage: meter-sql fast|chain|fast-row|slow|inflight|answered\n", stderr);
        return 2;
    }
    fputs(st->sql, stdout);
    fputc('\n', stdout);
    return 0;
}
