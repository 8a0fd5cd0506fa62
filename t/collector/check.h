/* check.h - collector-check's parts: the truth log, and one check per file. */
#ifndef CC_CHECK_H
#define CC_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <libpq-fe.h>

typedef struct cc_args {
    const char *faults, *truth, *spool[8];
    int nspool;
    int pairs;
    uint64_t seed;
} cc_args;

/* One change of a true book: ms, side (1 yes, 0 no), price (1/10,000 $), signed qty (1/100). */
typedef struct cc_event {
    int64_t ts;
    int32_t price;
    int64_t d;
    bool yes;
} cc_event;

typedef struct cc_market {
    char ticker[48];
    int64_t created, closed; /* ms; closed 0 = open */
    cc_event *ev;            /* initial levels first (at created), then deltas, by time */
    long nev, capev;
    long ninit; /* how many of ev are initial levels */
} cc_market;

typedef struct cc_truth {
    cc_market *m;
    int nm;
} cc_truth;

cc_truth *cc_truth_load(const char *path);
void cc_truth_free(cc_truth *t);
cc_market *cc_truth_find(cc_truth *t, const char *ticker);
/* The true book of m at T (events with ts <= T): qty per price index (price / 10), both sides. */
void cc_truth_book(const cc_market *m, int64_t t_ms, int64_t yes[1000], int64_t no[1000]);

void cc_check_gaps(PGconn *db, const cc_args *a, cc_truth *t);
void cc_check_books(PGconn *db, const cc_args *a, cc_truth *t);
void cc_check_dups(PGconn *db, cc_truth *t);
void cc_check_spool(PGconn *db, const cc_args *a);

/* Print one verdict line and count a failure. */
void
cc_verdict(const char *name, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
PGconn *cc_db(void);
/* PQexecParams that exits on an error. Caller PQclear()s. */
PGresult *cc_sql(PGconn *c, const char *sql, int n, const char *const *params);

static inline int
atoi_safe(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v >= 0 && v < 1000000000 ? (int)v : 0;
}

#endif
