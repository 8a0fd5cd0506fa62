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
#include <sys/socket.h>
#include <unistd.h>

#include "kb_log.h"
#include "kb_time.h"
#include "kb_banned.h"

struct kb_fcgi {
    FCGX_Request req;
    /* The answer's last byte, held back by put() until kb_fcgi_complete(): until
     * it is written nginx cannot have the whole answer (the body is one byte short
     * of its Content-Length, or the header of its end). */
    char held;
    bool has_held;
    /* The largest write the connection takes in one piece once poll() shows room
     * (0: not read yet); connections from one listen socket share it. */
    size_t one_piece;
};

/* How long the answer's last write waits for nginx to make room. */
#define COMPLETE_WAIT_MS 10000
/* libfcgi's stdout buffer (FCGX_Accept_r), and room for the held byte's record and
 * the closing records that go with it. */
#define OUT_BUFFER 8192
#define END_RECORDS 64

/*
 * A Unix stream socket that poll() shows writable has three quarters of its send
 * buffer free, and a write that fits in one of its buffers (half the send buffer,
 * less a header) is queued whole at once: it cannot block. The default send buffer
 * (net.core.wmem_default, 208 KiB) takes libfcgi's whole buffer that way; a send
 * buffer under about 17 KiB does not, and then the buffered part goes first.
 */
static size_t
one_piece(kb_fcgi *f)
{
    if (f->one_piece == 0) {
        int sndbuf = 0;
        socklen_t len = sizeof(sndbuf);
        if (getsockopt(f->req.ipcFd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) == 0 && sndbuf > 1024)
            f->one_piece = (size_t)sndbuf / 2 - 256;
        else
            f->one_piece = END_RECORDS; /* unknown: the buffered part always goes first */
    }
    return f->one_piece;
}

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
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

/*
 * End an answer whose body cannot be completed so that the client sees it
 * fail. Closing the connection alone would not do: without fastcgi_keep_conn
 * nginx takes the end of the connection for the end of the answer and sends
 * the last chunk, and the client would get a short body that looks whole.
 * FastCGI has no record for the application to abort a request, but nginx
 * treats a malformed record as an upstream error: after the header went out
 * it then closes the client's connection (HTTP/1.1: no last chunk) or resets
 * the stream (HTTP/2). So: what was written goes out, then one record header
 * with protocol version 0, then the connection closes without END_REQUEST.
 */
static void
abort_answer(kb_fcgi *f)
{
    static const unsigned char bad_record[8] = {0};
    FCGX_FFlush(f->req.out);
    ssize_t n;
    do
        n = write(f->req.ipcFd, bad_record, sizeof(bad_record));
    while (n < 0 && errno == EINTR);
    FCGX_Free(&f->req, 1);
}

/* Write p[0..n) to the request's stdout but for its last byte, which is held back
 * (and the byte held before goes out first). */
static bool
put(kb_fcgi *f, const char *p, size_t n)
{
    if (n == 0)
        return true;
    if (f->has_held && FCGX_PutChar(f->held, f->req.out) == EOF)
        return false;
    f->has_held = false;
    size_t m = n - 1;
    while (m > 0) {
        int k = m > (size_t)1 << 30 ? 1 << 30 : (int)m;
        if (FCGX_PutStr(p, k, f->req.out) != k)
            return false;
        p += k;
        m -= (size_t)k;
    }
    f->held = *p;
    f->has_held = true;
    return true;
}

/* kb_resp_write_fn over the request's stdout. */
static bool
put_body(void *ud, const char *p, size_t n)
{
    return put(ud, p, n);
}

