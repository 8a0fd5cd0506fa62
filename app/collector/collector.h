/* collector.h - kalshibook-collector: state shared by its threads and modules.
 *
 *   reader (main thread, lws loop): ws.c (connections), feed.c (frames, seq, gaps),
 *       shards.c (markets -> subscriptions), rspool.c (spool files, the queue)
 *   discovery thread: rest.c (REST paging, token bucket, backoff) -> mailbox -> reader
 *   writer thread: writer.c (advisory lock, spool/queue -> lib ingest -> Postgres)
 *   metrics thread: metrics.c (Prometheus text on 127.0.0.1)
 *
 * Invariants:
 *   - Only the reader thread touches markets, shards and connections.
 *   - Every received frame is appended to the spool (with its receive times) before
 *     it is parsed; decisions about it (gaps) are spool events written after it.
 *   - A market's book is trusted from a snapshot until its subscription loses a
 *     message (seq jump, duplicate run, error 25, dead connection): then a gap is
 *     opened for every market of the shard and the shard is resubscribed; the
 *     snapshot that follows closes it.
 */
#ifndef KC_COLLECTOR_H
#define KC_COLLECTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kb_buf.h"
#include "kb_config.h"
#include "kb_kalshi.h"

struct lws;
struct lws_context;

enum { KC_CH_OB, KC_CH_TRADE, KC_CH_LIFECYCLE };
enum { KC_SUB_NONE, KC_SUB_PENDING, KC_SUB_LIVE };
enum { KC_DOWN, KC_CONNECTING, KC_UP };

typedef struct kc_market {
    char *ticker;
    int32_t shard; /* -1: none */
    bool wanted;   /* open or paused: should be subscribed */
    bool live;     /* a snapshot arrived on its current subscription */
    bool gap;      /* a gap is open for it (event written, no snapshot since) */
    bool first;    /* no snapshot yet in this process: the first closes the restart gap */
    bool checking; /* a REST look-up of its status is pending */
    bool seen;     /* in the REST listing being reconciled */
} kc_market;

typedef struct kc_sub {
    int64_t sid, seq; /* seq: last in order */
    int64_t last_ts;  /* exchange ms of the last message in order (from subscribe on) */
    int state;
    int dups; /* duplicates in a row */
} kc_sub;

typedef struct kc_shard {
    int conn;
    int32_t *m; /* market indices */
    int n, cap;
    kc_sub ob, tr;
    bool resync;              /* (re)subscribe both channels when the connection allows */
    const char *why;          /* gaps.reason of the last resync asked (a string constant) */
    int32_t *add[2], *del[2]; /* per channel: markets waiting for update_subscription */
    int nadd[2], capadd[2], ndel[2], capdel[2];
    int64_t retry_us; /* no command before this (after error 17/18) */
    int retries;
} kc_shard;

/* A command sent and not yet answered. */
enum { KC_CMD_SUB, KC_CMD_ADD, KC_CMD_DEL, KC_CMD_UNSUB };
typedef struct kc_cmd {
    int64_t id;
    int kind, ch, shard; /* shard -1: the lifecycle subscription */
    int64_t sent_us;
    int32_t *m; /* markets of an add/delete */
    int n;
} kc_cmd;

typedef struct kc_conn {
    int idx;
    struct lws *wsi;
    int state;
    int64_t epoch; /* 1, 2, ... per established connection, process-wide */
    int64_t next_try_us, backoff_ms, up_us, last_rx_us, ping_us;
    bool healthy; /* up long enough that the backoff starts over */
    kb_buf rx;    /* message being reassembled from fragments */
    char **outq;  /* commands to send, in order */
    int nout, capout;
    kc_cmd *cmds;
    int ncmds, capcmds;
    int32_t *sidmap; /* sid -> shard * 4 + channel, -1 none / retired */
    int64_t nsid;
    kc_sub lc; /* market_lifecycle_v2 when this connection carries it */
    int nshards;
    const char *kill_reason; /* set when we end it ourselves */
} kc_conn;

