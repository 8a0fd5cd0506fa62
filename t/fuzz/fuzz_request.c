/* fuzz_request.c - libFuzzer target: CGI params + body -> kb_req -> router ->
 * handler -> envelope, the whole request path without FastCGI or a database.
 *
 * Input: params as "NAME=value" lines, then a NUL byte, then the body.
 * Invariant checked: every response body is valid JSON with a known status.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "kb_config.h"
#include "kb_log.h"
#include "kb_banned.h"

typedef struct body {
    const uint8_t *p;
    size_t len, off;
} body;

static int
read_body(void *ud, char *buf, int len)
{
    body *b = ud;
    size_t n = b->len - b->off;
    if (n > (size_t)len)
        n = (size_t)len;
    memcpy(buf, b->p + b->off, n);
    b->off += n;
    return (int)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        kb_log_init("fuzz", KB_LOG_ERROR + 1);
        kb_cfg.max_body = 4096;
        inited = 1;
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t plen = nul ? (size_t)(nul - data) : size;
    body b = {nul ? nul + 1 : data + size, nul ? size - plen - 1 : 0, 0};

    /* Split the params into a NULL-terminated array of C strings. */
    char *params = malloc(plen + 1);
    memcpy(params, data, plen);
    params[plen] = '\0';
    size_t n = 1;
    for (size_t i = 0; i < plen; i++)
        n += params[i] == '\n';
    char **envp = calloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (char *line = params; line != NULL && k < n;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        envp[k++] = line;
        line = next;
    }

    kb_worker w;
    memset(&w, 0, sizeof(w));
    kb_db_init(&w.db, "host=/nonexistent", "fuzz", 1, 0);
    w.db.next_attempt_us = INT64_MAX; /* the database is "down": fail fast */
    kb_arena arena;
    kb_arena_init(&arena, 0);
    kb_ctx ctx;
    kb_ctx_init(&ctx, &w, &arena);
    kb_req req;
    kb_req_build(&req, &arena, envp, read_body, &b, kb_cfg.max_body);
    kb_dispatch(&req, &ctx);

    if (ctx.resp.status < 200 || ctx.resp.status > 599)
        abort();
    cJSON *j = cJSON_ParseWithLength(ctx.resp.body.buf, ctx.resp.body.len);
    if (j == NULL || !cJSON_IsObject(j))
        abort();
    cJSON_Delete(j);

    kb_ctx_release(&ctx);
    kb_arena_release(&arena);
    kb_db_release(&w.db);
    free(envp);
    free(params);
    return 0;
}
