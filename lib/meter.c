/* meter.c - charge, refund, credit headers and the charge journal; see kb_meter.h.
 *
 * A charge is one statement (kb_meter_stmt; kb_meter_slow_stmt after it, in the
 * same transaction, when it charged nothing) in two round trips: the
 * statement with the by-id lookup that rides along, its transaction left open
 * (kb_db_exec_open), then the commit (kb_db_commit). Between the two the worker
 * journals the transaction id, the server's life and the account's charge count
 * the statement returned (the charge's footprint in the account row, migration
 * 0016), and the charge, so a charge whose commit or answer is lost can be
 * settled exactly, across a crash of Postgres too. In the common case it is one
 * round trip instead (charge_one_trip(), migration 0028): the transaction was
 * begun ahead by the previous charge's commit (kb_db_commit_chain), so its id and
 * the whole charge but its count are journaled before kb_meter_chain_stmt, the
 * lookup and the commit go out together (kb_db_exec_chain). Refunds happen only on the error
 * path, through kb_meter_refund(), which also removes the request's outbox row
 * unless the reporter already claimed it.
 */
#include "kb_meter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kb_crypto.h"
#include "kb_host.h"
#include "kb_journal.h"
#include "kb_log.h"
#include "kb_metrics.h"
#include "kb_time.h"
#include "kb_worker.h"
#include "kb_banned.h"

/*
 * The meter statement: one UPDATE of the account row, the fast path. It
 * charges only when nothing but a charge is due (0015_meter_fast_path.sql says
 * what that is, and what keeps usage_key, usage_seen_at and rl_limit true),
 * and its WHERE is re-checked on the newest row version under concurrency, so
 * it never overdraws or passes the rate window. It also leaves the charge's
 * footprint (charge_seq, charge_request), and takes only a row whose last charge
 * ran in the server's current life (charge_token = $6, the token the slow path
 * returned on this very connection, which a crash would have cut): the first
 * charge of an account after a crash goes the slow way, which keeps the
 * footprint the crash left.
 * When it returns no row, kb_meter_slow_stmt decides with the row locked, in the
 * same transaction. When other hosts share the database, kb_meter_row_stmt charges
 * the same way and also writes the charge's row of meter_inflight, as
 * kb_meter_inflight_stmt does after the slow path: one statement, no extra round
 * trip.
 */
/* clang-format off */
/* The fast path's UPDATE, its WHERE and the columns it returns. The clock checks
 * (key checked less than a minute ago, no cycle roll due, the carried counter is
 * today's, the rate window is the current minute) are the window [fast_from,
 * fast_until) kb_meter_slow() stores with each charge (migrations 0026 and 0027),
 * which any other change of the cycle clears. Inside it rl_window_start is the
 * current minute: the rate window only counts (the first charge of a minute goes
 * the slow way, which restarts it). A cost below 0 never charges: written against
 * the row, as "$3 >= 0" alone would become a gating Result node the executor sets
 * up on every charge. It returns only what the worker does not already know: user
 * id, key id, cost and token are its own parameters ($1, $2, $3, $6;
 * kb_meter_result_read() takes them from the caller). Each column returned is text
 * the server formats on every charge. */
#define METER_UPDATE                                                                               \
    "UPDATE billing_accounts ba"                                                                   \
    "   SET credits_used = ba.credits_used + $3::integer,"                                         \
    "       rl_count = ba.rl_count + 1,"                                                           \
    "       usage_credits = ba.usage_credits + $3::integer,"                                       \
    "       usage_requests = ba.usage_requests + 1,"                                               \
    "       charge_seq = ba.charge_seq + 1, charge_request = $5"                                   \
    " WHERE ba.user_id = $1::uuid AND ba.usage_key = $2::uuid"                                     \
    "   AND kb_now() >= ba.fast_from AND kb_now() < ba.fast_until"                                 \
    "   AND ba.credits_used + $3::integer >= ba.credits_used"                                      \
    "   AND ba.credits_used + $3::integer <= ba.credits_total"                                     \
    "   AND ba.rl_count < ba.rl_limit"                                                             \
    "   AND ba.usage_cycle = ba.billing_cycle_start AND ba.usage_endpoint = $4"                    \
    "   AND ba.charge_token = $6::uuid"
