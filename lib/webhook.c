/* webhook.c - Stripe-Signature verification and event application; see kb_webhook.h.
 *
 * Invariant: a signature is accepted only if some v1 value equals
 * HMAC-SHA256(secret, t "." body) for some configured secret, compared with
 * kb_ct_equal (constant time), and |now - t| <= tolerance.
 */
#include "kb_webhook.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "kb_config.h"
#include "kb_crypto.h"
#include "kb_banned.h"

#define MAX_SIGS 8

static const kb_stmt apply_stmt = {
    "stripe_apply_event", "SELECT kb_stripe_apply_event($1::jsonb, $2, $3)", 3, false};

const char *
kb_webhook_verdict_str(kb_webhook_verdict v)
{
    switch (v) {
    case KB_WEBHOOK_OK:
        return "ok";
    case KB_WEBHOOK_MISSING:
        return "header missing or unparseable";
    case KB_WEBHOOK_MISMATCH:
        return "no v1 signature matches";
    case KB_WEBHOOK_TOO_OLD:
        return "timestamp outside tolerance";
    }
    return "?";
}

static bool
unhex(kb_str s, unsigned char *out, size_t outsz)
{
    if (s.len != outsz * 2)
        return false;
    for (size_t i = 0; i < outsz; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s.p[2 * i + (size_t)k];
            int d = c >= '0' && c <= '9' ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0)
                return false;
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

kb_webhook_verdict
kb_webhook_verify(kb_str header, kb_str body, const char *secrets, long tolerance_s,
                  int64_t now_s)
{
    if (header.p == NULL || secrets == NULL)
        return KB_WEBHOOK_MISSING;
    kb_str t = KB_STR_NULL;
    unsigned char sigs[MAX_SIGS][32];
    size_t nsigs = 0;
    size_t i = 0;
    while (i < header.len) {
        size_t j = i;
        while (j < header.len && header.p[j] != ',')
            j++;
        kb_str part = kb_str_trim((kb_str){header.p + i, j - i});
        if (part.len > 2 && part.p[0] == 't' && part.p[1] == '=')
            t = (kb_str){part.p + 2, part.len - 2};
        else if (part.len > 3 && memcmp(part.p, "v1=", 3) == 0 && nsigs < MAX_SIGS &&
                 unhex((kb_str){part.p + 3, part.len - 3}, sigs[nsigs], 32))
            nsigs++;
        i = j + 1;
    }
    int64_t ts;
    const char *err;
    if (t.p == NULL || nsigs == 0 || !kb_parse_i64(t, 0, INT64_MAX / 2, &ts, &err))
        return KB_WEBHOOK_MISSING;

    bool match = false;
    const char *s = secrets;
    while (*s) {
        size_t n = strcspn(s, ",");
        kb_str secret = kb_str_trim((kb_str){s, n});
        if (secret.len > 0) {
            unsigned char mac[EVP_MAX_MD_SIZE];
            unsigned int maclen = 0;
            /* HMAC over t "." body, streamed to avoid copying the body. */
            EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
            EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
            char digest[] = "SHA256";
            OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                                   OSSL_PARAM_construct_end()};
            size_t outl = 0;
            if (c != NULL && EVP_MAC_init(c, (const unsigned char *)secret.p, secret.len, params) &&
                EVP_MAC_update(c, (const unsigned char *)t.p, t.len) &&
                EVP_MAC_update(c, (const unsigned char *)".", 1) &&
                EVP_MAC_update(c, (const unsigned char *)body.p, body.len) &&
                EVP_MAC_final(c, mac, &outl, sizeof(mac)))
                maclen = (unsigned int)outl;
            EVP_MAC_CTX_free(c);
            EVP_MAC_free(m);
            for (size_t k = 0; k < nsigs && maclen == 32; k++)
                match |= kb_ct_equal(mac, 32, sigs[k], 32); /* no early exit */
        }
        s += n;
        if (*s == ',')
            s++;
    }
    if (!match)
        return KB_WEBHOOK_MISMATCH;
    if (ts < now_s - tolerance_s || ts > now_s + tolerance_s)
        return KB_WEBHOOK_TOO_OLD;
    return KB_WEBHOOK_OK;
}

kb_err
kb_webhook_apply(kb_db *db, kb_arena *a, const char *event_json, const char **outcome)
{
    const char *params[] = {event_json, kb_cfg.stripe_project_price, kb_cfg.stripe_payg_price};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(db, a, &apply_stmt, params, &r);
    if (err)
        return err;
    if (PQntuples(r) != 1)
        return KB_E_INTERNAL;
    *outcome = kb_arena_strdup(a, PQgetvalue(r, 0, 0));
    return KB_OK;
}
