/* db.c - the per-worker Postgres connection; see kb_db.h. */
#include "kb_db.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kb_log.h"
#include "kb_metrics.h"
#include "kb_time.h"
#include "kb_banned.h"

#define DB_BACKOFF_MIN_US 100000
#define DB_BACKOFF_MAX_US 5000000

void
kb_db_init(kb_db *db, const char *conninfo, const char *app_name, long connect_timeout_s,
           long statement_timeout_ms)
{
    memset(db, 0, sizeof(*db));
    db->conninfo = conninfo;
    db->app_name = app_name;
    db->connect_timeout_s = connect_timeout_s > 0 ? connect_timeout_s : 3;
    db->statement_timeout_ms = statement_timeout_ms;
    db->backoff_us = DB_BACKOFF_MIN_US;
}

void
kb_db_ahead_clear(kb_db *db)
{
    PQclear(db->ahead_result);
    db->ahead_result = NULL;
    for (int i = 0; i < KB_DB_AHEAD_MAX_PARAMS; i++) {
        free(db->ahead_params[i]);
        db->ahead_params[i] = NULL;
    }
    db->ahead = NULL;
}

void
kb_db_send_ahead(kb_db *db, const kb_stmt *st, const char *const *params)
{
    kb_db_ahead_clear(db);
    if (st->nparams > KB_DB_AHEAD_MAX_PARAMS || !st->retry_safe)
        return;
    for (int i = 0; i < st->nparams; i++)
        db->ahead_params[i] = params[i] ? kb_xstrdup(params[i]) : NULL;
    db->ahead = st;
}

/* True when a statement sent ahead still waits to go out and st, another
 * statement, is to carry it. */
bool
kb__db_carries_ahead(const kb_db *db, const kb_stmt *st)
{
    return db->ahead != NULL && db->ahead_result == NULL && db->ahead != st;
}

/* The result of st(params) when it was sent ahead and has come back; the
 * caller owns it. Otherwise NULL, and a stale statement sent ahead is dropped. */
static PGresult *
take_ahead(kb_db *db, const kb_stmt *st, const char *const *params)
{
    if (db->ahead == NULL || kb__db_carries_ahead(db, st))
        return NULL; /* none, or not sent yet: this exec carries it */
    bool same = db->ahead == st && db->ahead_result != NULL;
    for (int i = 0; same && i < st->nparams; i++) {
        const char *a = db->ahead_params[i], *b = params[i];
        same = (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
    }
    PGresult *r = NULL;
    if (same) {
        r = db->ahead_result;
        db->ahead_result = NULL;
        kb_metrics_add(KB_M_DB_SENT_AHEAD, 1);
    }
    kb_db_ahead_clear(db);
    return r;
}

void
kb_db_disconnect(kb_db *db)
{
    kb_db_ahead_clear(db);
    if (db->conn != NULL)
        PQfinish(db->conn);
    db->conn = NULL;
    db->nprepared = 0;
    db->answered_us = 0;
    db->open = false;
    db->async = NULL;
    db->pre = KB_DB_PRE_NONE;
}

void
kb_db_release(kb_db *db)
{
    kb_db_disconnect(db);
    free(db->prepared);
    db->prepared = NULL;
    db->capprepared = 0;
}

/* Log the first line of a libpq message (they end in a newline). */
void
kb__db_log_pq_error(const char *what, const char *msg)
{
    size_t n = strcspn(msg, "\n");
    kb_log_error("%s: %.*s", what, (int)n, msg);
}

static void
connect_failed(kb_db *db)
{
    db->next_attempt_us = kb_mono_us() + db->backoff_us;
    db->backoff_us *= 2;
    if (db->backoff_us > DB_BACKOFF_MAX_US)
        db->backoff_us = DB_BACKOFF_MAX_US;
}

/* Read the result of the statement kb_db_send_async() sent, if any. */
static void
drain_async(kb_db *db)
{
    const kb_stmt *st = db->async;
    db->async = NULL;
    if (st == NULL || db->conn == NULL)
        return;
    PGresult *r = NULL;
    if (!kb__db_await_results(db, st->name, &r, 1)) {
        db->sqlstate[0] = '\0';
        kb__db_connection_lost(db);
        return;
    }
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        kb__db_set_sqlstate(db, r);
        if (!kb__db_connection_lost(db))
            kb__db_log_pq_error(st->name, PQresultErrorMessage(r));
    } else {
        db->answered_us = kb_mono_us();
    }
    PQclear(r);
    db->sqlstate[0] = '\0';
}

