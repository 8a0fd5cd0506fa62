/* check.c - collector-check: the collector chaos run's verdict (t/collector/chaos.sh).
 *
 *   collector-check --faults F --truth T --spool DIR [--spool DIR...] [--pairs N] [--seed S]
 *
 * With the stack's KB_DATABASE_URL, KB_BASE_URL and KB_CA_CERT in the environment:
 *   gaps      every fault that lost messages (the stand-in's fault log) lies inside a closed
 *             orderbook gap of every market it touched that had data before it;
 *   books     at N random (market, instant) pairs outside the market's orderbook gaps, the
 *             book POST /orderbook answers equals the stand-in's true book (truth log);
 *   dups      no book change and no trade is stored twice (per key, no more rows than the
 *             truth log has events);
 *   spool     every message that reached a spool is in the database.
 * One line per check; exit 0 when all hold.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <libpq-fe.h>

#include "check.h"
#include "kb_banned.h"

static int failures;

void
cc_verdict(const char *name, bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s %-6s ", ok ? "ok  " : "FAIL", name);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    failures += !ok;
}

PGconn *
cc_db(void)
{
    const char *url = getenv("KB_DATABASE_URL");
    PGconn *c = PQconnectdb(url ? url : "");
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "collector-check: cannot connect to KB_DATABASE_URL: %s",
                PQerrorMessage(c));
        exit(2);
    }
    return c;
}

PGresult *
cc_sql(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_COPY_IN) {
        fprintf(stderr, "collector-check: %s: %s", sql, PQerrorMessage(c));
        exit(2);
    }
    return r;
}

int
main(int argc, char **argv)
{
    cc_args a = {.pairs = 1000, .seed = 1};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--faults") == 0)
            a.faults = argv[i + 1];
        else if (strcmp(argv[i], "--truth") == 0)
            a.truth = argv[i + 1];
        else if (strcmp(argv[i], "--spool") == 0 && a.nspool < 8)
            a.spool[a.nspool++] = argv[i + 1];
        else if (strcmp(argv[i], "--pairs") == 0)
            a.pairs = atoi_safe(argv[i + 1]);
        else if (strcmp(argv[i], "--seed") == 0)
            a.seed = (uint64_t)atoi_safe(argv[i + 1]);
        else {
            fprintf(stderr, "collector-check: unknown option '%s'\n", argv[i]);
            return 64;
        }
    }
    if (a.faults == NULL || a.truth == NULL || a.nspool == 0) {
        fprintf(stderr, "usage: collector-check --faults F --truth T --spool DIR... "
                        "[--pairs N] [--seed S]\n");
        return 64;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    PGconn *db = cc_db();
    cc_truth *t = cc_truth_load(a.truth);
    cc_check_gaps(db, &a, t);
    cc_check_books(db, &a, t);
    cc_check_dups(db, t);
    cc_check_spool(db, &a); /* after dups: it reads dups' temporary truth_d */
    cc_truth_free(t);
    PQfinish(db);
    curl_global_cleanup();
    printf("collector-check: %s\n", failures ? "FAILED" : "every check holds");
    return failures ? 1 : 0;
}
