/* kbctl_import.h - state shared by kbctl import's driver and its message parsers.
 *
 * The driver (kbctl_import.c) reads lines, owns the connection and flushes
 * batches with COPY; kb_imp_parse_msg (kbctl_import_msg.c) reads one message
 * into exact integers without side effects; the line parsers
 * (kbctl_import_rows.c, the delta fast path in kbctl_import_json.c) turn its
 * result into COPY rows in the batch buffers or an immediate metadata upsert
 * (kbctl_import_meta.c). Prices are 1/10,000 dollar, quantities 1/100
 * contract (kb_fixed.h).
 */
#ifndef KB_KBCTL_IMPORT_H
#define KB_KBCTL_IMPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "kb_buf.h"
#include "kb_db.h"

/* µs value of a receive time (kb_imp_delta.rcv, kb_imp_msg.rcv) the line did not record. */
#define KB_IMP_NO_RCV INT64_MIN

/* One orderbook_delta row of the pending batch, from either parser. */
typedef struct kb_imp_delta {
    int64_t ts, rcv;        /* µs since the epoch; rcv may be KB_IMP_NO_RCV */
    int64_t sid, seq, order;
    int64_t amount;         /* signed quantity, 1/100 contract */
    int32_t price;          /* 1/10,000 dollar, 1..9999 */
    uint32_t ticker;        /* index into kb_import.tickers */
    bool yes;
} kb_imp_delta;

/* A direct row kept for computing checkpoints without reading it back. */
typedef struct kb_imp_kept {
    int64_t ts;
    int64_t amount;
    int32_t price;
    bool yes;
} kb_imp_kept;

/* Rows kept for the whole run at most; beyond, the SQL rebuild reads them back. */
#define KB_IMP_KEEP_MAX 8000000L

/* A market ticker seen by this run (interned) and its figures in the pending batch. */
typedef struct kb_imp_ticker {
    char *name;
    size_t len;
    long n;                 /* rows of the batch */
    int64_t lo, hi;         /* their span */
    int64_t elo, ehi;       /* span of the rows already stored within [lo, hi]; elo > ehi: none */
    long in_n;              /* rows within [elo, ehi], spanning [in_lo, in_hi] */
    int64_t in_lo, in_hi;
    bool overflow;          /* too many stored rows there: staged route for those */
    long fast_n;            /* rows sent by the direct COPY */
    struct kb_imp_kept *kept; /* every direct row of the run (checkpoints), nkept of capkept */
    long nkept, capkept;
    int64_t fast_lo, fast_hi;
} kb_imp_ticker;

typedef struct kb_import {
    kb_db db;
    kb_arena arena;        /* reset after every line */
    kb_buf snaps, trades;  /* COPY text rows of the pending batch */
    kb_imp_delta *deltas;  /* rows of the pending batch (ndeltas of capdeltas) */
    long capdeltas;
    long nsnaps, ndeltas, ntrades; /* rows in the pending batch */
    kb_imp_ticker *tickers; /* interned tickers (ntickers of captickers) */
    uint32_t ntickers, captickers;
    uint32_t *tindex;      /* open addressing over tickers: id + 1, 0 = free */
    uint32_t tindex_cap;   /* power of two */
    bool no_fast;          /* every line through cJSON (tests compare both parsers) */
    int64_t min_us, max_us; /* span of the pending batch (partitions) */
    int64_t order;          /* running line order, keeps file order in ids */
    long *pending[3];       /* counters of the batch still running on the server */
    int npending;
    bool inflight;          /* the batch's end (moves, COMMIT) is running on the server */
    bool copying;           /* ... after the direct COPY of deltas still streaming to it */
    char *after_copy;       /* the query to send once that COPY is complete (malloc'd) */
    long direct_pending;    /* rows of that COPY, counted as new when the batch commits */
    /* totals */
    long lines, bad, skipped, meta;
    long snaps_read, deltas_read, trades_read;
    long snaps_new, deltas_new, trades_new;
    long fast_lines, direct_rows, staged_rows; /* parser fast path; rows by route */
    long kept;              /* rows kept over all tickers; -1 once over KB_IMP_KEEP_MAX */
} kb_import;

/*
 * Parse one line (NUL-terminated, without the newline) into the batch or an
 * upsert. Returns true when the line was used or deliberately skipped; false
 * with *reason (static or arena-owned) for a bad line.
 */
bool kb_import_line(kb_import *im, const char *line, size_t len, const char **reason);

/* Wait for the batch still running on the server (if any); false if it failed. */
bool kb_import_drain(kb_import *im);

/*
 * After the load (kbctl_import_finish.c): refresh the statistics of the
 * partitions loaded and, unless every is 0, rebuild the checkpoints of the
 * markets that got rows (one every `every` deltas), adding their number to
 * *checkpoints. False on a failure (reported on stderr).
 */
bool kb_import_finish(kb_import *im, long every, long *checkpoints);

/* Postgres array literals for parameters, built element by element into an
 * empty buffer: a string (quoted), an integer, an instant (§1.1 text);
 * kb_imp_arr_end closes it ("{}" when empty) and returns the text. */
void kb_imp_arr_str(kb_buf *b, const char *s, size_t len);
void kb_imp_arr_int(kb_buf *b, int64_t v);
void kb_imp_arr_ts(kb_buf *b, int64_t us);
const char *kb_imp_arr_end(kb_buf *b);

/* Push buffered COPY data to the server without blocking (no-op when idle). */
void kb_import_poll(kb_import *im);

/* ---- shared by the parsers (kbctl_import_rows.c, _meta.c, _json.c) ---- */

/* Interned id of ticker s[0..len) (never fails: dies on OOM). */
uint32_t kb_imp_ticker_id(kb_import *im, const char *s, size_t len);

