/* kb_meter.h - credit metering of data routes (DESIGN.md money rules 1-4).
 *
 * One begin/end pair per metered request:
 *   - the dispatcher parses the API key once into req->api_key and the route's
 *     cost into ctx->cost (the route table, app/fcgi/routes.c);
 *   - the handler validates its input, then calls kb_meter_charge() once: one
 *     plain SQL UPDATE (kb_meter_stmt) authenticates the key, applies the rate
 *     window and deducts the cost in the common case; anything else is decided
 *     by kb_meter_slow() (db/migrations/0015_meter_fast_path.sql) in the same
 *     transaction; a by-id lookup the handler will make rides in the same
 *     round trips (kb_meter_ahead);
 *   - the worker calls kb_meter_end() around sending the answer: it refunds a
 *     charge whose request failed (money rule 3), writes the X-Credits-* and
 *     X-RateLimit-* headers, sends, and then settles the charge's journal entry.
 * Handlers never refund themselves.
 *
 * A charge's transaction is committed only once the worker's journal entry holds
 * its transaction id and what a refund needs: after the statement's reply (two
 * round trips), or, in a transaction begun ahead whose id the worker already
 * knows, before the statement is sent with its commit (one round trip,
 * kb_meter_chain_stmt). A charge whose commit or answer was lost is settled from
 * the journal (kb_meter_settle_pending(); db/migrations/0016_meter_crash_settle.sql
 * and 0028_meter_one_trip.sql say how a crash of Postgres in between is told apart).
 */
#ifndef KB_METER_H
#define KB_METER_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "kb_db.h"
#include "kb_http.h"
#include "kb_journal.h"

/* What the meter decided. */
typedef enum kb_meter_outcome {
    KB_METER_OK = 0,       /* charged */
    KB_METER_INVALID_KEY,  /* 401 invalid_api_key: unknown or revoked */
    KB_METER_RATE_LIMITED, /* 429 rate_limit_exceeded */
    KB_METER_EXHAUSTED,    /* 429 credits_exhausted */
} kb_meter_outcome;

/* The outcome for its name in the statement's result ("ok", "invalid_key",
 * "rate_limited", "exhausted"); false for anything else. */
bool kb_meter_outcome_parse(const char *name, kb_meter_outcome *out);

/* The statement's name for an outcome. */
const char *kb_meter_outcome_name(kb_meter_outcome o);

/* One row of the meter statement, read by column name. Text fields are as
 * Postgres prints them, "" when NULL; numbers 0 when NULL. */
typedef struct kb_meter_result {
    kb_meter_outcome outcome;
    char user_id[40]; /* set unless invalid_key */
    char key_id[40];
    char key_prefix[16];
    int64_t credits_total; /* after the charge (or of the refused request) */
    int64_t credits_used;
    int64_t cost;     /* charged: the route's cost; 0 when refused */
    int64_t rl_limit; /* requests per minute */
    int64_t rl_remaining;
    int64_t rl_reset;      /* Unix time the window ends */
    int64_t retry_after;   /* seconds, refused requests */
    char cycle_start[40];  /* the account's cycle, for refunds */
    char day[16];          /* UTC day the usage counts on, for refunds */
    int64_t outbox_id;     /* PAYG overage row, 0 = none */
    uint64_t xid;          /* the charge's transaction, 0 unless charged */
    char token[40];        /* the server's life it ran in (kb_incarnation()), "" unless charged */
    int64_t seq;           /* the account's charge count it made, 0 unless charged */
    int64_t fast_until_us; /* the fast path's window end (µs since the epoch), 0 = not said */
} kb_meter_result;

/*
 * Read row of r (a meter statement's result) into *out by column name. The
 * fast path (kb_meter_stmt) returns no user_id, key_id, cost or token, and the
 * one-trip statement (kb_meter_chain_stmt) no cycle_start, day, xid or fast_until
 * either: given, when not NULL, holds those (what the worker knew before sending). False with a
 * static *why when a column is missing or a value malformed.
 */
bool kb_meter_result_read(const PGresult *r, int row, const kb_meter_result *given,
                          kb_meter_result *out, const char **why);

/* The meter statement the workers prepare: $1 user id and $2 key id (as an
 * earlier answer for the key gave them), $3 cost (integer), $4 route pattern,
 * $5 request id, $6 the server's life (the token an earlier charge returned on
 * the same connection). It charges in the common case (one UPDATE) and returns
 * no row otherwise; kb_meter_slow_stmt ($1 key SHA-256 hex, $2 cost, $3 route pattern,
 * $4 request id; the same columns and user_id, key_id, cost, token) then decides in the
 * same transaction with the account row locked. Both return the charge's transaction
 * id and the account's charge count (seq) for the journal. kb_meter_row_stmt is
 * kb_meter_stmt that also writes the charge's meter_inflight row ($7 host id, $8
 * journal entry, $9 the pool's life), used while other hosts hold leases
 * (kb_host_rows()). Exposed for the tests and the benchmark. */
extern const kb_stmt kb_meter_stmt;
extern const kb_stmt kb_meter_row_stmt;
extern const kb_stmt kb_meter_slow_stmt;