bool
kb_fcgi_write(kb_fcgi *f, const kb_req *req, kb_ctx *ctx)
{
    const kb_resp *r = &ctx->resp;
    /* libfcgi's own printf lacks %zu; format here. A streamed body has no
     * Content-Length: nginx sends it chunked, and a body cut off mid-way is
     * then visibly incomplete to the client. */
    char head[256], length[48] = "";
    if (r->stream == NULL)
        snprintf(length, sizeof(length), "Content-Length: %zu\r\n", r->body.len);
    int n = snprintf(head, sizeof(head),
                     "Status: %d %s\r\nContent-Type: %s\r\n%sX-Request-ID: %s\r\n", r->status,
                     reason(r->status), r->content_type ? r->content_type : "application/json",
                     length, req->request_id);
    f->has_held = false;
    if (n > 0 && (size_t)n < sizeof(head))
        put(f, head, (size_t)n);
    put(f, r->headers.buf, r->headers.len);
    put(f, "\r\n", 2);
    if (kb_resp_send_body(ctx, put_body, f))
        return true;
    abort_answer(f);
    return false;
}

bool
kb_fcgi_complete(kb_fcgi *f, bool (*answered)(void *), void *arg)
{
    /* What libfcgi's buffer could not hold went out as the answer was written (a
     * worker killed then leaves nginx an answer it cannot complete: the client sees
     * it fail). The rest, at most one buffer (8 KiB), goes with the held-back last
     * byte and the closing records in one write once the socket shows room: a
     * write that cannot block (one_piece()), so nothing runs between answered() and
     * the moment nginx has the whole answer. A small answer is then one write. A
     * peer that hung up gets no answer: answered() is not asked. */
    if (f->req.out == NULL)
        return false; /* aborted (abort_answer): there is no end to write */
    size_t buffered = OUT_BUFFER - (size_t)(f->req.out->stop - f->req.out->wrNext);
    if (FCGX_GetError(f->req.out) != 0 ||
        (buffered + END_RECORDS > one_piece(f) && FCGX_FFlush(f->req.out) != 0)) {
        abort_answer(f); /* nginx is gone: nobody gets this answer */
        return false;
    }
    struct pollfd p = {.fd = f->req.ipcFd, .events = POLLOUT};
    int64_t until = kb_mono_us() + (int64_t)COMPLETE_WAIT_MS * 1000;
    int n;
    do {
        int64_t left = (until - kb_mono_us()) / 1000;
        n = poll(&p, 1, left > 0 ? (int)left : 0);
    } while (n < 0 && errno == EINTR);
    if (n != 1 || (p.revents & (POLLERR | POLLHUP)) || !(p.revents & POLLOUT) ||
        (answered != NULL && !answered(arg))) {
        abort_answer(f);
        return false;
    }
    if (f->has_held)
        FCGX_PutChar(f->held, f->req.out);
    f->has_held = false;
    FCGX_FClose(f->req.err);
    FCGX_FClose(f->req.out);
    return true;
}

void
kb_fcgi_finish(kb_fcgi *f)
{
    FCGX_Request *r = &f->req;
    /*
     * libfcgi closes a connection gracefully: shutdown(), then select() and
     * read() until nginx has closed its end (up to 2 s), so that data nginx is
     * still sending cannot turn into a reset. When the request's input was read
     * to its end (kb_req_build reads the body to EOF) and the answer, end of
     * request included, went out whole, nginx sends nothing more: it keeps no
     * idle upstream connections (FCGI_KEEP_CONN is set only so that an answer
     * ends with its end of request, nginx/kalshibook-fastcgi.conf). Close it at
     * once, whatever the flag says. The worker then takes the next
     * connection instead of sleeping until nginx gets round to closing this
     * one, which under load cost a wake-up and three system calls per request.
     */
    int fd = -1;
    if (r->in != NULL && r->in->isClosed && FCGX_GetError(r->in) == 0 && FCGX_FClose(r->err) == 0 &&
        FCGX_FClose(r->out) == 0) {
        fd = r->ipcFd;
        r->ipcFd = -1; /* so libfcgi does not close it its way */
    }
    FCGX_Finish_r(r);
    if (fd >= 0)
        close(fd);
}