/* rl_reset: the window's end (rl_window_start is the current minute); rl_count was
 * below rl_limit before this charge, so rl_remaining is never negative. */
#define METER_RETURNING                                                                            \
    " 'ok'::text AS outcome, ba.credits_total, ba.credits_used, ba.rl_limit,"                      \
    "   ba.rl_limit - ba.rl_count AS rl_remaining,"                                               \
    "   date_part('epoch', ba.rl_window_start)::bigint + 60 AS rl_reset,"                          \
    "   ba.billing_cycle_start AS cycle_start, ba.usage_day AS day,"                               \
    "   pg_current_xact_id() AS xid, ba.charge_seq AS seq,"                                     \
    "   date_part('epoch', ba.fast_until) AS fast_until"

const kb_stmt kb_meter_stmt = {"meter", METER_UPDATE " RETURNING" METER_RETURNING, 6, false};

/*
 * The fast path in one round trip (kb_meter_chain_stmt): the charge runs in a
 * transaction begun ahead, whose id the worker journaled before sending, and its
 * commit rides with it. So the transaction must commit only if it charged: the
 * conditions are METER_UPDATE's, moved from the WHERE into a CASE whose other
 * branch raises (kb_meter_fast_miss(), SQLSTATE KB001, migration 0028), which
 * aborts it; the WHERE keeps only the account, so a row that exists is either
 * charged or raises, re-checked on the newest row version as before. Also:
 *   - the clock is the statement's (statement_timestamp(), moved like kb_now()
 *     when the tests move it): the transaction began at the previous request;
 *   - the cycle and UTC day are the worker's ($7, $8, learned from the key's last
 *     charge), so the journal holds them before the charge is sent;
 *   - charge_xid keeps the highest transaction id of a charge (0028 says how a
 *     crash is then settled without the charge count).
 */
#define METER_CLOCK "(kb_now() - now() + statement_timestamp())"
const kb_stmt kb_meter_chain_stmt = {
    "meter_chain",
    "UPDATE billing_accounts ba"
    "   SET credits_used = ba.credits_used + $3::integer,"
    "       rl_count = ba.rl_count + 1,"
    "       usage_credits = ba.usage_credits + $3::integer,"
    "       usage_requests = ba.usage_requests + 1,"
    "       charge_request = $5,"
    "       charge_xid = greatest(ba.charge_xid, pg_current_xact_id()),"
    "       charge_seq = CASE WHEN ba.usage_key = $2::uuid"
    "         AND " METER_CLOCK " >= ba.fast_from AND " METER_CLOCK " < ba.fast_until"
    "         AND ba.credits_used + $3::integer >= ba.credits_used"
    "         AND ba.credits_used + $3::integer <= ba.credits_total"
    "         AND ba.rl_count < ba.rl_limit"
    "         AND ba.usage_cycle = ba.billing_cycle_start AND ba.usage_endpoint = $4"
    "         AND ba.charge_token = $6::uuid"
    "         AND ba.billing_cycle_start = $7::timestamptz AND ba.usage_day = $8::date"
    "       THEN ba.charge_seq + 1 ELSE kb_meter_fast_miss() END"
    " WHERE ba.user_id = $1::uuid"
    /* Less than METER_RETURNING: the cycle, the day, the transaction id and the window
     * (which a fast-path charge leaves as it was) are the worker's already. */
    " RETURNING 'ok'::text AS outcome, ba.credits_total, ba.credits_used, ba.rl_limit,"
    "   ba.rl_limit - ba.rl_count AS rl_remaining,"
    "   date_part('epoch', ba.rl_window_start)::bigint + 60 AS rl_reset, ba.charge_seq AS seq",
    8, false};

