/* ws.c - the stand-in's WebSocket v2 sessions: the signed handshake, client frames,
 * subscribe / update_subscription / unsubscribe with Kalshi's error codes, data
 * messages with their per-subscription seq and faults, heartbeat pings. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "standin.h"
#include "kb_banned.h"

#define WS_PATH "/trade-api/ws/v2"

/* ---- handshake ------------------------------------------------------------------------ */

/* RSA-PSS (SHA-256, MGF1 SHA-256, salt = digest length) over msg, base64 signature. */
static bool
verify_sig(const char *msg, const char *sig_b64)
{
    size_t sl = strlen(sig_b64);
    if (sl == 0 || sl > 2048 || sl % 4 != 0)
        return false;
    unsigned char sig[1600];
    int n = EVP_DecodeBlock(sig, (const unsigned char *)sig_b64, (int)sl);
    if (n <= 0)
        return false;
    /* EVP_DecodeBlock counts the padding bytes too. */
    if (sig_b64[sl - 1] == '=')
        n--;
    if (sig_b64[sl - 2] == '=')
        n--;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = ctx != NULL && EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, S.pub) == 1 &&
              EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
              EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
              EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
              EVP_DigestVerify(ctx, sig, (size_t)n, (const unsigned char *)msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* Kalshi's three headers for METHOD path; NULL when they are right, else the reason. */
const char *si_auth_check(const si_http_req *r, const char *method);

const char *
si_auth_check(const si_http_req *r, const char *method)
{
    const char *key = si_http_header(r, "KALSHI-ACCESS-KEY");
    const char *ts = si_http_header(r, "KALSHI-ACCESS-TIMESTAMP");
    const char *sig = si_http_header(r, "KALSHI-ACCESS-SIGNATURE");
    if (key == NULL || ts == NULL || sig == NULL)
        return "missing KALSHI-ACCESS-* headers";
    if (strcmp(key, S.key_id) != 0)
        return "unknown key id";
    char *end;
    long long t = strtoll(ts, &end, 10);
    if (*end != '\0' || t <= 0)
        return "bad timestamp";
    long long skew = t - (long long)si_now_ms();
    if (skew > 30000 || skew < -30000)
        return "timestamp too far from now";
    char msg[700];
    if ((size_t)snprintf(msg, sizeof(msg), "%s%s%s", ts, method, r->path) >= sizeof(msg))
        return "path too long";
    return verify_sig(msg, sig) ? NULL : "bad signature";
}

void
si_ws_accept(si_conn *c, const si_http_req *r)
{
    S.handshakes++;
    if (strcmp(r->path, WS_PATH) != 0) {
        si_http_reply(c, 404, "application/json", "{\"error\":\"not found\"}", 21, false);
        return;
    }
    int st = si_refuse_pop(&S.hs_fail);
    if (st != 0) {
        S.handshakes_refused++;
        char body[96];
        int n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"refused\",\"status\":%d}}",
                         st);
        si_http_reply(c, st, "application/json", body, (size_t)n, false);
        return;
    }
    const char *why = si_auth_check(r, "GET");
    const char *wskey = si_http_header(r, "Sec-WebSocket-Key");
    if (why != NULL || wskey == NULL) {
        S.handshakes_refused++;
        kb_buf b = KB_BUF_INIT;
        kb_buf_printf(&b, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"%s\"}}",
                      why ? why : "no Sec-WebSocket-Key");
        si_http_reply(c, why ? 401 : 400, "application/json", b.buf, b.len, false);
        kb_buf_release(&b);
        return;
    }
    char cat[128];
    snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", wskey);
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, strlen(cat), sha);
    char acc[64];
    EVP_EncodeBlock((unsigned char *)acc, sha, SHA_DIGEST_LENGTH);
    kb_buf_printf(&c->out,
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                  acc);
    c->kind = K_WS;
    c->next_ping_ms = si_now_ms() + S.ping_ms;
    si_conn_update(c);
}

/* ---- subscriptions ------------------------------------------------------------------------ */

bool
si_sub_has(const si_sub *s, int market)
{
    if (s->all)
        return true;
    return market < s->member_cap && (s->member[market / 8] >> (market % 8) & 1);
}

static void
market_unlink(si_market *m, si_sub *s)
{
    for (int i = 0; i < m->nsubs; i++) {
        if (m->subs[i] == s) {
            m->subs[i] = m->subs[--m->nsubs];
            return;
        }
    }
}

