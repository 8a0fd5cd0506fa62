/* meter-sql.c - print the workers' meter statement (kb_meter_stmt) for pgbench.
 *
 * bench.sh links this against libkb and runs the statement's exact text, with
 * its $1..$3 replaced by pgbench variables, so the meter-sql row measures what
 * the workers prepare, not a copy of it.
 */
#include <stdio.h>

#include "kb_meter.h"

int
main(void)
{
    fputs(kb_meter_stmt.sql, stdout);
    fputc('\n', stdout);
    return 0;
}
