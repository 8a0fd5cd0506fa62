/* crypto.c - see kb_crypto.h. */
#include "kb_crypto.h"

#include <openssl/evp.h>
#include <sodium.h>

#include "kb_banned.h"

void
kb_sha256_hex(const void *data, size_t len, char out[KB_SHA256_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[KB_SHA256_HEX_LEN] = '\0';
}

bool
kb_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return false;
    return sodium_memcmp(a, b, alen) == 0;
}
