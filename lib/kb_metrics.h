/* kb_metrics.h - process-shared counters for GET /metrics (Prometheus text).
 *
 * The master maps one anonymous shared region before it forks, so every
 * worker (and the reporter) adds to the same counters with relaxed atomic
 * increments: no lock on the hot path, nothing lost when a worker dies.
 * Before kb_metrics_init() (kbctl, unit tests) every call is a no-op.
 */
#ifndef KB_METRICS_H
#define KB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "kb_buf.h"

#define KB_METRICS_MAX_ROUTES 48

typedef enum kb_metric {
    KB_M_CREDITS_CHARGED, /* credits deducted by successful requests */
    KB_M_REFUNDS,         /* charges given back after a failed request */
    KB_M_CREDITS_REFUNDED,
    KB_M_RATE_LIMITED,        /* 429 rate_limit_exceeded */
    KB_M_CREDITS_EXHAUSTED,   /* 429 credits_exhausted */
    KB_M_STRIPE_ERRORS,       /* Stripe calls that failed after retries */
    KB_M_WORKER_RESTARTS,     /* workers respawned after dying unexpectedly */
    KB_M_WORKER_RECYCLES,     /* workers replaced after KB_MAX_REQUESTS */
    KB_M_DB_RECONNECTS,       /* lost database connections */
    KB_M_CHARGES_SETTLED,     /* journaled charges refunded after the fact */
    KB_M_DB_SENT_AHEAD,       /* reads answered from a statement sent ahead (kb_db_send_ahead) */
    KB_M_CHARGES_UNCOMMITTED, /* journaled charges found never committed when settled */
    KB_M_CHARGES_ORPHANED,    /* pending charges of workers that died, left to another worker */
    KB_M_DB_AHEAD_SENT,       /* statements sent ahead that went out (answered or thrown away) */
    KB_M_CHARGES_ONE_TRIP,    /* charges sent with their commit, in one round trip */
    KB_M_CHARGES_ONE_TRIP_MISSED, /* of those, aborted: the fast path did not apply */
    KB_M_COUNT_
} kb_metric;

/* Map the shared region (master, before fork). Returns 0, or -1 on failure. */
int kb_metrics_init(void);

/* Add n to a counter. */
void kb_metrics_add(kb_metric m, uint64_t n);

/* Count a response: route index (-1 = no route matched), status, duration. */
void kb_metrics_request(int route, int status, int64_t duration_us);

/* Count a webhook event by type and result (free text, bounded table). */
void kb_metrics_webhook(const char *type, const char *result);

/*
 * Append the exposition text to out. route_names[i] names route index i
 * ("GET /markets/{ticker}"); gauges computed elsewhere (outbox backlog) are
 * appended by the caller.
 */
void kb_metrics_render(kb_buf *out, const char *const *route_names, size_t nroutes);

#endif
