/* http.c - the stand-in's REST v2 (TLS port) and its /_control API (plain port).
 *
 * REST: GET /trade-api/v2/markets?status=&limit=&cursor= (cursor paging, at most 1000
 * per page) and GET /trade-api/v2/markets/{ticker}; a request that carries KALSHI-ACCESS-*
 * headers must be signed right (timestamp + GET + path without the query).
 *
 * Control (for the tests; every answer is JSON):
 *   GET  /_control/state                   connections, subscriptions, counters
 *   GET  /_control/markets[?paused=1]      tickers of the open (and paused) markets
 *   GET  /_control/subscribed              tickers with an orderbook subscription on a live link
 *   POST /_control/rate?mps=N              feed rate (book events per second)
 *   POST /_control/feed?run=0|1            stop / restart the feed
 *   POST /_control/churn?create=&quiet=&pause=&resume=&close=   (quiet: created without
 *                                          lifecycle messages; REST lists them)
 *   POST /_control/flush                   write the truth log out
 *   POST /_control/note?kind=K&gap=0|1     log an outside fault (a collector killed, Postgres
 *        stopped); gap=1 names every market subscribed on a live link now
 *   POST /_control/fault?kind=K[&conn=ID][&sid=S][&ch=trade][&n=N][&status=S][&code=C]
 *        kinds: skip dup dup_run reorder badjson error25 (a subscription's next messages);
 *        reset halfopen close fragment unknown (a connection); handshake (next N upgrades
 *        answer status 401/429/503); rest (next N REST calls answer 429/503); cmd_error
 *        (next N commands answer error code C: 4, 6, 7, 12, 14, 16, 17 or 18; default 17).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "standin.h"
#include "kb_banned.h"

const char *si_auth_check(const si_http_req *r, const char *method);

static void
json_reply(si_conn *c, int status, const kb_buf *b, bool keep)
{
    si_http_reply(c, status, "application/json", b->buf ? b->buf : "", b->len, keep);
}

static void
error_reply(si_conn *c, int status, const char *code, const char *msg, bool keep)
{
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
    json_reply(c, status, &b, keep);
    kb_buf_release(&b);
}

static long
qnum(const si_http_req *r, const char *name, long def, long min, long max)
{
    char v[32];
    if (si_http_query(r, name, v, sizeof(v)) == NULL)
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < min || n > max)
        return min - 1;
    return n;
}

static bool
status_matches(const si_market *m, const char *want)
{
    if (want == NULL || *want == '\0')
        return true;
    if (strcmp(want, "open") == 0)
        return m->status == MK_OPEN;
    if (strcmp(want, "closed") == 0 || strcmp(want, "settled") == 0)
        return m->status == MK_CLOSED;
    return false;
}

static void
rest(si_conn *c, const si_http_req *r)
{
    S.rest_requests++;
    const char *conn_h = si_http_header(r, "Connection");
    bool keep = conn_h == NULL || strcasecmp(conn_h, "close") != 0;
    int st = si_refuse_pop(&S.rest_fail);
    if (st != 0) {
        /* Kalshi's 429 carries no Retry-After. */
        error_reply(c, st, st == 429 ? "too_many_requests" : "service_unavailable",
                    "try again later", keep);
        return;
    }
    if (si_http_header(r, "KALSHI-ACCESS-SIGNATURE") != NULL) {
        const char *why = si_auth_check(r, r->method);
        if (why != NULL) {
            error_reply(c, 401, "unauthorized", why, keep);
            return;
        }
    }
    if (strcmp(r->method, "GET") != 0) {
        error_reply(c, 404, "not_found", "not found", keep);
        return;
    }
    static const char list[] = "/trade-api/v2/markets";
    if (strcmp(r->path, list) == 0) {
        long limit = qnum(r, "limit", 100, 1, 1000);
        if (limit > S.rest_page)
            limit = S.rest_page; /* Kalshi may answer fewer than asked: the cursor goes on */
        long cursor = 0;
        char cur[32], stq[32];
        if (si_http_query(r, "cursor", cur, sizeof(cur)) != NULL && cur[0] != '\0') {
            char *end;
            cursor = cur[0] == 'c' ? strtol(cur + 1, &end, 10) : -1;
            if (cursor < 0 || (cur[0] == 'c' && *end != '\0'))
                cursor = -1;
        }
        if (limit < 1 || cursor < 0) {
            error_reply(c, 400, "bad_request", "bad limit or cursor", keep);
            return;
        }
        const char *want = si_http_query(r, "status", stq, sizeof(stq));
        kb_buf b = KB_BUF_INIT;
        kb_buf_puts(&b, "{\"markets\":[");
        long n = 0, i = cursor;
        for (; i < S.nm && n < limit; i++) {
            if (!status_matches(&S.m[i], want))
                continue;
            if (n++)
                kb_buf_putc(&b, ',');
            si_market_json(&S.m[i], &b);
        }
        /* Kalshi's cursor is opaque; here it is the next index. */
        bool more = false;
        for (long k = i; k < S.nm && !more; k++)
            more = status_matches(&S.m[k], want);
        if (more)
            kb_buf_printf(&b, "],\"cursor\":\"c%ld\"}", i);
        else
            kb_buf_puts(&b, "],\"cursor\":\"\"}");
        json_reply(c, 200, &b, keep);
        kb_buf_release(&b);
        return;
    }
    if (strncmp(r->path, list, sizeof(list) - 1) == 0 && r->path[sizeof(list) - 1] == '/') {
        const char *t = r->path + sizeof(list);
        si_market *m = si_market_find(t, strlen(t));
        if (m == NULL) {
            error_reply(c, 404, "not_found", "market not found", keep);
            return;
        }
        kb_buf b = KB_BUF_INIT;
        kb_buf_puts(&b, "{\"market\":");
        si_market_json(m, &b);
        kb_buf_putc(&b, '}');
        json_reply(c, 200, &b, keep);
        kb_buf_release(&b);
        return;
    }
    error_reply(c, 404, "not_found", "not found", keep);
}

