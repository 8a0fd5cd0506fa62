/* metrics.c - shared counters and their Prometheus text; see kb_metrics.h. */
#include "kb_metrics.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "kb_banned.h"

/* Statuses counted by value; anything else lands in "other". */
static const int statuses[] = {200, 204, 400, 401, 403, 404, 405, 409,
                               413, 422, 429, 500, 502, 503, 504};
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]) + 1)

/* Latency buckets, upper bounds in milliseconds. */
static const double bounds_ms[] = {1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000};
#define NBUCKET (sizeof(bounds_ms) / sizeof(bounds_ms[0]) + 1)

#define WEBHOOK_SLOTS 32
#define WEBHOOK_TEXT 48

typedef struct webhook_slot {
    atomic_int state; /* 0 free, 1 being claimed, 2 ready */
    char type[WEBHOOK_TEXT];
    char result[WEBHOOK_TEXT];
    atomic_uint_fast64_t count;
} webhook_slot;

typedef struct shared {
    atomic_uint_fast64_t counters[KB_M_COUNT_];
    /* route index + 1 (0 = unmatched) x status */
    atomic_uint_fast64_t requests[KB_METRICS_MAX_ROUTES + 1][NSTATUS];
    atomic_uint_fast64_t buckets[NBUCKET];
    atomic_uint_fast64_t latency_sum_us;
    atomic_uint_fast64_t latency_count;
    webhook_slot webhooks[WEBHOOK_SLOTS];
} shared;

static shared *sh;

static const char *const counter_names[KB_M_COUNT_][2] = {
    {"kalshibook_credits_charged_total", "Credits deducted by metered requests."},
    {"kalshibook_refunds_total", "Charges refunded after a request failed."},
    {"kalshibook_credits_refunded_total", "Credits given back by refunds."},
    {"kalshibook_rate_limited_total", "Requests refused with rate_limit_exceeded."},
    {"kalshibook_credits_exhausted_total", "Requests refused with credits_exhausted."},
    {"kalshibook_stripe_errors_total", "Stripe API calls that failed."},
    {"kalshibook_worker_restarts_total", "Workers respawned after dying unexpectedly."},
    {"kalshibook_worker_recycles_total", "Workers replaced after KB_MAX_REQUESTS."},
    {"kalshibook_db_reconnects_total", "Database connections lost and rebuilt."},
    {"kalshibook_charges_settled_total",
     "Charges of requests that got no 2xx answer (worker died, connection or refund lost), "
     "refunded later from the charge journal."},
    {"kalshibook_db_sent_ahead_total",
     "Lookups sent in the same round trip as the meter statement and answered from it."},
    {"kalshibook_charges_uncommitted_total",
     "Charges of requests that got no answer whose transaction, settled from the charge "
     "journal, never committed: nothing to refund."},
    {"kalshibook_charges_orphaned_total",
     "Charges pending when their worker died (no answer sent yet), left in the charge "
     "journal for another worker to settle."},
    {"kalshibook_db_ahead_sent_total",
     "Lookups sent with the meter statement or its commit, answered or thrown away (a "
     "refusal)."},
    {"kalshibook_charges_one_trip_total",
     "Charges sent with their commit in one round trip, in a transaction begun ahead whose "
     "id the charge journal held first."},
    {"kalshibook_charges_one_trip_missed_total",
     "One-round-trip charges the fast path did not apply to: aborted, then decided the "
     "usual way."},
};

