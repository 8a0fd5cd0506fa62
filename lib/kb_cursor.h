/* kb_cursor.h - pagination cursors: /deltas and /trades (API.md §5.7), and the
 * catalogue lists GET /markets and GET /events (§5.10-5.11).
 *
 * A /deltas cursor is standard base64 (with '+', '/', '=') of the compact JSON
 * {"ts":"<ts as in §1.1>","id":<row id>} built from the last row of a page.
 * A list cursor travels in a query string, so it is base64url without padding
 * (nothing to percent-encode) of {"list":"<name>","at":"<ts>","key":"<ticker>"}
 * ("at" only for lists ordered by an instant first). Both are opaque to clients
 * and tied to neither the filters nor the range of the first request.
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

/* The last row of a catalogue list page: its order keys. */
typedef struct kb_list_cursor {
    int64_t at_us;   /* the row's instant (markets: discovered_at); 0 when the list has none */
    const char *key; /* the row's ticker (arena-owned, valid UTF-8, no NUL) */
} kb_list_cursor;

/* Most bytes of a list cursor's key (longer keys cannot be paged past). */
#define KB_LIST_CURSOR_KEY_MAX 512

/* Arena-owned list cursor of list ("markets"), at_us when with_at, and key. */
char *
kb_cursor_list_encode(kb_arena *a, const char *list, bool with_at, int64_t at_us, const char *key);

/*
 * Decode a list cursor of list (base64url, padded or not):
 * "list" must equal list, "at" must be present exactly when with_at, "key" a
 * string of at most KB_LIST_CURSOR_KEY_MAX bytes. False on any failure;
 * out->key is arena-owned.
 */
bool
kb_cursor_list_decode(kb_arena *a, kb_str s, const char *list, bool with_at, kb_list_cursor *out);

#endif
