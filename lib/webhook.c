/* webhook.c - Stripe-Signature verification and event application; see kb_webhook.h.
 *
 * Invariant: a signature is accepted only if some v1 value equals
 * HMAC-SHA256(secret, t "." body) for some configured secret, computed and
 * compared in constant time by kb_hmac_sha256_verify (lib/crypto.c, the only
 * place a MAC is computed), and |now - t| <= tolerance.
 */
#include "kb_webhook.h"

#include <stdio.h>
#include <string.h>

#include "kb_config.h"
#include "kb_crypto.h"
#include "kb_banned.h"

#define MAX_SIGS 8

static const kb_stmt apply_stmt = {"stripe_apply_event",
                                   "SELECT kb_stripe_apply_event($1::jsonb, $2, $3)", 3, false};

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

kb_webhook_verdict
kb_webhook_verify(kb_str header, kb_str body, const char *secrets, long tolerance_s, int64_t now_s)
{
    if (header.p == NULL || secrets == NULL)
        return KB_WEBHOOK_MISSING;
    kb_str t = KB_STR_NULL;
    unsigned char sigs[MAX_SIGS][KB_HMAC_SHA256_LEN];
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
                 kb_hex_decode((kb_str){part.p + 3, part.len - 3}, sigs[nsigs], KB_HMAC_SHA256_LEN))
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
            /* HMAC over t "." body, with no copy of the body, against every v1
             * of every secret: no early exit. */
            const kb_str parts[] = {t, KB_STR_LIT("."), body};
            match |= kb_hmac_sha256_verify(secret.p, secret.len, parts, 3, sigs, nsigs);
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