/* kb_meter_fast_miss()'s SQLSTATE. */
#define METER_MISS_STATE "KB001"

/* The same with the charge's row in meter_inflight (kb_meter_inflight_stmt's, for
 * the fast path) when other hosts share the database: $7 host id, $8 journal entry,
 * $9 the pool's life. A separate statement: a data-modifying WITH costs a host
 * alone a second ModifyTable and a CTE scan on every charge, rows or not. */
const kb_stmt kb_meter_row_stmt = {
    "meter_row",
    "WITH c AS (" METER_UPDATE " RETURNING" METER_RETURNING ","
    "   ba.user_id, ba.usage_key AS key_id),"
    " i AS (INSERT INTO meter_inflight AS m (host_id, slot, life, request_id, answered, xid,"
    "   token, seq, user_id, key_id, cost, endpoint, cycle_start, day, outbox_id, charged_at)"
    " SELECT $7, $8::integer,"
    "   (SELECT a.life FROM app_hosts a WHERE a.host_id = $7 AND a.life = $9::uuid),"
    "   $5, false, c.xid, $6::uuid, c.seq, c.user_id, c.key_id, $3::integer, $4, c.cycle_start,"
    "   c.day, NULL, now() FROM c"
    " ON CONFLICT (host_id, life, slot) DO UPDATE SET"
    "   request_id = excluded.request_id, answered = false, xid = excluded.xid,"
    "   token = excluded.token, seq = excluded.seq, user_id = excluded.user_id,"
    "   key_id = excluded.key_id, cost = excluded.cost, endpoint = excluded.endpoint,"
    "   cycle_start = excluded.cycle_start, day = excluded.day,"
    "   outbox_id = excluded.outbox_id, charged_at = excluded.charged_at)"
    " SELECT outcome, credits_total, credits_used, rl_limit, rl_remaining, rl_reset,"
    "   cycle_start, day, xid, seq FROM c",
    9, false};
/* clang-format on */

const kb_stmt kb_meter_slow_stmt = {
    "meter_slow", "SELECT * FROM kb_meter_slow($1, $2::integer, $3, $4)", 4, false};

/*
 * The charge's row in meter_inflight (migration 0024), written in the charge's
 * transaction just before it commits (kb_db_commit_with(): same round trip), so
 * a host that dies whole leaves its unanswered charges where any host finds them.
 * The life comes from app_hosts: a pool whose lease another host ended gets NULL
 * there, and the transaction fails on the NOT NULL (nothing is charged).
 */
const kb_stmt kb_meter_inflight_stmt = {
    "meter_inflight",
    "INSERT INTO meter_inflight AS m (host_id, slot, life, request_id, answered, xid, token,"
    "   seq, user_id, key_id, cost, endpoint, cycle_start, day, outbox_id, charged_at)"
    " VALUES ($1, $2::integer,"
    "   (SELECT a.life FROM app_hosts a WHERE a.host_id = $1 AND a.life = $3::uuid),"
    "   $4, false, $5::xid8, $6::uuid, $7::bigint, $8::uuid, $9::uuid, $10::integer, $11,"
    "   $12::timestamptz, $13::date, $14::bigint, now())"
    " ON CONFLICT (host_id, life, slot) DO UPDATE SET"
    "   request_id = excluded.request_id, answered = false, xid = excluded.xid,"
    "   token = excluded.token, seq = excluded.seq, user_id = excluded.user_id,"
    "   key_id = excluded.key_id, cost = excluded.cost, endpoint = excluded.endpoint,"
    "   cycle_start = excluded.cycle_start, day = excluded.day,"
    "   outbox_id = excluded.outbox_id, charged_at = excluded.charged_at",
    14, false};

/* The 2xx answer of the row's charge has been written: it stands. */
const kb_stmt kb_meter_answered_stmt = {
    "meter_answered",
    "UPDATE meter_inflight SET answered = true"
    " WHERE host_id = $1 AND life = $2::uuid AND slot = $3::integer AND request_id = $4",
    4, false};

