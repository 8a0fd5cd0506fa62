/* internal.h - libkb's private functions shared between its files (kb__ prefix, as
 * libuv's uv__). Not for app/; unit tests and fuzz targets may include it. */
#ifndef KB_INTERNAL_H
#define KB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_arena.h"
#include "kb_buf.h"
#include "kb_err.h"
#include "kb_ingest.h"

struct cJSON;
struct kb_ingest_msg;
struct kb_worker;

/* ---- db (kb_db.h): shared by lib/db.c and lib/db_tx.c ---- */

struct kb_db;
struct kb_stmt;
struct pg_result;

/* How long past its statement_timeout a connection's reply may be late before
 * the worker stops waiting: the server answers a timed-out statement with an
 * error itself, so only a server that answers nothing (frozen, partitioned
 * away) reaches this. */
#define KB__DB_REPLY_GRACE_MS 5000

/* True when a statement sent ahead still waits to go out and st, another
 * statement, is to carry it. */
bool kb__db_carries_ahead(const struct kb_db *db, const struct kb_stmt *st);

/* Queue the statement sent ahead (its Bind and Execute) on db's pipeline, and count
 * it. False when libpq could not queue it. */
bool kb__db_queue_ahead(struct kb_db *db);

/* The results of what was just sent (for each of the n statements its last result;
 * n > 1 only in pipeline mode, a sync after each), bounded by the statement timeout.
 * False on a timeout or a read failure, with res all NULL. */
bool kb__db_await_results(struct kb_db *db, const char *what, struct pg_result **res, int n);

/* Wait until a result can be read without blocking, by deadline (monotonic µs) when
 * db has a statement timeout. False on that and on a read failure. */
bool kb__db_wait_result(struct kb_db *db, const char *what, int64_t deadline, long limit_ms);

/* db->sqlstate from r ("" when none). */
void kb__db_set_sqlstate(struct kb_db *db, const struct pg_result *r);

/* After a failed call: was it the connection? Then drop it (and say so). */
bool kb__db_connection_lost(struct kb_db *db);

/* Log the first line of a libpq message. */
void kb__db_log_pq_error(const char *what, const char *msg);

/* st is prepared on db's connection (kb__db_is_prepared), or now is (kb__db_note_prepared);
 * kb__db_prepare prepares it outside pipeline mode if it is not. */
bool kb__db_is_prepared(const struct kb_db *db, const struct kb_stmt *st);
void kb__db_note_prepared(struct kb_db *db, const struct kb_stmt *st);
kb_err kb__db_prepare(struct kb_db *db, const struct kb_stmt *st);

/* PQclear for kb_arena_on_reset(). */
void kb__db_clear_result(void *r);

/* ---- meter (kb_meter.h): shared by lib/meter*.c ---- */

/* Settle the caller's own journal entry when it is pending (lib/meter_settle.c).
 * False when the database did not answer. A charge whose transaction is still
 * running is handed over as an orphan, and the worker takes a fresh entry. */
bool kb__meter_settle_own(struct kb_worker *w, kb_arena *arena);

/* ---- ingest (kb_ingest.h): shared by lib/ingest*.c ---- */

/* Postgres array literals for parameters, built element by element into an
 * empty buffer: a string (quoted), an integer, an instant (§1.1 text);
 * kb__ingest_arr_end closes it ("{}" when empty) and returns the text. */
void kb__ingest_arr_str(kb_buf *b, const char *s, size_t len);
void kb__ingest_arr_int(kb_buf *b, int64_t v);
void kb__ingest_arr_ts(kb_buf *b, int64_t us);
const char *kb__ingest_arr_end(kb_buf *b);

/* Interned id of ticker s[0..len) (never fails: dies on OOM). */
uint32_t kb__ingest_ticker_id(kb_ingest *im, const char *s, size_t len);

/* Append a delta row to the batch (d->order is set from im->order) and count it. */
void kb__ingest_add_delta(kb_ingest *im, const kb_ingest_delta *d);

/* Snapshot and trade rows of a parsed message into the batch (ingest_rows.c). */
void kb__ingest_add_snapshot(kb_ingest *im, const struct kb_ingest_msg *m);
void kb__ingest_add_trade(kb_ingest *im, const struct kb_ingest_msg *m);

/* Kalshi numeric ts (seconds, or ms above 1e12) -> µs; false when out of range. */
bool kb__ingest_ts_number(double d, int64_t *us);

/* s[0..len) as exactly one JSON value (cJSON, lax), or NULL. Caller frees. */
struct cJSON *kb__ingest_parse_whole(const char *s, size_t len);

/*
 * The common orderbook_delta line read without building a cJSON tree, no side
 * effects: true with *d (all but ticker and order) and the ticker s[*t..*t+*tlen)
 * when the line is one exactly as the cJSON path would read it; false for anything
 * else, good or bad: the caller then runs the cJSON path, which decides and explains.
 * rcv_us: the receive time to assume (KB_INGEST_NO_RCV: the line's received_at).
 */
bool kb__ingest_fast_delta(const char *s, size_t len, int64_t rcv_us, kb_ingest_delta *d,
                           const char **t, size_t *tlen);

