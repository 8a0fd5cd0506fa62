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

/* Params live in libfcgi's memory until FCGX_Finish_r; the request (and its
 * log line, written after the response) outlives that, so copy to the arena. */
static kb_str
param(kb_fcgi *f, kb_arena *a, const char *name)
{
    const char *v = FCGX_GetParam(name, f->req.envp);
    if (v == NULL)
        return KB_STR_NULL;
    size_t len = strlen(v);
    return (kb_str){kb_arena_strndup(a, v, len), len};
}

/* "HTTP_STRIPE_SIGNATURE=v" -> {"stripe-signature", "v"}; arena-owned. */
static size_t
collect_headers(kb_fcgi *f, kb_arena *a, kb_header **out)
{
    size_t n = 0;
    for (char **e = f->req.envp; *e != NULL; e++) {
        if (strncmp(*e, "HTTP_", 5) == 0)
            n++;
    }
    kb_header *h = kb_arena_calloc(a, n ? n : 1, sizeof(*h));
    size_t k = 0;
    for (char **e = f->req.envp; *e != NULL && k < n; e++) {
        if (strncmp(*e, "HTTP_", 5) != 0)
            continue;
        const char *name = *e + 5;
        const char *eq = strchr(name, '=');
        if (eq == NULL)
            continue;
        size_t len = (size_t)(eq - name);
        char *lower = kb_arena_alloc(a, len + 1);
        for (size_t i = 0; i < len; i++) {
            char c = name[i];
            lower[i] = c == '_' ? '-' : (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        lower[len] = '\0';
        h[k].name = (kb_str){lower, len};
        size_t vlen = strlen(eq + 1);
        h[k].value = (kb_str){kb_arena_strndup(a, eq + 1, vlen), vlen};
        k++;
    }
    *out = h;
    return k;
}

static void
read_body(kb_fcgi *f, kb_req *req, kb_arena *a, long max_body)
{
    int64_t declared = -1;
    kb_str cl = param(f, a, "CONTENT_LENGTH");
    const char *errstr;
    if (cl.len > 0 && !kb_parse_i64(cl, 0, INT64_MAX, &declared, &errstr))
        declared = -1;
    if (declared > max_body) {
        req->body_too_large = true;
        return;
    }
    /* Read to EOF, bounded, whatever CONTENT_LENGTH said. */
    size_t cap = declared > 0 ? (size_t)declared + 1 : 4096;
    if (cap > (size_t)max_body + 1)
        cap = (size_t)max_body + 1;
    char *buf = kb_arena_alloc(a, cap);
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            if (cap > (size_t)max_body) {
                req->body_too_large = true;
                return;
            }
            size_t ncap = cap * 2 > (size_t)max_body + 1 ? (size_t)max_body + 1 : cap * 2;
            char *nbuf = kb_arena_alloc(a, ncap);
            memcpy(nbuf, buf, len);
            buf = nbuf;
            cap = ncap;
        }
        int n = FCGX_GetStr(buf + len, (int)(cap - len), f->req.in);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    if (len > (size_t)max_body) {
        req->body_too_large = true;
        return;
    }
    req->body = (kb_str){buf, len};
}

void
kb_fcgi_read(kb_fcgi *f, kb_req *req, kb_arena *arena, long max_body)
{
    memset(req, 0, sizeof(*req));
    req->arena = arena;
    req->method = param(f, arena, "REQUEST_METHOD");
    kb_str uri = param(f, arena, "REQUEST_URI");
    if (uri.p == NULL)
        uri = param(f, arena, "DOCUMENT_URI");
    size_t q = 0;
    while (q < uri.len && uri.p[q] != '?')
        q++;
    req->path = (kb_str){uri.p, q};
    req->query = q < uri.len ? (kb_str){uri.p + q + 1, uri.len - q - 1} : param(f, arena, "QUERY_STRING");
    req->content_type = param(f, arena, "CONTENT_TYPE");
    if (req->content_type.len == 0)
        req->content_type = KB_STR_NULL;
    req->remote_addr = param(f, arena, "REMOTE_ADDR");
    kb_header *h = NULL;
    req->nheaders = collect_headers(f, arena, &h);
    req->headers = h;
    kb_req_set_id(req, param(f, arena, "KB_REQUEST_ID"));
    read_body(f, req, arena, max_body);
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
                     "Status: %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nX-Request-ID: %s\r\n",
                     r->status, reason(r->status), r->body.len, req->request_id);
    if (n > 0 && (size_t)n < sizeof(head))
        FCGX_PutStr(head, n, f->req.out);
    if (r->headers.len)
        FCGX_PutStr(r->headers.buf, (int)r->headers.len, f->req.out);
    FCGX_PutStr("\r\n", 2, f->req.out);
    if (r->body.len)
        FCGX_PutStr(r->body.buf, (int)r->body.len, f->req.out);
}

void
kb_fcgi_finish(kb_fcgi *f)
{
    FCGX_Finish_r(&f->req);
}