kb_err
kb_db_connect(kb_db *db)
{
    if (db->conn != NULL && db->async != NULL)
        drain_async(db);
    if (db->conn != NULL)
        return KB_OK;
    if (kb_mono_us() < db->next_attempt_us)
        return KB_E_UNAVAILABLE;

    char timeout[24];
    snprintf(timeout, sizeof(timeout), "%ld", db->connect_timeout_s);
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {db->conninfo, timeout, db->app_name ? db->app_name : "kalshibook", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        kb__db_log_pq_error("unable to connect to database",
                            conn ? PQerrorMessage(conn) : "no memory");
        PQfinish(conn);
        connect_failed(db);
        return KB_E_UNAVAILABLE;
    }
    if (db->statement_timeout_ms > 0) {
        /* A transaction kb_db_exec_open() left open is never idle longer than a
         * statement may run: if its worker stalls, Postgres ends it. */
        char sql[128];
        snprintf(sql, sizeof(sql),
                 "SET statement_timeout = %ld; SET idle_in_transaction_session_timeout = %ld",
                 db->statement_timeout_ms, db->statement_timeout_ms + KB__DB_REPLY_GRACE_MS);
        PGresult *r = PQexec(conn, sql);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            kb__db_log_pq_error("unable to set statement_timeout", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok) {
            PQfinish(conn);
            connect_failed(db);
            return KB_E_UNAVAILABLE;
        }
    }
    if (db->next_attempt_us != 0)
        kb_log_info("database connection restored");
    db->conn = conn;
    db->connects++;
    db->nprepared = 0;
    db->backoff_us = DB_BACKOFF_MIN_US;
    db->next_attempt_us = 0;
    return KB_OK;
}

bool
kb__db_is_prepared(const kb_db *db, const kb_stmt *st)
{
    for (size_t i = 0; i < db->nprepared; i++) {
        if (db->prepared[i] == st)
            return true;
    }
    return false;
}

void
kb__db_set_sqlstate(kb_db *db, const PGresult *r)
{
    const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(db->sqlstate, sizeof(db->sqlstate), "%s", s ? s : "");
}

/* After a failed call: was it the connection? Then drop it. */
bool
kb__db_connection_lost(kb_db *db)
{
    /* libpq may still say CONNECTION_OK right after the server went away:
     * a failure without a server SQLSTATE, a connection exception (08) or
     * an operator shutdown (57P) means the connection is gone too. */
    bool server_error = db->sqlstate[0] != '\0' && strncmp(db->sqlstate, "08", 2) != 0 &&
                        strncmp(db->sqlstate, "57P", 3) != 0;
    if (PQstatus(db->conn) == CONNECTION_OK && server_error)
        return false;
    kb_log_warn("database connection lost");
    kb_metrics_add(KB_M_DB_RECONNECTS, 1);
    kb_db_disconnect(db);
    /* Reconnect at once on the next call; back off only if that fails. */
    db->next_attempt_us = 1;
    return true;
}

/* Wait until db has a result that PQgetResult() returns without blocking: until
 * deadline (monotonic µs) when the connection has a statement timeout (limit_ms is
 * what the log line says). False on that and on a read failure. */
bool
kb__db_wait_result(kb_db *db, const char *what, int64_t deadline, long limit_ms)
{
    bool bounded = db->statement_timeout_ms > 0;
    while (PQisBusy(db->conn)) {
        int64_t left_us = deadline - kb_mono_us();
        if (bounded && left_us <= 0) {
            kb_log_error("%s: no reply from the database within %ld ms", what, limit_ms);
            return false;
        }
        struct pollfd p = {.fd = PQsocket(db->conn), .events = POLLIN};
        int k = poll(&p, 1, bounded ? (int)((left_us + 999) / 1000) : -1);
        if ((k < 0 && errno != EINTR) || (k > 0 && !PQconsumeInput(db->conn)))
            return false;
    }
    return true;
}

