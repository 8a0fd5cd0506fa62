/* b64.c - unpadded base64url over libsodium's codec (as lib/cursor.c uses it); see kb_b64.h.
 * libsodium refuses padding, other alphabets, a length of 1 mod 4 and
 * non-zero unused bits, which is the strictness kb_b64.h promises. */
#include "kb_b64.h"

#include <sodium.h>

#include "kb_banned.h"

size_t
kb_b64url_encode(const void *in, size_t n, char *out)
{
    sodium_bin2base64(out, KB_B64URL_LEN(n) + 1, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return KB_B64URL_LEN(n);
}

bool
kb_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outsz, size_t *outlen)
{
    const char *end = NULL;
    return sodium_base642bin(out, outsz, in, len, NULL, outlen, &end,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
           end == in + len;
}