typedef struct kc_state {
    kb_config *cfg;
    kb_kalshi_key key;
    char instance[128];
    char ws_host[256];
    int ws_port;
    bool ws_tls;
    const char *ws_path;
    struct lws_context *lws;
    kc_market *m;
    int32_t nm, capm;
    int32_t *mindex; /* open addressing: market index + 1 */
    uint32_t mindex_cap;
    kc_shard *sh;
    int nsh, capsh;
    kc_conn *conns;
    int nconns;
    int64_t next_cmd_id, next_epoch;
    int lc_conn; /* connection carrying the lifecycle subscription, -1 none */
    int64_t reconcile_due_us;
    bool reconcile_now;
    bool unassigned; /* a wanted market may have no shard yet */
    bool tick_now;   /* run the timers at the next loop turn, whatever the time */
    atomic_int stop;
    atomic_int reader_done;  /* the reader closed its links and the spool: nothing more comes */
    atomic_long min_file_no; /* the spool's next file number is at least this */
} kc_state;

extern kc_state K;

/* ---- shards.c ---- */
int32_t kc_market_find(const char *t, size_t len);
/* Want market t subscribed (open/paused) or not (closed); returns its index or -1. */
int32_t kc_market_want(const char *t, size_t len, bool want);
/* Whether ticker t is one this collector collects (KB_COLLECTOR_SERIES). */
bool kc_market_in_scope(const char *t, size_t len);
/* Queue the commands that bring subscriptions in line with the wanted markets. */
void kc_shards_sync(void);
/*
 * Shard's subscription of channel loss (KC_CH_OB, KC_CH_TRADE; -1: both, the link) lost
 * messages: gaps for its markets (reason: gaps.reason), then resubscribe.
 */
void kc_shard_resync(int shard, int loss, const char *reason, const char *detail);
/* Every shard of connection c lost its link. */
void kc_conn_lost(kc_conn *c, const char *reason);
/* Queue market mi for add_markets (add) or delete_markets on channel ch of shard. */
void kc_shard_queue(int shard, int ch, bool add, int32_t mi);
/* The markets of shard (for commands) as a JSON array into b. */
void kc_shard_tickers_json(const kc_shard *s, const int32_t *m, int n, kb_buf *b);
int kc_shards_live_markets(void);
void kc_shards_release(void);

/* ---- ws.c ---- */
int kc_ws_init(void);
void kc_ws_run(void);
void kc_ws_wake(void);
/* Queue command text (JSON) on connection c; the id is already in it. */
void kc_ws_send(kc_conn *c, char *text);
void kc_ws_kill(kc_conn *c, const char *reason);
int64_t kc_cmd_new(kc_conn *c, int kind, int ch, int shard, const int32_t *m, int n);

/* ---- feed.c ---- */
/* One complete message of connection c (already in the spool). */
void kc_feed_frame(kc_conn *c, const char *p, size_t n, int64_t wall_ns);
/* Commands unanswered for too long count as error 18 (timeout). */
void kc_feed_timeouts(kc_conn *c, int64_t now_us);

/* ---- rspool.c ---- */
int kc_spool_open(void);
/* Append a frame / REST body / event to the pending batch (times: now). */
void kc_spool_frame(const kc_conn *c, const char *p, size_t n, int64_t wall_ns, int64_t mono_ns);
void kc_spool_rest(const char *p, size_t n);
void kc_spool_event(const kb_buf *json);
/* Write the batch to the file (rotating hourly) and hand it to the writer's queue. */
void kc_spool_flush(void);
void kc_spool_close(void);

