/* kb_ingest.h - Kalshi market data into the database: the one ingest path of
 * `kbctl import` and kalshibook-collector's writer (DESIGN.md "Data", "The collector").
 *
 * A line (a Kalshi WebSocket v2 message or a REST object, KALSHI.md) becomes batch
 * rows in memory or, for lifecycle and REST objects, an upsert; kb_ingest_flush()
 * writes the batch: one transaction creates the partitions it spans, sends the
 * deltas that are provably new by a binary COPY straight into `deltas` and the other
 * rows through staging tables with INSERT .. ON CONFLICT DO NOTHING, and moves
 * market_stats by exactly the rows inserted, in the same transaction. So a replay
 * (a re-import, a spool read back after a restart) stores nothing twice and changes
 * no counter. Prices are 1/10,000 dollar, quantities 1/100 contract (kb_fixed.h).
 *
 * Two ways to run: kbctl import lets each flush run its own transaction, pipelined
 * (the COPY streams and the COMMIT runs while the next batch is parsed;
 * kb_ingest_drain() waits for it); the collector's writer sets in_tx and runs the
 * transaction itself, so its progress and gap rows commit with the data.
 *
 * Files (each calls only those below it): ingest.c (lines, spool records, flush,
 * drain) -> ingest_rows.c (batch rows), ingest_deltas.c (their route), ingest_meta.c
 * (upserts), ingest_gaps.c (collector events), ingest_finish.c (checkpoints) ->
 * ingest_msg.c and ingest_fast.c (one message, exactly, no side effects). Their
 * shared functions are kb__ingest_* in lib/internal.h.
 */
#ifndef KB_INGEST_H
#define KB_INGEST_H

#include <stdbool.h>
#include <stdint.h>

#include "kb_arena.h"
#include "kb_buf.h"
#include "kb_db.h"
#include "kb_spool.h"

/* µs value of a receive time (kb_ingest_delta.rcv, kb_ingest_msg.rcv) the line did not record. */
#define KB_INGEST_NO_RCV INT64_MIN

/* One orderbook_delta row of the pending batch, from either parser. */
typedef struct kb_ingest_delta {
    int64_t ts, rcv; /* µs since the epoch; rcv may be KB_INGEST_NO_RCV */
    int64_t sid, seq, order;
    int64_t amount;  /* signed quantity, 1/100 contract */
    int32_t price;   /* 1/10,000 dollar, 1..9999 */
    uint32_t ticker; /* index into kb_ingest.tickers */
    bool yes;
} kb_ingest_delta;

/* A direct row kept for computing checkpoints without reading it back. */
typedef struct kb_ingest_kept {
    int64_t ts;
    int64_t amount;
    int32_t price;
    bool yes;
} kb_ingest_kept;

/* Rows kept for the whole run at most; beyond, the SQL rebuild reads them back. */
#define KB_INGEST_KEEP_MAX 8000000L

/* A market ticker seen by this run (interned) and its figures in the pending batch. */
typedef struct kb_ingest_ticker {
    char *name;
    size_t len;
    long n;           /* rows of the batch */
    int64_t lo, hi;   /* their span */
    int64_t elo, ehi; /* span of the rows already stored within [lo, hi]; elo > ehi: none */
    long in_n;        /* rows within [elo, ehi], spanning [in_lo, in_hi] */
    int64_t in_lo, in_hi;
    bool overflow;               /* too many stored rows there: staged route for those */
    long fast_n;                 /* rows sent by the direct COPY */
    struct kb_ingest_kept *kept; /* every direct row of the run (checkpoints), nkept of capkept */
    long nkept, capkept;
    int64_t fast_lo, fast_hi;
} kb_ingest_ticker;