/* ---- control ---------------------------------------------------------------------- */

static const char *const channel_name[] = {"orderbook_delta", "trade", "market_lifecycle_v2"};

static void
state(kb_buf *b)
{
    int open = 0, paused = 0, closed = 0;
    for (int i = 0; i < S.nm; i++) {
        open += S.m[i].status == MK_OPEN;
        paused += S.m[i].status == MK_PAUSED;
        closed += S.m[i].status == MK_CLOSED;
    }
    kb_buf_printf(b,
                  "{\"markets\":{\"open\":%d,\"paused\":%d,\"closed\":%d},\"mps\":%" PRId64
                  ",\"running\":%s,\"generated\":%" PRId64 ",\"msgs_sent\":%" PRIu64
                  ",\"bytes_sent\":%" PRIu64 ",\"handshakes\":%" PRIu64 ",\"refused\":%" PRIu64
                  ",\"rest_requests\":%" PRIu64 ",\"commands\":%" PRIu64 ",\"overflows\":%" PRIu64
                  ",\"last_effect_ms\":%" PRId64 ",\"conns\":[",
                  open, paused, closed, S.mps, S.running ? "true" : "false", S.generated,
                  S.msgs_sent, S.bytes_sent, S.handshakes, S.handshakes_refused, S.rest_requests,
                  S.cmds, S.overflows, S.last_effect_ms);
    bool first = true;
    for (int i = 0; i < S.nconns; i++) {
        si_conn *c = S.conns[i];
        if (c->kind != K_WS)
            continue;
        kb_buf_printf(b, "%s{\"id\":%" PRId64 ",\"silent\":%s,\"pending\":%zu,\"subs\":[",
                      first ? "" : ",", c->id, c->silent ? "true" : "false",
                      c->out.len - c->out_off);
        first = false;
        for (int k = 0; k < c->nsubs; k++) {
            si_sub *s = c->subs[k];
            kb_buf_printf(b,
                          "%s{\"sid\":%" PRId64 ",\"channel\":\"%s\",\"markets\":%d,\"all\":%s,"
                          "\"seq\":%" PRId64 "}",
                          k ? "," : "", s->sid, channel_name[s->ch], s->nmarkets,
                          s->all ? "true" : "false", s->seq);
        }
        kb_buf_puts(b, "]}");
    }
    kb_buf_puts(b, "]}");
}