/*
 * Route the batch's delta rows (ingest_deltas.c), inside the batch transaction after
 * kb_ensure_partitions: *direct gets the binary COPY data for `deltas` of the *ndirect
 * rows that are provably new (their market_stats are already updated), *staged that
 * for stage_deltas of the *nstaged others (imp_move_deltas inserts and counts them).
 * False on a database failure (logged).
 */
bool kb__ingest_deltas_prepare(kb_ingest *im, kb_buf *direct, kb_buf *staged, long *ndirect,
                               long *nstaged);

/* ---- one WebSocket message, exactly (kbctl_import_msg.c) ---- */

typedef enum kb_ingest_kind {
    KB_INGEST_SKIP, /* a type the importer does not store (subscribed, ok, error, ...) */
    KB_INGEST_SNAPSHOT,
    KB_INGEST_DELTA,
    KB_INGEST_TRADE,
    KB_INGEST_LIFECYCLE
} kb_ingest_kind;

/* A book level: price in 1/10,000 dollar, quantity in 1/100 contract. */
typedef struct kb_ingest_level {
    int32_t price;
    int64_t qty;
} kb_ingest_level;

typedef struct kb_ingest_msg {
    kb_ingest_kind kind;
    const struct cJSON *msg; /* the message's "msg" object (lifecycle fields) */
    const char *ticker;      /* msg.market_ticker */
    int64_t ts;              /* exchange time, µs */
    int64_t rcv;             /* receive time recorded by the capture, µs, or KB_INGEST_NO_RCV */
    int64_t sid, seq;
    bool has_seq;
    bool yes;             /* delta: side; trade: taker_side */
    int32_t price;        /* delta */
    int64_t amount;       /* delta, signed */
    const char *trade_id; /* trade */
    int32_t yes_price, no_price;
    int64_t count;
    kb_ingest_level *levels[2]; /* snapshot: [0] yes, [1] no (arena-owned), nlevels each */
    size_t nlevels[2];
} kb_ingest_msg;

/*
 * Read one WebSocket message j (a parsed JSON line whose "type" is type) into
 * *m, every price and quantity exact. No side effects: strings point into j,
 * arrays come from a. True for a good message (m->kind KB_INGEST_SKIP for types
 * that are not stored); false with *reason (static or arena-owned) for a bad
 * one, including a value given in two forms that disagree.
 */
bool kb__ingest_parse_msg(kb_arena *a, const struct cJSON *j, const char *type, kb_ingest_msg *m,
                          const char **reason);

/* Member k of o, or NULL. */
const struct cJSON *kb__ingest_get(const struct cJSON *o, const char *k);

/* Non-empty string member k, or NULL. */
const char *kb__ingest_str(const struct cJSON *o, const char *k);

/* An integral JSON number or integer string (|v| <= 9e15). */
bool kb__ingest_int_val(const struct cJSON *f, int64_t *v);

/*
 * A price given as k (integer cents) and/or k_dollars (string, 4 decimals),
 * in 1/10,000 dollar (0..10000); *found false when neither is there. The two
 * forms must agree.
 */
bool kb__ingest_price(kb_arena *a, const struct cJSON *o, const char *k, bool *found, int64_t *v,
                      const char **reason);

/* A timestamp value (Kalshi seconds/ms number or ISO string) -> µs. */
bool kb__ingest_ts_val(const struct cJSON *f, int64_t *us);

/* Integer milliseconds -> µs within the range kb_time formats; false outside. */
bool kb__ingest_ms_to_us(int64_t ms, int64_t *us);

/*
 * ts (µs, written to a precision of ts_prec µs: 1000000, 1000 or 1) and
 * ts_ms (as µs) agree when they name the same instant to the coarser of the
 * two precisions; *out gets the finer one. False when they disagree.
 */
bool kb__ingest_ts_agree(int64_t ts, int64_t ts_prec, int64_t ms_us, int64_t *out);

/* The precision (µs) an ISO time s[0..len) is written to: 1000000, 1000 or 1. */
int64_t kb__ingest_iso_precision(const char *s, size_t len);

/* Arena-owned §1.1 text of an instant. */
char *kb__ingest_ts_text(kb_arena *a, int64_t us);

/* Timestamp member k (Kalshi seconds/ms or ISO) as SQL text, NULL when absent. */
const char *kb__ingest_ts_param(kb_arena *a, const struct cJSON *o, const char *k);

/* Arena-owned compact JSON of o without the message-envelope members (ts, ts_ms, sid, seq,
 * received_at), which are not metadata; NULL when o is NULL. */
char *kb__ingest_metadata(kb_arena *a, const struct cJSON *o);

/* market_lifecycle_v2 message -> markets (and settlements) upsert. The caller has
 * drained any batch in flight (the connection is free). */
bool kb__ingest_lifecycle(kb_ingest *im, const struct cJSON *msg, const char *ticker, int64_t ts,
                          const char **reason);

/* REST market/event/series object or list response -> upserts (drained first, too). */
bool kb__ingest_rest(kb_ingest *im, const struct cJSON *j, const char **reason);

/* A collector event (kalshibook-collector's spool, E records) -> gaps and collector_markets
 * rows (ingest_gaps.c); source keys its gap rows. False on a database failure. */
bool kb__ingest_event(kb_ingest *im, const char *json, size_t len, int64_t wall_us,
                      const char *source, const char **reason);

#endif
