/* kb_usage.h - the usage reporter: PAYG overage outbox -> Stripe meter events (money rule 5).
 *
 * One run: (1) kb_usage_claim() freezes unbatched outbox rows older than
 * KB_USAGE_MARGIN_S into per-customer batches with a deterministic
 * identifier (rows a failing request may still refund are younger than the
 * margin, so they are never sent); (2) every pending batch is sent as one
 * POST /v1/billing/meter_events with that identifier; (3) its rows are marked
 * reported only after Stripe accepted it, or answered that the identifier
 * already exists (a previous run sent it and died before marking). A crash
 * anywhere, an outage, or two reporters at once therefore end with Stripe
 * counting each batch exactly once. Batches Stripe refuses as too old are
 * flagged in the outbox and logged as errors, never dropped silently.
 */
#ifndef KB_USAGE_H
#define KB_USAGE_H

#include <signal.h>

#include "kb_buf.h"
#include "kb_db.h"
#include "kb_worker.h"

typedef struct kb_usage_stats {
    long batched_rows;  /* rows frozen into batches by this run */
    long sent;          /* batches Stripe accepted */
    long duplicates;    /* batches Stripe already had (counted as delivered) */
    long failed;        /* batches left for the next run */
    long flagged;       /* batches flagged as undeliverable by this run */
    long flagged_total; /* unreported flagged rows in the outbox */
    long no_customer;   /* rows waiting for a Stripe customer */
} kb_usage_stats;

/* One reporter run on w (its connection and Stripe handle). KB_OK when every batch was delivered or flagged. */
kb_err kb_usage_report(kb_worker *w, kb_usage_stats *st);

/*
 * GET /metrics's database gauges in Prometheus text, appended to out:
 * kalshibook_database_up (0 when the query failed, and nothing more), then
 * the outbox backlog, the age of its oldest row and its flagged rows.
 */
void kb_usage_metrics(kb_db *db, kb_arena *a, kb_buf *out);

/*
 * The reporter process: run every KB_USAGE_FLUSH_S until *stop becomes
 * non-zero (a SIGTERM handler sets it). Returns the exit status.
 */
int kb_usage_reporter_main(volatile sig_atomic_t *stop);

#endif