/* ---- queue.c (reader -> writer) ---- */
typedef struct kc_chunk {
    struct kc_chunk *next;
    long file_no;
    int64_t off; /* file offset of data[0] */
    size_t len;
    char data[];
} kc_chunk;
void kc_queue_init(size_t max_bytes);
/* false when full (the chunk is freed; the writer reads the spool instead). */
bool kc_queue_push(kc_chunk *ch);
/* Wait up to timeout_ms for a chunk; NULL when none. Caller frees. */
kc_chunk *kc_queue_pop(int timeout_ms);
size_t kc_queue_bytes(void);
/* The spool's write end, published after every write. */
void kc_spool_published(long *file_no, int64_t *off);
void kc_spool_publish(long file_no, int64_t off);

/* ---- rest.c (discovery thread) ---- */
int kc_rest_start(void);
void kc_rest_stop(void);
/* Ask for GET /markets/{ticker} of each (reader thread). */
void kc_rest_check(const char *ticker);
void kc_rest_reconcile(void);
/* Drain what the discovery thread found (reader thread). */
void kc_rest_drain(void);

/* ---- writer.c ---- */
int kc_writer_start(void);
/* Block until this instance holds the leader lock (or stop). */
bool kc_writer_wait_leader(void);
void kc_writer_stop(void);

/* ---- upkeep.c (checkpoint thread) ---- */
int kc_upkeep_start(void);
void kc_upkeep_stop(void);

/* ---- metrics.c ---- */
enum kc_counter {
    KC_M_FRAMES,
    KC_M_FRAME_BYTES,
    KC_M_SNAPSHOTS,
    KC_M_DELTAS,
    KC_M_TRADES,
    KC_M_LIFECYCLE,
    KC_M_REPLIES,
    KC_M_ERRORS,
    KC_M_UNKNOWN,
    KC_M_BAD,
    KC_M_DUPLICATES,
    KC_M_GAP_SEQ_JUMP,
    KC_M_GAP_SEQ_DUP,
    KC_M_GAP_OVERFLOW,
    KC_M_GAP_DISCONNECT,
    KC_M_GAP_HEARTBEAT,
    KC_M_GAP_ERROR,
    KC_M_RECONNECTS,
    KC_M_HANDSHAKE_FAIL,
    KC_M_REST_OK,
    KC_M_REST_429,
    KC_M_REST_5XX,
    KC_M_REST_ERR,
    KC_M_SPOOL_BYTES,
    KC_M_QUEUE_DROPS,
    KC_M_WRITER_RECORDS,
    KC_M_WRITER_COMMITS,
    KC_M_WRITER_ERRORS,
    KC_M_WRITER_SPOOL_READS,
    KC_M_WRITER_SPOOL_RECORDS,
    KC_M_WRITER_BAD,
    KC_M_CHECKPOINTS,
    KC_M_COUNT_
};
enum kc_gauge {
    KC_G_LEADER,
    KC_G_CONNS_UP,
    KC_G_CONNS_HEALTHY,
    KC_G_MARKETS_WANTED,
    KC_G_MARKETS_LIVE,
    KC_G_MARKETS_GAP,
    KC_G_QUEUE_BYTES,
    KC_G_WRITER_LAG_BYTES,
    KC_G_DB_UP,
    KC_G_OPEN_MARKETS_REST,
    KC_G_COUNT_
};
void kc_metric_add(enum kc_counter c, uint64_t n);
void kc_metric_set(enum kc_gauge g, int64_t v);
int64_t kc_metric_get(enum kc_gauge g);
uint64_t kc_metric_count(enum kc_counter c);
/* Message age (receive time - exchange time) into the histogram. */
void kc_metric_age(int64_t age_ms);
int kc_metrics_start(int port);
void kc_metrics_stop(void);

/* Helpers (main.c). */
int64_t kc_now_ns(void);
int64_t kc_mono_ns(void);
uint64_t kc_rand(void);
/* A jittered delay in [d/2, d] ms (equal jitter). */
int64_t kc_jitter_ms(int64_t d);

#endif
