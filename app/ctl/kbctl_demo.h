/* kbctl_demo.h - shared by kbctl demo-data's legacy markets (kbctl_demo.c) and its
 * fixed-point markets (kbctl_demo_fp.c). */
#ifndef KB_KBCTL_DEMO_H
#define KB_KBCTL_DEMO_H

#include <stdint.h>
#include <stdio.h>

typedef struct demo_opts {
    long markets, days, snap_minutes, deltas_per_hour, trades_per_hour, fp_markets;
    uint64_t seed;
    int64_t end_us; /* a whole minute */
} demo_opts;

/* xorshift64*: the same seed gives the same stream on every machine. */
typedef struct kb_demo_rng {
    uint64_t s;
} kb_demo_rng;

uint64_t kb_demo_next(kb_demo_rng *r);

/* Uniform in [0, n). */
long kb_demo_below(kb_demo_rng *r, long n);

/* The --fp-markets markets (metadata, lifecycle, book, trades) in Kalshi's 2026 form. */
void kb_demo_fp(FILE *f, const demo_opts *o);

#endif