/* ---- the charge ---- */

static kb_err
refused(kb_ctx *ctx, const kb_meter_result *m)
{
    switch (m->outcome) {
    case KB_METER_RATE_LIMITED:
        kb_metrics_add(KB_M_RATE_LIMITED, 1);
        /* Seconds to the next window by the database's clock (kb_now()). */
        ctx->retry_after = m->retry_after < 1 ? 1 : m->retry_after > 60 ? 60 : (int)m->retry_after;
        return kb_fail(ctx, KB_E_RATE_LIMITED,
                       "Rate limit of %" PRId64 " requests per minute exceeded. Retry after %d "
                       "seconds.",
                       m->rl_limit, ctx->retry_after);
    case KB_METER_EXHAUSTED:
        kb_metrics_add(KB_M_CREDITS_EXHAUSTED, 1);
        return kb_fail(ctx, KB_E_CREDITS_EXHAUSTED,
                       "Credits exhausted for this billing cycle (%" PRId64 " of %" PRId64
                       " used, this request costs %d). Enable pay-as-you-go with POST "
                       "/billing/payg or upgrade with POST /billing/checkout.",
                       m->credits_used, m->credits_total, ctx->cost);
    case KB_METER_INVALID_KEY:
    default:
        return kb_fail(ctx, KB_E_INVALID_API_KEY, "Invalid or revoked API key.");
    }
}

static void
journal_charge(kb_journal_charge *j, const kb_req *req, const kb_ctx *ctx, const kb_meter_result *m)
{
    memset(j, 0, sizeof(*j));
    snprintf(j->request_id, sizeof(j->request_id), "%s", req->request_id);
    j->xid = m->xid;
    snprintf(j->token, sizeof(j->token), "%s", m->token);
    j->seq = m->seq;
    snprintf(j->user_id, sizeof(j->user_id), "%s", m->user_id);
    snprintf(j->key_id, sizeof(j->key_id), "%s", m->key_id);
    j->cost = m->cost;
    snprintf(j->endpoint, sizeof(j->endpoint), "%s", ctx->route ? ctx->route : "unknown");
    snprintf(j->cycle_start, sizeof(j->cycle_start), "%s", m->cycle_start);
    snprintf(j->day, sizeof(j->day), "%s", m->day);
    j->outbox_id = m->outbox_id;
}

/* What a charge of known's key returns no column for (kb_meter_result_read()'s given):
 * the statement's own parameters, user and key id, the server's life, the cost. */
static void
known_given(kb_meter_result *given, const kb_worker_key *known, const char *life, int cost)
{
    memset(given, 0, sizeof(*given));
    snprintf(given->user_id, sizeof(given->user_id), "%s", known->user_id);
    snprintf(given->key_id, sizeof(given->key_id), "%s", known->key_id);
    snprintf(given->token, sizeof(given->token), "%s", life);
    given->cost = cost;
}

/* The charge's meter_inflight row could not be written (NOT NULL life): this pool no
 * longer holds its host's lease, so nothing was charged; its keeper stops the pool. */
static kb_err
lease_lost(kb_ctx *ctx, const kb_host_self *host)
{
    kb_log_error("charge refused: this pool no longer holds the lease of host id '%s'", host->id);
    return kb_fail(ctx, KB_E_UNAVAILABLE, "Service unavailable.");
}

/* The set of a key hash in the worker's key cache (two ways). */
static unsigned
key_set(const char *hash)
{
    unsigned v = 0;
    for (int i = 0; i < 6; i++)
        v = v * 16 + (unsigned)(hash[i] <= '9' ? hash[i] - '0' : hash[i] - 'a' + 10);
    return v % (KB_WORKER_KEYS / 2);
}

/* The cached entry of hash, or NULL. */
static kb_worker_key *
key_find(kb_worker *w, const char *hash)
{
    unsigned s = key_set(hash);
    for (unsigned i = 0; i < 2; i++) {
        kb_worker_key *k = &w->keys[2 * s + i];
        if (strcmp(k->hash, hash) == 0) {
            w->keys_lru[s] = (unsigned char)(1 - i); /* the other way goes first */
            return k;
        }
    }
    return NULL;
}

