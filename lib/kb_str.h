/* kb_str.h - borrowed byte strings and small parsers for request data.
 *
 * Request data is a kb_str (pointer, length), never assumed NUL-terminated
 * (nginx's ngx_str_t). A kb_str never owns its bytes.
 */
#ifndef KB_STR_H
#define KB_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_arena.h"

typedef struct kb_str {
    const char *p;
    size_t len;
} kb_str;

#define KB_STR_NULL ((kb_str){NULL, 0})
#define KB_STR_LIT(s) ((kb_str){(s), sizeof(s) - 1})

/* kb_str over a C string (NULL gives the null string). */
kb_str kb_str_c(const char *s);

/* Exact byte equality with a C string. */
bool kb_str_eq(kb_str s, const char *c);

/* ASCII case-insensitive equality with a C string. */
bool kb_str_eq_nocase(kb_str s, const char *c);

/* True when s begins with prefix (case-sensitive). */
bool kb_str_has_prefix(kb_str s, const char *prefix);

/* s without leading and trailing spaces and tabs. */
kb_str kb_str_trim(kb_str s);

/* Arena-owned NUL-terminated copy. */
char *kb_str_dup(kb_arena *a, kb_str s);

/*
 * Parse a base-10 integer in [min, max] (OpenBSD strtonum). The whole of s
 * must be the number: an optional '-', then digits. On failure returns false
 * and sets *errstr to "invalid", "too small" or "too large".
 */
bool kb_parse_i64(kb_str s, int64_t min, int64_t max, int64_t *out, const char **errstr);

/*
 * Percent-decode s into an arena-owned string. With plus_is_space, '+' is
 * read as a space (application/x-www-form-urlencoded). Fails (false) on a
 * malformed escape, a decoded NUL byte, or a result that is not valid UTF-8
 * (kb_utf8_valid: raw or escaped, truncated, overlong, surrogate, > U+10FFFF).
 */
bool kb_str_unescape(kb_arena *a, kb_str s, bool plus_is_space, kb_str *out);

/*
 * Look up the first query parameter called name in a raw query string and
 * form-decode its value into *out. Returns false when absent; a present but
 * undecodable value (kb_str_unescape fails: a bad escape, NUL, not UTF-8)
 * returns true with out->p == NULL.
 */
bool kb_query_get(kb_arena *a, kb_str query, const char *name, kb_str *out);

/* Value of hex digit c (0..15), or -1. */
int kb_hexval(char c);

/* Length (1..4) of the valid UTF-8 sequence at s, 0 when invalid. left >= 1. */
size_t kb_utf8_seq(const char *s, size_t left);

/* True when s is valid UTF-8 (no overlongs, no surrogates). */
bool kb_utf8_valid(const char *s, size_t len);

/* Code points in s, which must be valid UTF-8 (kb_utf8_valid): the bytes that
 * do not continue a sequence. */
size_t kb_utf8_chars(const char *s, size_t len);

#endif
