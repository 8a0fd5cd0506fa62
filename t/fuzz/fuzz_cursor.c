/* fuzz_cursor.c - libFuzzer target for the pagination cursors: /deltas and
 * /trades (kb_cursor_decode) and the catalogue lists (kb_cursor_list_decode,
 * as "markets" with an instant and as "events" without).
 *
 * Invariant: a cursor that decodes re-encodes to a cursor that decodes to the
 * same values, and that re-encoding is a fixed point.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_cursor.h"
#include "kb_banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The list cursor invariant for one list kind. */
static void
list_round_trip(kb_str in, const char *list, bool with_at)
{
    kb_arena a;
    kb_arena_init(&a, 0);
    kb_list_cursor c, c2;
    if (kb_cursor_list_decode(&a, in, list, with_at, &c)) {
        char *enc = kb_cursor_list_encode(&a, list, with_at, c.at_us, c.key);
        if (!kb_cursor_list_decode(&a, (kb_str){enc, strlen(enc)}, list, with_at, &c2) ||
            c2.at_us != c.at_us || strcmp(c2.key, c.key) != 0)
            abort();
        char *enc2 = kb_cursor_list_encode(&a, list, with_at, c2.at_us, c2.key);
        if (strcmp(enc, enc2) != 0)
            abort();
    }
    kb_arena_release(&a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    list_round_trip((kb_str){(const char *)data, size}, "markets", true);
    list_round_trip((kb_str){(const char *)data, size}, "events", false);
    kb_cursor c;
    if (!kb_cursor_decode((kb_str){(const char *)data, size}, &c))
        return 0;
    kb_arena a;
    kb_arena_init(&a, 0);
    char *enc = kb_cursor_encode(&a, c.ts_us, c.id);
    kb_cursor c2;
    if (enc == NULL || !kb_cursor_decode((kb_str){enc, strlen(enc)}, &c2) || c2.ts_us != c.ts_us ||
        c2.id != c.id)
        abort();
    char *enc2 = kb_cursor_encode(&a, c2.ts_us, c2.id);
    if (strcmp(enc, enc2) != 0)
        abort();
    kb_arena_release(&a);
    return 0;
}