/*
 * The results of what was just sent: for each of the n statements its last
 * result (like PQexec) in res[0..n-1]; n > 1 only in pipeline mode, with a
 * sync after each statement. With a statement timeout set (the workers'
 * connections; kbctl's have none) it waits at most KB__DB_REPLY_GRACE_MS past n
 * of them, so a worker never hangs on a server that stopped answering. False
 * on that and on a read failure, with res all NULL; the caller's
 * kb__db_connection_lost() then drops the connection.
 */
bool
kb__db_await_results(kb_db *db, const char *what, PGresult **res, int n)
{
    long limit_ms = n * db->statement_timeout_ms + KB__DB_REPLY_GRACE_MS;
    int64_t deadline = kb_mono_us() + limit_ms * 1000;
    bool pipeline = PQpipelineStatus(db->conn) != PQ_PIPELINE_OFF;
    int done = 0, idle = 0;
    for (int i = 0; i < n; i++)
        res[i] = NULL;
    while (done < n) {
        if (!kb__db_wait_result(db, what, deadline, limit_ms))
            goto fail;
        PGresult *r = PQgetResult(db->conn);
        if (r == NULL) {
            if (!pipeline)
                done++; /* the statement's results are complete */
            else if (++idle > 1)
                goto fail; /* a sync that never comes: the connection broke */
            continue;
        }
        idle = 0;
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            done++;
            continue;
        }
        PQclear(res[done]);
        res[done] = r;
    }
    return true;
fail:
    for (int i = 0; i < n; i++) {
        PQclear(res[i]);
        res[i] = NULL;
    }
    return false;
}

static PGresult *
await_result(kb_db *db, const char *what)
{
    PGresult *r;
    return kb__db_await_results(db, what, &r, 1) ? r : NULL;
}

/* Queue the statement sent ahead (its Bind and Execute) on db's pipeline, and count it
 * (kalshibook_db_ahead_sent_total). False when libpq could not queue it. */
bool
kb__db_queue_ahead(kb_db *db)
{
    kb_metrics_add(KB_M_DB_AHEAD_SENT, 1);
    return PQsendQueryPrepared(db->conn, db->ahead->name, db->ahead->nparams,
                               (const char *const *)db->ahead_params, NULL, NULL, 0);
}

/*
 * Send st(params) and wait for its result, with the statement sent ahead
 * (prepared by the caller) in the same round trip when there is one; its
 * result is kept in db->ahead_result. NULL as kb__db_await_results() fails.
 */
static PGresult *
send_and_await(kb_db *db, const kb_stmt *st, const char *const *params)
{
    if (!kb__db_carries_ahead(db, st))
        return PQsendQueryPrepared(db->conn, st->name, st->nparams, params, NULL, NULL, 0)
                   ? await_result(db, st->name)
                   : NULL;
    PGresult *res[2];
    bool sent = PQenterPipelineMode(db->conn) &&
                PQsendQueryPrepared(db->conn, st->name, st->nparams, params, NULL, NULL, 0) &&
                PQpipelineSync(db->conn) && kb__db_queue_ahead(db) && PQpipelineSync(db->conn);
    if (!sent || !kb__db_await_results(db, st->name, res, 2))
        return NULL;
    if (!PQexitPipelineMode(db->conn)) { /* cannot happen with every result read */
        PQclear(res[0]);
        PQclear(res[1]);
        return NULL;
    }
    db->ahead_result = res[1];
    return res[0];
}

/* st is prepared on db's connection now. */
void
kb__db_note_prepared(kb_db *db, const kb_stmt *st)
{
    if (db->nprepared == db->capprepared) {
        db->capprepared = db->capprepared ? db->capprepared * 2 : 32;
        db->prepared = kb_xrealloc(db->prepared,
                                   kb_st_mult(db->capprepared, sizeof(*db->prepared)));
    }
    db->prepared[db->nprepared++] = st;
}

kb_err
kb__db_prepare(kb_db *db, const kb_stmt *st)
{
    if (kb__db_is_prepared(db, st))
        return KB_OK;
    PGresult *r = PQsendPrepare(db->conn, st->name, st->sql, st->nparams, NULL)
                      ? await_result(db, st->name)
                      : NULL;
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK) {
        kb__db_set_sqlstate(db, r);
        if (!kb__db_connection_lost(db))
            kb__db_log_pq_error(st->name, PQresultErrorMessage(r));
        PQclear(r);
        return db->conn == NULL ? KB_E_UNAVAILABLE : KB_E_INTERNAL;
    }
    PQclear(r);
    kb__db_note_prepared(db, st);
    return KB_OK;
}

