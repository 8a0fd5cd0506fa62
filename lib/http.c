/* http.c - context, response building and the error envelope; see kb_http.h. */
#include "kb_http.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "kb_log.h"
#include "kb_time.h"
#include "kb_banned.h"

void
kb_ctx_init(kb_ctx *ctx, kb_worker *w, kb_arena *arena)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->w = w;
    ctx->arena = arena;
    kb_ctx_reset(ctx);
}

void
kb_ctx_reset(kb_ctx *ctx)
{
    kb_buf_reset(&ctx->resp.body);
    kb_buf_reset(&ctx->resp.headers);
    kb_buf_reset(&ctx->err_msg);
    ctx->resp.status = 200;
    ctx->err = KB_OK;
    ctx->retry_after = 0;
    ctx->route = NULL;
    ctx->route_index = -1;
    ctx->resp.content_type = NULL;
    /* Sending closes a stream (kb_resp_send_body); one left here was never sent,
     * and its memory went with the last arena reset. */
    if (ctx->resp.stream != NULL)
        kb_log_error("a streamed answer was never sent or closed");
    ctx->resp.stream = NULL;
    ctx->user_id = NULL;
    ctx->key_prefix = NULL;
    ctx->cost = 0;
    ctx->credits = -1;
    ctx->charge = NULL;
    ctx->start_us = kb_mono_us();
}

void
kb_ctx_release(kb_ctx *ctx)
{
    kb_buf_release(&ctx->resp.body);
    kb_buf_release(&ctx->resp.headers);
    kb_buf_release(&ctx->err_msg);
}

kb_err
kb_fail(kb_ctx *ctx, kb_err err, const char *fmt, ...)
{
    va_list ap;
    ctx->err = err;
    kb_buf_reset(&ctx->err_msg);
    va_start(ap, fmt);
    kb_buf_vprintf(&ctx->err_msg, fmt, ap);
    va_end(ap);
    if (kb_err_status(err) >= 500 && err != KB_E_UNAVAILABLE && err != KB_E_BILLING_NOT_CONFIGURED)
        kb_log_error("%s", kb_buf_cstr(&ctx->err_msg));
    return err;
}

kb_str
kb_req_header(const kb_req *req, const char *lower_name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (kb_str_eq(req->headers[i].name, lower_name))
            return req->headers[i].value;
    }
    return KB_STR_NULL;
}

void
kb_resp_header(kb_ctx *ctx, const char *name, const char *fmt, ...)
{
    va_list ap;
    kb_buf_puts(&ctx->resp.headers, name);
    kb_buf_puts(&ctx->resp.headers, ": ");
    va_start(ap, fmt);
    kb_buf_vprintf(&ctx->resp.headers, fmt, ap);
    va_end(ap);
    kb_buf_puts(&ctx->resp.headers, "\r\n");
}

void
kb_resp_json_begin(kb_ctx *ctx, kb_jw *w)
{
    kb_buf_reset(&ctx->resp.body);
    ctx->resp.status = 200;
    kb_jw_init(w, &ctx->resp.body);
    kb_jw_obj(w);
}

void
kb_resp_json_end(kb_ctx *ctx, const kb_req *req, kb_jw *w, bool with_time)
{
    kb_jw_key(w, "request_id");
    kb_jw_str(w, req->request_id);
    if (with_time) {
        double secs = (double)(kb_mono_us() - ctx->start_us) / 1e6;
        kb_jw_key(w, "response_time");
        kb_jw_double(w, secs, 4);
    }
    kb_jw_obj_end(w);
}

/* Client-facing text for an error: 5xx details stay in the log. */
static const char *
public_message(const kb_ctx *ctx, kb_err err)
{
    switch (err) {
    case KB_E_INTERNAL:
        return "Internal server error.";
    case KB_E_UNAVAILABLE:
        if (ctx->err_msg.len == 0 || ctx->err != err)
            return "Service temporarily unavailable, retry shortly.";
        break;
    default:
        break;
    }
    if (ctx->err == err && ctx->err_msg.len > 0)
        return kb_buf_cstr(&ctx->err_msg);
    return kb_err_code(err);
}

void
kb_resp_error(kb_ctx *ctx, const kb_req *req, kb_err err)
{
    if (ctx->err != KB_OK)
        err = ctx->err;
    if (err == KB_OK)
        err = KB_E_INTERNAL;
    const char *msg = public_message(ctx, err);
    kb_jw w;
    int status = kb_err_status(err);
    kb_resp_stream_drop(ctx);
    kb_buf_reset(&ctx->resp.body);
    ctx->resp.status = status;
    kb_jw_init(&w, &ctx->resp.body);
    kb_jw_obj(&w);
    kb_jw_key(&w, "error");
    kb_jw_obj(&w);
    kb_jw_key(&w, "code");
    kb_jw_str(&w, kb_err_code(err));
    kb_jw_key(&w, "message");
    kb_jw_str(&w, msg);
    kb_jw_key(&w, "status");
    kb_jw_int(&w, status);
    kb_jw_obj_end(&w);
    kb_jw_key(&w, "request_id");
    kb_jw_str(&w, req->request_id);
    kb_jw_obj_end(&w);
    if (ctx->retry_after > 0)
        kb_resp_header(ctx, "Retry-After", "%d", ctx->retry_after);
    else if (err == KB_E_UNAVAILABLE)
        kb_resp_header(ctx, "Retry-After", "1");
    ctx->err = err;
}

