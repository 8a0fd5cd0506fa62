/* db_tx.c - transactions left open on a worker's connection (kb_db.h): a statement
 * whose transaction stays open until its caller commits (kb_db_exec_open, _more,
 * kb_db_commit*), the transaction begun ahead of the next charge
 * (kb_db_commit_chain, kb_db_pre_*) and the one round trip in it (kb_db_exec_chain).
 * libpq pipeline mode throughout; the connection itself is lib/db.c's. */
#include "kb_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kb_log.h"
#include "kb_metrics.h"
#include "kb_time.h"
#include "kb_banned.h"

static PGresult *await_open(kb_db *db, const char *what);
static bool await_begin(kb_db *db);
static kb_err commit(kb_db *db, const kb_stmt *st, const char *const *params, bool chain);

/* The statement that begins a transaction ahead and learns its id. */
static const kb_stmt begin_stmt = {"kb_begin_ahead", "SELECT pg_current_xact_id()", 0, false};

void
kb_db_pre_end(kb_db *db)
{
    if (db->pre == KB_DB_PRE_NONE)
        return;
    db->pre = KB_DB_PRE_NONE;
    if (db->conn == NULL)
        return;
    /* Its Sync commits nothing but the id it took (or ends it aborted). */
    PGresult *r = NULL;
    if (!PQpipelineSync(db->conn) ||
        !kb__db_await_results(db, "end of the transaction begun ahead", &r, 1) ||
        !PQexitPipelineMode(db->conn)) {
        PQclear(r);
        db->sqlstate[0] = '\0';
        kb__db_connection_lost(db);
        return;
    }
    PQclear(r);
}

bool
kb_db_pre_open(const kb_db *db)
{
    return db->pre != KB_DB_PRE_NONE && db->conn != NULL;
}

uint64_t
kb_db_pre_xid(kb_db *db, int64_t max_age_us)
{
    if (db->conn == NULL || db->open || db->async != NULL)
        return 0;
    if (db->pre == KB_DB_PRE_PENDING && !await_begin(db)) {
        db->sqlstate[0] = '\0';
        kb__db_connection_lost(db);
        return 0;
    }
    if (db->pre != KB_DB_PRE_READY)
        return 0;
    return kb_mono_us() - db->pre_us < max_age_us ? db->pre_xid : 0;
}

/* Queue the statement that begins the next transaction ahead (prepared by the caller:
 * prepare_in_pipeline()) and a Flush, and send: PENDING. Its reply is read
 * on the connection's next use (kb_db_pre_xid(), or absorbed by kb_db_pre_end()),
 * not waited for now. */
static bool
queue_begin(kb_db *db)
{
    bool sent = PQsendQueryPrepared(db->conn, begin_stmt.name, 0, NULL, NULL, NULL, 0) &&
                PQsendFlushRequest(db->conn) && PQflush(db->conn) == 0;
    if (sent) {
        db->pre = KB_DB_PRE_PENDING;
        db->pre_us = kb_mono_us();
    }
    return sent;
}

/* Read what queue_begin() sent: the next transaction is begun ahead (READY), or
 * it failed in the server (SPOILED: a Sync ends it). False when the connection
 * broke. */
static bool
await_begin(kb_db *db)
{
    PGresult *r = await_open(db, begin_stmt.name);
    if (r == NULL)
        return false;
    db->pre = KB_DB_PRE_SPOILED;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        db->pre_xid = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        if (db->pre_xid != 0)
            db->pre = KB_DB_PRE_READY;
    }
    PQclear(r);
    return true;
}

/* The results of the one query just sent in pipeline mode (no Sync): its last
 * result, once the query is complete. NULL as kb__db_await_results() fails. */
static PGresult *
await_open(kb_db *db, const char *what)
{
    long limit_ms = db->statement_timeout_ms + KB__DB_REPLY_GRACE_MS;
    int64_t deadline = kb_mono_us() + limit_ms * 1000;
    PGresult *last = NULL;
    for (;;) {
        if (!kb__db_wait_result(db, what, deadline, limit_ms))
            goto fail;
        PGresult *r = PQgetResult(db->conn);
        if (r == NULL) {
            if (last == NULL)
                goto fail; /* no result at all: the connection broke */
            return last;
        }
        PQclear(last);
        last = r;
    }
fail:
    PQclear(last);
    return NULL;
}