/* Append a delta row to the batch (d->order is set from im->order) and count it. */
void kb_imp_add_delta(kb_import *im, const kb_imp_delta *d);

/* Kalshi numeric ts (seconds, or ms above 1e12) -> µs; false when out of range. */
bool kb_imp_ts_number(double d, int64_t *us);

/* s[0..len) as exactly one JSON value (cJSON, lax), or NULL. Caller frees. */
struct cJSON *kb_imp_parse_whole(const char *s, size_t len);

/*
 * The common orderbook_delta line without building a cJSON tree. True when
 * the line was taken (a row added, counters moved) exactly as the cJSON path
 * would have; false (nothing changed) for anything else, good or bad: the
 * caller then runs the cJSON path, which decides and explains.
 */
bool kb_imp_fast_line(kb_import *im, const char *s, size_t len);

/*
 * Route the batch's delta rows (kbctl_import_deltas.c), inside the batch
 * transaction after kb_ensure_partitions: *direct gets the binary COPY data
 * for `deltas` of the *ndirect rows that are provably new (their
 * market_stats are already updated), *staged that for stage_deltas of the
 * *nstaged others (imp_move_deltas inserts and counts them). False on a
 * database failure (reported on stderr).
 */
bool kb_imp_deltas_prepare(kb_import *im, kb_buf *direct, kb_buf *staged, long *ndirect,
                           long *nstaged);


struct cJSON;

/* ---- one WebSocket message, exactly (kbctl_import_msg.c) ---- */

typedef enum kb_imp_kind {
    KB_IMP_SKIP,       /* a type the importer does not store (subscribed, ok, error, ...) */
    KB_IMP_SNAPSHOT,
    KB_IMP_DELTA,
    KB_IMP_TRADE,
    KB_IMP_LIFECYCLE
} kb_imp_kind;

/* A book level: price in 1/10,000 dollar, quantity in 1/100 contract. */
typedef struct kb_imp_level {
    int32_t price;
    int64_t qty;
} kb_imp_level;

typedef struct kb_imp_msg {
    kb_imp_kind kind;
    const struct cJSON *msg; /* the message's "msg" object (lifecycle fields) */
    const char *ticker;      /* msg.market_ticker */
    int64_t ts;              /* exchange time, µs */
    int64_t rcv;             /* receive time recorded by the capture, µs, or KB_IMP_NO_RCV */
    int64_t sid, seq;
    bool has_seq;
    bool yes;                /* delta: side; trade: taker_side */
    int32_t price;           /* delta */
    int64_t amount;          /* delta, signed */
    const char *trade_id;    /* trade */
    int32_t yes_price, no_price;
    int64_t count;
    kb_imp_level *levels[2]; /* snapshot: [0] yes, [1] no (arena-owned), nlevels each */
    size_t nlevels[2];
} kb_imp_msg;

/*
 * Read one WebSocket message j (a parsed JSON line whose "type" is type) into
 * *m, every price and quantity exact. No side effects: strings point into j,
 * arrays come from a. True for a good message (m->kind KB_IMP_SKIP for types
 * that are not stored); false with *reason (static or arena-owned) for a bad
 * one, including a value given in two forms that disagree.
 */
bool kb_imp_parse_msg(kb_arena *a, const struct cJSON *j, const char *type, kb_imp_msg *m,
                      const char **reason);

/* Member k of o, or NULL. */
const struct cJSON *kb_imp_get(const struct cJSON *o, const char *k);

/* Non-empty string member k, or NULL. */
const char *kb_imp_str(const struct cJSON *o, const char *k);

/* An integral JSON number or integer string (|v| <= 9e15). */
bool kb_imp_int_val(const struct cJSON *f, int64_t *v);

/*
 * A price given as k (integer cents) and/or k_dollars (string, 4 decimals),
 * in 1/10,000 dollar (0..10000); *found false when neither is there. The two
 * forms must agree.
 */
bool kb_imp_price(kb_arena *a, const struct cJSON *o, const char *k, bool *found, int64_t *v,
                  const char **reason);

/* A timestamp value (Kalshi seconds/ms number or ISO string) -> µs. */
bool kb_imp_ts_val(const struct cJSON *f, int64_t *us);

/* Integer milliseconds -> µs within the range kb_time formats; false outside. */
bool kb_imp_ms_to_us(int64_t ms, int64_t *us);

/*
 * ts (µs, written to a precision of ts_prec µs: 1000000, 1000 or 1) and
 * ts_ms (as µs) agree when they name the same instant to the coarser of the
 * two precisions; *out gets the finer one. False when they disagree.
 */
bool kb_imp_ts_agree(int64_t ts, int64_t ts_prec, int64_t ms_us, int64_t *out);

/* The precision (µs) an ISO time s[0..len) is written to: 1000000, 1000 or 1. */
int64_t kb_imp_iso_precision(const char *s, size_t len);

/* Arena-owned §1.1 text of an instant. */
char *kb_imp_ts_text(kb_arena *a, int64_t us);

/* Timestamp member k (Kalshi seconds/ms or ISO) as SQL text, NULL when absent. */
const char *kb_imp_ts_param(kb_arena *a, const struct cJSON *o, const char *k);

/* Arena-owned compact JSON of o without the message-envelope members (ts, ts_ms, sid, seq,
 * received_at), which are not metadata; NULL when o is NULL. */
char *kb_imp_metadata(kb_arena *a, const struct cJSON *o);

/* market_lifecycle_v2 message -> markets (and settlements) upsert. */
bool kb_import_lifecycle(kb_import *im, const struct cJSON *msg, const char *ticker, int64_t ts,
                         const char **reason);

/* REST market/event/series object or list response -> upserts. */
bool kb_import_rest(kb_import *im, const struct cJSON *j, const char **reason);

#endif
