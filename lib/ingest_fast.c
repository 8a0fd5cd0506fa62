/* ingest_fast.c - JSON for ingest: the lax whole-line parse and the delta fast path.
 *
 * Lines are parsed laxly with cJSON (not lib/json.c's strict request
 * parser: a capture with a duplicate key is still data). The fast path reads
 * the one shape that makes up almost every line of a capture, in both of
 * Kalshi's forms,
 *   {"type":"orderbook_delta","sid":N,"seq":N,"received_at":N|"ISO","msg":
 *    {"market_ticker":"..","price":N,"price_dollars":"0.0550","delta":N,
 *     "delta_fp":"12.50","side":"yes|no","ts":N|"ISO","ts_ms":N}}
 * (keys in any order, each form optional as the cJSON path allows, other
 * scalar members ignored), straight into a delta row. Invariant: it accepts a
 * line only when the cJSON path would accept it with the same row, and
 * declines everything else (escapes, fractions, exponents, nested extras,
 * duplicate keys, nulls, forms that disagree, out-of-range values, anything
 * malformed), so the cJSON path alone decides and explains those.
 * fuzz_import checks this by running every line through both.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "internal.h"
#include "kb_ingest.h"
#include "kb_fixed.h"
#include "kb_time.h"
#include "kb_banned.h"

cJSON *
kb__ingest_parse_whole(const char *s, size_t len)
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
    if (q < s->end &&
        (*q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-' || (*q >= '0' && *q <= '9')))
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

/* A string or an integer (a Kalshi time: ISO text or Unix s/ms). */
typedef struct str_or_int {
    const char *s; /* NULL: the integer v */
    size_t n;
    int64_t v;
} str_or_int;

static bool
time_value(scan *s, str_or_int *t)
{
    ws(s);
    if (s->p < s->end && *s->p == '"')
        return str(s, &t->s, &t->n);
    t->s = NULL;
    return integer(s, &t->v);
}

/* µs and precision of a time value, as kb__ingest_ts_val and ts_precision read it. */
static bool
time_us(const str_or_int *t, int64_t *us, int64_t *prec)
{
    const char *why;
    if (t->s != NULL) {
        *prec = kb__ingest_iso_precision(t->s, t->n);
        return kb_time_parse(t->s, t->n, false, us, &why);
    }
    *prec = (double)t->v > 1e12 ? 1000 : 1000000;
    return kb__ingest_ts_number((double)t->v, us);
}

typedef struct fast_msg {
    const char *ticker, *side, *pd, *dfp; /* pd: price_dollars, dfp: delta_fp */
    size_t tlen, slen, pdlen, dfplen;
    int64_t price, delta, ts_ms;
    str_or_int ts;
    unsigned seen; /* bit per known key */
} fast_msg;

enum {
    M_TICKER = 1,
    M_PRICE = 2,
    M_DELTA = 4,
    M_SIDE = 8,
    M_TS = 16,
    M_PD = 32,
    M_DFP = 64,
    M_TSMS = 128
};

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
        unsigned bit = key_is(k, n, "market_ticker")   ? M_TICKER
                       : key_is(k, n, "price")         ? M_PRICE
                       : key_is(k, n, "delta")         ? M_DELTA
                       : key_is(k, n, "side")          ? M_SIDE
                       : key_is(k, n, "ts")            ? M_TS
                       : key_is(k, n, "price_dollars") ? M_PD
                       : key_is(k, n, "delta_fp")      ? M_DFP
                       : key_is(k, n, "ts_ms")         ? M_TSMS
                                                       : 0;
        if (bit & m->seen)
            return false; /* duplicate: leave it to cJSON's rules */
        m->seen |= bit;
        bool ok = bit == M_TICKER  ? str(s, &m->ticker, &m->tlen)
                  : bit == M_SIDE  ? str(s, &m->side, &m->slen)
                  : bit == M_PRICE ? integer(s, &m->price)
                  : bit == M_DELTA ? integer(s, &m->delta)
                  : bit == M_TS    ? time_value(s, &m->ts)
                  : bit == M_PD    ? str(s, &m->pd, &m->pdlen)
                  : bit == M_DFP   ? str(s, &m->dfp, &m->dfplen)
                  : bit == M_TSMS  ? integer(s, &m->ts_ms)
                                   : skip_scalar(s);
        if (!ok)
            return false;
        if (lit(s, '}'))
            return true;
        if (!lit(s, ','))
            return false;
    }
}