/* After a failed statement in pipeline mode: Postgres skips to the Sync and
 * aborts; send it and leave pipeline mode. False when that fails too. */
static bool
sync_after_error(kb_db *db)
{
    PGresult *r;
    if (!PQpipelineSync(db->conn) || !kb__db_await_results(db, "sync", &r, 1))
        return false;
    PQclear(r);
    return PQexitPipelineMode(db->conn) == 1;
}

/* Send st(params) in the open pipeline (no Sync) and wait for its result; with
 * the statement sent ahead right after it when ahead (prepared by the caller),
 * in the same transaction and round trip, its result kept in db->ahead_result.
 * On failure of either the transaction is over: aborted by the server (after a
 * Sync) or by a dropped connection. */
static kb_err
exec_in_open(kb_db *db, kb_arena *arena, const kb_stmt *st, const char *const *params, bool ahead,
             PGresult **out)
{
    const kb_stmt *a = ahead ? db->ahead : NULL;
    bool sent = PQsendQueryPrepared(db->conn, st->name, st->nparams, params, NULL, NULL, 0) &&
                (a == NULL || kb__db_queue_ahead(db)) && PQsendFlushRequest(db->conn) &&
                PQflush(db->conn) == 0;
    PGresult *r = sent ? await_open(db, st->name) : NULL;
    ExecStatusType s = PQresultStatus(r);
    if (a != NULL && (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK)) {
        PGresult *ar = await_open(db, a->name);
        ExecStatusType as = PQresultStatus(ar);
        if (as == PGRES_TUPLES_OK || as == PGRES_COMMAND_OK) {
            db->ahead_result = ar;
        } else {
            /* The lookup failed in the transaction, which is aborted with it: so
             * is st's work. Reported as st's failure; nothing commits. */
            PQclear(r);
            r = ar;
            st = a;
            s = PQresultStatus(r);
        }
    }
    if (r != NULL && (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK)) {
        db->open = true;
        kb_arena_on_reset(arena, kb__db_clear_result, r);
        *out = r;
        return KB_OK;
    }
    kb_db_ahead_clear(db);
    db->open = false;
    kb__db_set_sqlstate(db, r);
    if (r != NULL && !kb__db_connection_lost(db)) {
        kb__db_log_pq_error(st->name, PQresultErrorMessage(r));
        PQclear(r);
        if (!sync_after_error(db)) {
            kb__db_connection_lost(db);
            return KB_E_UNAVAILABLE;
        }
        return KB_E_INTERNAL;
    }
    PQclear(r);
    if (db->conn != NULL)
        kb__db_connection_lost(db);
    return KB_E_UNAVAILABLE;
}

kb_err
kb_db_exec_open(kb_db *db, kb_arena *arena, const kb_stmt *st, const char *const *params,
                PGresult **out)
{
    db->sqlstate[0] = '\0';
    if (db->open) {
        kb_log_error("%s: a transaction was left open; aborting it", st->name);
        kb_db_disconnect(db);
        db->next_attempt_us = 0;
    }
    kb_db_pre_end(db); /* a transaction begun ahead is too old a clock for st */
    for (int attempt = 0;; attempt++) {
        kb_err err = kb_db_connect(db);
        if (err)
            return err;
        err = kb__db_prepare(db, st);
        /* The statement sent ahead goes out with st: prepare it now. */
        if (!err && db->ahead != NULL && db->ahead_result == NULL &&
            (err = kb__db_prepare(db, db->ahead)) == KB_E_INTERNAL) {
            kb_db_ahead_clear(db);
            err = KB_OK;
        }
        if (err == KB_E_UNAVAILABLE && attempt == 0)
            continue; /* nothing was executed: safe to retry on a new connection */
        if (err)
            return err;
        break;
    }
    if (!PQenterPipelineMode(db->conn)) {
        kb__db_connection_lost(db);
        return KB_E_UNAVAILABLE;
    }
    return exec_in_open(db, arena, st, params, kb__db_carries_ahead(db, st), out);
}

