/* kb_crypto.h - hashes, MACs, hex and comparisons, all over libsodium.
 *
 * One library per primitive: libsodium for SHA-256, HMAC-SHA256, hex,
 * base64url (kb_b64.h), constant-time comparison and randomness; OpenSSL only
 * for the public-key JWT signatures (ES256, RS256) in lib/jwt.c and for TLS.
 *
 * Invariant (t/integration/test_security): this is the only object that
 * computes a MAC, and it compares secrets only with sodium_memcmp; it is built
 * with -fno-builtin so that any other byte compare would show in `nm -u`.
 */
#ifndef KB_CRYPTO_H
#define KB_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#include "kb_str.h"

#define KB_SHA256_HEX_LEN 64
#define KB_HMAC_SHA256_LEN 32

/* Lower-case hex SHA-256 of data into out (65 bytes with the NUL). */
void kb_sha256_hex(const void *data, size_t len, char out[KB_SHA256_HEX_LEN + 1]);

/* HMAC-SHA256 under key (any length) of the concatenation of parts[0..n). */
void kb_hmac_sha256(const void *key, size_t keylen, const kb_str *parts, size_t n,
                    unsigned char out[KB_HMAC_SHA256_LEN]);

/* True when one of tags[0..ntags) is HMAC-SHA256(key, parts): computed once
 * here and compared with each in constant time, with no early exit, so a
 * caller never holds the expected tag. */
bool kb_hmac_sha256_verify(const void *key, size_t keylen, const kb_str *parts, size_t n,
                           const unsigned char (*tags)[KB_HMAC_SHA256_LEN], size_t ntags);

/* Constant-time equality of two equal-length byte strings (false if lengths differ). */
bool kb_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Decode exactly 2 * outsz hex digits (either case) into out; false otherwise. */
bool kb_hex_decode(kb_str hex, unsigned char *out, size_t outsz);

#endif
