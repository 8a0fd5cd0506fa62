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
    sodium_bin2base64(out, outlen, (const unsigned char *)json, n, sodium_base64_VARIANT_ORIGINAL);
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

/* ---- catalogue list cursors ---- */

#define LIST_CURSOR_MAX_RAW (KB_LIST_CURSOR_KEY_MAX * 6 + 128) /* a key of escapes, and more */

char *
kb_cursor_list_encode(kb_arena *a, const char *list, bool with_at, int64_t at_us, const char *key)
{
    kb_buf json = KB_BUF_INIT;
    kb_buf_puts(&json, "{\"list\":");
    kb_buf_json_str(&json, list, strlen(list));
    if (with_at) {
        char ts[KB_TIME_FMT_MAX];
        kb_time_format(at_us, ts, sizeof(ts));
        kb_buf_printf(&json, ",\"at\":\"%s\"", ts);
    }
    kb_buf_puts(&json, ",\"key\":");
    kb_buf_json_str(&json, key, strlen(key));
    kb_buf_putc(&json, '}');
    size_t outlen = sodium_base64_encoded_len(json.len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = kb_arena_alloc(a, outlen);
    sodium_bin2base64(out, outlen, (const unsigned char *)json.buf, json.len,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    kb_buf_release(&json);
    return out;
}

bool
kb_cursor_list_decode(kb_arena *a, kb_str s, const char *list, bool with_at, kb_list_cursor *out)
{
    size_t max_in = sodium_base64_encoded_len(LIST_CURSOR_MAX_RAW, sodium_base64_VARIANT_URLSAFE);
    if (s.p == NULL || s.len == 0 || s.len >= max_in)
        return false;
    unsigned char *raw = kb_arena_alloc(a, LIST_CURSOR_MAX_RAW + 1);
    size_t rawlen = 0;
    const char *end = NULL;
    bool padded = s.len % 4 == 0 && s.p[s.len - 1] == '=';
    if (sodium_base642bin(raw, LIST_CURSOR_MAX_RAW, s.p, s.len, NULL, &rawlen, &end,
                          padded ? sodium_base64_VARIANT_URLSAFE
                                 : sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != s.p + s.len)
        return false;
    raw[rawlen] = '\0';
    cJSON *j = NULL;
    const char *reason;
    size_t at;
    if (!kb_json_parse((const char *)raw, rawlen, &j, &reason, &at))
        return false;
    bool ok = false;
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "list");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "at");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "key");
    if (cJSON_IsObject(j) && cJSON_GetArraySize(j) == (with_at ? 3 : 2) && cJSON_IsString(l) &&
        strcmp(l->valuestring, list) == 0 && cJSON_IsString(k) &&
        strlen(k->valuestring) <= KB_LIST_CURSOR_KEY_MAX) {
        out->at_us = 0;
        ok = !with_at || (cJSON_IsString(t) && kb_time_parse(t->valuestring, strlen(t->valuestring),
                                                             false, &out->at_us, &reason));
        if (ok)
            out->key = kb_arena_strdup(a, k->valuestring);
    }
    cJSON_Delete(j);
    return ok;
}