typedef struct kb_ingest {
    kb_db *db;     /* the caller's connection */
    bool in_tx;    /* the caller runs the transaction: flushes are synchronous, no
                              BEGIN/COMMIT of their own (the collector's writer) */
    bool prepared; /* the connection prepared_on has the staging tables */
    PGconn *prepared_on;
    const char *start_reason; /* gaps.reason of a collector's "start" event: restart, handover */
    kb_arena arena;           /* reset after every line */
    kb_buf snaps, trades;     /* COPY text rows of the pending batch */
    kb_ingest_delta *deltas;  /* rows of the pending batch (ndeltas of capdeltas) */
    long capdeltas;
    long nsnaps, ndeltas, ntrades; /* rows in the pending batch */
    kb_ingest_ticker *tickers;     /* interned tickers (ntickers of captickers) */
    uint32_t ntickers, captickers;
    uint32_t *tindex;       /* open addressing over tickers: id + 1, 0 = free */
    uint32_t tindex_cap;    /* power of two */
    bool no_fast;           /* every line through cJSON (tests compare both parsers) */
    int64_t min_us, max_us; /* span of the pending batch (partitions) */
    int64_t order;          /* running line order, keeps file order in ids */
    long *pending[3];       /* counters of the batch still running on the server */
    int npending;
    bool inflight;       /* the batch's end (moves, COMMIT) is running on the server */
    bool copying;        /* ... after the direct COPY of deltas still streaming to it */
    char *after_copy;    /* the query to send once that COPY is complete (malloc'd) */
    long direct_pending; /* rows of that COPY, counted as new when the batch commits */
    /* totals */
    long lines, bad, skipped, meta;
    long snaps_read, deltas_read, trades_read;
    long snaps_new, deltas_new, trades_new;
    long fast_lines, direct_rows, staged_rows; /* parser fast path; rows by route */
    long kept;   /* rows kept over all tickers; -1 once over KB_INGEST_KEEP_MAX */
    long events; /* collector events (gaps) applied */
} kb_ingest;

/* Fill a caller's struct for connection db (owned by the caller). */
void kb_ingest_init(kb_ingest *im, kb_db *db);

/* Free what the struct owns (not the connection); a batch not flushed is lost. */
void kb_ingest_release(kb_ingest *im);

/*
 * One line (without its newline): a WebSocket message or REST object into the batch
 * or an upsert. rcv_us: the line's receive time (µs), or KB_INGEST_NO_RCV to take a
 * top-level received_at if the line has one. True when the line was used or
 * deliberately skipped (blank, comment, a type not stored); false with *reason
 * (static or arena-owned) for a bad line. An upsert first waits for a batch in flight.
 */
bool
kb_ingest_line(kb_ingest *im, const char *line, size_t len, int64_t rcv_us, const char **reason);

/*
 * One spool record (kb_spool.h) of the file the header line `header` opens: F (a
 * WebSocket message, received at its wall time) and R (a REST body) as lines; E (a
 * collector event) as gap rows, keyed by where the record lies in the spool
 * (source "instance/file/offset", so a replay adds none twice). Events first flush
 * the batch (a "start" gap starts from the data stored before it). Same answer as
 * kb_ingest_line.
 */
bool kb_ingest_spool(kb_ingest *im, const kb_spool_rec *r, const char *source, const char **reason);

/* Rows in the pending batch. */
long kb_ingest_pending(const kb_ingest *im);

/*
 * Write the pending batch. Own transaction (in_tx false): started and left running
 * (kb_ingest_drain completes it). in_tx: inside the caller's, synchronously. False on
 * a database failure (logged; the batch is gone and its transaction rolled back or,
 * in_tx, failed for the caller to roll back).
 */
bool kb_ingest_flush(kb_ingest *im);

/* Wait for the batch still running on the server (if any); false if it failed. */
bool kb_ingest_drain(kb_ingest *im);

/* Push buffered COPY data to the server without blocking (no-op when idle). */
void kb_ingest_poll(kb_ingest *im);

/*
 * After a load: refresh the statistics of the partitions loaded and, unless every is
 * 0, rebuild the checkpoints of the markets that got rows since the last call (one
 * every `every` deltas), adding their number to *checkpoints. Uses a second
 * connection to the same database when it can. False on a failure (logged).
 */
bool kb_ingest_finish(kb_ingest *im, long every, long *checkpoints);

#endif
