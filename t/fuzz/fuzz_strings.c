/* fuzz_strings.c - libFuzzer target for the base parsers and encoders:
 * kb_parse_i64, kb_str_unescape and kb_query_get (whatever they decode is
 * UTF-8 without NUL), kb_utf8_valid and kb_buf_json_str, whose output must
 * always parse back as the same JSON string cJSON reads (for valid UTF-8
 * input). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_buf.h"
#include "kb_str.h"
#include "kb_banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kb_str s = {(const char *)data, size};
    int64_t v;
    const char *err;
    if (kb_parse_i64(s, INT64_MIN, INT64_MAX, &v, &err) && err != NULL)
        abort();

    kb_arena a;
    kb_arena_init(&a, 0);
    kb_str out;
    /* What decodes is UTF-8 without NUL: nothing else reaches a handler. */
    if (kb_str_unescape(&a, s, true, &out) &&
        (memchr(out.p, 0, out.len) != NULL || !kb_utf8_valid(out.p, out.len)))
        abort();
    if (kb_query_get(&a, s, "start_time", &out) && out.p != NULL &&
        (memchr(out.p, 0, out.len) != NULL || !kb_utf8_valid(out.p, out.len)))
        abort();

    kb_buf b = KB_BUF_INIT;
    kb_buf_json_str(&b, s.p, s.len);
    cJSON *j = cJSON_ParseWithLength(b.buf, b.len);
    if (j == NULL || !cJSON_IsString(j))
        abort();
    /* Valid UTF-8 without NUL round-trips byte for byte. */
    if (kb_utf8_valid(s.p, s.len) && memchr(s.p, 0, s.len) == NULL &&
        (strlen(j->valuestring) != size || memcmp(j->valuestring, data, size) != 0))
        abort();
    cJSON_Delete(j);
    kb_buf_release(&b);
    kb_arena_release(&a);
    return 0;
}
