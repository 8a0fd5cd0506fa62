/* h_metrics.c - GET /metrics: Prometheus text exposition of the shared
 * counters plus gauges read from the database. nginx lets only localhost in. */
#include "app.h"
#include "kb_metrics.h"
#include "kb_usage.h"
#include "kb_banned.h"

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
    kb_usage_metrics(&ctx->w->db, ctx->arena, out);
    ctx->resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return KB_OK;
}
