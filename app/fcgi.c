/* fcgi.c - FastCGI adapter over libfcgi (the only file that includes fcgiapp.h).
 *
 * The listen socket is non-blocking and shared by every worker: a worker
 * polls it, and FCGX_Accept_r returns -EAGAIN when another worker won the
 * connection, so no worker ever sleeps inside accept() where a SIGTERM could
 * not reach it.
 */
#include "fcgi.h"

#include <errno.h>
#include <fcgiapp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_log.h"
#include "kb_banned.h"

struct kb_fcgi {
    FCGX_Request req;
};

kb_fcgi *
kb_fcgi_new(int listen_fd)
{
    if (FCGX_Init() != 0)
        return NULL;
    kb_fcgi *f = kb_xcalloc(1, sizeof(*f));
    if (FCGX_InitRequest(&f->req, listen_fd, FCGI_FAIL_ACCEPT_ON_INTR) != 0) {
        free(f);
        return NULL;
    }
    return f;
}

void
kb_fcgi_free(kb_fcgi *f)
{
    if (f == NULL)
        return;
    FCGX_Free(&f->req, 1);
    free(f);
}

int
kb_fcgi_accept(kb_fcgi *f)
{
    int rc = FCGX_Accept_r(&f->req);
    if (rc >= 0)
        return 1;
    if (rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -EINTR || rc == -ECONNABORTED)
        return 0;
    kb_log_error("unable to accept FastCGI connection: %s", strerror(-rc));
    return -1;
}

/* libfcgi's stream as the builder's body reader. */
static int
read_stream(void *ud, char *buf, int len)
{
    return FCGX_GetStr(buf, len, ud);
}

void
kb_fcgi_read(kb_fcgi *f, kb_req *req, kb_arena *arena, long max_body)
{
    kb_req_build(req, arena, f->req.envp, read_stream, f->req.in, max_body);
}

static const char *
reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

void
kb_fcgi_write(kb_fcgi *f, const kb_req *req, const kb_ctx *ctx)
{
    const kb_resp *r = &ctx->resp;
    /* libfcgi's own printf lacks %zu; format here. */
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "Status: %d %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\nX-Request-ID: %s\r\n",
                     r->status, reason(r->status),
                     r->content_type ? r->content_type : "application/json", r->body.len,
                     req->request_id);
    if (n > 0 && (size_t)n < sizeof(head))
        FCGX_PutStr(head, n, f->req.out);
    if (r->headers.len)
        FCGX_PutStr(r->headers.buf, (int)r->headers.len, f->req.out);
    FCGX_PutStr("\r\n", 2, f->req.out);
    if (r->body.len)
        FCGX_PutStr(r->body.buf, (int)r->body.len, f->req.out);
}

void
kb_fcgi_complete(kb_fcgi *f, void (*answered)(void *), void *arg)
{
    /* The body goes out first (it may take several writes, and a worker killed
     * among them leaves nginx half an answer: a 502). Then the closing records
     * alone, one small write that nothing interrupts once it started when the
     * socket has room; libfcgi writes the end of request when the last output
     * stream closes. */
    FCGX_FFlush(f->req.out);
    struct pollfd p = {.fd = f->req.ipcFd, .events = POLLOUT};
    if (answered != NULL && poll(&p, 1, 0) == 1 && (p.revents & POLLOUT))
        answered(arg);
    FCGX_FClose(f->req.err);
    FCGX_FClose(f->req.out);
}

void
kb_fcgi_finish(kb_fcgi *f)
{
    FCGX_Finish_r(&f->req);
}
