/* h_health.c - GET /health: 200 when the database answers, 503 when it does not. */
#include "app.h"

#include "kb_config.h"

#include "kb_banned.h"

/* The cheapest statement the server must answer: a prepared SELECT 1 (no
 * table, no snapshot of a relation). Whether the schema is migrated is the
 * deploy's business (kbctl migrate before start), not every health probe's. */
static const kb_stmt health_stmt = {"health", "SELECT 1", 0, true};

/* The database answers when this worker's connection got an answer less than
 * KB_HEALTH_MAX_AGE_MS ago and the server has not hung up since (checked on
 * the socket, no round trip); otherwise the probe asks it. An unauthenticated
 * probe flood thus costs the database at most one query per worker and period,
 * and a stopped or crashed server is seen at once. */
kb_err
h_health(const kb_req *req, kb_ctx *ctx)
{
    (void)req;
    kb_db *db = &ctx->w->db;
    if (!kb_db_answered_within(db, kb_cfg.health_max_age_ms * 1000)) {
        kb_err err = kb_db_exec(db, ctx->arena, &health_stmt, NULL, NULL);
        if (err == KB_E_UNAVAILABLE)
            return kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");
        if (err)
            return kb_fail(ctx, KB_E_UNAVAILABLE, "Database is not ready.");
    }
    kb_buf_puts(&ctx->resp.body, "{\"status\":\"ok\"}");
    return KB_OK;
}
