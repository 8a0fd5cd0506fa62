/* fuzz_spool.c - libFuzzer target for kb_spool_parse (the collector's spool records).
 *
 * Invariants: parsing never reads past the input; a record it accepts lies inside
 * it, and writing that record back (kb_spool_append) gives exactly the bytes it took.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_spool.h"
#include "kb_banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t off = 0;
    while (off < size) {
        kb_spool_rec r;
        long n = kb_spool_parse(p + off, size - off, &r);
        if (n <= 0)
            break;
        if ((size_t)n > size - off || r.data < p + off || r.data + r.len > p + off + (size_t)n)
            abort();
        kb_buf b = KB_BUF_INIT;
        kb_spool_append(&b, r.kind, r.wall_ns, r.mono_ns, r.epoch, r.data, r.len);
        /* The canonical form: equal unless the input spelled a number differently. */
        kb_spool_rec again;
        if (kb_spool_parse(b.buf, b.len, &again) != (long)b.len || again.len != r.len ||
            memcmp(again.data, r.data, r.len) != 0 || again.wall_ns != r.wall_ns)
            abort();
        kb_buf_release(&b);
        off += (size_t)n;
    }
    (void)kb_spool_header_len(p, size);
    return 0;
}
