/* usage.c - the usage reporter; see kb_usage.h.
 *
 * Invariants: a batch's rows and identifier never change once claimed; rows
 * are marked reported only for a batch Stripe acknowledged; nothing is ever
 * deleted here.
 */
#include "kb_usage.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "kb_config.h"
#include "kb_log.h"
#include "kb_stripe.h"
#include "kb_time.h"
#include "kb_worker.h"
#include "kb_banned.h"

#define CLAIM_LIMIT "5000"
#define PENDING_LIMIT "500"
/* Stripe accepts meter events up to 35 days old; flag a little before. */
#define WINDOW "34 days"

static const kb_stmt metrics_stmt = {
    "usage_metrics",
    "SELECT count(*), coalesce(extract(epoch FROM kb_now() - min(created_at)), 0),"
    " count(*) FILTER (WHERE flagged_at IS NOT NULL)"
    " FROM usage_outbox WHERE reported_at IS NULL",
    0, true};
static const kb_stmt claim_stmt = {
    "usage_claim", "SELECT kb_usage_claim(make_interval(secs => $1::int), $2::interval, $3::int)",
    3, false};
static const kb_stmt pending_stmt = {
    "usage_pending",
    "SELECT batch_identifier, stripe_customer_id, credits, ts FROM kb_usage_pending($1::int)", 1,
    true};
static const kb_stmt mark_stmt = {"usage_mark",
                                  "UPDATE usage_outbox SET reported_at = now()"
                                  " WHERE batch_identifier = $1 AND reported_at IS NULL",
                                  1, false};
static const kb_stmt flag_stmt = {
    "usage_flag",
    "UPDATE usage_outbox SET flagged_at = now(), flag_reason = $2"
    " WHERE batch_identifier = $1 AND reported_at IS NULL AND flagged_at IS NULL",
    2, false};
static const kb_stmt problems_stmt = {
    "usage_problems", "SELECT flagged, no_customer FROM usage_outbox_problems", 0, true};

/* Stripe says the identifier is already taken: the event was recorded before. */
static bool
is_duplicate(const kb_stripe_res *r)
{
    if (r->status != 400 || r->err_message == NULL)
        return false;
    bool about_identifier = r->err_param != NULL && strcmp(r->err_param, "identifier") == 0;
    return about_identifier || strstr(r->err_message, "already exists") != NULL;
}

static bool
is_too_old(const kb_stripe_res *r)
{
    return r->status == 400 && r->err_param != NULL && strcmp(r->err_param, "timestamp") == 0;
}

/* Returns false when Stripe is rate limiting us (stop this run). */
static bool
send_batch(kb_worker *w, kb_arena *a, const char *ident, const char *cus, const char *credits,
           const char *ts, kb_usage_stats *st)
{
    kb_stripe_form f = {KB_BUF_INIT};
    kb_stripe_form_add(&f, "event_name", kb_cfg.stripe_meter_event);
    kb_stripe_form_add(&f, "identifier", ident);
    kb_stripe_form_add(&f, "payload[stripe_customer_id]", cus);
    kb_stripe_form_add(&f, "payload[value]", credits);
    kb_stripe_form_add(&f, "timestamp", ts);
    kb_stripe_res r;
    char *key = kb_arena_printf(a, "kb-meter-%s", ident);
    kb_err err = kb_stripe_call(w, a, "POST", "/v1/billing/meter_events", &f, key, &r);
    if (err != KB_OK && r.replayed && r.status >= 500) {
        /* Stripe keeps a 5xx that happened after it began processing as the key's
         * answer for 24 hours. The identifier, not the key, is what makes the
         * event count once, so ask again under a fresh key: Stripe then records
         * it, or answers that the identifier already exists. */
        unsigned char rnd[8];
        char hex[2 * sizeof(rnd) + 1];
        randombytes_buf(rnd, sizeof(rnd));
        sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
        key = kb_arena_printf(a, "kb-meter-%s-%s", ident, hex);
        err = kb_stripe_call(w, a, "POST", "/v1/billing/meter_events", &f, key, &r);
    }
    kb_stripe_form_release(&f);
    kb_db *db = &w->db;
    const char *params[] = {ident, NULL};
    if (err == KB_OK || is_duplicate(&r)) {
        if (kb_db_exec(db, a, &mark_stmt, params, NULL) != KB_OK) {
            st->failed++; /* resent next run with the same identifier: deduplicated */
            return true;
        }
        if (err == KB_OK)
            st->sent++;
        else
            st->duplicates++;
        kb_log_info("usage: batch %s (%s credits for %s) %s", ident, credits, cus,
                    err == KB_OK ? "reported" : "already at Stripe; marked reported");
    } else if (is_too_old(&r)) {
        params[1] = "Stripe refused the meter event timestamp (outside its window)";
        if (kb_db_exec(db, a, &flag_stmt, params, NULL) == KB_OK)
            st->flagged++;
        kb_log_error("usage: batch %s (%s credits for %s) FLAGGED: too old for Stripe; "
                     "bill it by hand (see README)",
                     ident, credits, cus);
    } else {
        st->failed++;
        if (r.status == 429) {
            kb_log_warn("usage: Stripe rate limit persists; leaving the rest for the next run");
            return false;
        }
    }
    return true;
}