/* Prepare st inside the pipeline (a Parse and a Flush: its own round trip, which
 * leaves an open transaction alone). False when the connection broke or the
 * server refused it (db->sqlstate). */
static bool
prepare_in_pipeline(kb_db *db, const kb_stmt *st)
{
    if (kb__db_is_prepared(db, st))
        return true;
    bool sent = PQsendPrepare(db->conn, st->name, st->sql, st->nparams, NULL) &&
                PQsendFlushRequest(db->conn) && PQflush(db->conn) == 0;
    PGresult *r = sent ? await_open(db, st->name) : NULL;
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        kb__db_set_sqlstate(db, r);
    PQclear(r);
    if (ok)
        kb__db_note_prepared(db, st);
    return ok;
}

kb_err
kb_db_exec_more(kb_db *db, kb_arena *arena, const kb_stmt *st, const char *const *params,
                PGresult **out)
{
    db->sqlstate[0] = '\0';
    if (!db->open || db->conn == NULL) {
        kb_log_error("%s: no transaction open", st->name);
        return KB_E_INTERNAL;
    }
    /* Pipeline mode: the statement is prepared on its own round trip (the first
     * time on a connection); it leaves the open transaction alone. */
    if (!prepare_in_pipeline(db, st)) {
        db->open = false;
        db->sqlstate[0] = '\0';
        kb__db_connection_lost(db); /* simplest way to end what is open */
        return KB_E_UNAVAILABLE;
    }
    return exec_in_open(db, arena, st, params, false, out);
}

static bool
result_ok(const PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return r != NULL && (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK);
}

kb_err
kb_db_exec_chain(kb_db *db, kb_arena *arena, const kb_stmt *st, const char *const *params,
                 bool chain, PGresult **out)
{
    db->sqlstate[0] = '\0';
    if (kb_db_pre_xid(db, INT64_MAX) == 0)
        return KB_E_UNAVAILABLE; /* nothing begun ahead: nothing sent */
    const kb_stmt *a = kb__db_carries_ahead(db, st) ? db->ahead : NULL;
    if (!prepare_in_pipeline(db, st) || (a != NULL && !prepare_in_pipeline(db, a)) ||
        (chain && !prepare_in_pipeline(db, &begin_stmt))) {
        /* Nothing of st ran; the transaction begun ahead ends with the connection. */
        kb_db_ahead_clear(db);
        db->sqlstate[0] = '\0';
        kb__db_connection_lost(db);
        return KB_E_UNAVAILABLE;
    }
    db->pre = KB_DB_PRE_NONE; /* st runs in it */
    bool sent = PQsendQueryPrepared(db->conn, st->name, st->nparams, params, NULL, NULL, 0) &&
                (a == NULL || kb__db_queue_ahead(db)) && PQpipelineSync(db->conn) &&
                (!chain || queue_begin(db));
    PGresult *r = sent ? await_open(db, st->name) : NULL;
    PGresult *ar = r != NULL && a != NULL ? await_open(db, a->name) : NULL;
    PGresult *cr = NULL; /* an error of the commit itself */
    bool read = r != NULL && (a == NULL || ar != NULL) &&
                kb__db_await_results(db, "commit", &cr, 1);
    if (read && !chain && !PQexitPipelineMode(db->conn))
        read = false;
    if (!read) {
        PQclear(r);
        PQclear(ar);
        PQclear(cr);
        kb_db_ahead_clear(db);
        db->sqlstate[0] = '\0';
        kb__db_connection_lost(db);
        return KB_E_UNAVAILABLE; /* committed or not, nobody can say now */
    }
    if (result_ok(r) && (a == NULL || result_ok(ar)) && cr == NULL) {
        if (a != NULL)
            db->ahead_result = ar;
        db->answered_us = kb_mono_us();
        kb_arena_on_reset(arena, kb__db_clear_result, r);
        *out = r;
        return KB_OK;
    }
    /* Aborted: the first failure says why (the caller logs what it did not expect). */
    const PGresult *why = !result_ok(r) ? r : (a != NULL && !result_ok(ar)) ? ar : cr;
    kb__db_set_sqlstate(db, why);
    bool lost = kb__db_connection_lost(db);
    PQclear(r);
    PQclear(ar);
    PQclear(cr);
    kb_db_ahead_clear(db);
    return lost ? KB_E_UNAVAILABLE : KB_E_INTERNAL;
}

