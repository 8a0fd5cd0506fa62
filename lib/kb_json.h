/* kb_json.h - JSON output in API.md field order, and checked reads over cJSON.
 *
 * The writer appends to a kb_buf and tracks commas itself, so handlers emit
 * fields in the documented order and write null for missing values. Nesting
 * is bounded by KB_JW_MAX_DEPTH; deeper output is a programming error.
 *
 * Request bodies go through kb_json_body() only: one strict parser (RFC 8259
 * grammar, valid UTF-8, no duplicate keys, bounded depth, string length,
 * member and value counts) that builds a cJSON tree, then typed getters that
 * check type and range and record `body.<name>: <reason>` problems (API.md
 * §3.2), several joined by "; ". Every failure is 422 validation_error.
 */
#ifndef KB_JSON_H
#define KB_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "kb_buf.h"
#include "kb_err.h"

#define KB_JW_MAX_DEPTH 16

typedef struct kb_jw {
    kb_buf *b;
    int depth;
    bool need_comma[KB_JW_MAX_DEPTH];
    bool after_key;
} kb_jw;

/* Start writing into b (appends; b is not reset). */
void kb_jw_init(kb_jw *w, kb_buf *b);

void kb_jw_obj(kb_jw *w);     /* { */
void kb_jw_obj_end(kb_jw *w); /* } */
void kb_jw_arr(kb_jw *w);     /* [ */
void kb_jw_arr_end(kb_jw *w); /* ] */

/* "name": — the next value call writes the member's value. */
void kb_jw_key(kb_jw *w, const char *name);

void kb_jw_str(kb_jw *w, const char *s);            /* NULL writes null */
void kb_jw_strn(kb_jw *w, const char *s, size_t n); /* NULL writes null */
void kb_jw_int(kb_jw *w, int64_t v);
void kb_jw_double(kb_jw *w, double v, int decimals);
void kb_jw_bool(kb_jw *w, bool v);
void kb_jw_null(kb_jw *w);
/* Already-serialized JSON (trusted: from Postgres jsonb or our own writer). */
void kb_jw_raw(kb_jw *w, const char *json, size_t n);

/* ---- request bodies ------------------------------------------------------- */

#define KB_JSON_MAX_DEPTH 32     /* nested objects/arrays */
#define KB_JSON_MAX_STRING 65536 /* bytes of one decoded string or key */
#define KB_JSON_MAX_MEMBERS 256  /* members of one object */
#define KB_JSON_MAX_VALUES 20000 /* values in one document */
#define KB_JSON_MAX_NUMBER 64    /* characters of one number literal */

typedef struct kb_req kb_req;
typedef struct kb_ctx kb_ctx;

/*
 * Parse len bytes of JSON text (any top-level value). On success *root is a
 * tree the caller frees with cJSON_Delete(). On failure returns false, *root
 * is NULL and *reason is a static description ("duplicate key", ...) with the
 * byte offset in *at. Strings in the tree are valid UTF-8 without NUL bytes;
 * a number node keeps its literal text in valuestring (kb_json_num_literal).
 */
bool kb_json_parse(const char *s, size_t len, cJSON **root, const char **reason, size_t *at);

/*
 * The request body as a JSON object (API.md §1): the Content-Type must be
 * absent or have a subtype of json or *+json; an empty body is
 * "body: Field required"; malformed JSON, a non-object top level and every
 * parser bound above give 422 validation_error (recorded with kb_fail).
 * On success *root is the object, freed at the arena reset.
 */
kb_err kb_json_body(const kb_req *req, kb_ctx *ctx, cJSON **root);

/* True when a Content-Type value names JSON (subtype json or ending in +json). */
bool kb_json_content_type_ok(const char *ct, size_t len);

/* Flags for the getters. */
#define KB_JSON_REQUIRED 1u /* absent -> "Field required" */
#define KB_JSON_NULLABLE 2u /* null is accepted and reads as not set */
#define KB_JSON_LAX                                                                                \
    4u /* kb_json_get_int also reads an integer string ("100", " 5 "),
                             * as the original's Pydantic lax mode did on the data routes */

/*
 * Typed getters over a body object. Each looks up the member `name`
 * (case-sensitive) and:
 *   - absent: KB_OK with *set = false, *out untouched (a default stays), or
 *     the problem "body.<name>: Field required" with KB_JSON_REQUIRED;
 *   - null: like absent with KB_JSON_NULLABLE, else a type problem;
 *   - wrong type or out of range: a problem;
 *   - otherwise *out is the value and *set = true.
 * Problems are appended to ctx (kb_json_problem), so a handler calls every
 * getter and then `if (ctx->err) return ctx->err;` to report them all.
 * set may be NULL. Return KB_OK or KB_E_VALIDATION (kb_json_get_time also
 * KB_E_INVALID_TIMESTAMP).
 */

/* String of at most max_chars code points (0 = only the parser bound). *out
 * points into the tree (arena lifetime), valid UTF-8, no NUL bytes. */
kb_err kb_json_get_str(kb_ctx *ctx, const cJSON *obj, const char *name, unsigned flags,
                       size_t max_chars, const char **out, bool *set);

/* Integer in [min, max]. Accepts integer literals, and number literals whose
 * value is integral (1.0, 1e2) within ±2^53; rejects fractions, strings,
 * booleans and anything beyond int64 or the range, never with UB. */
kb_err kb_json_get_int(kb_ctx *ctx, const cJSON *obj, const char *name, unsigned flags, int64_t min,
                       int64_t max, int64_t *out, bool *set);

/* JSON true or false only. */
kb_err kb_json_get_bool(kb_ctx *ctx, const cJSON *obj, const char *name, unsigned flags, bool *out,
                        bool *set);

/* An instant (API.md §1.1, §7.10) as microseconds since the epoch: an ISO
 * string (kb_time_parse) or a number of Unix seconds or milliseconds
 * (kb_time_from_unix). Absent is "Field required" (422) as for every getter;
 * a value that is no instant is a timestamp problem (400, kb_json_time_problem). */
kb_err kb_json_get_time(kb_ctx *ctx, const cJSON *obj, const char *name, unsigned flags,
                        int64_t *us, bool *set);

/* True when member name is present and JSON null (a nullable field whose null
 * means something other than absent, e.g. "remove the cap"). */
bool kb_json_is_null(const cJSON *obj, const char *name);

/*
 * Append the validation problem "<loc>: <reason>" to ctx (joined to earlier
 * ones by "; ") and set ctx->err = KB_E_VALIDATION. loc is "body.limit",
 * "query.interval", ... Replaces timestamp problems: 422 wins over 400.
 */
void kb_json_problem(kb_ctx *ctx, const char *loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Append the timestamp problem "<loc>: <reason>" (API.md §7.10: a time that
 * cannot be read, or start after end) and set ctx->err =
 * KB_E_INVALID_TIMESTAMP, unless a validation problem is already recorded:
 * when both kinds occur the answer is the 422 with its problems only.
 */
void kb_json_time_problem(kb_ctx *ctx, const char *loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The literal text of a number node from kb_json_parse ("1e3"), else NULL. */
const char *kb_json_num_literal(const cJSON *item);

#endif
