/* fuzz_time.c - libFuzzer target for kb_time_parse (API.md §1.1 timestamps).
 *
 * Invariant: a timestamp that parses formats (kb_time_format) to text that
 * parses back to the same instant, under both the body and the query rules.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_time.h"
#include "kb_banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int q = 0; q < 2; q++) {
        int64_t us = 0;
        const char *why = NULL;
        if (!kb_time_parse((const char *)data, size, q == 1, &us, &why)) {
            if (why == NULL)
                abort();
            continue;
        }
        char out[KB_TIME_FMT_MAX];
        size_t n = kb_time_format(us, out, sizeof(out));
        if (n == 0 || n >= sizeof(out))
            abort();
        int64_t back = 0;
        if (!kb_time_parse(out, n, false, &back, &why) || back != us)
            abort();
        if (!kb_time_parse(out, n, true, &back, &why) || back != us)
            abort();
    }
    return 0;
}
