/* kb_db.h - one Postgres connection per worker, prepared statements only.
 *
 * Statements are declared once as `static const kb_stmt` at the top of the
 * module that owns them and run through kb_db_exec(), which prepares them
 * lazily on the current connection. Parameters are always passed separately
 * (text format); input never becomes SQL text.
 *
 * When the server goes away the connection is dropped and rebuilt with
 * exponential backoff (100 ms .. 5 s). While it is down every call fails fast
 * with KB_E_UNAVAILABLE (503 + Retry-After) instead of hanging. With a
 * statement timeout set, a server that answers nothing at all is given up on
 * 5 s after it, and the connection is dropped the same way.
 */
#ifndef KB_DB_H
#define KB_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "kb_arena.h"
#include "kb_err.h"

typedef struct kb_stmt {
    const char *name; /* unique prepared-statement name */
    const char *sql;  /* text with $1..$n */
    int nparams;
    bool retry_safe; /* read-only: may be re-sent once after a reconnect */
} kb_stmt;

/* Most parameters a statement sent ahead (kb_db_send_ahead) may have. */
#define KB_DB_AHEAD_MAX_PARAMS 4

typedef struct kb_db {
    const char *conninfo;
    const char *app_name;
    long connect_timeout_s;
    long statement_timeout_ms;
    PGconn *conn;
    const kb_stmt **prepared; /* statements prepared on conn */
    size_t nprepared, capprepared;
    int64_t next_attempt_us; /* monotonic; no connect before this */
    int64_t backoff_us;
    int64_t answered_us;  /* monotonic time of the last statement that succeeded, 0 = none */
    char sqlstate[6];     /* SQLSTATE of the last failed statement, "" if none */
    const kb_stmt *ahead; /* kb_db_send_ahead()'s statement, NULL = none */
    char *ahead_params[KB_DB_AHEAD_MAX_PARAMS];
    PGresult *ahead_result; /* its result once received, until asked for */
    bool open;              /* kb_db_exec_open() left a transaction open */
    uint64_t connects;      /* connections made so far: which one conn is */
    const kb_stmt *async;   /* kb_db_send_async()'s statement awaiting its result, or NULL */
    /* A transaction begun ahead (kb_db_commit_chain(), kb_db_exec_chain()): open on
     * the connection (pipeline mode, no Sync yet), its id known. */
    int pre;          /* KB_DB_PRE_NONE, _PENDING, _READY or _SPOILED */
    uint64_t pre_xid; /* its transaction id when READY */
    int64_t pre_us;   /* monotonic time it was sent */
} kb_db;

#define KB_DB_PRE_NONE 0
#define KB_DB_PRE_PENDING 1 /* sent; its id not read yet (it is, on next use) */
#define KB_DB_PRE_READY 2
#define KB_DB_PRE_SPOILED 3 /* it failed: a Sync ends it, aborted */

/* Fill a caller's kb_db; nothing connects until first use. */
void kb_db_init(kb_db *db, const char *conninfo, const char *app_name, long connect_timeout_s,
                long statement_timeout_ms);

/* Close the connection and free what the struct owns. */
void kb_db_release(kb_db *db);

/* Connect now if needed. KB_E_UNAVAILABLE while the server is unreachable. */
kb_err kb_db_connect(kb_db *db);

/* Drop the connection (next use reconnects at once). */
void kb_db_disconnect(kb_db *db);

/*
 * Run st with params (NULL entries are SQL NULL). On success *out (when not
 * NULL) is an arena-owned result, cleared at the arena's reset. Failures:
 * KB_E_UNAVAILABLE when the connection is lost or cannot be made,
 * KB_E_INTERNAL for an SQL error (db->sqlstate says which; logged).
 */
kb_err kb_db_exec(kb_db *db, kb_arena *arena, const kb_stmt *st, const char *const *params,
                  PGresult **out);

/*
 * Run st(params) as the first statement of a transaction and leave that
 * transaction open (libpq pipeline mode: no Sync yet), so the caller can record
 * what the result says before anything commits; kb_db_commit() then commits
 * it. If the connection or the caller's process dies before that, Postgres
 * aborts the transaction. Fails like kb_db_exec() (never re-sent); on failure
 * nothing is left open and nothing committed.
 */
kb_err kb_db_exec_open(kb_db *db, kb_arena *arena, const kb_stmt *st, const char *const *params,
                       PGresult **out);

/* Run st(params) in the transaction kb_db_exec_open() left open, leaving it
 * open. On failure the transaction is aborted and nothing is left open. */
kb_err kb_db_exec_more(kb_db *db, kb_arena *arena, const kb_stmt *st, const char *const *params,
                       PGresult **out);

/*
 * Commit the transaction kb_db_exec_open() left open (one round trip: a Sync,
 * then a statement sent ahead since, if any, and its own Sync). KB_OK: committed.
 * KB_E_UNAVAILABLE: the connection was lost, so whether it committed is
 * unknown (ask pg_xact_status()). KB_E_INTERNAL: the commit failed (aborted).
 */
