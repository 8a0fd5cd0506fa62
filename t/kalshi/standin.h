/* standin.h - the Kalshi stand-in (t/kalshi): WebSocket v2 + REST v2 over TLS, a
 * deterministic multi-market feed whose true books it knows, and faults on command.
 *
 * One thread, one epoll loop. Invariants:
 *   - The true book of every market changes only in feed.c (si_feed_event), which
 *     writes each change to the truth log before any subscriber sees it, so the
 *     log replayed up to an instant T (ts_ms <= T) is the book at T.
 *   - Exchange times never go backwards, over all markets in the order messages are
 *     made; a snapshot's ts is at or after every delta it contains and strictly before
 *     every delta that follows it (API.md's reconstruction: snapshot at S plus deltas
 *     with S < ts <= T).
 *   - seq counts per subscription; a message that is not sent (a fault, an overflow)
 *     still consumes its seq, exactly as on Kalshi, so the client sees the jump.
 *   - Every injected fault is one JSON line in the fault log, with the markets whose
 *     data it loses ("gap": true) or not ("gap": false), for t/collector's checker.
 */
#ifndef SI_STANDIN_H
#define SI_STANDIN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "kb_buf.h"

/* Book price index: units of $0.001, 1..999 (price in 1/10,000 dollar = index * 10). */
#define SI_LEVELS 1000

typedef enum si_structure { ST_LINEAR_CENT, ST_TAPERED_DECI_CENT, ST_DECI_CENT } si_structure;
typedef enum si_mstatus { MK_OPEN, MK_PAUSED, MK_CLOSED } si_mstatus;
typedef enum si_channel { CH_ORDERBOOK, CH_TRADE, CH_LIFECYCLE } si_channel;

struct si_sub;
struct si_conn;

typedef struct si_market {
    char ticker[48], event[40];
    si_structure st;
    bool fractional; /* counts with cents of a contract */
    bool legacy;     /* also sends the old integer forms (whole-cent, whole-count markets) */
    bool big;        /* its snapshots carry a multi-MB extra member */
    si_mstatus status;
    int32_t yes[SI_LEVELS], no[SI_LEVELS]; /* quantity in 1/100 contract */
    int mid;                               /* price index the walk centres on */
    int64_t open_ms, close_ms;
    struct si_sub **subs; /* subscriptions naming it (orderbook and trade) */
    int nsubs, capsubs;
} si_market;

/* Per-subscription faults (applied to its next messages). */
typedef struct si_sub_faults {
    int skip;    /* next N messages not sent (seq consumed) */
    int dup;     /* next message sent twice */
    int dup_run; /* after the next message, the last N messages again */
    int reorder; /* next two messages swapped */
    int badjson; /* next message replaced by invalid JSON (seq consumed) */
} si_sub_faults;

typedef struct si_sub {
    struct si_conn *conn;
    int64_t sid, seq;
    si_channel ch;
    bool all;        /* no market_tickers: every market */
    uint8_t *member; /* bitmap over market index (when !all) */
    int member_cap;  /* bits */
    int nmarkets;
    bool use_yes_price;
    bool overflowed; /* error 25 sent; messages dropped until the buffer drains */
    si_sub_faults f;
    kb_buf held;    /* reorder: the message held back */
    kb_buf *recent; /* dup_run: ring of the last messages */
    int nrecent, recent_head;
} si_sub;

typedef enum si_kind { K_HTTPS, K_WS, K_CONTROL } si_kind;

typedef struct si_conn {
    int fd;
    SSL *ssl; /* NULL on the control port */
    bool tls_done;
    si_kind kind;
    int64_t id; /* 1, 2, ...: also each WebSocket's "connection" in the fault log */
    kb_buf in, out;
    size_t out_off;
    uint32_t events; /* registered epoll events */
    bool silent;     /* half-open: neither reads nor writes again */
    bool closing;    /* close once out is flushed */
    si_sub **subs;
    int nsubs, capsubs;
    int64_t next_sid;
    int frag;    /* fragment the next N data messages */
    int unknown; /* send N unknown-type messages */
    int64_t next_ping_ms;
    kb_buf msg; /* client message being reassembled */
    int msg_op;
    bool in_msg;
} si_conn;

/* Refusals to answer, in order (handshake statuses, REST statuses, command error codes). */
typedef struct si_refusals {
    int q[64];
    int head, n;
} si_refusals;

