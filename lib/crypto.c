/* crypto.c - see kb_crypto.h. */
#include "kb_crypto.h"

#include <sodium.h>

#include "kb_banned.h"

void
kb_sha256_hex(const void *data, size_t len, char out[KB_SHA256_HEX_LEN + 1])
{
    unsigned char md[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(md, data, len);
    sodium_bin2hex(out, KB_SHA256_HEX_LEN + 1, md, sizeof(md));
}

void
kb_hmac_sha256(const void *key, size_t keylen, const kb_str *parts, size_t n,
               unsigned char out[KB_HMAC_SHA256_LEN])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, keylen);
    for (size_t i = 0; i < n; i++)
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)parts[i].p, parts[i].len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

bool
kb_hmac_sha256_verify(const void *key, size_t keylen, const kb_str *parts, size_t n,
                      const unsigned char (*tags)[KB_HMAC_SHA256_LEN], size_t ntags)
{
    unsigned char mac[KB_HMAC_SHA256_LEN];
    kb_hmac_sha256(key, keylen, parts, n, mac);
    bool ok = false;
    for (size_t i = 0; i < ntags; i++)
        ok |= kb_ct_equal(mac, sizeof(mac), tags[i], sizeof(tags[i]));
    sodium_memzero(mac, sizeof(mac));
    return ok;
}

bool
kb_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return false;
    return sodium_memcmp(a, b, alen) == 0;
}

bool
kb_hex_decode(kb_str hex, unsigned char *out, size_t outsz)
{
    size_t n = 0;
    const char *end = NULL;
    return hex.p != NULL && hex.len == 2 * outsz &&
           sodium_hex2bin(out, outsz, hex.p, hex.len, NULL, &n, &end) == 0 && n == outsz &&
           end == hex.p + hex.len;
}