kb_err
kb_usage_report(kb_worker *w, kb_usage_stats *st)
{
    kb_db *db = &w->db;
    memset(st, 0, sizeof(*st));
    if (!kb_stripe_configured())
        return KB_E_BILLING_NOT_CONFIGURED;
    kb_arena a;
    kb_arena_init(&a, 0);
    char margin[24];
    snprintf(margin, sizeof(margin), "%ld", kb_cfg.usage_margin_s);
    const char *cp[] = {margin, WINDOW, CLAIM_LIMIT};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(db, &a, &claim_stmt, cp, &r);
    if (err == KB_OK)
        st->batched_rows = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    const char *pp[] = {PENDING_LIMIT};
    if (err == KB_OK)
        err = kb_db_exec(db, &a, &pending_stmt, pp, &r);
    for (int i = 0; err == KB_OK && i < PQntuples(r); i++) {
        if (!send_batch(w, &a, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                        PQgetvalue(r, i, 3), st)) {
            st->failed += PQntuples(r) - i - 1;
            break;
        }
    }
    if (err == KB_OK && kb_db_exec(db, &a, &problems_stmt, NULL, &r) == KB_OK &&
        PQntuples(r) == 1) {
        st->flagged_total = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        st->no_customer = strtol(PQgetvalue(r, 0, 1), NULL, 10);
        if (st->flagged_total > 0)
            kb_log_error("usage: %ld overage rows are FLAGGED (not billable through the meter); "
                         "see usage_outbox.flag_reason",
                         st->flagged_total);
        if (st->no_customer > 0)
            kb_log_warn("usage: %ld overage rows wait for a Stripe customer", st->no_customer);
    }
    kb_arena_release(&a);
    if (err)
        return err;
    return st->failed > 0 ? KB_E_STRIPE : KB_OK;
}

int
kb_usage_reporter_main(volatile sig_atomic_t *stop)
{
    kb_worker w;
    kb_worker_init(&w, "kalshibook-reporter");
    kb_log_info("usage reporter started (every %ld s, margin %ld s)", kb_cfg.usage_flush_s,
                kb_cfg.usage_margin_s);
    while (!*stop) {
        kb_usage_stats st;
        kb_err err = kb_usage_report(&w, &st);
        if (err || st.sent || st.duplicates || st.flagged)
            kb_log(err ? KB_LOG_WARN : KB_LOG_INFO,
                   "usage run: %ld rows batched, %ld sent, %ld duplicates, %ld failed, %ld flagged",
                   st.batched_rows, st.sent, st.duplicates, st.failed, st.flagged);
        int64_t until = kb_mono_us() + kb_cfg.usage_flush_s * 1000000;
        while (!*stop) {
            int64_t left = (until - kb_mono_us()) / 1000;
            if (left <= 0)
                break;
            if (poll(NULL, 0, left > 1000 ? 1000 : (int)left) < 0 && errno != EINTR)
                break;
        }
    }
    kb_worker_release(&w);
    kb_log_info("usage reporter stopped");
    return 0;
}

void
kb_usage_metrics(kb_db *db, kb_arena *a, kb_buf *out)
{
    PGresult *r = NULL;
    int up = kb_db_exec(db, a, &metrics_stmt, NULL, &r) == KB_OK;
    kb_buf_puts(out, "# HELP kalshibook_database_up Whether this worker's database query worked.\n"
                     "# TYPE kalshibook_database_up gauge\n");
    kb_buf_printf(out, "kalshibook_database_up %d\n", up);
    if (!up)
        return;
    kb_buf_printf(out,
                  "# HELP kalshibook_outbox_backlog Unreported PAYG overage rows.\n"
                  "# TYPE kalshibook_outbox_backlog gauge\n"
                  "kalshibook_outbox_backlog %s\n"
                  "# HELP kalshibook_outbox_oldest_seconds Age of the oldest unreported row.\n"
                  "# TYPE kalshibook_outbox_oldest_seconds gauge\n"
                  "kalshibook_outbox_oldest_seconds %s\n"
                  "# HELP kalshibook_outbox_flagged Unreported rows flagged as too old.\n"
                  "# TYPE kalshibook_outbox_flagged gauge\n"
                  "kalshibook_outbox_flagged %s\n",
                  PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
}
