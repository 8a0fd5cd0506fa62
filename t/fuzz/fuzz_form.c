/* fuzz_form.c - libFuzzer target for the Stripe form encoder
 * (kb_stripe_form_add / kb_stripe_form_addf).
 *
 * Input: records separated by '\n', each "key\tvalue" (a key without a tab
 * gets an empty value); keys may hold brackets (nested params). Some records
 * go through kb_stripe_form_addf("%s[%d][%s]"). Invariants: the body is
 * well-formed application/x-www-form-urlencoded (only unreserved characters
 * and %XX escapes between '=' and '&'), has one '=' per pair, and
 * percent-decoding every pair gives back exactly the key and value added.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_stripe.h"
#include "kb_banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* the encoder writes upper case only */
}

/* Decode p[0..n) into out (NUL-terminated); abort on anything ill-formed. */
static void
decode(const char *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%') {
            if (i + 2 >= n)
                abort();
            int hi = hexval(p[i + 1]), lo = hexval(p[i + 2]);
            if (hi < 0 || lo < 0)
                abort();
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else {
            abort();
        }
    }
    out[o] = '\0';
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    /* NUL bytes end C strings: replace them so records stay intact. */
    for (size_t i = 0; i < size; i++)
        if (in[i] == '\0')
            in[i] = '\x01';

    enum { MAXP = 64 };
    char *keys[MAXP], *vals[MAXP];
    size_t np = 0;
    kb_stripe_form f = {KB_BUF_INIT};
    char *line = in;
    while (line != NULL && np < MAXP) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *tab = strchr(line, '\t');
        const char *val = "";
        if (tab) {
            *tab = '\0';
            val = tab + 1;
        }
        if (np % 3 == 2 && strlen(line) < 100) {
            char key[256];
            snprintf(key, sizeof(key), "%s[%zu][%s]", line, np, "price");
            kb_stripe_form_addf(&f, val, "%s[%zu][%s]", line, np, "price");
            keys[np] = strdup(key);
        } else {
            kb_stripe_form_add(&f, line, val);
            keys[np] = strdup(line);
        }
        vals[np] = strdup(val);
        np++;
        line = next;
    }

    /* Parse the body back. */
    const char *b = f.body.buf ? f.body.buf : "";
    size_t blen = f.body.len;
    char *dk = malloc(blen + 1), *dv = malloc(blen + 1);
    size_t i = 0, k = 0;
    while (k < np) {
        size_t j = i;
        while (j < blen && b[j] != '&')
            j++;
        const char *eq = memchr(b + i, '=', j - i);
        if (eq == NULL || memchr(eq + 1, '=', (size_t)(b + j - eq - 1)) != NULL)
            abort();
        decode(b + i, (size_t)(eq - (b + i)), dk);
        decode(eq + 1, (size_t)(b + j - eq - 1), dv);
        if (strcmp(dk, keys[k]) != 0 || strcmp(dv, vals[k]) != 0)
            abort();
        k++;
        i = j + 1;
        if (k < np && j >= blen)
            abort(); /* fewer pairs than added */
    }
    if (i != blen + 1)
        abort(); /* trailing data after the last pair */
    for (size_t q = 0; q < np; q++) {
        free(keys[q]);
        free(vals[q]);
    }
    free(dk);
    free(dv);
    kb_stripe_form_release(&f);
    free(in);
    return 0;
}