static void
tickers_where(kb_buf *b, bool subscribed, bool paused)
{
    kb_buf_putc(b, '[');
    int n = 0;
    for (int i = 0; i < S.nm; i++) {
        si_market *m = &S.m[i];
        bool take = m->status == MK_OPEN || (paused && m->status == MK_PAUSED);
        if (subscribed) {
            take = false;
            for (int k = 0; k < m->nsubs && !take; k++)
                take = m->subs[k]->ch == CH_ORDERBOOK && !m->subs[k]->conn->silent;
        }
        if (take)
            kb_buf_printf(b, "%s\"%s\"", n++ ? "," : "", m->ticker);
    }
    kb_buf_putc(b, ']');
}

/* The target connection: conn=ID, else the oldest WebSocket with an orderbook subscription. */
static si_conn *
target_conn(const si_http_req *r)
{
    long id = qnum(r, "conn", 0, 0, INT32_MAX);
    si_conn *best = NULL;
    for (int i = 0; i < S.nconns; i++) {
        si_conn *c = S.conns[i];
        if (c->kind != K_WS || c->silent)
            continue;
        if (id > 0) {
            if (c->id == id)
                return c;
            continue;
        }
        bool ob = false;
        for (int k = 0; k < c->nsubs; k++)
            ob = ob || c->subs[k]->ch == CH_ORDERBOOK;
        if (ob && (best == NULL || c->id < best->id))
            best = c;
    }
    return best;
}

static si_sub *
target_sub(si_conn *c, const si_http_req *r)
{
    long sid = qnum(r, "sid", 0, 0, INT32_MAX);
    char ch[32];
    bool trade = si_http_query(r, "ch", ch, sizeof(ch)) != NULL && strcmp(ch, "trade") == 0;
    for (int k = 0; c != NULL && k < c->nsubs; k++) {
        si_sub *s = c->subs[k];
        if (sid > 0 ? s->sid == sid : s->ch == (trade ? CH_TRADE : CH_ORDERBOOK))
            return s;
    }
    return NULL;
}

