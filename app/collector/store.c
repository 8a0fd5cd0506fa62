/* store.c - what one spool record does in Postgres, inside the writer's transaction:
 * the ingest module (kb_ingest.h), the code `kbctl import` runs, with the writer's own
 * connection (the one holding the leader lock) and its transaction (in_tx). A frame
 * and its replay from the spool are stored alike and only once; the collector's
 * events become gap rows keyed by their spool position. The batch is written at
 * every commit, then the progress moves, then COMMIT: all or nothing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_ingest.h"
#include "kb_log.h"
#include "writer.h"
#include "kb_banned.h"

static const kb_stmt progress_set = {
    "kc_progress_set",
    "INSERT INTO collector_progress (instance, file_no, file_offset, updated_at)"
    " VALUES ($1, $2, $3, now())"
    " ON CONFLICT (instance) DO UPDATE SET file_no = $2, file_offset = $3, updated_at = now()",
    3, false};

static kb_ingest ing;
static bool ready;

void
kc_store_init(void)
{
    kb_ingest_init(&ing, &W.db);
    ing.in_tx = true;
    /* No rows kept for checkpoints: this writer never runs kb_ingest_finish (upkeep.c
     * extends a live market's checkpoints), and a long-lived ingest would otherwise
     * keep up to KB_INGEST_KEEP_MAX rows (~200 MB) before giving up on them. */
    ing.kept = -1;
    ing.start_reason = W.handover ? "handover" : "restart";
    ready = true;
}

void
kc_store_release(void)
{
    if (ready)
        kb_ingest_release(&ing);
    ready = false;
}

kb_ingest *
kc_store_ingest(void)
{
    return &ing;
}

bool
kc_store_begin(void)
{
    if (kb_db_command(&W.db, "BEGIN") != KB_OK)
        return false;
    /* A reconnect inside BEGIN left the lock behind on the old session. */
    if (!kc_writer_same_session()) {
        (void)kb_db_command(&W.db, "ROLLBACK");
        return false;
    }
    return true;
}

bool
kc_store_record(const kb_spool_rec *r, long file_no, int64_t off)
{
    char source[192];
    snprintf(source, sizeof(source), "%s/%ld/%" PRId64, K.instance, file_no, off);
    const char *reason = NULL;
    if (kb_ingest_spool(&ing, r, source, &reason))
        return true;
    /* A database failure fails the batch (the spool has it); a bad message is skipped. */
    if (PQstatus(W.db.conn) != CONNECTION_OK || PQtransactionStatus(W.db.conn) == PQTRANS_INERROR)
        return false;
    kc_metric_add(KC_M_WRITER_BAD, 1);
    kb_log_debug("writer: spool file %ld at %" PRId64 " not stored: %s", file_no, off,
                 reason ? reason : "?");
    return true;
}

bool
kc_store_commit(long file_no, int64_t off)
{
    char f[24], o[24];
    snprintf(f, sizeof(f), "%ld", file_no);
    snprintf(o, sizeof(o), "%" PRId64, off);
    const char *p[] = {K.instance, f, o};
    return kb_ingest_flush(&ing) && kc_writer_exec(&progress_set, p, NULL) &&
           kb_db_command(&W.db, "COMMIT") == KB_OK;
}

void
kc_store_abort(void)
{
    /* The batch not yet written goes with the transaction; the spool has it. */
    kb_ingest_release(&ing);
    kc_store_init();
    (void)kb_db_command(&W.db, "ROLLBACK");
}
