/* h_metrics.c - GET /metrics: Prometheus text exposition of the shared
 * counters plus gauges read from the database. nginx lets only localhost in. */
#include <stdio.h>

#include "app.h"
#include "kb_metrics.h"
#include "kb_banned.h"

static const kb_stmt outbox_stmt = {
    "metrics_outbox",
    "SELECT count(*), coalesce(extract(epoch FROM kb_now() - min(created_at)), 0),"
    " count(*) FILTER (WHERE flagged_at IS NOT NULL)"
    " FROM usage_outbox WHERE reported_at IS NULL",
    0, true};

kb_err
h_metrics(const kb_req *req, kb_ctx *ctx)
{
    (void)req;
    const char *names[KB_METRICS_MAX_ROUTES];
    size_t n = kb_nroutes < KB_METRICS_MAX_ROUTES ? kb_nroutes : KB_METRICS_MAX_ROUTES;
    for (size_t i = 0; i < n; i++)
        names[i] = kb_arena_printf(ctx->arena, "%s %s", kb_routes[i].method, kb_routes[i].pattern);
    kb_buf *out = &ctx->resp.body;
    kb_metrics_render(out, names, n);

    /* Gauges from the database; when it is down, say so instead of failing. */
    PGresult *r = NULL;
    int up = kb_db_exec(&ctx->w->db, ctx->arena, &outbox_stmt, NULL, &r) == KB_OK;
    kb_buf_puts(out, "# HELP kalshibook_database_up Whether this worker's database query worked.\n"
                     "# TYPE kalshibook_database_up gauge\n");
    kb_buf_printf(out, "kalshibook_database_up %d\n", up);
    if (up) {
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
    ctx->resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return KB_OK;
}