void
kb_resp_stream_set(kb_ctx *ctx, kb_resp_stream *s)
{
    ctx->resp.stream = s;
}

void
kb_resp_stream_drop(kb_ctx *ctx)
{
    kb_resp_stream *s = ctx->resp.stream;
    if (s == NULL)
        return;
    ctx->resp.stream = NULL;
    s->close(s->ud, ctx);
}

bool
kb_resp_send_body(kb_ctx *ctx, kb_resp_write_fn *write, void *ud)
{
    kb_resp_stream *s = ctx->resp.stream;
    kb_buf *b = &ctx->resp.body;
    bool gone = b->len > 0 && !write(ud, b->buf, b->len);
    if (s == NULL)
        return true;
    kb_err err = KB_OK;
    bool done = false;
    while (!gone && !done) {
        kb_buf_reset(b);
        if ((err = s->next(s->ud, ctx, b, &done)) != KB_OK)
            break;
        gone = b->len > 0 && !write(ud, b->buf, b->len);
    }
    kb_buf_reset(b);
    kb_resp_stream_drop(ctx);
    if (err == KB_OK)
        return true;
    /* After the first byte an error is no longer an answer of its own: the
     * status and code are recorded for the log line, the metrics and the meter. */
    if (ctx->err == KB_OK)
        ctx->err = err;
    ctx->resp.status = kb_err_status(ctx->err);
    kb_log_error("streamed answer cut off after its first byte: %s", kb_err_code(ctx->err));
    return false;
}

void
kb_log_request(const kb_ctx *ctx, const kb_req *req)
{
    kb_buf line = KB_BUF_INIT;
    double ms = (double)(kb_mono_us() - ctx->start_us) / 1000.0;
    kb_log_level level = ctx->resp.status >= 500 ? KB_LOG_ERROR : KB_LOG_INFO;
    kb_log_begin(&line, level);
    kb_buf_puts(&line, ",\"request_id\":");
    kb_buf_json_str(&line, req->request_id, strlen(req->request_id));
    kb_buf_puts(&line, ",\"method\":");
    kb_buf_json_str(&line, req->method.p ? req->method.p : "", req->method.len);
    kb_buf_puts(&line, ",\"path\":");
    kb_buf_json_str(&line, req->path.p ? req->path.p : "", req->path.len);
    kb_buf_printf(&line, ",\"status\":%d,\"duration_ms\":%.3f", ctx->resp.status, ms);
    if (ctx->route != NULL) {
        kb_buf_puts(&line, ",\"route\":");
        kb_buf_json_str(&line, ctx->route, strlen(ctx->route));
    }
    if (ctx->err != KB_OK) {
        kb_buf_puts(&line, ",\"error\":");
        kb_buf_json_str(&line, kb_err_code(ctx->err), strlen(kb_err_code(ctx->err)));
    }
    if (ctx->user_id != NULL) {
        kb_buf_puts(&line, ",\"user_id\":");
        kb_buf_json_str(&line, ctx->user_id, strlen(ctx->user_id));
    }
    if (ctx->key_prefix != NULL) {
        kb_buf_puts(&line, ",\"key_prefix\":");
        kb_buf_json_str(&line, ctx->key_prefix, strlen(ctx->key_prefix));
    }
    if (ctx->credits >= 0)
        kb_buf_printf(&line, ",\"credits\":%lld", (long long)ctx->credits);
    kb_log_end_held(&line, level);
    kb_buf_release(&line);
}

void
kb_req_set_id(kb_req *req, kb_str given)
{
    /* Accept nginx's id only in our own format, so a header cannot inject. */
    bool ok = given.p != NULL && given.len == 16 && kb_str_has_prefix(given, "req_");
    for (size_t i = 4; ok && i < given.len; i++) {
        char c = given.p[i];
        ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    }
    if (ok) {
        memcpy(req->request_id, given.p, given.len);
        req->request_id[given.len] = '\0';
        return;
    }
    unsigned char rnd[6];
    randombytes_buf(rnd, sizeof(rnd));
    snprintf(req->request_id, sizeof(req->request_id), "req_%02x%02x%02x%02x%02x%02x", rnd[0],
             rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
}
