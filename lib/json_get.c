/* json_get.c - the typed getters over a parsed body (kb_json_get_*) and the problem
 * recorders every request validator uses (kb_json_problem, kb_json_time_problem); see
 * kb_json.h.
 *
 * Each getter checks type and range and records "body.<name>: <reason>" in the context,
 * several problems joined by "; " (API.md 3.2). They are 422 validation_error, except
 * instants that cannot be read (400 invalid_timestamp), which a 422 problem replaces.
 */
#include "kb_json.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kb_http.h"
#include "kb_str.h"
#include "kb_time.h"

#include "kb_banned.h"

/* Record "<loc>[.<name>]: <reason>" as a problem of kind (KB_E_VALIDATION or
 * KB_E_INVALID_TIMESTAMP): joined to problems of the same kind, replacing
 * timestamp problems with a validation one, dropped after a validation one. */
static void __attribute__((format(printf, 5, 0)))
vproblem(kb_ctx *ctx, kb_err kind, const char *loc, const char *name, const char *fmt, va_list ap)
{
    if (kind == KB_E_INVALID_TIMESTAMP && ctx->err == KB_E_VALIDATION)
        return;
    if (ctx->err == kind && ctx->err_msg.len > 0) {
        kb_buf_puts(&ctx->err_msg, "; ");
    } else {
        kb_buf_reset(&ctx->err_msg);
        ctx->err = kind;
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
    vproblem(ctx, KB_E_VALIDATION, loc, NULL, fmt, ap);
    va_end(ap);
}

void
kb_json_time_problem(kb_ctx *ctx, const char *loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vproblem(ctx, KB_E_INVALID_TIMESTAMP, loc, NULL, fmt, ap);
    va_end(ap);
}

/* "body.<name>: <reason>"; returns KB_E_VALIDATION. */
static kb_err __attribute__((format(printf, 3, 4)))
field_problem(kb_ctx *ctx, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vproblem(ctx, KB_E_VALIDATION, "body", name, fmt, ap);
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

kb_err
kb_json_get_str(kb_ctx *ctx, const cJSON *obj, const char *name, unsigned flags, size_t max_chars,
                const char **out, bool *set)
{
    kb_err res;
    const cJSON *m = member(ctx, obj, name, flags, set, &res);
    if (m == NULL)
        return res;
    if (!cJSON_IsString(m) || m->valuestring == NULL)
        return field_problem(ctx, name, "Input should be a valid string");
    if (max_chars > 0 && kb_utf8_chars(m->valuestring, strlen(m->valuestring)) > max_chars)
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
    int64_t v;
    if (lit == NULL && (flags & KB_JSON_LAX) && cJSON_IsString(m)) {
        const char *why = NULL;
        if (!kb_parse_i64(kb_str_trim(kb_str_c(m->valuestring)), INT64_MIN, INT64_MAX, &v, &why))
            return field_problem(ctx, name, "Input should be a valid integer, %s",
                                 "unable to parse string as an integer");
    } else if (lit == NULL) {
        return field_problem(ctx, name, "Input should be a valid integer");
    } else if (strpbrk(lit, ".eE") == NULL) {
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

kb_err
kb_json_get_time(kb_ctx *ctx, const cJSON *obj, const char *name, unsigned flags, int64_t *us,
                 bool *set)
{
    kb_err res;
    const cJSON *m = member(ctx, obj, name, flags, set, &res);
    if (m == NULL)
        return res;
    const char *reason = "Input should be a valid datetime";
    bool ok = cJSON_IsString(m)
                  ? kb_time_parse(m->valuestring, strlen(m->valuestring), false, us, &reason)
                  : cJSON_IsNumber(m) && kb_time_from_unix(m->valuedouble, us, &reason);
    if (!ok) {
        char loc[80];
        snprintf(loc, sizeof(loc), "body.%s", name);
        kb_json_time_problem(ctx, loc, "%s", reason);
        return KB_E_INVALID_TIMESTAMP;
    }
    if (set != NULL)
        *set = true;
    return KB_OK;
}

bool
kb_json_is_null(const cJSON *obj, const char *name)
{
    return cJSON_IsNull(obj ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL);
}
