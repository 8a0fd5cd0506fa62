/* kb_cursor.h - the pagination cursor of /deltas and /trades (API.md §5.7).
 *
 * A cursor is standard base64 (with '+', '/', '=') of the compact JSON
 * {"ts":"<ts as in §1.1>","id":<row id>} built from the last row of a page.
 * It is opaque to clients and tied to neither the ticker nor the range.
 */
#ifndef KB_CURSOR_H
#define KB_CURSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "kb_arena.h"
#include "kb_str.h"

typedef struct kb_cursor {
    int64_t ts_us; /* row ts, microseconds since the epoch (UTC) */
    int64_t id;    /* row identity */
} kb_cursor;

/* Arena-owned encoded cursor for (ts_us, id). */
char *kb_cursor_encode(kb_arena *a, int64_t ts_us, int64_t id);

/*
 * Decode any valid base64 (padded or not) of a JSON object with "ts" (an ISO
 * timestamp; no offset = UTC) and an integer "id". False on any failure.
 */
bool kb_cursor_decode(kb_str s, kb_cursor *out);

#endif
