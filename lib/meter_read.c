/* meter_read.c - the meter's results read by column name, its outcomes, and the API
 * key out of an Authorization header; see kb_meter.h. */
#include "kb_meter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kb_banned.h"

static const char *const outcome_names[] = {
    [KB_METER_OK] = "ok",
    [KB_METER_INVALID_KEY] = "invalid_key",
    [KB_METER_RATE_LIMITED] = "rate_limited",
    [KB_METER_EXHAUSTED] = "exhausted",
};

bool
kb_meter_outcome_parse(const char *name, kb_meter_outcome *out)
{
    for (size_t i = 0; i < sizeof(outcome_names) / sizeof(outcome_names[0]); i++) {
        if (name != NULL && strcmp(name, outcome_names[i]) == 0) {
            *out = (kb_meter_outcome)i;
            return true;
        }
    }
    return false;
}

const char *
kb_meter_outcome_name(kb_meter_outcome o)
{
    return (unsigned)o < sizeof(outcome_names) / sizeof(outcome_names[0]) ? outcome_names[o]
                                                                          : "unknown";
}

/* ---- reading the result by name ---- */

typedef struct rd {
    const PGresult *r;
    int row;
    const char *why;
} rd;

/* Column name's value ("" when NULL); NULL with rd->why set when missing. */
static const char *
col(rd *d, const char *name)
{
    int c = PQfnumber(d->r, name);
    if (c < 0) {
        d->why = "a column is missing";
        return NULL;
    }
    return PQgetisnull(d->r, d->row, c) ? "" : PQgetvalue(d->r, d->row, c);
}

static void
col_text(rd *d, const char *name, char *out, size_t outsz)
{
    const char *v = col(d, name);
    if (v == NULL)
        return;
    if (strlen(v) >= outsz) {
        d->why = "a text column is too long";
        return;
    }
    memcpy(out, v, strlen(v) + 1);
}

static int64_t
col_i64(rd *d, const char *name)
{
    const char *v = col(d, name);
    if (v == NULL || *v == '\0')
        return 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*end != '\0') {
        d->why = "a number column is malformed";
        return 0;
    }
    return x;
}

/* Column name's text into out when the result has it or nothing is given;
 * otherwise the given value. */
static void
col_text_or(rd *d, const char *name, char *out, size_t outsz, const char *given)
{
    if (PQfnumber(d->r, name) >= 0 || given == NULL)
        col_text(d, name, out, outsz);
    else
        snprintf(out, outsz, "%s", given);
}

bool
kb_meter_result_read(const PGresult *r, int row, const kb_meter_result *given, kb_meter_result *out,
                     const char **why)
{
    memset(out, 0, sizeof(*out));
    if (r == NULL || row < 0 || row >= PQntuples(r)) {
        *why = "no such row";
        return false;
    }
    rd d = {r, row, NULL};
    const char *o = col(&d, "outcome");
    if (o != NULL && !kb_meter_outcome_parse(o, &out->outcome))
        d.why = "unknown outcome";
    /* The fast path returns no user_id, key_id, cost or token: they are the
     * worker's own parameters, which it passes as given. */
    col_text_or(&d, "user_id", out->user_id, sizeof(out->user_id), given ? given->user_id : NULL);
    col_text_or(&d, "key_id", out->key_id, sizeof(out->key_id), given ? given->key_id : NULL);
    /* Only the slow path knows these; the fast path's row has no such columns. */
    if (PQfnumber(r, "key_prefix") >= 0)
        col_text(&d, "key_prefix", out->key_prefix, sizeof(out->key_prefix));
    out->credits_total = col_i64(&d, "credits_total");
    out->credits_used = col_i64(&d, "credits_used");
    if (PQfnumber(r, "cost") >= 0 || given == NULL)
        out->cost = col_i64(&d, "cost");
    else
        out->cost = given->cost;
    out->rl_limit = col_i64(&d, "rl_limit");
    out->rl_remaining = col_i64(&d, "rl_remaining");
    out->rl_reset = col_i64(&d, "rl_reset");
    if (PQfnumber(r, "retry_after") >= 0)
        out->retry_after = col_i64(&d, "retry_after");
    /* The one-trip statement returns no cycle, day, xid or window either. */
    col_text_or(&d, "cycle_start", out->cycle_start, sizeof(out->cycle_start),
                given ? given->cycle_start : NULL);
    col_text_or(&d, "day", out->day, sizeof(out->day), given ? given->day : NULL);
    if (PQfnumber(r, "outbox_id") >= 0)
        out->outbox_id = col_i64(&d, "outbox_id");
    if (PQfnumber(r, "xid") >= 0 || given == NULL) {
        int64_t xid = col_i64(&d, "xid");
        out->xid = xid > 0 ? (uint64_t)xid : 0;
    } else {
        out->xid = given->xid;
    }
    col_text_or(&d, "token", out->token, sizeof(out->token), given ? given->token : NULL);
    out->seq = col_i64(&d, "seq");
    int c = PQfnumber(r, "fast_until");
    if (c >= 0 && !PQgetisnull(r, row, c)) {
        double e = strtod(PQgetvalue(r, row, c), NULL);
        out->fast_until_us = e > 0 && e < 9e12 ? (int64_t)(e * 1e6) : 0;
    } else if (c < 0 && given != NULL) {
        out->fast_until_us = given->fast_until_us;
    }
    if (d.why == NULL && out->outcome == KB_METER_OK &&
        (out->user_id[0] == '\0' || out->key_id[0] == '\0' || out->cycle_start[0] == '\0' ||
         out->day[0] == '\0' || out->xid == 0 || out->token[0] == '\0' || out->seq <= 0))
        d.why = "a charge without its details";
    *why = d.why;
    return d.why == NULL;
}

/* ---- parsing the key ---- */

bool
kb_meter_parse_key(kb_str h, kb_str *key, const char **reason)
{
    if (h.p == NULL) {
        *reason = "Missing Authorization header. Send 'Authorization: Bearer kb-...'.";
        return false;
    }
    if (h.len < 7 || !kb_str_eq_nocase((kb_str){h.p, 6}, "bearer") ||
        (h.p[6] != ' ' && h.p[6] != '\t')) {
        *reason = "Authorization header must use the Bearer scheme.";
        return false;
    }
    kb_str k = kb_str_trim((kb_str){h.p + 7, h.len - 7});
    if (!kb_str_has_prefix(k, "kb-")) {
        *reason = "API key must start with 'kb-'. User tokens are not accepted on data routes.";
        return false;
    }
    *key = k;
    return true;
}
