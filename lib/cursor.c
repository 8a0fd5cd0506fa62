/* cursor.c - pagination cursors; see kb_cursor.h.
 *
 * Decoding never trusts the input: base64 through libsodium, JSON through
 * cJSON (freed before returning), the timestamp through kb_time_parse.
 */
#include "kb_cursor.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "kb_buf.h"
#include "kb_json.h"
#include "kb_time.h"
#include "kb_banned.h"

#define CURSOR_MAX_RAW 512


char *
kb_cursor_encode(kb_arena *a, int64_t ts_us, int64_t id)
{
    char ts[KB_TIME_FMT_MAX];
    kb_time_format(ts_us, ts, sizeof(ts));
    char *json = kb_arena_printf(a, "{\"ts\":\"%s\",\"id\":%lld}", ts, (long long)id);
    size_t n = strlen(json);
    size_t outlen = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = kb_arena_alloc(a, outlen);
    sodium_bin2base64(out, outlen, (const unsigned char *)json, n,
                      sodium_base64_VARIANT_ORIGINAL);
    return out;
}

bool
kb_cursor_decode(kb_str s, kb_cursor *out)
{
    if (s.p == NULL || s.len == 0 || s.len > CURSOR_MAX_RAW * 2)
        return false;
    unsigned char raw[CURSOR_MAX_RAW + 1];
    size_t rawlen = 0;
    const char *end = NULL;
    bool padded = s.len % 4 == 0;
    if (sodium_base642bin(raw, CURSOR_MAX_RAW, s.p, s.len, NULL, &rawlen, &end,
                          padded ? sodium_base64_VARIANT_ORIGINAL
                                 : sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
        end != s.p + s.len)
        return false;
    raw[rawlen] = '\0';
    /* The one strict parser (whole input, no trailing bytes, no duplicates). */
    cJSON *j = NULL;
    const char *reason;
    size_t at;
    if (!kb_json_parse((const char *)raw, rawlen, &j, &reason, &at))
        return false;
    bool ok = false;
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "ts");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    if (cJSON_IsObject(j) && cJSON_IsString(ts) && cJSON_IsNumber(id) &&
        kb_time_parse(ts->valuestring, strlen(ts->valuestring), false, &out->ts_us, &reason)) {
        double v = id->valuedouble;
        if (isfinite(v) && v >= -9007199254740992.0 && v <= 9007199254740992.0 &&
            (double)(int64_t)v == v) {
            out->id = (int64_t)v;
            ok = true;
        }
    }
    cJSON_Delete(j);
    return ok;
}
