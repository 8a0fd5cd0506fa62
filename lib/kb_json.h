/* kb_json.h - JSON output in API.md field order, and checked reads over cJSON.
 *
 * The writer appends to a kb_buf and tracks commas itself, so handlers emit
 * fields in the documented order and write null for missing values. Nesting
 * is bounded by KB_JW_MAX_DEPTH; deeper output is a programming error.
 */
#ifndef KB_JSON_H
#define KB_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_buf.h"

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

#endif
