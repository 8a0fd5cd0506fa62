/* kbctl_import_json.c - JSON for kbctl import: the lax whole-line parse and the delta fast path.
 *
 * Import lines are parsed laxly with cJSON (not lib/json.c's strict request
 * parser: a capture with a duplicate key is still data). The fast path reads
 * the one shape that makes up almost every line of a capture,
 *   {"type":"orderbook_delta","sid":N,"seq":N,"msg":{"market_ticker":"..",
 *    "price":N,"delta":N,"side":"yes|no","ts":N}}
 * (keys in any order, other scalar members ignored), straight into a batch
 * row. Invariant: it accepts a line only when the cJSON path would accept it
 * with the same row, and declines everything else (escapes, fractions,
 * exponents, nested extras, duplicate keys, received_at, out-of-range values,
 * anything malformed), so the cJSON path alone decides and explains those.
 * fuzz_import checks this by running every line through both.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "kbctl_import.h"
#include "kb_banned.h"

cJSON *
kb_imp_parse_whole(const char *s, size_t len)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, false);
    if (j == NULL)
        return NULL;
    while (end < s + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (end != s + len) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

typedef struct scan {
    const char *p, *end;
} scan;

static void
ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static bool
lit(scan *s, char c)
{
    ws(s);
    if (s->p >= s->end || *s->p != c)
        return false;
    s->p++;
    return true;
}

/* A string without escapes or control bytes: [*b, *b + *n). */
static bool
str(scan *s, const char **b, size_t *n)
{
    ws(s);
    if (s->p >= s->end || *s->p != '"')
        return false;
    const char *q = s->p + 1;
    while (q < s->end && *q != '"') {
        if (*q == '\\' || (unsigned char)*q < 0x20)
            return false;
        q++;
    }
    if (q >= s->end)
        return false;
    *b = s->p + 1;
    *n = (size_t)(q - *b);
    s->p = q + 1;
    return true;
}

/* -?(0|[1-9][0-9]{0,14}) not followed by more number characters: exact as a double too. */
static bool
integer(scan *s, int64_t *v)
{
    ws(s);
    const char *q = s->p;
    bool neg = q < s->end && *q == '-';
    if (neg)
        q++;
    const char *d = q;
    int64_t x = 0;
    while (q < s->end && *q >= '0' && *q <= '9' && q - d < 16)
        x = x * 10 + (*q++ - '0');
    size_t nd = (size_t)(q - d);
    if (nd == 0 || nd > 15 || (nd > 1 && *d == '0'))
        return false;
    if (q < s->end && (*q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-' ||
                       (*q >= '0' && *q <= '9')))
        return false;
    s->p = q;
    *v = neg ? -x : x;
    return true;
}

/* Skip a member value that is a plain string, integer, true, false or null. */
static bool
skip_scalar(scan *s)
{
    const char *b;
    size_t n;
    int64_t v;
    ws(s);
    if (s->p < s->end && *s->p == '"')
        return str(s, &b, &n);
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t wl = strlen(words[i]);
        if ((size_t)(s->end - s->p) >= wl && memcmp(s->p, words[i], wl) == 0) {
            const char *q = s->p + wl;
            if (q < s->end && ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9')))
                return false;
            s->p = q;
            return true;
        }
    }
    return integer(s, &v);
}

static bool
key_is(const char *k, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(k, want, n) == 0;
}

typedef struct fast_msg {
    const char *ticker, *side;
    size_t tlen, slen;
    int64_t price, delta, ts;
    unsigned seen; /* bit per known key */
} fast_msg;

enum { M_TICKER = 1, M_PRICE = 2, M_DELTA = 4, M_SIDE = 8, M_TS = 16 };

static bool
msg_object(scan *s, fast_msg *m)
{
    if (!lit(s, '{'))
        return false;
    for (;;) {
        const char *k;
        size_t n;
        if (!str(s, &k, &n) || !lit(s, ':'))
            return false;
        unsigned bit = key_is(k, n, "market_ticker") ? M_TICKER
                       : key_is(k, n, "price")       ? M_PRICE
                       : key_is(k, n, "delta")       ? M_DELTA
                       : key_is(k, n, "side")        ? M_SIDE
                       : key_is(k, n, "ts")          ? M_TS
                                                     : 0;
        if (bit & m->seen)
            return false; /* duplicate: leave it to cJSON's rules */
        m->seen |= bit;
        bool ok = bit == M_TICKER ? str(s, &m->ticker, &m->tlen)
                  : bit == M_SIDE ? str(s, &m->side, &m->slen)
                  : bit == M_PRICE ? integer(s, &m->price)
                  : bit == M_DELTA ? integer(s, &m->delta)
                  : bit == M_TS    ? integer(s, &m->ts)
                                   : skip_scalar(s);
        if (!ok)
            return false;
        if (lit(s, '}'))
            return true;
        if (!lit(s, ','))
            return false;
    }
}

enum { T_TYPE = 1, T_SID = 2, T_SEQ = 4, T_MSG = 8 };

bool
kb_imp_fast_line(kb_import *im, const char *p, size_t len)
{
    scan s = {p, p + len};
    fast_msg m = {0};
    const char *type = NULL;
    size_t tylen = 0;
    int64_t sid = 0, seq = 0;
    unsigned seen = 0;
    if (!lit(&s, '{'))
        return false;
    for (;;) {
        const char *k;
        size_t n;
        if (!str(&s, &k, &n) || !lit(&s, ':'))
            return false;
        unsigned bit = key_is(k, n, "type")  ? T_TYPE
                       : key_is(k, n, "sid") ? T_SID
                       : key_is(k, n, "seq") ? T_SEQ
                       : key_is(k, n, "msg") ? T_MSG
                                             : 0;
        if ((bit & seen) || key_is(k, n, "received_at"))
            return false;
        seen |= bit;
        bool ok = bit == T_TYPE  ? str(&s, &type, &tylen)
                  : bit == T_SID ? integer(&s, &sid)
                  : bit == T_SEQ ? integer(&s, &seq)
                  : bit == T_MSG ? msg_object(&s, &m)
                                 : skip_scalar(&s);
        if (!ok)
            return false;
        if (lit(&s, '}'))
            break;
        if (!lit(&s, ','))
            return false;
    }
    ws(&s);
    if (s.p != s.end || (seen & (T_TYPE | T_SEQ | T_MSG)) != (T_TYPE | T_SEQ | T_MSG) ||
        !key_is(type, tylen, "orderbook_delta") ||
        m.seen != (M_TICKER | M_PRICE | M_DELTA | M_SIDE | M_TS) || m.tlen == 0 ||
        m.price < 1 || m.price > 99 || m.delta < INT32_MIN || m.delta > INT32_MAX ||
        !(key_is(m.side, m.slen, "yes") || key_is(m.side, m.slen, "no")))
        return false;
    kb_imp_delta d = {.rcv = KB_IMP_NO_RCV, .sid = sid, .seq = seq, .price = (int32_t)m.price,
                      .amount = (int32_t)m.delta, .yes = m.slen == 3};
    if (!kb_imp_ts_number((double)m.ts, &d.ts))
        return false;
    d.ticker = kb_imp_ticker_id(im, m.ticker, m.tlen);
    im->order++;
    im->fast_lines++;
    kb_imp_add_delta(im, &d);
    return true;
}
