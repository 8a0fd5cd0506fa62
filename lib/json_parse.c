/* json_parse.c - the request-body parser (kb_json_parse, kb_json_body); see kb_json.h.
 *
 * The parser is our own recursive descent (not cJSON_Parse) because cJSON
 * accepts duplicate keys and invalid UTF-8, loses number literals and has no
 * useful bounds; it still builds cJSON nodes so callers use the cJSON API.
 */
#include "kb_json.h"

#include <stdlib.h>
#include <string.h>

#include "kb_http.h"
#include "kb_str.h"

#include "kb_banned.h"

typedef struct jp {
    const char *s;
    size_t len, pos;
    int depth;
    size_t values;
    const char *err;
    size_t err_at;
} jp;

static cJSON *parse_value(jp *p);

static void *
perr(jp *p, const char *why)
{
    if (p->err == NULL) {
        p->err = why;
        p->err_at = p->pos;
    }
    return NULL;
}

static void
skip_ws(jp *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static bool
read_hex4(jp *p, unsigned *out)
{
    if (p->len - p->pos < 4)
        return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = kb_hexval(p->s[p->pos + (size_t)i]);
        if (h < 0)
            return false;
        v = v << 4 | (unsigned)h;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static void
put_utf8(kb_buf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    kb_buf_append(b, u, n);
}

/* A string at p->pos (the opening quote) decoded into b. */
static bool
parse_string(jp *p, kb_buf *b)
{
    p->pos++; /* the quote */
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (b->len > KB_JSON_MAX_STRING)
            return perr(p, "string too long"), false;
        if (c == '"') {
            p->pos++;
            return true;
        }
        if (c < 0x20)
            return perr(p, "control character in string"), false;
        if (c >= 0x80) {
            size_t n = kb_utf8_seq(p->s + p->pos, p->len - p->pos);
            if (n == 0)
                return perr(p, "invalid UTF-8"), false;
            kb_buf_append(b, p->s + p->pos, n);
            p->pos += n;
            continue;
        }
        if (c != '\\') {
            kb_buf_putc(b, (char)c);
            p->pos++;
            continue;
        }
        if (++p->pos >= p->len)
            break;
        char e = p->s[p->pos++];
        unsigned cp, lo;
        switch (e) {
        case '"':
            kb_buf_putc(b, '"');
            break;
        case '\\':
            kb_buf_putc(b, '\\');
            break;
        case '/':
            kb_buf_putc(b, '/');
            break;
        case 'b':
            kb_buf_putc(b, '\b');
            break;
        case 'f':
            kb_buf_putc(b, '\f');
            break;
        case 'n':
            kb_buf_putc(b, '\n');
            break;
        case 'r':
            kb_buf_putc(b, '\r');
            break;
        case 't':
            kb_buf_putc(b, '\t');
            break;
        case 'u':
            if (!read_hex4(p, &cp))
                return perr(p, "invalid \\u escape"), false;
            if (cp == 0)
                return perr(p, "NUL character in string"), false;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return perr(p, "unpaired surrogate"), false;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
                    return perr(p, "unpaired surrogate"), false;
                p->pos += 2;
                if (!read_hex4(p, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return perr(p, "unpaired surrogate"), false;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            put_utf8(b, cp);
            break;
        default:
            return perr(p, "invalid escape in string"), false;
        }
    }
    return perr(p, "unterminated string"), false;
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static cJSON *
parse_number(jp *p)
{
    size_t start = p->pos, i = p->pos;
    const char *s = p->s;
    if (i < p->len && s[i] == '-')
        i++;
    if (i >= p->len || !is_digit(s[i]))
        return perr(p, "invalid number");
    if (s[i] == '0')
        i++;
    else
        while (i < p->len && is_digit(s[i]))
            i++;
    if (i < p->len && s[i] == '.') {
        i++;
        if (i >= p->len || !is_digit(s[i]))
            return perr(p, "invalid number");
        while (i < p->len && is_digit(s[i]))
            i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= p->len || !is_digit(s[i]))
            return perr(p, "invalid number");
        while (i < p->len && is_digit(s[i]))
            i++;
    }
    size_t n = i - start;
    if (n > KB_JSON_MAX_NUMBER)
        return perr(p, "number literal too long");
    char lit[KB_JSON_MAX_NUMBER + 1];
    memcpy(lit, s + start, n);
    lit[n] = '\0';
    p->pos = i;
    cJSON *item = cJSON_CreateNumber(strtod(lit, NULL));
    char *copy = cJSON_malloc(n + 1);
    if (item == NULL || copy == NULL) {
        cJSON_Delete(item);
        cJSON_free(copy);
        return perr(p, "out of memory");
    }
    memcpy(copy, lit, n + 1);
    item->valuestring = copy;
    return item;
}

static bool
literal(jp *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return false;
    p->pos += n;
    return true;
}

static cJSON *
parse_container(jp *p, bool is_obj)
{
    if (++p->depth > KB_JSON_MAX_DEPTH)
        return perr(p, "nested too deeply");
    cJSON *c = is_obj ? cJSON_CreateObject() : cJSON_CreateArray();
    if (c == NULL)
        return perr(p, "out of memory");
    kb_buf key = KB_BUF_INIT;
    size_t members = 0;
    char close = is_obj ? '}' : ']';
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        goto done;
    }
    for (;;) {
        skip_ws(p);
        if (is_obj) {
            if (p->pos >= p->len || p->s[p->pos] != '"') {
                perr(p, "expected a string key");
                goto fail;
            }
            kb_buf_reset(&key);
            if (!parse_string(p, &key))
                goto fail;
            if (++members > KB_JSON_MAX_MEMBERS) {
                perr(p, "too many members in an object");
                goto fail;
            }
            /* Strings never hold NUL, so C-string comparison is exact. */
            for (const cJSON *m = c->child; m != NULL; m = m->next) {
                if (strcmp(m->string, kb_buf_cstr(&key)) == 0) {
                    perr(p, "duplicate key");
                    goto fail;
                }
            }
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                perr(p, "expected ':'");
                goto fail;
            }
            p->pos++;
        }
        cJSON *v = parse_value(p);
        if (v == NULL)
            goto fail;
        if (is_obj)
            cJSON_AddItemToObject(c, kb_buf_cstr(&key), v);
        else
            cJSON_AddItemToArray(c, v);
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        perr(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        goto fail;
    }
done:
    kb_buf_release(&key);
    p->depth--;
    return c;
fail:
    kb_buf_release(&key);
    cJSON_Delete(c);
    return NULL;
}

static cJSON *
parse_value(jp *p)
{
    skip_ws(p);
    if (++p->values > KB_JSON_MAX_VALUES)
        return perr(p, "too many values");
    if (p->pos >= p->len)
        return perr(p, "unexpected end of input");
    char c = p->s[p->pos];
    switch (c) {
    case '{':
    case '[':
        return parse_container(p, c == '{');
    case '"': {
        kb_buf b = KB_BUF_INIT;
        cJSON *item = NULL;
        if (parse_string(p, &b)) {
            item = cJSON_CreateString(kb_buf_cstr(&b));
            if (item == NULL)
                perr(p, "out of memory");
        }
        kb_buf_release(&b);
        return item;
    }
    case 't':
        return literal(p, "true") ? cJSON_CreateTrue() : perr(p, "invalid literal");
    case 'f':
        return literal(p, "false") ? cJSON_CreateFalse() : perr(p, "invalid literal");
    case 'n':
        return literal(p, "null") ? cJSON_CreateNull() : perr(p, "invalid literal");
    default:
        if (c == '-' || is_digit(c))
            return parse_number(p);
        return perr(p, "unexpected character");
    }
}

bool
kb_json_parse(const char *s, size_t len, cJSON **root, const char **reason, size_t *at)
{
    jp p = {s, len, 0, 0, 0, NULL, 0};
    *root = NULL;
    cJSON *v = parse_value(&p);
    if (v != NULL) {
        skip_ws(&p);
        if (p.pos != p.len) {
            perr(&p, "extra data after the value");
            cJSON_Delete(v);
            v = NULL;
        }
    }
    if (v == NULL) {
        *reason = p.err ? p.err : "invalid JSON";
        *at = p.err_at;
        return false;
    }
    *root = v;
    return true;
}

bool
kb_json_content_type_ok(const char *ct, size_t len)
{
    size_t end = 0;
    while (end < len && ct[end] != ';')
        end++;
    kb_str mt = kb_str_trim((kb_str){ct, end});
    const char *slash = memchr(mt.p, '/', mt.len);
    if (slash == NULL || slash == mt.p)
        return false;
    kb_str sub = {slash + 1, mt.len - (size_t)(slash + 1 - mt.p)};
    if (kb_str_eq_nocase(sub, "json"))
        return true;
    return sub.len > 5 && kb_str_eq_nocase((kb_str){sub.p + sub.len - 5, 5}, "+json");
}

static void
delete_tree(void *root)
{
    cJSON_Delete(root);
}

kb_err
kb_json_body(const kb_req *req, kb_ctx *ctx, cJSON **root)
{
    *root = NULL;
    if (req->content_type.p != NULL && req->content_type.len > 0 &&
        !kb_json_content_type_ok(req->content_type.p, req->content_type.len))
        return kb_fail(ctx, KB_E_VALIDATION,
                       "body: Input should be a valid dictionary or object to extract fields "
                       "from (Content-Type is not JSON)");
    if (req->body.len == 0)
        return kb_fail(ctx, KB_E_VALIDATION, "body: Field required");
    const char *why = NULL;
    size_t at = 0;
    cJSON *tree = NULL;
    if (!kb_json_parse(req->body.p, req->body.len, &tree, &why, &at))
        return kb_fail(ctx, KB_E_VALIDATION, "body: JSON decode error: %s at byte %zu", why, at);
    kb_arena_on_reset(ctx->arena, delete_tree, tree);
    if (!cJSON_IsObject(tree))
        return kb_fail(ctx, KB_E_VALIDATION,
                       "body: Input should be a valid dictionary or object to extract fields from");
    *root = tree;
    return KB_OK;
}