kb_err
kb_db_commit(kb_db *db)
{
    return commit(db, NULL, NULL, false);
}

kb_err
kb_db_commit_chain(kb_db *db)
{
    return commit(db, NULL, NULL, true);
}

kb_err
kb_db_commit_with(kb_db *db, const kb_stmt *st, const char *const *params)
{
    return commit(db, st, params, false);
}

static kb_err
commit(kb_db *db, const kb_stmt *st, const char *const *params, bool chain)
{
    if (!db->open || db->conn == NULL) {
        kb_log_error("commit: no transaction open");
        return KB_E_INTERNAL;
    }
    db->open = false;
    const kb_stmt *ahead = kb__db_carries_ahead(db, NULL) ? db->ahead : NULL;
    PGresult *res[2] = {NULL, NULL};
    int n = ahead ? 2 : 1;
    /* st and the statement beginning the next transaction are prepared on a round
     * trip of their own, the first time on a connection; it leaves the open
     * transaction alone (as kb_db_exec_more()). */
    if ((st != NULL && !prepare_in_pipeline(db, st)) ||
        (chain && !prepare_in_pipeline(db, &begin_stmt))) {
        kb__db_connection_lost(db); /* simplest way to end what is open */
        kb_db_disconnect(db);
        return KB_E_INTERNAL; /* nothing was committed */
    }
    /* A lookup sent ahead after kb_db_exec_open() (the slow path's, lib/meter.c) may
     * not be prepared yet: its Parse goes after the commit's Sync, in its own
     * transaction, so even its failure cannot touch the commit. */
    bool parse = ahead != NULL && !kb__db_is_prepared(db, ahead);
    bool sent = (st == NULL ||
                 PQsendQueryPrepared(db->conn, st->name, st->nparams, params, NULL, NULL, 0)) &&
                PQpipelineSync(db->conn) &&
                (ahead == NULL || ((!parse || PQsendPrepare(db->conn, ahead->name, ahead->sql,
                                                            ahead->nparams, NULL)) &&
                                   kb__db_queue_ahead(db) && PQpipelineSync(db->conn)));
    sent = sent && (!chain || queue_begin(db));
    if (!sent || !kb__db_await_results(db, "commit", res, n) ||
        (!chain && !PQexitPipelineMode(db->conn))) {
        PQclear(res[0]);
        PQclear(res[1]);
        db->sqlstate[0] = '\0';
        kb__db_connection_lost(db);
        return KB_E_UNAVAILABLE;
    }
    if (ahead != NULL)
        db->ahead_result = res[1]; /* else it may hold what came with kb_db_exec_open() */
    if (parse && PQresultStatus(res[1]) == PGRES_TUPLES_OK)
        kb__db_note_prepared(db, ahead);
    if (res[0] != NULL && PQresultStatus(res[0]) != PGRES_COMMAND_OK &&
        PQresultStatus(res[0]) != PGRES_TUPLES_OK) {
        /* The commit itself failed: the transaction aborted. */
        kb__db_set_sqlstate(db, res[0]);
        bool lost = kb__db_connection_lost(db);
        if (!lost)
            kb__db_log_pq_error("commit", PQresultErrorMessage(res[0]));
        PQclear(res[0]);
        return lost ? KB_E_UNAVAILABLE : KB_E_INTERNAL;
    }
    PQclear(res[0]);
    db->answered_us = kb_mono_us();
    return KB_OK;
}