/* Remember (or forget) what the meter said about the key of hash. */
static void
key_learn(kb_worker *w, const char *hash, const kb_meter_result *m)
{
    kb_worker_key *k = key_find(w, hash);
    if (m->outcome == KB_METER_INVALID_KEY || m->user_id[0] == '\0' || m->key_id[0] == '\0') {
        if (k != NULL)
            k->hash[0] = '\0';
        return;
    }
    if (k == NULL) {
        unsigned s = key_set(hash);
        k = &w->keys[2 * s + w->keys_lru[s]];
        w->keys_lru[s] = (unsigned char)(1 - w->keys_lru[s]);
        k->key_prefix[0] = '\0';
    }
    snprintf(k->hash, sizeof(k->hash), "%s", hash);
    snprintf(k->user_id, sizeof(k->user_id), "%s", m->user_id);
    snprintf(k->key_id, sizeof(k->key_id), "%s", m->key_id);
    if (m->key_prefix[0] != '\0')
        snprintf(k->key_prefix, sizeof(k->key_prefix), "%s", m->key_prefix);
    /* Only a fast-path charge says where its window ends; anything else sends the
     * key's next charge the usual way, which learns it again. */
    bool fast = m->outcome == KB_METER_OK && m->fast_until_us > 0;
    snprintf(k->cycle_start, sizeof(k->cycle_start), "%s", fast ? m->cycle_start : "");
    snprintf(k->day, sizeof(k->day), "%s", fast ? m->day : "");
    k->fast_until_us = fast ? m->fast_until_us : 0;
}

/* A one-round-trip charge is tried only this far inside the window the key's last
 * charge reported (the worker's clock against the database's), and in a
 * transaction begun at most this long ago: one older has waited for an answer to
 * be written, and the worker ends its transaction begun ahead when idle
 * (app/fcgi/worker.c), long before Postgres' idle_in_transaction_session_timeout. */
#define ONE_TRIP_MARGIN_US 200000
#define ONE_TRIP_MAX_AGE_US 1000000

typedef enum one_trip { ONE_TRIP_CHARGED, ONE_TRIP_FAILED, ONE_TRIP_NOT } one_trip;

/*
 * The fast path in one round trip (kb_meter_chain_stmt): journal the charge whole
 * under the id of the transaction begun ahead, then send the statement, the lookup
 * and the commit together. CHARGED: c->m holds the committed charge. FAILED: the
 * request fails as kb_fail recorded (503: the journal settles the charge; 500).
 * NOT: nothing was charged (the fast path did not apply, the transaction aborted):
 * the caller decides the usual way.
 */
