/* fuzz_fixed.c - libFuzzer target for kb_fixed_parse / kb_fixed_format (lib/kb_fixed.h).
 *
 * Invariants, for every input at scales 0, 2 and 4, with and without a sign allowed:
 *  - the verdict equals an independent reference: the text matches
 *    -?[0-9]+(\.[0-9]{1,scale})? (the sign only when allowed) and its value,
 *    computed here in 128-bit arithmetic, is within the bound;
 *  - an accepted value is that reference value, a refusal has a reason;
 *  - both output forms (exactly `scale` decimals, and trimmed) parse back to it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_fixed.h"
#include "kb_banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The grammar and value, independently; false when the text is not a plain decimal. */
static bool
reference(const char *s, size_t n, int scale, bool neg_ok, __int128 *val)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && s[i] == '-' && neg_ok) {
        neg = true;
        i++;
    }
    size_t int_digits = 0, frac_digits = 0;
    __int128 v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        if (v < ((__int128)1 << 100))
            v = v * 10 + (s[i] - '0');
        i++;
        int_digits++;
    }
    if (int_digits == 0)
        return false;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (v < ((__int128)1 << 100))
                v = v * 10 + (s[i] - '0');
            i++;
            frac_digits++;
        }
        if (frac_digits == 0 || frac_digits > (size_t)scale)
            return false;
    }
    if (i != n)
        return false;
    for (size_t k = frac_digits; k < (size_t)scale; k++) {
        if (v < ((__int128)1 << 100))
            v *= 10;
    }
    *val = neg ? -v : v;
    return true;
}

static void
check(const char *s, size_t n, int scale, bool neg_ok, int64_t max)
{
    int64_t v = 0;
    const char *why = NULL;
    bool ok = kb_fixed_parse(s, n, scale, neg_ok, max, &v, &why);
    __int128 ref;
    bool want = reference(s, n, scale, neg_ok, &ref) && ref <= max && ref >= -(__int128)max;
    if (ok != want)
        abort();
    if (!ok) {
        if (why == NULL)
            abort();
        return;
    }
    if ((__int128)v != ref)
        abort();
    char out[KB_FIXED_FMT_MAX];
    for (int trim = 0; trim < 2; trim++) {
        size_t m = trim ? kb_fixed_format_trim(v, scale, out) : kb_fixed_format(v, scale, out);
        if (m == 0 || m >= sizeof(out) || strlen(out) != m)
            abort();
        int64_t back = 0;
        if (!kb_fixed_parse(out, m, scale, true, max, &back, &why) || back != v)
            abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    static const int scales[] = {0, 2, 4};
    for (size_t k = 0; k < 3; k++) {
        for (int neg = 0; neg < 2; neg++) {
            check(s, size, scales[k], neg, KB_PRICE_DOLLAR);
            check(s, size, scales[k], neg, KB_QTY_MAX);
            check(s, size, scales[k], neg, INT64_MAX);
        }
    }
    return 0;
}
