/* net.c - the stand-in's socket layer: nonblocking TLS (or plain) reads and writes,
 * HTTP/1.1 request parsing, server-side WebSocket frames (RFC 6455), TCP reset. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "standin.h"
#include "kb_banned.h"

/* Finish the TLS handshake; 1 done, 0 again later, -1 failed. */
static int
tls_step(si_conn *c)
{
    if (c->ssl == NULL || c->tls_done)
        return 1;
    int rc = SSL_accept(c->ssl);
    if (rc == 1) {
        c->tls_done = true;
        return 1;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    ERR_clear_error();
    return -1;
}

int
si_net_read(si_conn *c)
{
    int t = tls_step(c);
    if (t <= 0)
        return t;
    for (;;) {
        kb_buf_grow(&c->in, 65536);
        char *p = c->in.buf + c->in.len;
        size_t room = c->in.cap - c->in.len - 1;
        ssize_t n;
        if (c->ssl != NULL) {
            int r = SSL_read(c->ssl, p, (int)(room > 1 << 30 ? 1 << 30 : room));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    return 0;
                ERR_clear_error();
                return -1;
            }
            n = r;
        } else {
            n = read(c->fd, p, room);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
            if (n <= 0)
                return -1;
        }
        c->in.len += (size_t)n;
        c->in.buf[c->in.len] = '\0';
        if ((size_t)n < room)
            return 0;
    }
}

int
si_net_flush(si_conn *c)
{
    if (c->silent)
        return 0;
    int t = tls_step(c);
    if (t <= 0)
        return t;
    while (c->out_off < c->out.len) {
        size_t left = c->out.len - c->out_off;
        const char *p = c->out.buf + c->out_off;
        ssize_t n;
        if (c->ssl != NULL) {
            int w = SSL_write(c->ssl, p, (int)(left > 1 << 20 ? 1 << 20 : left));
            if (w <= 0) {
                int e = SSL_get_error(c->ssl, w);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    break;
                ERR_clear_error();
                return -1;
            }
            n = w;
        } else {
            n = write(c->fd, p, left);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            if (n < 0)
                return -1;
        }
        c->out_off += (size_t)n;
        S.bytes_sent += (uint64_t)n;
    }
    if (c->out_off == c->out.len) {
        kb_buf_reset(&c->out);
        c->out_off = 0;
    } else if (c->out_off > (1u << 20) && c->out_off * 2 > c->out.len) {
        memmove(c->out.buf, c->out.buf + c->out_off, c->out.len - c->out_off);
        c->out.len -= c->out_off;
        c->out_off = 0;
    }
    return 0;
}

void
si_ws_frame(kb_buf *out, int opcode, bool fin, const void *p, size_t n)
{
    unsigned char h[10];
    size_t hl = 2;
    h[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (n < 126) {
        h[1] = (unsigned char)n;
    } else if (n <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    kb_buf_append(out, h, hl);
    kb_buf_append(out, p, n);
}

void
si_net_reset(si_conn *c, const void *p, size_t n)
{
    /* Whatever is queued goes first, then the partial frame, then RST. */
    kb_buf_append(&c->out, p, n);
    (void)si_net_flush(c);
    struct linger lg = {1, 0};
    (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    if (c->ssl != NULL)
        SSL_set_quiet_shutdown(c->ssl, 1);
    si_conn_close(c);
}

/* ---- HTTP ------------------------------------------------------------------------ */

static void
copy_trim(char *dst, size_t dstsz, const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    if (n >= dstsz)
        n = dstsz - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

int
si_http_parse(si_conn *c, si_http_req *r)
{
    if (c->in.len == 0)
        return 0;
    const char *b = c->in.buf;
    const char *end = memmem(b, c->in.len, "\r\n\r\n", 4);
    if (end == NULL)
        return c->in.len > 65536 ? -1 : 0;
    memset(r, 0, sizeof(*r));
    r->len = (size_t)(end - b) + 4;
    const char *eol = memchr(b, '\r', (size_t)(end - b) + 1);
    const char *sp1 = memchr(b, ' ', (size_t)(eol - b));
    if (sp1 == NULL)
        return -1;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (sp2 == NULL || (size_t)(sp1 - b) >= sizeof(r->method))
        return -1;
    memcpy(r->method, b, (size_t)(sp1 - b));
    const char *target = sp1 + 1;
    size_t tl = (size_t)(sp2 - target);
    const char *q = memchr(target, '?', tl);
    size_t pl = q ? (size_t)(q - target) : tl;
    if (pl >= sizeof(r->path))
        return -1;
    memcpy(r->path, target, pl);
    if (q != NULL)
        copy_trim(r->query, sizeof(r->query), q + 1, (size_t)(sp2 - q - 1));
    const char *line = eol + 2;
    while (line < end && r->nhdr < 24) {
        const char *le = memchr(line, '\r', (size_t)(end - line) + 1);
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (colon != NULL) {
            copy_trim(r->hdr[r->nhdr][0], sizeof(r->hdr[0][0]), line, (size_t)(colon - line));
            copy_trim(r->hdr[r->nhdr][1], sizeof(r->hdr[0][1]), colon + 1,
                      (size_t)(le - colon - 1));
            r->nhdr++;
        }
        line = le + 2;
    }
    /* Bodies are not used (control parameters ride in the query): skip one if sent. */
    const char *cl = si_http_header(r, "Content-Length");
    if (cl != NULL) {
        size_t blen = (size_t)strtoul(cl, NULL, 10);
        if (blen > 1 << 20)
            return -1;
        if (c->in.len < r->len + blen)
            return 0;
        r->len += blen;
    }
    return 1;
}

const char *
si_http_header(const si_http_req *r, const char *name)
{
    for (int i = 0; i < r->nhdr; i++) {
        if (strcasecmp(r->hdr[i][0], name) == 0)
            return r->hdr[i][1];
    }
    return NULL;
}

static int
hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

const char *
si_http_query(const si_http_req *r, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    const char *p = r->query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t o = 0;
            for (size_t i = nl + 1; i < seg && o + 1 < outsz; i++) {
                int h1, h2;
                if (p[i] == '%' && i + 2 < seg && (h1 = hexval(p[i + 1])) >= 0 &&
                    (h2 = hexval(p[i + 2])) >= 0) {
                    out[o++] = (char)(h1 * 16 + h2);
                    i += 2;
                } else {
                    out[o++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            out[o] = '\0';
            return out;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    return NULL;
}

static const char *
reason_phrase(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

void
si_http_reply(si_conn *c, int status, const char *ctype, const char *body, size_t n, bool keep)
{
    kb_buf_printf(&c->out,
                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "Connection: %s\r\n\r\n",
                  status, reason_phrase(status), ctype, n, keep ? "keep-alive" : "close");
    kb_buf_append(&c->out, body, n);
    if (!keep)
        c->closing = true;
    si_conn_update(c);
}
