/* meter-sql.c - print a statement of the workers' meter for pgbench.
 *
 * Usage: meter-sql fast|slow. bench.sh links this against libkb and runs the
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
    if (argc != 2 || (strcmp(argv[1], "fast") != 0 && strcmp(argv[1], "slow") != 0)) {
        fputs("usage: meter-sql fast|slow\n", stderr);
        return 2;
    }
    fputs(strcmp(argv[1], "fast") == 0 ? kb_meter_stmt.sql : kb_meter_slow_stmt.sql, stdout);
    fputc('\n', stdout);
    return 0;
}