void
si_sub_add(si_sub *s, int market)
{
    if (si_sub_has(s, market))
        return;
    if (market >= s->member_cap) {
        int cap = (market / 8 + 1) * 8 * 2;
        s->member = realloc(s->member, (size_t)cap / 8);
        if (s->member == NULL)
            abort();
        memset(s->member + s->member_cap / 8, 0, (size_t)(cap - s->member_cap) / 8);
        s->member_cap = cap;
    }
    s->member[market / 8] |= (uint8_t)(1u << (market % 8));
    s->nmarkets++;
    si_market *m = &S.m[market];
    if (m->nsubs == m->capsubs) {
        m->capsubs = m->capsubs ? m->capsubs * 2 : 2;
        m->subs = realloc(m->subs, sizeof(*m->subs) * (size_t)m->capsubs);
        if (m->subs == NULL)
            abort();
    }
    m->subs[m->nsubs++] = s;
}

void
si_sub_del(si_sub *s, int market)
{
    if (s->all || !si_sub_has(s, market))
        return;
    s->member[market / 8] &= (uint8_t) ~(1u << (market % 8));
    s->nmarkets--;
    market_unlink(&S.m[market], s);
}

void
si_sub_free(si_sub *s)
{
    for (int i = 0; !s->all && i < s->member_cap && i < S.nm; i++) {
        if (si_sub_has(s, i))
            market_unlink(&S.m[i], s);
    }
    free(s->member);
    kb_buf_release(&s->held);
    for (int i = 0; i < s->nrecent; i++)
        kb_buf_release(&s->recent[i]);
    free(s->recent);
    free(s);
}

int *
si_conn_markets(const si_conn *c, int *n)
{
    int *out = NULL, cap = 0;
    *n = 0;
    for (int i = 0; i < c->nsubs; i++) {
        const si_sub *s = c->subs[i];
        if (s->ch != CH_ORDERBOOK)
            continue;
        for (int m = 0; m < S.nm; m++) {
            if (!si_sub_has(s, m))
                continue;
            if (*n == cap) {
                cap = cap ? cap * 2 : 64;
                out = realloc(out, sizeof(*out) * (size_t)cap);
                if (out == NULL)
                    abort();
            }
            out[(*n)++] = m;
        }
    }
    return out;
}

/* ---- sending -------------------------------------------------------------------------------- */

static void
emit(si_conn *c, const char *p, size_t n)
{
    if (c->unknown > 0) {
        c->unknown--;
        static const char u[] = "{\"type\":\"market_positions\",\"msg\":{\"note\":\"a type "
                                "this client has never seen\"}}";
        si_ws_frame(&c->out, 1, true, u, sizeof(u) - 1);
    }
    if (c->frag > 0 && n >= 3) {
        /* Three frames with a ping between the first two (control frames may
         * interleave with a fragmented message, RFC 6455 5.4). */
        c->frag--;
        size_t a = n / 3, b = n / 3;
        si_ws_frame(&c->out, 1, false, p, a);
        si_ws_frame(&c->out, 9, true, "frag", 4);
        si_ws_frame(&c->out, 0, false, p + a, b);
        si_ws_frame(&c->out, 0, true, p + a + b, n - a - b);
    } else {
        si_ws_frame(&c->out, 1, true, p, n);
    }
    S.msgs_sent++;
}

static void
sub_markets_log(si_sub *s, const char *kind, const char *detail)
{
    int *ms = NULL, n = 0, cap = 0;
    for (int m = 0; m < S.nm; m++) {
        if (s->all || !si_sub_has(s, m))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            ms = realloc(ms, sizeof(*ms) * (size_t)cap);
            if (ms == NULL)
                abort();
        }
        ms[n++] = m;
    }
    si_fault_log(kind, s->conn->id, s->sid, ms, n, true, detail);
    free(ms);
}

/* A fault takes effect on s's message now (exchange time S.last_ts). */
static void
effect(si_sub *s, const char *of)
{
    S.last_effect_ms = S.last_ts;
    si_fault_log("effect", s->conn->id, s->sid, NULL, 0, false, of);
}

