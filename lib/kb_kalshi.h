/* kb_kalshi.h - Kalshi API credentials: the RSA private key and request signatures.
 *
 * Kalshi authenticates a WebSocket handshake or a REST request with three headers:
 * KALSHI-ACCESS-KEY (the key id), KALSHI-ACCESS-TIMESTAMP (Unix ms) and
 * KALSHI-ACCESS-SIGNATURE, the base64 RSA-PSS signature (SHA-256, MGF1 SHA-256, salt
 * length = digest length) over timestamp + METHOD + path, the path without its query
 * string. A signature is made fresh for every connect and request (the timestamp is
 * part of it). Infra layer: OpenSSL only; the key never leaves this module's struct.
 */
#ifndef KB_KALSHI_H
#define KB_KALSHI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_buf.h"
#include "kb_config.h"

typedef struct kb_kalshi_key {
    void *pkey; /* EVP_PKEY *, NULL when not loaded */
    char id[128];
} kb_kalshi_key;

/* base64 of a 4096-bit signature is 684 bytes. */
#define KB_KALSHI_SIG_MAX 1024

/*
 * Load the PEM private key at path (PKCS#1 "RSA PRIVATE KEY" as Kalshi hands it out,
 * or PKCS#8) for key id. False with one line in *why (the path named, never the key)
 * when the file is unreadable, not PEM, not RSA, or shorter than 2048 bits.
 */
bool kb_kalshi_key_load(kb_kalshi_key *k, const char *id, const char *path, kb_buf *why);

/* Free the key (a zeroed or released struct is fine). */
void kb_kalshi_key_release(kb_kalshi_key *k);

/*
 * The signature of method + path at ts_ms into sig (NUL-terminated base64, at most
 * KB_KALSHI_SIG_MAX bytes with the NUL). A '?' in path ends what is signed. False
 * when OpenSSL fails (logged).
 */
bool kb_kalshi_sign(const kb_kalshi_key *k, int64_t ts_ms, const char *method, const char *path,
                    char *sig, size_t sigsz);

/*
 * The path part of an http(s)/ws(s) URL ("/trade-api/ws/v2"), host and port split out:
 * host into hostsz bytes, *port the explicit or scheme default, *tls for https/wss.
 * False for anything else (no scheme, userinfo, a fragment, an overlong host).
 */
bool kb_kalshi_url_split(const char *url, char *host, size_t hostsz, int *port, bool *tls,
                         const char **path);

/*
 * kbctl check-config's collector checks: when KALSHI_API_KEY_ID is set (this host
 * runs kalshibook-collector), the key file must load, the URLs must be wss:// and
 * https:// with a path, the CA file (if any) must be readable, the shard sizes must
 * fit Kalshi's 200 connections. One line per problem into problems; returns how many.
 */
int kb_kalshi_check_config(const kb_config *cfg, kb_buf *problems);

#endif