/* A value in its integer form (x 100) and/or its text form; both must agree. */
static bool
two_forms(bool has_int, int64_t whole, bool has_text, const char *t, size_t tn, int scale, bool neg,
          int64_t max, int64_t *out)
{
    int64_t x = 0, y = 0;
    const char *why;
    if (!has_int && !has_text)
        return false;
    if (has_int && !kb_fixed_scale_int(whole, 2, max, &x))
        return false;
    if (has_text && !kb_fixed_parse(t, tn, scale, neg, max, &y, &why))
        return false;
    if (has_int && has_text && x != y)
        return false;
    *out = has_int ? x : y;
    return true;
}

/* The line's exchange time as ingest_msg.c's msg_time resolves it. */
static bool
fast_time(const fast_msg *m, bool has_rcv, int64_t rcv, int64_t *ts)
{
    int64_t tu = 0, prec = 0, mu = 0;
    bool ht = m->seen & M_TS, hm = m->seen & M_TSMS;
    if (ht && !time_us(&m->ts, &tu, &prec))
        return false;
    if (hm && !kb__ingest_ms_to_us(m->ts_ms, &mu))
        return false;
    if (ht && hm)
        return kb__ingest_ts_agree(tu, prec, mu, ts);
    if (ht || hm) {
        *ts = ht ? tu : mu;
        return true;
    }
    *ts = rcv;
    return has_rcv;
}

enum { T_TYPE = 1, T_SID = 2, T_SEQ = 4, T_MSG = 8, T_RCV = 16 };

bool
kb__ingest_fast_delta(const char *p, size_t len, int64_t rcv_us, kb_ingest_delta *d, const char **t,
                      size_t *tlen)
{
    scan s = {p, p + len};
    fast_msg m = {0};
    const char *type = NULL;
    size_t tylen = 0;
    int64_t sid = 0, seq = 0;
    str_or_int rcv_v = {0};
    unsigned seen = 0;
    if (!lit(&s, '{'))
        return false;
    for (;;) {
        const char *k;
        size_t n;
        if (!str(&s, &k, &n) || !lit(&s, ':'))
            return false;
        unsigned bit = key_is(k, n, "type")          ? T_TYPE
                       : key_is(k, n, "sid")         ? T_SID
                       : key_is(k, n, "seq")         ? T_SEQ
                       : key_is(k, n, "msg")         ? T_MSG
                       : key_is(k, n, "received_at") ? T_RCV
                                                     : 0;
        if (bit & seen)
            return false;
        seen |= bit;
        bool ok = bit == T_TYPE  ? str(&s, &type, &tylen)
                  : bit == T_SID ? integer(&s, &sid)
                  : bit == T_SEQ ? integer(&s, &seq)
                  : bit == T_MSG ? msg_object(&s, &m)
                  : bit == T_RCV ? time_value(&s, &rcv_v)
                                 : skip_scalar(&s);
        if (!ok)
            return false;
        if (lit(&s, '}'))
            break;
        if (!lit(&s, ','))
            return false;
    }
    ws(&s);
    const unsigned need = M_TICKER | M_SIDE;
    if (s.p != s.end || (seen & (T_TYPE | T_SEQ | T_MSG)) != (T_TYPE | T_SEQ | T_MSG) ||
        !key_is(type, tylen, "orderbook_delta") || (m.seen & need) != need || m.tlen == 0 ||
        !(key_is(m.side, m.slen, "yes") || key_is(m.side, m.slen, "no")))
        return false;
    kb_ingest_delta r = {.rcv = KB_INGEST_NO_RCV, .sid = sid, .seq = seq, .yes = m.slen == 3};
    int64_t price, prec;
    if (!two_forms(m.seen & M_PRICE, m.price, m.seen & M_PD, m.pd, m.pdlen, KB_PRICE_SCALE, false,
                   KB_PRICE_DOLLAR, &price) ||
        price < 1 || price >= KB_PRICE_DOLLAR ||
        !two_forms(m.seen & M_DELTA, m.delta, m.seen & M_DFP, m.dfp, m.dfplen, KB_QTY_SCALE, true,
                   KB_QTY_MAX, &r.amount))
        return false;
    r.price = (int32_t)price;
    if ((seen & T_RCV) && !time_us(&rcv_v, &r.rcv, &prec))
        return false;
    /* A receive time the caller knows (a spool record's) is the one. */
    if (rcv_us != KB_INGEST_NO_RCV)
        r.rcv = rcv_us;
    if (!fast_time(&m, (seen & T_RCV) || rcv_us != KB_INGEST_NO_RCV, r.rcv, &r.ts))
        return false;
    *d = r;
    *t = m.ticker;
    *tlen = m.tlen;
    return true;
}
