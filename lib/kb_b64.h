/* kb_b64.h - unpadded base64url (RFC 4648 §5), strict on input.
 *
 * Used for JWT segments and API keys. The decoder accepts only the URL-safe
 * alphabet, no padding, no whitespace, and rejects non-canonical encodings
 * (a length of 1 mod 4, or unused trailing bits that are not zero), so every
 * byte string has exactly one accepted spelling.
 */
#ifndef KB_B64_H
#define KB_B64_H

#include <stdbool.h>
#include <stddef.h>

/* Characters needed to encode n bytes (no NUL). */
#define KB_B64URL_LEN(n) (((n) / 3) * 4 + ((n) % 3 == 0 ? 0 : (n) % 3 + 1))

/* Encode n bytes into out (KB_B64URL_LEN(n) + 1 bytes, NUL-terminated). Returns the length. */
size_t kb_b64url_encode(const void *in, size_t n, char *out);

/*
 * Decode len characters into out, which has room for outsz bytes (len * 3 / 4
 * is always enough). Returns false on any character outside the alphabet,
 * a non-canonical tail, or when out is too small; *outlen is the byte count.
 */
bool kb_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outsz, size_t *outlen);

#endif