/* kb_meter_stmt in one round trip with its commit: run by kb_db_exec_chain() in
 * the transaction begun ahead, whose id the journal holds first. Its conditions
 * raise SQLSTATE KB001 (kb_meter_fast_miss()) instead of matching no row, so the
 * transaction commits only what it charged. $1..$6 as kb_meter_stmt's, $7 the
 * cycle start and $8 the UTC day the worker expects (from the key's last charge). */
extern const kb_stmt kb_meter_chain_stmt;

/* What the meter charged for this request (ctx->charge), for headers and refunds. */
typedef struct kb_charge {
    kb_meter_result m;  /* the meter's row (m.outcome valid when have_limits) */
    bool charged;       /* the charge committed and stands (cleared by a refund) */
    bool refunded;      /* a refund ran: headers show cost 0 */
    bool refund_failed; /* a refund could not run: leave credit headers out */
    bool have_limits;   /* the key was authenticated: rate-limit headers apply */
    bool marked;        /* kb_meter_answered() marked the answer: the charge stands */
    bool cut;           /* the answer was cut off on its way out (kb_meter_cut) */
    bool with_row;      /* the charge wrote its meter_inflight row (kb_host_rows()) */
    char request_id[KB_JOURNAL_REQUEST_ID_MAX];
} kb_charge;

/* A lookup to send with the charge: send(db, arg) queues it on db
 * (kb_db_send_ahead) when db is the meter's connection; the handler's own
 * kb_db_exec() of it then answers from that round trip. */
typedef struct kb_meter_ahead {
    void (*send)(kb_db *db, const char *arg);
    const char *arg;
    kb_db *db; /* where the handler will run it */
} kb_meter_ahead;

/*
 * Authenticate req->api_key (API.md §2 "API key check") and charge ctx->cost
 * credits to its account for route ctx->route. ahead may be NULL. On success
 * sets ctx->charge and returns KB_OK. Refusals are recorded with kb_fail and
 * returned: 401 invalid_api_key, 429 rate_limit_exceeded (Retry-After set),
 * 429 credits_exhausted, 503 when the database is unreachable or the charge's
 * commit was not confirmed (the journal settles it).
 */
kb_err kb_meter_charge(const kb_req *req, kb_ctx *ctx, const kb_meter_ahead *ahead);

/* Sends the answer in ctx (the FastCGI adapter, or a test). */
typedef void kb_meter_send_fn(void *ud, const kb_req *req, kb_ctx *ctx);

/*
 * End of every request, metered or not, after the handler's answer is in ctx
 * (err as the dispatcher returned it): refund a charge when err != KB_OK
 * (idempotent per req->request_id, re-sent once on a fresh connection if the
 * first one was lost), add the credit and rate-limit headers that apply, and
 * call send(ud, req, ctx). The sender calls kb_meter_answered() right before
 * the write that completes the answer; a charge whose sender did not (or that
 * it cut off, kb_meter_cut()) stays journaled until it is settled (refunded).
 */
void kb_meter_end(const kb_req *req, kb_ctx *ctx, kb_err err, kb_meter_send_fn *send, void *ud);

/*
 * The answer in ctx is written but for its last write, the one after which nginx
 * has it whole (a held-back last byte, with the FastCGI end of request). Call it
 * right before that write, with nothing that may block or wait in between. For a
 * charge whose answer is 2xx: sends the mark of its row in meter_inflight, then
 * settles its journal entry (the charge stands). A worker, or the whole pool,
 * killed before the mark leaves the charge to be refunded; killed after it but
 * before the journal store, the journal (a file that outlives the pool,
 * KB_JOURNAL_DIR) still refunds it. Returns false when the mark could not be
 * sent (the meter's connection is gone): the sender must then cut the answer off
 * (kb_meter_cut()), so that a charge Postgres still counts as unanswered is never
 * answered. True otherwise (also for answers without a charge). Idempotent.
 */
bool kb_meter_answered(kb_ctx *ctx);

/* The answer was cut off on its way out (a streamed body that failed mid-way):
 * its charge does not stand; the journal settles (refunds) it. */
void kb_meter_cut(kb_ctx *ctx);

/* The statements of a charge's row in meter_inflight (for t/bench/meter-sql.c). */
extern const kb_stmt kb_meter_inflight_stmt;
extern const kb_stmt kb_meter_answered_stmt;

/*
 * Settle what the journal holds: the caller's own pending charge, then any
 * orphaned entry of a worker that died. A charge that committed and got no 2xx
 * answer is refunded (idempotent per request id). Returns false when something
 * is left for later: the database could not be reached, or a charge's
 * transaction is still running (try again in a while); true when nothing is
 * left. Uses arena for results (reset it afterwards).
 */
bool kb_meter_settle_pending(kb_worker *w, kb_arena *arena);

/*
 * Extract the API key from an Authorization header value: scheme "Bearer"
 * in any letter case, one or more spaces, then the key (surrounding spaces
 * trimmed), which must begin with "kb-". Returns false with a client-facing
 * reason otherwise.
 */
bool kb_meter_parse_key(kb_str authorization, kb_str *key, const char **reason);

#endif