typedef struct si_state {
    int ep;
    SSL_CTX *tls;
    EVP_PKEY *pub;
    const char *key_id;
    si_market *m;
    int nm, capm;
    si_conn **conns;
    int nconns, capconns;
    int64_t conn_seq;
    uint64_t rng;
    /* feed */
    int64_t mps, t0_us, generated;
    bool running;
    int trade_permille;
    int64_t next_market_no;
    FILE *truth, *faults;
    kb_buf truthbuf;
    const char *truth_path;
    /* settings */
    int ping_ms;
    size_t overflow_bytes;
    long rest_page; /* REST list pages hold at most this many markets, whatever the limit */
    int ts_skew_ms;
    /* pending handshake / REST / command refusals */
    si_refusals hs_fail, rest_fail, cmd_fail;
    /* exchange clock: every event and snapshot, all markets (see feed.c) */
    int64_t last_ts, snap_ts;
    int64_t last_effect_ms; /* exchange time at which the latest fault took effect */
    /* counters */
    uint64_t msgs_sent, bytes_sent, handshakes, handshakes_refused, rest_requests, cmds;
    uint64_t overflows;
} si_state;

extern si_state S;

/* ---- main.c ---- */
int64_t si_now_ms(void);
int64_t si_mono_us(void);
uint64_t si_rand(void);
/* Register interest in writing (out has bytes) or stop. */
void si_conn_update(si_conn *c);
void si_conn_close(si_conn *c);
si_conn *si_conn_by_id(int64_t id);

void si_refuse_push(si_refusals *r, int code, int n);
/* The next refusal, 0 when none. */
int si_refuse_pop(si_refusals *r);

/* ---- net.c ---- */
/* Read what the socket has into c->in; -1 on EOF or error. */
int si_net_read(si_conn *c);
/* Write c->out; -1 on error. */
int si_net_flush(si_conn *c);
/* One WebSocket frame (server to client, unmasked). */
void si_ws_frame(kb_buf *out, int opcode, bool fin, const void *p, size_t n);
/* Abort: write raw bytes then reset the TCP connection (RST, no TLS close). */
void si_net_reset(si_conn *c, const void *p, size_t n);

typedef struct si_http_req {
    char method[8];
    char path[512]; /* without the query */
    char query[1024];
    char hdr[24][2][1024];
    int nhdr;
    size_t len; /* bytes of the request in c->in */
} si_http_req;
/* 1 with *r filled when c->in holds a whole request, 0 when more is needed, -1 bad. */
int si_http_parse(si_conn *c, si_http_req *r);
const char *si_http_header(const si_http_req *r, const char *name);
/* The value of query parameter name (decoded into out), or NULL. */
const char *si_http_query(const si_http_req *r, const char *name, char *out, size_t outsz);
void
si_http_reply(si_conn *c, int status, const char *ctype, const char *body, size_t n, bool keep);

/* ---- feed.c ---- */
void si_feed_init(int markets, int subpenny_pct, int fractional_pct, int big);
/* Generate what is due at now; events go to subscribers and the truth log. */
void si_feed_tick(void);
si_market *si_market_find(const char *ticker, size_t len);
/* Append the orderbook_snapshot msg body of m (and bump its times). */
void si_feed_snapshot_body(si_market *m, kb_buf *b, bool use_yes_price, int64_t *ts);
/* Lifecycle: create / pause / resume / close N markets (messages to subscribers). */
/* create markets (created + activated lifecycle messages), quiet more without any (Kalshi's
 * lifecycle feed is not a guarantee: only the REST reconcile finds those), pause, resume,
 * close random ones. */
void si_feed_churn(int create, int quiet, int pause, int resume, int close);
void si_truth_flush(void);
/* REST object of m (Kalshi's market shape). */
void si_market_json(const si_market *m, kb_buf *b);
/* Price in 1/10,000 dollar as "0.0550"; count in 1/100 as "12.50". */
void si_dollars(kb_buf *b, int64_t p);
void si_fp(kb_buf *b, int64_t q);

/* ---- ws.c ---- */
/* The upgrade request r on c: check auth, answer 101 (or a refusal). */
void si_ws_accept(si_conn *c, const si_http_req *r);
/* Frames from the client in c->in. -1: close. */
int si_ws_input(si_conn *c);
/* Send a data message to sub: header {"type","sid","seq","msg":body}; applies faults. */
void si_ws_send(si_sub *s, const char *type, const char *body, size_t n);
void si_ws_ping_due(void);
void si_sub_free(si_sub *s);
void si_sub_add(si_sub *s, int market);
void si_sub_del(si_sub *s, int market);
bool si_sub_has(const si_sub *s, int market);
/* Record a fault in the fault log. markets: indices (n of them) or NULL. */
void si_fault_log(const char *kind, int64_t conn, int64_t sid, const int *markets, int n, bool gap,
                  const char *detail);
/* Markets of a connection's orderbook subscriptions (malloc'd, *n). */
int *si_conn_markets(const si_conn *c, int *n);

/* ---- http.c ---- */
/* A whole request on the REST/TLS port (not an upgrade) or the control port. */
void si_http_handle(si_conn *c, const si_http_req *r);

#endif