static one_trip
charge_one_trip(const kb_req *req, kb_ctx *ctx, const kb_meter_ahead *ahead, bool lookup,
                const kb_worker_key *known, const char *life, uint64_t xid, kb_charge *c,
                kb_err *failed)
{
    kb_worker *w = ctx->w;
    kb_db *db = &w->db;
    /* The whole charge but its count (0: kb_meter_settle() does without, 0028), in the
     * journal before anything is sent. */
    kb_meter_result given;
    known_given(&given, known, life, ctx->cost);
    snprintf(given.cycle_start, sizeof(given.cycle_start), "%s", known->cycle_start);
    snprintf(given.day, sizeof(given.day), "%s", known->day);
    given.xid = xid;
    given.fast_until_us = known->fast_until_us;
    kb_journal_charge j;
    journal_charge(&j, req, ctx, &given);
    kb_journal_charged(w->journal, &j);

    char costs[16];
    snprintf(costs, sizeof(costs), "%d", ctx->cost);
    const char *p[] = {known->user_id,  known->key_id, costs,         j.endpoint,
                       req->request_id, life,          j.cycle_start, j.day};
    if (lookup)
        ahead->send(db, ahead->arg);
    kb_metrics_add(KB_M_CHARGES_ONE_TRIP, 1);
    PGresult *r = NULL;
    kb_err err = kb_db_exec_chain(db, ctx->arena, &kb_meter_chain_stmt, p, lookup, &r);
    if (err == KB_E_UNAVAILABLE) {
        /* Committed or not, nobody can say now: the journal entry stays. */
        kb_db_ahead_clear(db);
        *failed = kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");
        return ONE_TRIP_FAILED;
    }
    if (err) {
        /* Aborted: nothing was charged. */
        kb_journal_idle(w->journal);
        if (kb_db_sqlstate_is(db, METER_MISS_STATE)) {
            kb_metrics_add(KB_M_CHARGES_ONE_TRIP_MISSED, 1);
            return ONE_TRIP_NOT;
        }
        kb_log_error("meter statement (or the lookup sent with it) failed: SQLSTATE %s",
                     db->sqlstate);
        *failed = kb_fail(ctx, KB_E_INTERNAL, "meter statement failed");
        return ONE_TRIP_FAILED;
    }
    if (PQntuples(r) == 0) {
        /* No such account row any more: an empty commit, nothing charged. */
        kb_journal_idle(w->journal);
        kb_db_ahead_clear(db);
        return ONE_TRIP_NOT;
    }
    const char *why = NULL;
    if (PQntuples(r) != 1 || !kb_meter_result_read(r, 0, &given, &c->m, &why)) {
        /* Committed, but unreadable: the journal settles (refunds) it. */
        kb_db_ahead_clear(db);
        *failed = kb_fail(ctx, KB_E_INTERNAL, "meter returned %d rows: %s", PQntuples(r),
                          why ? why : "not one");
        return ONE_TRIP_FAILED;
    }
    /* The charge count it made, for settling after a crash the usual way. */
    kb_journal_charged_seq(w->journal, c->m.seq);
    return ONE_TRIP_CHARGED;
}

/* The charge in c committed: it is the request's. */
static kb_err
charge_stands(const kb_req *req, kb_ctx *ctx, kb_charge *c, bool with_row)
{
    ctx->user_id = kb_arena_strdup(ctx->arena, c->m.user_id);
    ctx->key_prefix = kb_arena_strdup(ctx->arena, c->m.key_prefix);
    ctx->charge = c;
    c->charged = true;
    c->with_row = with_row;
    snprintf(c->request_id, sizeof(c->request_id), "%s", req->request_id);
    c->have_limits = true;
    ctx->credits = c->m.cost;
    return KB_OK;
}

