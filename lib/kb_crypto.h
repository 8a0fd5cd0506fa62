/* kb_crypto.h - hashes and comparisons over OpenSSL and libsodium. */
#ifndef KB_CRYPTO_H
#define KB_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#define KB_SHA256_HEX_LEN 64

/* Lower-case hex SHA-256 of data into out (65 bytes with the NUL). */
void kb_sha256_hex(const void *data, size_t len, char out[KB_SHA256_HEX_LEN + 1]);

/* Constant-time equality of two equal-length byte strings (false if lengths differ). */
bool kb_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
