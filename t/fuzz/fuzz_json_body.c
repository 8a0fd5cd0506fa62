/* fuzz_json_body.c - libFuzzer target for the request-body validator
 * (kb_json_body) and its typed getters, on a kb_req built around the input.
 *
 * Input: first byte picks the Content-Type (absent, JSON, +json, with
 * parameters, text/plain, form); the rest is the body. Invariants: an
 * accepted body is an object; a rejected one is 422 validation_error with a
 * message; getter strings are valid UTF-8 without NUL; integers lie in the
 * asked range; kb_json_parse agrees with kb_json_body on JSON content types.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "kb_json.h"
#include "kb_log.h"
#include "kb_str.h"
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

static const char *const ctypes[] = {
    NULL,
    "CONTENT_TYPE=application/json",
    "CONTENT_TYPE=application/merge-patch+json",
    "CONTENT_TYPE=Application/JSON; charset=utf-8",
    "CONTENT_TYPE=text/plain",
    "CONTENT_TYPE=application/x-www-form-urlencoded",
    "CONTENT_TYPE=application/jsonx",
    "CONTENT_TYPE=",
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        kb_log_init("fuzz", KB_LOG_ERROR + 1);
        inited = 1;
    }
    if (size == 0)
        return 0;
    unsigned ct = data[0] & 7;
    body b = {data + 1, size - 1, 0};
    char cl[48];
    snprintf(cl, sizeof(cl), "CONTENT_LENGTH=%zu", b.len);
    char *envp[8];
    size_t k = 0;
    envp[k++] = (char *)"REQUEST_METHOD=POST";
    envp[k++] = (char *)"REQUEST_URI=/keys";
    envp[k++] = cl;
    if (ctypes[ct] != NULL)
        envp[k++] = (char *)ctypes[ct];
    envp[k] = NULL;

    kb_worker w;
    memset(&w, 0, sizeof(w));
    kb_arena arena;
    kb_arena_init(&arena, 0);
    kb_ctx ctx;
    kb_ctx_init(&ctx, &w, &arena);
    kb_req req;
    kb_req_build(&req, &arena, envp, read_body, &b, 1 << 20);

    cJSON *root = NULL;
    kb_err e = kb_json_body(&req, &ctx, &root);
    if (e == KB_OK) {
        if (root == NULL || !cJSON_IsObject(root) || ctx.err != KB_OK)
            abort();
        const char *s;
        bool set;
        static const char *const names[] = {"email", "password", "name", "key_type", "ticker"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            s = NULL;
            if (kb_json_get_str(&ctx, root, names[i], 0, 64, &s, &set) == KB_OK && set &&
                (s == NULL || !kb_utf8_valid(s, strlen(s))))
                abort();
        }
        int64_t v = 0;
        if (kb_json_get_int(&ctx, root, "limit", 0, 1, 1000, &v, &set) == KB_OK && set &&
            (v < 1 || v > 1000))
            abort();
        if (kb_json_get_int(&ctx, root, "overage_cap", KB_JSON_NULLABLE, INT64_MIN, INT64_MAX, &v,
                            &set) == KB_OK &&
            set && kb_json_get_int(&ctx, root, "overage_cap", 0, 0, 0, &v, &set) == KB_OK && set &&
            v != 0)
            abort();
        bool bv;
        (void)kb_json_get_bool(&ctx, root, "enable", KB_JSON_REQUIRED, &bv, &set);
        (void)kb_json_get_str(&ctx, root, "start_time", KB_JSON_REQUIRED | KB_JSON_NULLABLE, 0, &s,
                              &set);
        if (ctx.err != KB_OK && ctx.err != KB_E_VALIDATION)
            abort();
    } else {
        if (e != KB_E_VALIDATION || root != NULL || ctx.err_msg.len == 0)
            abort();
        if (ct >= 1 && ct <= 3 && b.len > 0) {
            /* JSON content type: the failure is the parser's, or a non-object. */
            cJSON *j = NULL;
            const char *why;
            size_t at;
            if (kb_json_parse((const char *)b.p, b.len, &j, &why, &at)) {
                bool obj = cJSON_IsObject(j);
                cJSON_Delete(j);
                if (obj)
                    abort();
            }
        }
    }
    kb_ctx_release(&ctx);
    kb_arena_release(&arena);
    return 0;
}