void
si_ws_send(si_sub *s, const char *type, const char *body, size_t n)
{
    si_conn *c = s->conn;
    int64_t seq = ++s->seq;
    if (c->silent || c->fd < 0)
        return;
    size_t pending = c->out.len - c->out_off;
    if (s->overflowed) {
        if (pending > S.overflow_bytes / 2)
            return;
        s->overflowed = false;
    }
    if (pending > S.overflow_bytes) {
        /* Kalshi drops a slow consumer's messages and says so with error 25. */
        s->overflowed = true;
        S.overflows++;
        char e[160];
        int k = snprintf(e, sizeof(e),
                         "{\"type\":\"error\",\"sid\":%" PRId64 ",\"msg\":{\"code\":25,"
                         "\"msg\":\"Subscription buffer overflow\"}}",
                         s->sid);
        si_ws_frame(&c->out, 1, true, e, (size_t)k);
        sub_markets_log(s, "overflow", "the client read too slowly");
        effect(s, "overflow");
        return;
    }
    if (s->f.skip > 0) {
        s->f.skip--;
        effect(s, "skip");
        return;
    }
    kb_buf t = KB_BUF_INIT;
    if (s->f.badjson > 0) {
        s->f.badjson--;
        effect(s, "badjson");
        kb_buf_printf(&t, "{\"type\":\"%s\",\"sid\":%" PRId64 ",\"seq\":%" PRId64 ",\"msg\":{\"mar",
                      type, s->sid, seq);
        emit(c, t.buf, t.len);
        kb_buf_release(&t);
        return;
    }
    kb_buf_printf(&t, "{\"type\":\"%s\",\"sid\":%" PRId64 ",\"seq\":%" PRId64 ",\"msg\":", type,
                  s->sid, seq);
    kb_buf_append(&t, body, n);
    kb_buf_putc(&t, '}');
    if (s->f.reorder > 0) {
        if (s->held.len == 0) {
            effect(s, "reorder");
            kb_buf_append(&s->held, t.buf, t.len);
            kb_buf_release(&t);
            return;
        }
        s->f.reorder--;
        emit(c, t.buf, t.len);
        emit(c, s->held.buf, s->held.len);
        kb_buf_reset(&s->held);
        kb_buf_release(&t);
        return;
    }
    emit(c, t.buf, t.len);
    if (s->f.dup > 0) {
        s->f.dup--;
        emit(c, t.buf, t.len);
    }
    if (s->f.dup_run > 0) {
        /* Collect dup_run messages, then send them all again. */
        kb_buf_append(&s->recent[s->recent_head++], t.buf, t.len);
        if (s->recent_head == s->f.dup_run) {
            effect(s, "dup_run");
            for (int i = 0; i < s->recent_head; i++) {
                emit(c, s->recent[i].buf, s->recent[i].len);
                kb_buf_reset(&s->recent[i]);
            }
            s->recent_head = 0;
            s->f.dup_run = 0;
        }
    }
    kb_buf_release(&t);
}

void
si_ws_ping_due(void)
{
    int64_t now = si_now_ms();
    for (int i = 0; i < S.nconns; i++) {
        si_conn *c = S.conns[i];
        if (c->kind != K_WS || c->silent || now < c->next_ping_ms)
            continue;
        si_ws_frame(&c->out, 9, true, "heartbeat", 9);
        c->next_ping_ms = now + S.ping_ms;
    }
}

void
si_fault_log(const char *kind, int64_t conn, int64_t sid, const int *markets, int n, bool gap,
             const char *detail)
{
    if (S.faults == NULL)
        return;
    kb_buf b = KB_BUF_INIT;
    /* An effect line carries the exchange time of the message it hit; others, now. */
    int64_t ts = strcmp(kind, "effect") == 0 ? S.last_effect_ms : si_now_ms();
    kb_buf_printf(&b,
                  "{\"ts_ms\":%" PRId64 ",\"kind\":\"%s\",\"conn\":%" PRId64 ",\"sid\":%" PRId64
                  ",\"gap\":%s,\"detail\":",
                  ts, kind, conn, sid, gap ? "true" : "false");
    kb_buf_json_str(&b, detail ? detail : "", detail ? strlen(detail) : 0);
    kb_buf_puts(&b, ",\"markets\":[");
    for (int i = 0; i < n; i++)
        kb_buf_printf(&b, "%s\"%s\"", i ? "," : "", S.m[markets[i]].ticker);
    kb_buf_puts(&b, "]}\n");
    fwrite(b.buf, 1, b.len, S.faults);
    kb_buf_release(&b);
}
