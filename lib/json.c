/* json.c - the JSON writer, the request-body parser and its typed getters; see kb_json.h.
 *
 * The parser is our own recursive descent (not cJSON_Parse) because cJSON
 * accepts duplicate keys and invalid UTF-8, loses number literals and has no
 * useful bounds; it still builds cJSON nodes so callers use the cJSON API.
 */
#include "kb_json.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kb_http.h"
#include "kb_str.h"

#include "kb_banned.h"

void
kb_jw_init(kb_jw *w, kb_buf *b)
{
    memset(w, 0, sizeof(*w));
    w->b = b;
}

/* Comma before a value or key, unless it follows a key. */
static void
sep(kb_jw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth > 0) {
        if (w->need_comma[w->depth])
            kb_buf_putc(w->b, ',');
        w->need_comma[w->depth] = true;
    }
}

static void
open_(kb_jw *w, char c)
{
    sep(w);
    kb_buf_putc(w->b, c);
    assert(w->depth + 1 < KB_JW_MAX_DEPTH);
    w->depth++;
    w->need_comma[w->depth] = false;
}

static void
close_(kb_jw *w, char c)
{
    assert(w->depth > 0);
    w->depth--;
    kb_buf_putc(w->b, c);
}

void
kb_jw_obj(kb_jw *w)
{
    open_(w, '{');
}

void
kb_jw_obj_end(kb_jw *w)
{
    close_(w, '}');
}

void
kb_jw_arr(kb_jw *w)
{
    open_(w, '[');
}

void
kb_jw_arr_end(kb_jw *w)
{
    close_(w, ']');
}

void
kb_jw_key(kb_jw *w, const char *name)
{
    sep(w);
    kb_buf_json_str(w->b, name, strlen(name));
    kb_buf_putc(w->b, ':');
    w->after_key = true;
}

void
kb_jw_strn(kb_jw *w, const char *s, size_t n)
{
    sep(w);
    if (s == NULL)
        kb_buf_puts(w->b, "null");
    else
        kb_buf_json_str(w->b, s, n);
}

void
kb_jw_str(kb_jw *w, const char *s)
{
    kb_jw_strn(w, s, s ? strlen(s) : 0);
}

void
kb_jw_int(kb_jw *w, int64_t v)
{
    sep(w);
    kb_buf_printf(w->b, "%" PRId64, v);
}

void
kb_jw_double(kb_jw *w, double v, int decimals)
{
    sep(w);
    if (!isfinite(v)) {
        kb_buf_puts(w->b, "null");
        return;
    }
    kb_buf_printf(w->b, "%.*f", decimals, v);
}

void
kb_jw_bool(kb_jw *w, bool v)
{
    sep(w);
    kb_buf_puts(w->b, v ? "true" : "false");
}

void
kb_jw_null(kb_jw *w)
{
    sep(w);
    kb_buf_puts(w->b, "null");
}

void
kb_jw_raw(kb_jw *w, const char *json, size_t n)
{
    sep(w);
    kb_buf_append(w->b, json, n);
}

/* ---- parser ---------------------------------------------------------------- */

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
        case '"': kb_buf_putc(b, '"'); break;
        case '\\': kb_buf_putc(b, '\\'); break;
        case '/': kb_buf_putc(b, '/'); break;
        case 'b': kb_buf_putc(b, '\b'); break;
        case 'f': kb_buf_putc(b, '\f'); break;
        case 'n': kb_buf_putc(b, '\n'); break;
        case 'r': kb_buf_putc(b, '\r'); break;
        case 't': kb_buf_putc(b, '\t'); break;
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

/* ---- getters ----------------------------------------------------------------- */

static void __attribute__((format(printf, 4, 0)))
vproblem(kb_ctx *ctx, const char *loc, const char *name, const char *fmt, va_list ap)
{
    if (ctx->err == KB_E_VALIDATION && ctx->err_msg.len > 0) {
        kb_buf_puts(&ctx->err_msg, "; ");
    } else {
        kb_buf_reset(&ctx->err_msg);
        ctx->err = KB_E_VALIDATION;
    }
    kb_buf_puts(&ctx->err_msg, loc);
    if (name != NULL) {
        kb_buf_putc(&ctx->err_msg, '.');
        kb_buf_puts(&ctx->err_msg, name);
    }
    kb_buf_puts(&ctx->err_msg, ": ");
    kb_buf_vprintf(&ctx->err_msg, fmt, ap);
}