kb_err kb_db_commit(kb_db *db);

/*
 * kb_db_commit() with st(params) run in the transaction just before it commits,
 * in the same round trip (prepared in that round trip too, the first time on a
 * connection). A failure of st aborts the transaction: KB_E_INTERNAL, with
 * db->sqlstate saying why.
 */
kb_err kb_db_commit_with(kb_db *db, const kb_stmt *st, const char *const *params);

/*
 * kb_db_commit() that also begins the next transaction in the same round trip
 * and learns its id (pg_current_xact_id()), so the next charge can be journaled
 * under that id before it is sent, and its commit ride with it
 * (kb_db_exec_chain()). The transaction begun ahead holds nothing but its id;
 * whatever else db is used for ends it first (a Sync: an empty commit), and so
 * does kb_db_pre_end(). Committed is as kb_db_commit() reports; a failure to
 * begin the next one only leaves none begun.
 */
kb_err kb_db_commit_chain(kb_db *db);

/* The id of the transaction begun ahead when one is open and began less than
 * max_age_us ago; 0 otherwise. Reads the reply that says it, when not read yet
 * (it came with the commit's, so it is there: no waiting). */
uint64_t kb_db_pre_xid(kb_db *db, int64_t max_age_us);

/* True when a transaction begun ahead is open (or spoiled, waiting for its end). */
bool kb_db_pre_open(const kb_db *db);

/* End the transaction begun ahead, if any (one round trip; nothing commits but
 * its id). Connection trouble drops the connection. */
void kb_db_pre_end(kb_db *db);

/*
 * One round trip in the transaction begun ahead (kb_db_pre_xid() != 0): st(params),
 * the statement sent ahead if any (same transaction), the commit, and, when
 * chain, the next transaction begun ahead. So a caller that journaled the id
 * before calling knows what to settle if the reply is lost. KB_OK: st and the
 * statement sent ahead succeeded and committed; *out is st's result (its rows may
 * be none). KB_E_INTERNAL: st, the one sent ahead or the commit failed
 * (db->sqlstate says why): the transaction aborted, nothing committed.
 * KB_E_UNAVAILABLE: the connection was lost (or no transaction was begun ahead):
 * whether it committed is unknown. st and the statement sent ahead are prepared
 * first when they are not (a round trip of its own).
 */
kb_err kb_db_exec_chain(kb_db *db, kb_arena *arena, const kb_stmt *st, const char *const *params,
                        bool chain, PGresult **out);

/*
 * Send st(params) as a transaction of its own and return without waiting: the
 * next use of db reads (and logs a failure of) its result first. For a write
 * that must leave at once but whose outcome the caller does not wait for (the
 * answered mark, lib/meter_end.c). A statement sent ahead and not asked for is
 * dropped. No-op while the connection is down or a transaction is open; false
 * then (and when sending failed).
 */
bool kb_db_send_async(kb_db *db, const kb_stmt *st, const char *const *params);

/*
 * Send st(params) in the same round trip as the next kb_db_exec() of another
 * statement on db, or the next kb_db_commit() (libpq pipeline mode: that
 * statement or the commit, a sync, this one, a sync; so this one is its own
 * transaction, runs after the other has committed, and cannot undo it), or the
 * next kb_db_exec_open() (right after its statement, in its transaction: the
 * commit is then a Sync alone, and a failure of st aborts the transaction and
 * fails the kb_db_exec_open()), and keep its result until kb_db_exec() asks for
 * st with equal params, which then answers without a round trip. Anything else drops it: kb_db_exec() of a
 * third statement, kb_db_ahead_clear(), a lost connection. For cheap reads
 * that follow a statement deciding whether they are needed (the meter and a
 * by-id lookup): one round trip less. st must be retry_safe; params are
 * copied; at most KB_DB_AHEAD_MAX_PARAMS of them (more: nothing is sent ahead).
 */
void kb_db_send_ahead(kb_db *db, const kb_stmt *st, const char *const *params);

/* Forget the statement sent ahead and its result, if any. */
void kb_db_ahead_clear(kb_db *db);

/*
 * True when a statement succeeded on the current connection within max_age_us
 * and the server has sent nothing since: a server that ends the connection
 * (shutdown, crash, pg_terminate_backend) leaves its notice or EOF pending on
 * the socket, which a zero-timeout poll sees. No round trip; false when in
 * doubt, so the caller asks the server.
 */
bool kb_db_answered_within(const kb_db *db, int64_t max_age_us);

/* Run a parameterless command outside prepared statements (BEGIN, COMMIT, migrations). */
kb_err kb_db_command(kb_db *db, const char *sql);

/* True when db->sqlstate equals state (e.g. "23505" unique violation). */
bool kb_db_sqlstate_is(const kb_db *db, const char *state);

#endif