void
kb__db_clear_result(void *r)
{
    PQclear(r);
}

kb_err
kb_db_exec(kb_db *db, kb_arena *arena, const kb_stmt *st, const char *const *params, PGresult **out)
{
    db->sqlstate[0] = '\0';
    if (db->open) {
        /* A caller forgot kb_db_commit(): dropping the connection aborts it. */
        kb_log_error("%s: a transaction was left open; aborting it", st->name);
        kb_db_disconnect(db);
        db->next_attempt_us = 0;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        kb_err err = kb_db_connect(db);
        if (err)
            return err;
        PGresult *r = attempt == 0 ? take_ahead(db, st, params) : NULL;
        if (r == NULL) {
            kb_db_pre_end(db); /* what runs now is no part of it */
            if (db->conn == NULL)
                continue;
            err = kb__db_prepare(db, st);
            if (!err && kb__db_carries_ahead(db, st) &&
                (err = kb__db_prepare(db, db->ahead)) == KB_E_INTERNAL) {
                kb_db_ahead_clear(db); /* it cannot run: st goes alone */
                err = KB_OK;
            }
            if (err == KB_E_UNAVAILABLE && attempt == 0)
                continue; /* nothing was executed: safe to retry on a new connection */
            if (err)
                return err;
            r = send_and_await(db, st, params);
        }
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            db->answered_us = kb_mono_us();
            if (out != NULL) {
                kb_arena_on_reset(arena, kb__db_clear_result, r);
                *out = r;
            } else {
                PQclear(r);
            }
            return KB_OK;
        }
        kb__db_set_sqlstate(db, r);
        if (kb__db_connection_lost(db)) {
            PQclear(r);
            /* Only a read may be sent again: a write may have committed. */
            if (st->retry_safe && attempt == 0)
                continue;
            return KB_E_UNAVAILABLE;
        }
        kb__db_log_pq_error(st->name, PQresultErrorMessage(r));
        PQclear(r);
        return KB_E_INTERNAL;
    }
    return KB_E_UNAVAILABLE;
}

kb_err
kb_db_command(kb_db *db, const char *sql)
{
    kb_db_pre_end(db);
    kb_err err = kb_db_connect(db);
    if (err)
        return err;
    PGresult *r = PQexec(db->conn, sql);
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
        db->answered_us = kb_mono_us();
        PQclear(r);
        return KB_OK;
    }
    kb__db_set_sqlstate(db, r);
    if (kb__db_connection_lost(db)) {
        PQclear(r);
        return KB_E_UNAVAILABLE;
    }
    kb__db_log_pq_error("command failed", PQresultErrorMessage(r));
    PQclear(r);
    return KB_E_INTERNAL;
}

bool
kb_db_send_async(kb_db *db, const kb_stmt *st, const char *const *params)
{
    kb_db_pre_end(db);
    if (db->conn == NULL || db->open)
        return false;
    kb_db_ahead_clear(db); /* a lookup sent ahead that nobody asked for is stale now */
    if (db->async != NULL)
        drain_async(db);
    if (db->conn == NULL || kb__db_prepare(db, st) != KB_OK)
        return false;
    if (!PQsendQueryPrepared(db->conn, st->name, st->nparams, params, NULL, NULL, 0)) {
        kb__db_connection_lost(db);
        return false;
    }
    db->async = st;
    return true;
}

bool
kb_db_answered_within(const kb_db *db, int64_t max_age_us)
{
    if (db->async != NULL)
        return false; /* its result is due: the socket says nothing about the server */
    if (db->conn == NULL || db->answered_us == 0 || max_age_us <= 0)
        return false;
    if (kb_mono_us() - db->answered_us > max_age_us)
        return false;
    /* Between statements nothing is due from the server: anything readable
     * is its goodbye (or a message this connection never asks for). */
    struct pollfd p = {.fd = PQsocket(db->conn), .events = POLLIN};
    return p.fd >= 0 && poll(&p, 1, 0) == 0;
}

bool
kb_db_sqlstate_is(const kb_db *db, const char *state)
{
    return strcmp(db->sqlstate, state) == 0;
}