/* Injects a fault; false when its target does not exist. */
static bool
fault(const si_http_req *r, kb_buf *b)
{
    char kind[32];
    if (si_http_query(r, "kind", kind, sizeof(kind)) == NULL)
        return false;
    long n = qnum(r, "n", 1, 1, 100000);
    if (n < 1)
        return false;
    if (strcmp(kind, "handshake") == 0 || strcmp(kind, "rest") == 0) {
        long st = qnum(r, "status", 429, 400, 599);
        if (st < 400)
            return false;
        si_refuse_push(kind[0] == 'h' ? &S.hs_fail : &S.rest_fail, (int)st, (int)n);
        si_fault_log(kind, 0, 0, NULL, 0, false,
                     kind[0] == 'h' ? "upgrades refused" : "REST refused");
        kb_buf_printf(b, "{\"kind\":\"%s\",\"n\":%ld,\"status\":%ld}", kind, n, st);
        return true;
    }
    if (strcmp(kind, "cmd_error") == 0) {
        /* Kalshi's command error codes (KALSHI.md): the collector handles each. */
        long code = qnum(r, "code", 17, 1, 99);
        if (code != 4 && code != 6 && code != 7 && code != 12 && code != 14 && code != 16 &&
            code != 17 && code != 18)
            return false;
        si_refuse_push(&S.cmd_fail, (int)code, (int)n);
        si_fault_log(kind, 0, 0, NULL, 0, false, "commands answered with an error");
        kb_buf_printf(b, "{\"kind\":\"cmd_error\",\"n\":%ld,\"code\":%ld}", n, code);
        return true;
    }
    si_conn *c = target_conn(r);
    if (c == NULL)
        return false;
    /* Connection faults take effect now; a subscription's at its next message. */
    S.last_effect_ms = si_now_ms() > S.last_ts ? si_now_ms() : S.last_ts;
    int nm = 0, *ms = si_conn_markets(c, &nm);
    bool conn_level = true, gap = true;
    if (strcmp(kind, "reset") == 0) {
        /* The first half of a text frame that announces 200 bytes, then RST. */
        static const char partial[] =
            "\x81\x7e\x00\xc8{\"type\":\"orderbook_delta\",\"sid\":1,\"se";
        si_fault_log(kind, c->id, 0, ms, nm, true, "reset mid-frame");
        kb_buf_printf(b, "{\"kind\":\"reset\",\"conn\":%" PRId64 ",\"markets\":%d}", c->id, nm);
        si_net_reset(c, partial, sizeof(partial) - 1);
        free(ms);
        return true;
    } else if (strcmp(kind, "halfopen") == 0) {
        c->silent = true;
        si_conn_update(c);
    } else if (strcmp(kind, "close") == 0) {
        si_ws_frame(&c->out, 8, true,
                    "\x03\xe9"
                    "going away",
                    12);
        c->closing = true;
        si_conn_update(c);
    } else if (strcmp(kind, "fragment") == 0) {
        c->frag += (int)n;
        gap = false;
    } else if (strcmp(kind, "unknown") == 0) {
        c->unknown += (int)n;
        gap = false;
    } else {
        conn_level = false;
    }
    if (conn_level) {
        si_fault_log(kind, c->id, 0, gap ? ms : NULL, gap ? nm : 0, gap, "connection fault");
        kb_buf_printf(b, "{\"kind\":\"%s\",\"conn\":%" PRId64 ",\"markets\":%d}", kind, c->id,
                      gap ? nm : 0);
        free(ms);
        return true;
    }
    free(ms);
    si_sub *s = target_sub(c, r);
    if (s == NULL)
        return false;
    if (strcmp(kind, "skip") == 0) {
        s->f.skip += (int)n;
    } else if (strcmp(kind, "dup") == 0) {
        s->f.dup += (int)n;
        gap = false;
    } else if (strcmp(kind, "dup_run") == 0) {
        int k = n < 2 ? 3 : (int)(n > 64 ? 64 : n);
        if (s->f.dup_run > 0)
            return false;
        s->recent = calloc((size_t)k, sizeof(kb_buf));
        s->nrecent = k;
        s->recent_head = 0;
        s->f.dup_run = k;
    } else if (strcmp(kind, "reorder") == 0) {
        s->f.reorder += 1;
    } else if (strcmp(kind, "badjson") == 0) {
        s->f.badjson += (int)n;
    } else if (strcmp(kind, "error25") == 0) {
        char e[160];
        int k = snprintf(e, sizeof(e),
                         "{\"type\":\"error\",\"sid\":%" PRId64 ",\"msg\":{\"code\":25,"
                         "\"msg\":\"Subscription buffer overflow\"}}",
                         s->sid);
        si_ws_frame(&c->out, 1, true, e, (size_t)k);
        s->f.skip += (int)(n < 2 ? 5 : n);
        si_conn_update(c);
    } else {
        return false;
    }
    int *sm = NULL, sn = 0;
    for (int i = 0; gap && i < S.nm; i++) {
        if (!s->all && si_sub_has(s, i)) {
            sm = realloc(sm, sizeof(*sm) * (size_t)(sn + 1));
            sm[sn++] = i;
        }
    }
    si_fault_log(kind, c->id, s->sid, sm, sn, gap, channel_name[s->ch]);
    free(sm);
    kb_buf_printf(b, "{\"kind\":\"%s\",\"conn\":%" PRId64 ",\"sid\":%" PRId64 ",\"markets\":%d}",
                  kind, c->id, s->sid, sn);
    return true;
}

