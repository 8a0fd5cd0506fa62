/* meter_settle.c - settling what the charge journal holds: the worker's own pending
 * charge and orphans of workers that died (kb_meter_settle_pending(), kb_meter.h;
 * kb_meter_settle() in migrations 0016 and 0028 decides each). */
#include "kb_meter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kb_journal.h"
#include "kb_log.h"
#include "kb_metrics.h"
#include "kb_worker.h"
#include "kb_banned.h"

/* Refund a journaled charge if its transaction committed. Idempotent. */
static const kb_stmt settle_stmt = {
    "meter_settle",
    "SELECT kb_meter_settle($1::xid8, $2::uuid, $3::bigint, $4, $5::uuid, $6::uuid,"
    " $7::integer, $8, $9::timestamptz, $10::date, $11::bigint)",
    11, true};

/* ---- settling the journal ---- */

typedef enum settled { SETTLED, NOT_YET, DB_DOWN } settled;

/* Settle one journaled charge in Postgres. */
static settled
settle(kb_worker *w, kb_arena *arena, kb_jstate st, const kb_journal_charge *c)
{
    if (st == KB_J_METERING) {
        /* Its transaction never got its commit: nothing was charged. */
        kb_metrics_add(KB_M_CHARGES_UNCOMMITTED, 1);
        return SETTLED;
    }
    char xid[24], seq[24], cost[24], outbox[24];
    snprintf(xid, sizeof(xid), "%" PRIu64, c->xid);
    snprintf(seq, sizeof(seq), "%" PRId64, c->seq);
    snprintf(cost, sizeof(cost), "%" PRId64, c->cost);
    snprintf(outbox, sizeof(outbox), "%" PRId64, c->outbox_id);
    const char *params[] = {xid,
                            c->token,
                            seq,
                            c->request_id,
                            c->user_id,
                            c->key_id,
                            cost,
                            c->endpoint,
                            c->cycle_start,
                            c->day,
                            c->outbox_id ? outbox : NULL};
    PGresult *r = NULL;
    if (kb_db_exec(&w->db, arena, &settle_stmt, params, &r) != KB_OK || PQntuples(r) != 1)
        return DB_DOWN;
    const char *v = PQgetvalue(r, 0, 0);
    if (strcmp(v, "pending") == 0)
        return NOT_YET;
    if (strcmp(v, "refunded") == 0) {
        kb_metrics_add(KB_M_CHARGES_SETTLED, 1);
        kb_metrics_add(KB_M_REFUNDS, 1);
        kb_metrics_add(KB_M_CREDITS_REFUNDED, (uint64_t)c->cost);
        kb_log_warn("refunded the charge of request %s: it got no 2xx answer", c->request_id);
    } else if (strcmp(v, "not_charged") == 0) {
        kb_metrics_add(KB_M_CHARGES_UNCOMMITTED, 1);
    } else if (strcmp(v, "unknown") == 0) {
        kb_log_error("unable to refund %" PRId64 " credits to user '%s': transaction %s of "
                     "request %s is too old to tell whether it committed",
                     c->cost, c->user_id, xid, c->request_id);
    }
    return SETTLED;
}

/* Settle the caller's own journal entry when it is pending. False when the
 * database did not answer. A charge whose transaction is still running (an
 * orphaned backend finishing it) is handed over as an orphan, and the worker
 * takes a fresh entry. */
bool
kb__meter_settle_own(kb_worker *w, kb_arena *arena)
{
    kb_jstate st = kb_journal_state(w->journal);
    if (st == KB_J_IDLE)
        return true;
    kb_journal_charge c;
    kb_journal_get(w->journal, &c);
    switch (settle(w, arena, st, &c)) {
    case SETTLED:
        kb_journal_idle(w->journal);
        return true;
    case NOT_YET:
        kb_journal_detach(w->journal);
        w->journal = kb_journal_attach();
        if (w->journal == NULL)
            kb_log_warn("no free charge journal entry: this worker's charges are not journaled");
        return true;
    case DB_DOWN:
        break;
    }
    return false;
}

bool
kb_meter_settle_pending(kb_worker *w, kb_arena *arena)
{
    if (!kb__meter_settle_own(w, arena))
        return false;
    /* Entries still running somewhere stay claimed until the end of the round,
     * so the loop moves on to the others instead of claiming them again. */
    int later[16], nlater = 0;
    bool done = true;
    kb_jstate st;
    kb_journal_charge c;
    int i;
    while (nlater < (int)(sizeof(later) / sizeof(later[0])) &&
           (i = kb_journal_claim(&st, &c)) >= 0) {
        settled s = settle(w, arena, st, &c);
        if (s == SETTLED) {
            kb_journal_release(i, true);
            continue;
        }
        done = false;
        if (s == DB_DOWN) {
            kb_journal_release(i, false);
            break;
        }
        later[nlater++] = i;
    }
    for (int k = 0; k < nlater; k++)
        kb_journal_release(later[k], false);
    return done;
}
