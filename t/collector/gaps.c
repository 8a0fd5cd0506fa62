/* gaps.c - every fault that lost messages is a closed gap of every market it touched.
 *
 * The stand-in's fault log names, per fault, the markets whose messages it lost. A
 * subscription's fault takes effect at its next message: the "effect" line that follows
 * (same connection and sid) carries that message's exchange time. A connection fault or
 * an outside one (a collector killed) takes effect when it is logged. The instant must
 * lie in a closed gap (channel orderbook, or trade for a trade subscription's fault) of
 * every market that had data before it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "kb_banned.h"

typedef struct fline {
    cJSON *j;
    int64_t ts, conn, sid;
    const char *kind;
} fline;

static int64_t
num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static fline *
load(const char *path, int *n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "collector-check: cannot read %s\n", path);
        exit(2);
    }
    fline *v = NULL;
    int cap = 0;
    *n = 0;
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        if (j == NULL)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            v = realloc(v, sizeof(*v) * (size_t)cap);
            if (v == NULL)
                abort();
        }
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "kind");
        v[(*n)++] = (fline){j, num(j, "ts_ms"), num(j, "conn"), num(j, "sid"),
                            cJSON_IsString(k) ? k->valuestring : ""};
    }
    free(line);
    fclose(f);
    return v;
}

static bool
sub_fault(const char *kind)
{
    static const char *const k[] = {"skip", "dup_run", "reorder", "badjson", "error25", "overflow"};
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
        if (strcmp(kind, k[i]) == 0)
            return true;
    }
    return false;
}

void
cc_check_gaps(PGconn *db, const cc_args *a, cc_truth *t)
{
    (void)t;
    int n;
    fline *v = load(a->faults, &n);
    long faults = 0, checked = 0, missing = 0, no_effect = 0;
    char first_miss[2048] = "";
    for (int i = 0; i < n; i++) {
        const cJSON *gap = cJSON_GetObjectItemCaseSensitive(v[i].j, "gap");
        if (!cJSON_IsTrue(gap))
            continue;
        faults++;
        int64_t at = v[i].ts;
        if (sub_fault(v[i].kind)) {
            /* The message it hit. */
            at = 0;
            for (int k = i + 1; k < n && at == 0; k++) {
                if (strcmp(v[k].kind, "effect") == 0 && v[k].conn == v[i].conn &&
                    v[k].sid == v[i].sid)
                    at = v[k].ts;
            }
            if (at == 0) {
                /* No message came on that sid again (resubscribed first): nothing lost. */
                no_effect++;
                continue;
            }
        }
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(v[i].j, "detail");
        const char *ch = cJSON_IsString(d) && strcmp(d->valuestring, "trade") == 0 ? "trade"
                                                                                   : "orderbook";
        char ats[32];
        snprintf(ats, sizeof(ats), "%" PRId64, at);
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(v[i].j, "markets")) {
            if (!cJSON_IsString(m))
                continue;
            const char *p[] = {m->valuestring, ats, ch};
            /* Data before the fault, and no closed gap of the channel around it. */
            PGresult *r = cc_sql(
                db,
                "SELECT EXISTS (SELECT 1 FROM snapshots WHERE market_ticker = $1"
                "   AND captured_at < 'epoch'::timestamptz + $2::bigint * interval '1 ms'),"
                " EXISTS (SELECT 1 FROM gaps WHERE market_ticker = $1 AND channel = $3"
                "   AND end_at IS NOT NULL"
                "   AND 'epoch'::timestamptz + $2::bigint * interval '1 ms' BETWEEN start_at AND end_at)",
                3, p);
            bool had = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
            bool covered = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
            PQclear(r);
            if (!had)
                continue;
            checked++;
            if (!covered) {
                if (missing++ == 0) {
                    /* What the database has around it: the gaps of the channel within a
                     * minute, and the market's last data before the instant. */
                    PGresult *g = cc_sql(
                        db,
                        "SELECT coalesce(string_agg(format('%s..%s %s %s', kb_us(start_at),"
                        "   coalesce(kb_us(end_at)::text, 'open'), reason, source), '; '"
                        "   ORDER BY start_at), 'none'),"
                        " (SELECT kb_us(max(ts)) FROM deltas WHERE market_ticker = $1"
                        "   AND ts <= 'epoch'::timestamptz + $2::bigint * interval '1 ms')"
                        " FROM gaps WHERE market_ticker = $1 AND channel = $3 AND start_at"
                        "   BETWEEN 'epoch'::timestamptz + ($2::bigint - 60000) * interval '1 ms'"
                        "   AND 'epoch'::timestamptz + ($2::bigint + 60000) * interval '1 ms'",
                        3, p);
                    snprintf(first_miss, sizeof(first_miss),
                             "%s at %" PRId64 " (%s, conn %" PRId64 " sid %" PRId64
                             ", %s); its gaps near it (us): %s; last delta before it: %s us",
                             m->valuestring, at, v[i].kind, v[i].conn, v[i].sid, ch,
                             PQgetvalue(g, 0, 0), PQgetvalue(g, 0, 1));
                    PQclear(g);
                }
            }
        }
    }
    cc_verdict("gaps", missing == 0 && checked > 0,
               "%ld faults that lost messages (%ld hit no message), %ld (market, fault) pairs "
               "with data before: %ld not inside a closed gap%s%s",
               faults, no_effect, checked, missing, missing ? "; first: " : "", first_miss);
    for (int i = 0; i < n; i++)
        cJSON_Delete(v[i].j);
    free(v);
}
