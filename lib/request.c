/* request.c - build a kb_req from CGI-style params and a body reader.
 *
 * The FastCGI adapter feeds it libfcgi's params and stream; fuzzers and
 * tests feed it arrays. Every value is copied into the request arena, and the
 * body is read to EOF but never beyond max_body + 1 bytes.
 */
#include <stdint.h>
#include <string.h>

#include "kb_http.h"
#include "kb_banned.h"

/* Params belong to the server library (libfcgi frees them at the end of the
 * request); the request and its log line, written after the response,
 * outlive that, so values are copied to the arena. */
static kb_str
param(char *const *envp, kb_arena *a, const char *name)
{
    size_t nlen = strlen(name);
    for (char *const *e = envp; *e != NULL; e++) {
        if (strncmp(*e, name, nlen) == 0 && (*e)[nlen] == '=') {
            const char *v = *e + nlen + 1;
            size_t len = strlen(v);
            return (kb_str){kb_arena_strndup(a, v, len), len};
        }
    }
    return KB_STR_NULL;
}

/* "HTTP_STRIPE_SIGNATURE=v" -> {"stripe-signature", "v"}; arena-owned. */
static size_t
collect_headers(char *const *envp, kb_arena *a, kb_header **out)
{
    size_t n = 0;
    for (char *const *e = envp; *e != NULL; e++) {
        if (strncmp(*e, "HTTP_", 5) == 0)
            n++;
    }
    kb_header *h = kb_arena_calloc(a, n ? n : 1, sizeof(*h));
    size_t k = 0;
    for (char *const *e = envp; *e != NULL && k < n; e++) {
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
read_body(char *const *envp, kb_body_reader *rd, void *ud, kb_req *req, kb_arena *a, long max_body)
{
    int64_t declared = -1;
    kb_str cl = param(envp, a, "CONTENT_LENGTH");
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
        int n = rd(ud, buf + len, (int)(cap - len));
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
kb_req_build(kb_req *req, kb_arena *arena, char *const *envp, kb_body_reader *rd, void *ud,
             long max_body)
{
    memset(req, 0, sizeof(*req));
    req->arena = arena;
    req->method = param(envp, arena, "REQUEST_METHOD");
    kb_str uri = param(envp, arena, "REQUEST_URI");
    if (uri.p == NULL)
        uri = param(envp, arena, "DOCUMENT_URI");
    size_t q = 0;
    while (q < uri.len && uri.p[q] != '?')
        q++;
    req->path = (kb_str){uri.p, q};
    req->query = q < uri.len ? (kb_str){uri.p + q + 1, uri.len - q - 1}
                             : param(envp, arena, "QUERY_STRING");
    req->content_type = param(envp, arena, "CONTENT_TYPE");
    if (req->content_type.len == 0)
        req->content_type = KB_STR_NULL;
    req->remote_addr = param(envp, arena, "REMOTE_ADDR");
    kb_header *h = NULL;
    req->nheaders = collect_headers(envp, arena, &h);
    req->headers = h;
    kb_req_set_id(req, param(envp, arena, "KB_REQUEST_ID"));
    read_body(envp, rd, ud, req, arena, max_body);
}