static void
control(si_conn *c, const si_http_req *r)
{
    kb_buf b = KB_BUF_INIT;
    int status = 200;
    bool post = strcmp(r->method, "POST") == 0;
    if (strcmp(r->path, "/_control/state") == 0) {
        state(&b);
    } else if (strcmp(r->path, "/_control/markets") == 0) {
        tickers_where(&b, false, qnum(r, "paused", 0, 0, 1) == 1);
    } else if (strcmp(r->path, "/_control/subscribed") == 0) {
        tickers_where(&b, true, false);
    } else if (post && strcmp(r->path, "/_control/rate") == 0) {
        long mps = qnum(r, "mps", -1, 0, 10000000);
        if (mps < 0) {
            status = 400;
        } else {
            S.mps = mps;
            S.t0_us = si_mono_us();
            S.generated = 0;
        }
        kb_buf_printf(&b, "{\"mps\":%" PRId64 "}", S.mps);
    } else if (post && strcmp(r->path, "/_control/feed") == 0) {
        S.running = qnum(r, "run", 1, 0, 1) == 1;
        kb_buf_printf(&b, "{\"running\":%s}", S.running ? "true" : "false");
    } else if (post && strcmp(r->path, "/_control/churn") == 0) {
        int cr = (int)qnum(r, "create", 0, 0, 10000), pa = (int)qnum(r, "pause", 0, 0, 10000);
        int re = (int)qnum(r, "resume", 0, 0, 10000), cl = (int)qnum(r, "close", 0, 0, 10000);
        int qu = (int)qnum(r, "quiet", 0, 0, 10000);
        if (cr < 0 || pa < 0 || re < 0 || cl < 0 || qu < 0) {
            status = 400;
        } else {
            si_feed_churn(cr, qu, pa, re, cl);
            si_fault_log("churn", 0, 0, NULL, 0, false, "lifecycle churn");
        }
        kb_buf_printf(&b, "{\"markets\":%d}", S.nm);
    } else if (post && strcmp(r->path, "/_control/note") == 0) {
        char kind[32];
        bool gap = qnum(r, "gap", 0, 0, 1) == 1;
        if (si_http_query(r, "kind", kind, sizeof(kind)) == NULL) {
            status = 400;
        } else {
            int *ms = NULL, n = 0;
            for (int i = 0; gap && i < S.nm; i++) {
                bool sub = false;
                for (int k = 0; k < S.m[i].nsubs && !sub; k++)
                    sub = S.m[i].subs[k]->ch == CH_ORDERBOOK && !S.m[i].subs[k]->conn->silent;
                if (sub) {
                    ms = realloc(ms, sizeof(*ms) * (size_t)(n + 1));
                    ms[n++] = i;
                }
            }
            S.last_effect_ms = si_now_ms() > S.last_ts ? si_now_ms() : S.last_ts;
            si_fault_log(kind, 0, 0, ms, n, gap, "outside fault");
            free(ms);
        }
        kb_buf_printf(&b, "{\"noted\":%s}", status == 200 ? "true" : "false");
    } else if (post && strcmp(r->path, "/_control/flush") == 0) {
        si_truth_flush();
        if (S.faults != NULL)
            fflush(S.faults);
        kb_buf_puts(&b, "{\"flushed\":true}");
    } else if (post && strcmp(r->path, "/_control/fault") == 0) {
        if (!fault(r, &b)) {
            status = 404;
            kb_buf_reset(&b);
            kb_buf_puts(&b, "{\"error\":\"no such fault target\"}");
        }
    } else {
        status = 404;
        kb_buf_puts(&b, "{\"error\":\"not found\"}");
    }
    json_reply(c, status, &b, true);
    kb_buf_release(&b);
}

void
si_http_handle(si_conn *c, const si_http_req *r)
{
    if (c->kind == K_CONTROL)
        control(c, r);
    else
        rest(c, r);
}
