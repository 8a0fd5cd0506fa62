/* truth.c - the stand-in's truth log (t/kalshi/feed.c documents it) and books from it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kb_banned.h"

static void
push(cc_market *m, cc_event e)
{
    if (m->nev == m->capev) {
        m->capev = m->capev ? m->capev * 2 : 256;
        m->ev = realloc(m->ev, sizeof(*m->ev) * (size_t)m->capev);
        if (m->ev == NULL)
            abort();
    }
    m->ev[m->nev++] = e;
}

cc_truth *
cc_truth_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "collector-check: cannot read %s\n", path);
        exit(2);
    }
    cc_truth *t = calloc(1, sizeof(*t));
    int cap = 0;
    char line[256];
    long lines = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lines++;
        int idx;
        long long ts, q;
        char side, ticker[48];
        int price;
        if (line[0] == 'M' && sscanf(line, "M %d %47s %lld", &idx, ticker, &ts) == 3) {
            if (idx != t->nm) {
                fprintf(stderr, "collector-check: truth line %ld: market %d out of order\n", lines,
                        idx);
                exit(2);
            }
            if (t->nm == cap) {
                cap = cap ? cap * 2 : 64;
                t->m = realloc(t->m, sizeof(*t->m) * (size_t)cap);
                if (t->m == NULL)
                    abort();
            }
            cc_market *m = &t->m[t->nm++];
            memset(m, 0, sizeof(*m));
            snprintf(m->ticker, sizeof(m->ticker), "%s", ticker);
            m->created = ts;
        } else if ((line[0] == 'L' || line[0] == 'D') &&
                   sscanf(line + 2, "%d %lld %c %d %lld", &idx, &ts, &side, &price, &q) == 5 &&
                   idx >= 0 && idx < t->nm) {
            push(&t->m[idx], (cc_event){ts, price, q, side == 'y'});
            t->m[idx].ninit += line[0] == 'L';
        } else if (line[0] == 'C' && sscanf(line, "C %d %lld", &idx, &ts) == 2 && idx >= 0 &&
                   idx < t->nm) {
            t->m[idx].closed = ts;
        } else {
            fprintf(stderr, "collector-check: truth line %ld unreadable: %s", lines, line);
            exit(2);
        }
    }
    fclose(f);
    return t;
}

void
cc_truth_free(cc_truth *t)
{
    for (int i = 0; i < t->nm; i++)
        free(t->m[i].ev);
    free(t->m);
    free(t);
}

cc_market *
cc_truth_find(cc_truth *t, const char *ticker)
{
    for (int i = 0; i < t->nm; i++) {
        if (strcmp(t->m[i].ticker, ticker) == 0)
            return &t->m[i];
    }
    return NULL;
}

void
cc_truth_book(const cc_market *m, int64_t t_ms, int64_t yes[1000], int64_t no[1000])
{
    memset(yes, 0, sizeof(int64_t) * 1000);
    memset(no, 0, sizeof(int64_t) * 1000);
    for (long i = 0; i < m->nev && m->ev[i].ts <= t_ms; i++) {
        const cc_event *e = &m->ev[i];
        (e->yes ? yes : no)[e->price / 10] += e->d;
    }
}