int
kb_metrics_init(void)
{
    void *p = mmap(NULL, sizeof(shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    memset(p, 0, sizeof(shared)); /* all-zero is a valid state for the atomics */
    sh = p;
    return 0;
}

void
kb_metrics_add(kb_metric m, uint64_t n)
{
    if (sh != NULL && (unsigned)m < KB_M_COUNT_)
        atomic_fetch_add_explicit(&sh->counters[m], n, memory_order_relaxed);
}

static size_t
status_slot(int status)
{
    for (size_t i = 0; i < NSTATUS - 1; i++) {
        if (statuses[i] == status)
            return i;
    }
    return NSTATUS - 1;
}

void
kb_metrics_request(int route, int status, int64_t duration_us)
{
    if (sh == NULL)
        return;
    size_t r = route >= 0 && route < KB_METRICS_MAX_ROUTES ? (size_t)route + 1 : 0;
    atomic_fetch_add_explicit(&sh->requests[r][status_slot(status)], 1, memory_order_relaxed);
    double ms = (double)duration_us / 1000.0;
    size_t b = 0;
    while (b < NBUCKET - 1 && ms > bounds_ms[b])
        b++;
    atomic_fetch_add_explicit(&sh->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->latency_sum_us, (uint64_t)(duration_us > 0 ? duration_us : 0),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&sh->latency_count, 1, memory_order_relaxed);
}

/* Label values come from our code, but keep them safe for the text format. */
static void
copy_label(char *dst, const char *src)
{
    size_t i = 0;
    for (; src[i] != '\0' && i < WEBHOOK_TEXT - 1; i++) {
        char c = src[i];
        dst[i] = (c == '"' || c == '\\' || c == '\n' || (unsigned char)c < 0x20) ? '_' : c;
    }
    dst[i] = '\0';
}

void
kb_metrics_webhook(const char *type, const char *result)
{
    if (sh == NULL)
        return;
    char t[WEBHOOK_TEXT], r[WEBHOOK_TEXT];
    copy_label(t, type);
    copy_label(r, result);
    for (size_t i = 0; i < WEBHOOK_SLOTS; i++) {
        webhook_slot *s = &sh->webhooks[i];
        int st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == 2 && strcmp(s->type, t) == 0 && strcmp(s->result, r) == 0) {
            atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
            return;
        }
        int expect = 0;
        if (st == 0 && atomic_compare_exchange_strong(&s->state, &expect, 1)) {
            memcpy(s->type, t, sizeof(t));
            memcpy(s->result, r, sizeof(r));
            atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
            atomic_store_explicit(&s->state, 2, memory_order_release);
            return;
        }
        /* Another process is claiming this slot (state 1): it may hold the
         * same pair; counting in a later slot is harmless (sums add up). */
    }
}

static void
header(kb_buf *out, const char *name, const char *type, const char *help)
{
    kb_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t
load(atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

void
kb_metrics_render(kb_buf *out, const char *const *route_names, size_t nroutes)
{
    if (sh == NULL)
        return;
    header(out, "kalshibook_requests_total", "counter", "Responses by route and HTTP status.");
    for (size_t r = 0; r <= KB_METRICS_MAX_ROUTES && r <= nroutes; r++) {
        const char *name = r == 0 ? "unmatched" : route_names[r - 1];
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t v = load(&sh->requests[r][s]);
            if (v == 0)
                continue;
            kb_buf_puts(out, "kalshibook_requests_total{route=\"");
            kb_buf_puts(out, name);
            if (s < NSTATUS - 1)
                kb_buf_printf(out, "\",status=\"%d\"} %llu\n", statuses[s], (unsigned long long)v);
            else
                kb_buf_printf(out, "\",status=\"other\"} %llu\n", (unsigned long long)v);
        }
    }
    header(out, "kalshibook_request_duration_seconds", "histogram",
           "Time from request read to response written.");
    uint64_t cum = 0;
    for (size_t b = 0; b < NBUCKET; b++) {
        cum += load(&sh->buckets[b]);
        if (b < NBUCKET - 1)
            kb_buf_printf(out, "kalshibook_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                          bounds_ms[b] / 1000.0, (unsigned long long)cum);
        else
            kb_buf_printf(out, "kalshibook_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                          (unsigned long long)cum);
    }
    kb_buf_printf(out, "kalshibook_request_duration_seconds_sum %.6f\n",
                  (double)load(&sh->latency_sum_us) / 1e6);
    kb_buf_printf(out, "kalshibook_request_duration_seconds_count %llu\n",
                  (unsigned long long)load(&sh->latency_count));
    for (size_t m = 0; m < KB_M_COUNT_; m++) {
        header(out, counter_names[m][0], "counter", counter_names[m][1]);
        kb_buf_printf(out, "%s %llu\n", counter_names[m][0],
                      (unsigned long long)load(&sh->counters[m]));
    }
    header(out, "kalshibook_webhook_events_total", "counter",
           "Stripe webhook events by type and result.");
    for (size_t i = 0; i < WEBHOOK_SLOTS; i++) {
        webhook_slot *s = &sh->webhooks[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != 2)
            continue;
        kb_buf_printf(out, "kalshibook_webhook_events_total{type=\"%s\",result=\"%s\"} %llu\n",
                      s->type, s->result, (unsigned long long)load(&s->count));
    }
}