void
kb_json_problem(kb_ctx *ctx, const char *loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vproblem(ctx, loc, NULL, fmt, ap);
    va_end(ap);
}

/* "body.<name>: <reason>"; returns KB_E_VALIDATION. */
static kb_err __attribute__((format(printf, 3, 4)))
field_problem(kb_ctx *ctx, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vproblem(ctx, "body", name, fmt, ap);
    va_end(ap);
    return KB_E_VALIDATION;
}

const char *
kb_json_num_literal(const cJSON *item)
{
    return cJSON_IsNumber(item) ? item->valuestring : NULL;
}

/*
 * The member to read, or NULL when there is nothing to read: absent (a
 * problem when required, recorded in *res) or an allowed null.
 */
static const cJSON *
member(kb_ctx *ctx, const cJSON *obj, const char *name, unsigned flags, bool *set, kb_err *res)
{
    if (set != NULL)
        *set = false;
    *res = KB_OK;
    const cJSON *m = obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
    if (m == NULL) {
        if (flags & KB_JSON_REQUIRED)
            *res = field_problem(ctx, name, "Field required");
        return NULL;
    }
    if (cJSON_IsNull(m) && (flags & KB_JSON_NULLABLE))
        return NULL;
    return m;
}

static size_t
utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

kb_err
kb_json_get_str(kb_ctx *ctx, const cJSON *obj, const char *name, unsigned flags,
                size_t max_chars, const char **out, bool *set)
{
    kb_err res;
    const cJSON *m = member(ctx, obj, name, flags, set, &res);
    if (m == NULL)
        return res;
    if (!cJSON_IsString(m) || m->valuestring == NULL)
        return field_problem(ctx, name, "Input should be a valid string");
    if (max_chars > 0 && utf8_chars(m->valuestring) > max_chars)
        return field_problem(ctx, name, "String should have at most %zu character%s", max_chars,
                             max_chars == 1 ? "" : "s");
    *out = m->valuestring;
    if (set != NULL)
        *set = true;
    return KB_OK;
}

kb_err
kb_json_get_int(kb_ctx *ctx, const cJSON *obj, const char *name, unsigned flags, int64_t min,
                int64_t max, int64_t *out, bool *set)
{
    kb_err res;
    const cJSON *m = member(ctx, obj, name, flags, set, &res);
    if (m == NULL)
        return res;
    const char *lit = kb_json_num_literal(m);
    if (lit == NULL)
        return field_problem(ctx, name, "Input should be a valid integer");
    int64_t v;
    if (strpbrk(lit, ".eE") == NULL) {
        const char *why = NULL;
        if (!kb_parse_i64(kb_str_c(lit), INT64_MIN, INT64_MAX, &v, &why))
            return field_problem(ctx, name, "Input should be a valid integer, %s",
                                 "number out of range");
    } else {
        /* Integral floats are integers (Pydantic's lax mode), but only
         * where a double still represents every integer exactly. */
        double d = m->valuedouble;
        if (!isfinite(d) || fabs(d) > 9007199254740992.0)
            return field_problem(ctx, name, "Input should be a valid integer, %s",
                                 "number out of range");
        if (d != floor(d))
            return field_problem(ctx, name,
                                 "Input should be a valid integer, got a number with a "
                                 "fractional part");
        v = (int64_t)d;
    }
    if (v < min)
        return field_problem(ctx, name, "Input should be greater than or equal to %" PRId64, min);
    if (v > max)
        return field_problem(ctx, name, "Input should be less than or equal to %" PRId64, max);
    *out = v;
    if (set != NULL)
        *set = true;
    return KB_OK;
}

kb_err
kb_json_get_bool(kb_ctx *ctx, const cJSON *obj, const char *name, unsigned flags, bool *out,
                 bool *set)
{
    kb_err res;
    const cJSON *m = member(ctx, obj, name, flags, set, &res);
    if (m == NULL)
        return res;
    if (!cJSON_IsBool(m))
        return field_problem(ctx, name, "Input should be a valid boolean");
    *out = cJSON_IsTrue(m);
    if (set != NULL)
        *set = true;
    return KB_OK;
}