kb_err
kb_meter_charge(const kb_req *req, kb_ctx *ctx, const kb_meter_ahead *ahead)
{
    kb_worker *w = ctx->w;
    kb_str key = req->api_key;
    const char *reason;
    if (key.p == NULL && !kb_meter_parse_key(kb_req_header(req, "authorization"), &key, &reason))
        return kb_fail(ctx, KB_E_INVALID_API_KEY, "%s", reason);

    /* The previous charge of this worker must be settled before the next one
     * can take its journal entry; if that is impossible the database is down. */
    if (!kb__meter_settle_own(w, ctx->arena))
        return kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");

    kb_db *db = &w->db;
    /* The lookup rides with the fast path's statement (in its transaction); a key
     * this worker has not seen (unknown or invalid ones among them) has it sent only
     * once charged, with the commit: an invalid key never costs a lookup. */
    bool lookup = ahead != NULL && ahead->db == db;

    char hash[KB_SHA256_HEX_LEN + 1], costs[16];
    kb_sha256_hex(key.p, key.len, hash);
    snprintf(costs, sizeof(costs), "%d", ctx->cost);
    const char *route = ctx->route ? ctx->route : "unknown";
    const char *slow[] = {hash, costs, route, req->request_id};
    /* A key this worker has seen: straight to its account row. */
    const kb_worker_key *found = key_find(w, hash);
    kb_worker_key known_copy;
    const kb_worker_key *known = NULL;
    if (found != NULL) {
        known_copy = *found;
        known = &known_copy;
    }
    PGresult *r = NULL;
    kb_err err;
    /* The fast path needs the server's life as this connection knows it; a
     * connection made since (kb_db_exec_open() reconnects when it finds the old
     * one dead) may be in a later life, after a crash: then nothing commits. */
    const char *life = db->conn != NULL && w->life_conn == db->connects ? w->life : NULL;
    uint64_t conn = db->connects;
    const kb_host_self *host = kb_host_self_get();
    int slot = kb_journal_index(w->journal);
    char slots[16];
    snprintf(slots, sizeof(slots), "%d", slot);
    bool with_row = host->id[0] != '\0' && slot >= 0 && kb_host_rows();
    bool fast_row = false; /* the fast path wrote the charge's meter_inflight row */
    kb_charge *c = kb_arena_calloc(ctx->arena, 1, sizeof(*c));

    /* One round trip when a transaction was begun ahead and the key's last charge
     * says the fast path applies (its window, cycle and day). */
    uint64_t pre = 0;
    if (known != NULL && life != NULL && !with_row && w->journal != NULL &&
        known->cycle_start[0] != '\0' && known->fast_until_us > kb_now_us() + ONE_TRIP_MARGIN_US)
        pre = kb_db_pre_xid(db, ONE_TRIP_MAX_AGE_US);
    if (pre != 0) {
        kb_err failed = KB_OK;
        switch (charge_one_trip(req, ctx, ahead, lookup, known, life, pre, c, &failed)) {
        case ONE_TRIP_CHARGED:
            key_learn(w, hash, &c->m);
            if (c->m.key_prefix[0] == '\0')
                snprintf(c->m.key_prefix, sizeof(c->m.key_prefix), "%s", known->key_prefix);
            return charge_stands(req, ctx, c, false);
        case ONE_TRIP_FAILED:
            return failed;
        case ONE_TRIP_NOT:
            known = NULL; /* decided the usual way: the slow path */
            break;
        }
    }

    /* Until the commit is sent nothing can be charged: a worker or connection
     * that dies meanwhile leaves an aborted transaction. */
    kb_journal_metering(w->journal, req->request_id);
    /* What the fast path does not return: its own parameters. */
    kb_meter_result given_m, *given = NULL;
    if (known != NULL && life != NULL) {
        const char *fast[] = {known->user_id, known->key_id, costs, route,     req->request_id,
                              life,           host->id,      slots, host->life};
        known_given(&given_m, known, life, ctx->cost);
        given = &given_m;
        if (lookup)
            ahead->send(db, ahead->arg);
        err = kb_db_exec_open(db, ctx->arena, with_row ? &kb_meter_row_stmt : &kb_meter_stmt, fast,
                              &r);
        if (!err && PQntuples(r) == 1 && db->connects != conn) {
            kb_journal_idle(w->journal);
            kb_db_disconnect(db);
            kb_db_ahead_clear(db);
            return kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");
        }
        fast_row = !err && PQntuples(r) == 1;
        if (!err && PQntuples(r) == 0)
            err = kb_db_exec_more(db, ctx->arena, &kb_meter_slow_stmt, slow, &r);
    } else {
        err = kb_db_exec_open(db, ctx->arena, &kb_meter_slow_stmt, slow, &r);
    }
    if (err) {
        kb_journal_idle(w->journal);
        kb_db_ahead_clear(db);
        if (err == KB_E_UNAVAILABLE)
            return kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");
        if (kb_db_sqlstate_is(db, "23502"))
            return lease_lost(ctx, host);
        return kb_fail(ctx, KB_E_INTERNAL, "meter statement (or the lookup sent with it) failed");
    }
    const char *why = NULL;
    if (PQntuples(r) != 1 || !kb_meter_result_read(r, 0, given, &c->m, &why)) {
        /* Cannot tell what was decided: drop the connection, which aborts it. */
        kb_journal_idle(w->journal);
        kb_db_disconnect(db);
        return kb_fail(ctx, KB_E_INTERNAL, "meter returned %d rows: %s", PQntuples(r),
                       why ? why : "not one");
    }
    key_learn(w, hash, &c->m);
    if (c->m.outcome == KB_METER_OK) {
        /* A charge's token is the life of the connection it ran on. */
        snprintf(w->life, sizeof(w->life), "%s", c->m.token);
        w->life_conn = db->connects;
    }
    if (c->m.key_prefix[0] == '\0' && known != NULL)
        snprintf(c->m.key_prefix, sizeof(c->m.key_prefix), "%s", known->key_prefix);
    if (c->m.outcome == KB_METER_OK) {
        kb_journal_charge j;
        journal_charge(&j, req, ctx, &c->m);
        kb_journal_charged(w->journal, &j);
        if (lookup && db->ahead == NULL)
            ahead->send(db, ahead->arg); /* the slow path alone: with the commit */
    } else {
        /* Nothing charged: nothing to journal, and the lookup is never read. */
        kb_journal_idle(w->journal);
        kb_db_ahead_clear(db);
    }
    /* Commit: a refusal may still have rolled the cycle. A charge also writes its
     * row of meter_inflight, in the same transaction and round trip. */
    if (c->m.outcome == KB_METER_OK && with_row && !fast_row) {
        char xid[24], seq[24], cost[24], outbox[24];
        snprintf(xid, sizeof(xid), "%" PRIu64, c->m.xid);
        snprintf(seq, sizeof(seq), "%" PRId64, c->m.seq);
        snprintf(cost, sizeof(cost), "%" PRId64, c->m.cost);
        snprintf(outbox, sizeof(outbox), "%" PRId64, c->m.outbox_id);
        const char *p[] = {host->id,    slots,
                           host->life,  req->request_id,
                           xid,         c->m.token,
                           seq,         c->m.user_id,
                           c->m.key_id, cost,
                           route,       c->m.cycle_start,
                           c->m.day,    c->m.outbox_id ? outbox : NULL};
        err = kb_db_commit_with(db, &kb_meter_inflight_stmt, p);
    } else if (c->m.outcome == KB_METER_OK && lookup && !with_row && w->journal != NULL) {
        /* The handler's lookup rides along, so the next use of the connection is
         * likely the next charge: begin its transaction ahead. */
        err = kb_db_commit_chain(db);
    } else {
        err = kb_db_commit(db);
    }
    if (err == KB_E_INTERNAL && kb_db_sqlstate_is(db, "23502")) {
        kb_journal_idle(w->journal);
        kb_db_ahead_clear(db);
        return lease_lost(ctx, host);
    }
    if (c->m.outcome != KB_METER_OK) {
        if (c->m.outcome != KB_METER_INVALID_KEY) {
            ctx->charge = c;
            c->have_limits = true;
            ctx->user_id = kb_arena_strdup(ctx->arena, c->m.user_id);
            ctx->key_prefix = kb_arena_strdup(ctx->arena, c->m.key_prefix);
        }
        return refused(ctx, &c->m);
    }
    ctx->user_id = kb_arena_strdup(ctx->arena, c->m.user_id);
    ctx->key_prefix = kb_arena_strdup(ctx->arena, c->m.key_prefix);
    if (err == KB_E_INTERNAL) {
        /* The commit failed: the transaction aborted, nothing was charged. */
        kb_journal_idle(w->journal);
        kb_db_ahead_clear(db);
        return kb_fail(ctx, KB_E_INTERNAL, "the charge's commit failed");
    }
    if (err) {
        /* Committed or not, nobody can say now: the journal entry stays, and
         * settling refunds the charge if it committed. */
        kb_db_ahead_clear(db);
        return kb_fail(ctx, KB_E_UNAVAILABLE, "Database unavailable.");
    }
    return charge_stands(req, ctx, c, with_row);
}
