/* fuzz_cursor.c - libFuzzer target for the /deltas and /trades pagination
 * cursor (kb_cursor_decode).
 *
 * Invariant: a cursor that decodes re-encodes (kb_cursor_encode) to a cursor
 * that decodes to the same (ts, id), and that re-encoding is a fixed point.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_cursor.h"
#include "kb_banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
