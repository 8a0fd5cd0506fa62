/* h_health.c - GET /health: 200 when the database answers, 503 when it does not. */
#include "app.h"

#include "kb_banned.h"

/* The cheapest statement the server must answer: a prepared SELECT 1 (no
 * table, no snapshot of a relation). Whether the schema is migrated is the
 * deploy's business (kbctl migrate before start), not every health probe's. */
static const kb_stmt health_stmt = {"health", "SELECT 1", 0, true};

kb_err
h_health(const kb_req *req, kb_ctx *ctx)
{
    (void)req;
    kb_err err = kb_db_exec(&ctx->w->db, ctx->arena, &health_stmt, NULL, NULL);
    if (err == KB_E_UNAVAILABLE)
        return kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");
    if (err)
        return kb_fail(ctx, KB_E_UNAVAILABLE, "Database is not ready.");
    kb_buf_puts(&ctx->resp.body, "{\"status\":\"ok\"}");
    return KB_OK;
}
