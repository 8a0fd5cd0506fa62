/* writer.c - the writer thread: leadership through a Postgres advisory lock, then the
 * spool, in order, into Postgres.
 *
 * Standby: try pg_try_advisory_lock(7274810018) every second; whoever holds it leads,
 * so a standby takes over within a second or two of the leader's death (Postgres
 * frees a session's locks when its connection ends). The lock lives on the writer's
 * own connection: a batch is committed only on the session that holds it, and a lost
 * session must win the lock back, with the leader epoch unchanged, before writing
 * again; otherwise another instance led meanwhile and this process exits (75) so
 * systemd restarts it as a standby.
 *
 * Leader: records are taken in spool order, from the queue when its next chunk starts
 * where the writer stands, else read back from the spool files (the queue dropped
 * chunks, Postgres was slow or down, or the process restarted). Each transaction
 * stores a batch (store.c) and moves collector_progress to its end, so a crash or a
 * failed commit resumes exactly there; and ingest is idempotent besides.
 */
#include <stdio.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "collector.h"
#include "kb_db.h"
#include "kb_ingest.h"
#include "kb_log.h"
#include "kb_spool.h"
#include "writer.h"
#include "kb_banned.h"

#define LOCK_KEY "7274810018"
#define BATCH_RECORDS 20000

static const kb_stmt try_lock = {"kc_try_lock", "SELECT pg_try_advisory_lock(" LOCK_KEY ")", 0,
                                 false};
/* Returns the new epoch and the previous leader (NULL: none yet). */
static const kb_stmt take_lead = {
    "kc_take_lead",
    "WITH prev AS (SELECT instance FROM collector_leader WHERE id = 1)"
    " INSERT INTO collector_leader AS l (id, instance, epoch, since, heartbeat_at)"
    " VALUES (1, $1, 1, now(), now())"
    " ON CONFLICT (id) DO UPDATE SET instance = $1, epoch = l.epoch + 1, since = now(),"
    "   heartbeat_at = now()"
    " RETURNING epoch, (SELECT instance FROM prev)",
    1, false};
static const kb_stmt leader_epoch = {"kc_leader_epoch",
                                     "SELECT epoch FROM collector_leader WHERE id = 1", 0, true};
static const kb_stmt heartbeat = {
    "kc_heartbeat",
    "UPDATE collector_leader SET heartbeat_at = now() WHERE id = 1 AND epoch = $1 RETURNING 1", 1,
    false};
static const kb_stmt status_up = {
    "kc_status",
    "INSERT INTO collector_status AS s (instance, role, pid, started_at, heartbeat_at, stats)"
    " VALUES ($1, $2, $3, to_timestamp($4::bigint), now(), $5::jsonb)"
    " ON CONFLICT (instance) DO UPDATE SET role = $2, pid = $3, started_at = to_timestamp($4::bigint),"
    "   heartbeat_at = now(), stats = $5::jsonb",
    5, false};
static const kb_stmt progress_set_stmt = {
    "kc_progress_set_b",
    "INSERT INTO collector_progress (instance, file_no, file_offset, updated_at)"
    " VALUES ($1, $2, $3, now())"
    " ON CONFLICT (instance) DO UPDATE SET file_no = $2, file_offset = $3, updated_at = now()",
    3, false};
static const kb_stmt progress_get = {
    "kc_progress_get", "SELECT file_no, file_offset FROM collector_progress WHERE instance = $1", 1,
    true};

kc_writer W;

static pthread_t th;
static bool started;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int role; /* 0 standby, 1 leader, -1 gave up */

static void
set_role(int r)
{
    pthread_mutex_lock(&mu);
    role = r;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    kc_metric_set(KC_G_LEADER, r == 1);
}

/* One parameterless or parameterised statement; true on success, *out arena-owned. */
bool
kc_writer_exec(const kb_stmt *st, const char *const *params, PGresult **out)
{
    kb_err e = kb_db_exec(&W.db, &W.arena, st, params, out);
    kc_metric_set(KC_G_DB_UP, e == KB_OK || e == KB_E_INTERNAL);
    return e == KB_OK;
}

static void
write_status(const char *r)
{
    static int64_t last;
    int64_t now = kc_mono_ns() / 1000000;
    if (now - last < 2000)
        return;
    last = now;
    kb_buf stats = KB_BUF_INIT;
    kb_buf_printf(&stats,
                  "{\"connections_up\":%" PRId64 ",\"markets_open\":%" PRId64
                  ",\"markets_wanted\":%" PRId64 ",\"markets_live\":%" PRId64
                  ",\"markets_gap\":%" PRId64 ",\"queue_bytes\":%" PRId64
                  ",\"writer_lag_bytes\":%" PRId64 ",\"messages\":%" PRIu64
                  ",\"reconnects\":%" PRIu64 ",\"metrics_port\":%ld}",
                  kc_metric_get(KC_G_CONNS_UP), kc_metric_get(KC_G_OPEN_MARKETS_REST),
                  kc_metric_get(KC_G_MARKETS_WANTED), kc_metric_get(KC_G_MARKETS_LIVE),
                  kc_metric_get(KC_G_MARKETS_GAP), kc_metric_get(KC_G_QUEUE_BYTES),
                  kc_metric_get(KC_G_WRITER_LAG_BYTES), kc_metric_count(KC_M_FRAMES),
                  kc_metric_count(KC_M_RECONNECTS), K.cfg->collector_metrics_port);
    char pid[24], st[24];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    snprintf(st, sizeof(st), "%" PRId64, W.started_s);
    const char *p[] = {K.instance, r, pid, st, stats.buf};
    (void)kc_writer_exec(&status_up, p, NULL);
    kb_buf_release(&stats);
}

/* The lock is held on the session in use now (not on one that died since). */
bool
kc_writer_same_session(void)
{
    return W.db.conn != NULL && W.db.conn == W.locked_on && PQbackendPID(W.db.conn) == W.locked_pid;
}

/* 1: this session holds the lock now; 0: another one does; -1: no answer (down). */
static int
lock_now(void)
{
    PGresult *r;
    if (!kc_writer_exec(&try_lock, NULL, &r))
        return -1;
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
        return 0;
    W.locked_on = W.db.conn;
    W.locked_pid = PQbackendPID(W.db.conn);
    return 1;
}

static const kb_stmt leader_since = {
    "kc_leader_since", "SELECT instance, kb_us(since) FROM collector_leader WHERE id = 1", 0, true};

/* The stored progress of this instance: (0, 0) when none. */
static void read_progress(long *f, int64_t *o);

/*
 * A standby that led before (and died or lost the lock) may have spooled messages it
 * never stored. They all lie inside the takeover gap the current leader opened from the
 * last stored data, up to that leader's first snapshot of each market, so they are
 * stored now: frames and REST bodies received before the leader took over, and after
 * that instant trades (one row per trade_id whoever stores it), lifecycle messages and
 * REST bodies, and a market's book messages older than the leader's first snapshot of
 * it (later ones the leader has under its own sids: storing them too would count each
 * change twice). That cutoff must be known: each market with book messages after the
 * takeover needs the leader's snapshot in the database (or to be closed); until then
 * the backlog waits, for 120 s at most (then those book messages are left out). At
 * final (this instance takes the lead: the old leader is gone, what it stored is all
 * there is) it runs regardless. This instance's events belong to a past it no longer
 * leads. Once per standby spell.
 */
static const kb_stmt leader_cutoffs = {
    "kc_leader_cutoffs",
    "SELECT t, kb_us((SELECT min(captured_at) FROM snapshots WHERE market_ticker = t"
    "                   AND captured_at >= 'epoch'::timestamptz + $2::bigint * interval '1 us')),"
    "       coalesce((SELECT status NOT IN ('active', 'initialized', 'inactive') FROM markets"
    "                  WHERE ticker = t), false)"
    "  FROM unnest($1::text[]) t",
    2, true};

/* At final: the takeover gap of every market this instance is about to collect, from
 * its last stored data, before the leftover is stored. The old leader may have died
 * before storing its own (its start event), and this instance's start event, stored
 * after the leftover, would start from the leftover's end: holes in the leftover (its
 * gap events are not stored) would lie outside any gap. An open gap wins. */
static const kb_stmt takeover_gaps = {
    "kc_takeover_gaps",
    "INSERT INTO gaps (market_ticker, channel, start_at, reason, source)"
    " SELECT c.ticker, ch, coalesce(greatest(s.first_data_at, s.last_data_at), c.updated_at),"
    "        'handover', $1"
    "   FROM collector_markets c LEFT JOIN market_stats s ON s.ticker = c.ticker,"
    "        unnest(ARRAY['orderbook', 'trade']) AS ch"
    "  WHERE c.collecting"
    " ON CONFLICT DO NOTHING",
    1, false};

/* After the leftover is stored: a handover gap for each market with data in it that no
 * gap covers from its last data there ($1 tickers, $2 exchange ms, one pair per record)
 * to the leader's first snapshot of it after the takeover ($3, µs; none yet and still
 * open: an open gap). A
 * market the old leader began collecting only in the leftover (its first snapshot's
 * gap_close there, and leftover events are not stored) is not in collector_markets as
 * collecting, so neither the leader's start event nor takeover_gaps gave it a gap. */
static const kb_stmt leftover_gaps = {
    "kc_leftover_gaps",
    "INSERT INTO gaps (market_ticker, channel, start_at, end_at, reason, source, closed_at)"
    " SELECT l.t, ch, l.last_at, f.first_at, 'handover', $4,"
    "        CASE WHEN f.first_at IS NULL THEN NULL ELSE now() END"
    "   FROM (SELECT t, 'epoch'::timestamptz + max(ms) * interval '1 millisecond' AS last_at"
    "           FROM unnest($1::text[], $2::bigint[]) AS u(t, ms) GROUP BY t) l"
    "        CROSS JOIN LATERAL (SELECT min(captured_at) AS first_at FROM snapshots"
    "                             WHERE market_ticker = l.t AND captured_at >="
    "                                   'epoch'::timestamptz + $3::bigint * interval '1 us') f,"
    "        unnest(ARRAY['orderbook', 'trade']) AS ch"
    "  WHERE (f.first_at > l.last_at OR (f.first_at IS NULL AND NOT coalesce("
    "           (SELECT status NOT IN ('active', 'initialized', 'inactive') FROM markets"
    "             WHERE ticker = l.t), false)))"
    "    AND NOT EXISTS (SELECT 1 FROM gaps g WHERE g.market_ticker = l.t AND g.channel = ch"
    "                      AND g.start_at <= l.last_at"
    "                      AND (g.end_at IS NULL OR g.end_at >= f.first_at))"
    " ON CONFLICT DO NOTHING",
    4, false};

/* What a leftover frame is: its type, market and exchange time (ms; -1 unknown). */
typedef struct leftover {
    char type; /* 'd' delta, 's' snapshot, 't' trade, 'l' lifecycle, 0 other */
    char ticker[128];
    int64_t ts_ms;
} leftover;

static void
leftover_of(const kb_spool_rec *rec, leftover *lo)
{
    lo->type = 0;
    lo->ticker[0] = '\0';
    lo->ts_ms = -1;
    cJSON *j = cJSON_ParseWithLength(rec->data, rec->len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "msg");
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(m, "market_ticker");
    if (cJSON_IsString(t) && cJSON_IsString(tk) && strlen(tk->valuestring) < sizeof(lo->ticker)) {
        const char *ty = t->valuestring;
        lo->type = strcmp(ty, "orderbook_delta") == 0         ? 'd'
                   : strcmp(ty, "orderbook_snapshot") == 0    ? 's'
                   : strcmp(ty, "trade") == 0                 ? 't'
                   : strncmp(ty, "market_lifecycle", 16) == 0 ? 'l'
                                                              : 0;
        snprintf(lo->ticker, sizeof(lo->ticker), "%s", tk->valuestring);
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(m, "ts_ms");
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(m, "ts");
        if (cJSON_IsNumber(ms))
            lo->ts_ms = (int64_t)ms->valuedouble;
        else if (cJSON_IsNumber(sec))
            lo->ts_ms = (int64_t)sec->valuedouble * 1000;
    }
    cJSON_Delete(j);
}

/* One book market's cutoff (µs; INT64_MAX: none needed) by ticker. */
typedef struct book_cutoff {
    char *ticker;
    int64_t before_us;
} book_cutoff;

static int
cutoff_cmp(const void *a, const void *b)
{
    return strcmp(((const book_cutoff *)a)->ticker, ((const book_cutoff *)b)->ticker);
}

/* Each file of the leftover from the progress on, rec by rec: fn(rec, after, arg). */
static bool
each_leftover(long f, int64_t o, long last, int64_t since,
              bool (*fn)(const kb_spool_rec *, bool, void *), void *arg, long *ef, int64_t *eo)
{
    *ef = f;
    *eo = o;
    for (long n = f; n <= last; n++) {
        char *path = kb_spool_find(K.cfg->collector_spool_dir, n);
        kb_spool_reader rd;
        if (path == NULL || !kb_spool_reader_open(&rd, path, n == f ? o : 0)) {
            free(path);
            continue;
        }
        kb_spool_rec rec;
        int64_t end;
        bool ok = true;
        while (ok && kb_spool_reader_next(&rd, &rec, &end) == 1) {
            ok = fn(&rec, rec.wall_ns / 1000 >= since, arg);
            *ef = n;
            *eo = end;
        }
        kb_spool_reader_close(&rd);
        free(path);
        if (!ok)
            return false;
    }
    return true;
}

typedef struct backlog_run {
    kb_ingest *ing;
    book_cutoff *cut;
    size_t ncut, capcut;
    long stored, skipped;
    bool collect;  /* first pass: the book markets after the takeover */
    kb_buf tk, ms; /* stored data frames: tickers and exchange ms (array literals) */
} backlog_run;

static void
arr_add(kb_buf *b, const char *v, bool quote)
{
    kb_buf_putc(b, b->len == 0 ? '{' : ',');
    if (quote)
        kb_buf_putc(b, '"');
    for (const char *c = v; *c; c++) {
        if (*c == '"' || *c == '\\')
            kb_buf_putc(b, '\\');
        kb_buf_putc(b, *c);
    }
    if (quote)
        kb_buf_putc(b, '"');
}

static bool
collect_or_store(const kb_spool_rec *rec, bool after, void *arg)
{
    backlog_run *b = arg;
    if (rec->kind == 'E') {
        b->skipped += !b->collect;
        return true;
    }
    bool keep = true;
    if (after && rec->kind == 'F') {
        leftover lo;
        leftover_of(rec, &lo);
        if (lo.type == 'd' || lo.type == 's') {
            book_cutoff key = {lo.ticker, 0};
            book_cutoff *c = b->ncut ? bsearch(&key, b->cut, b->ncut, sizeof(*b->cut), cutoff_cmp)
                                     : NULL;
            if (b->collect) {
                if (c == NULL) {
                    if (b->ncut == b->capcut) {
                        b->capcut = b->capcut ? 2 * b->capcut : 64;
                        b->cut = realloc(b->cut, b->capcut * sizeof(*b->cut));
                        if (b->cut == NULL)
                            abort();
                    }
                    /* Kept sorted: insert in place. */
                    size_t at = 0, hi = b->ncut;
                    while (at < hi) {
                        size_t mid = (at + hi) / 2;
                        if (strcmp(b->cut[mid].ticker, lo.ticker) < 0)
                            at = mid + 1;
                        else
                            hi = mid;
                    }
                    memmove(b->cut + at + 1, b->cut + at, (b->ncut - at) * sizeof(*b->cut));
                    b->cut[at] = (book_cutoff){kb_xstrdup(lo.ticker), INT64_MAX};
                    b->ncut++;
                }
                return true;
            }
            keep = c != NULL && lo.ts_ms >= 0 && lo.ts_ms * 1000 < c->before_us;
        } else {
            keep = lo.type != 0;
        }
    }
    if (b->collect)
        return true;
    if (!keep) {
        b->skipped++;
        return true;
    }
    if (rec->kind == 'F') {
        leftover lo;
        leftover_of(rec, &lo);
        if ((lo.type == 'd' || lo.type == 's' || lo.type == 't') && lo.ts_ms > 0) {
            char n[24];
            snprintf(n, sizeof(n), "%" PRId64, lo.ts_ms);
            arr_add(&b->tk, lo.ticker, true);
            arr_add(&b->ms, n, false);
        }
    }
    const char *why;
    b->stored++;
    return kb_ingest_spool(b->ing, rec, "-", &why) ||
           PQtransactionStatus(W.db.conn) == PQTRANS_INTRANS;
}

static void
backlog(bool final)
{
    static bool done;
    static int64_t first_try;
    PGresult *r;
    if (done || !kc_writer_exec(&leader_since, NULL, &r))
        return;
    if (PQntuples(r) == 0 || strcmp(PQgetvalue(r, 0, 0), K.instance) == 0) {
        done = true; /* nobody else led: this instance stores its spool itself as leader */
        return;
    }
    int64_t since = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    long f;
    int64_t o;
    read_progress(&f, &o);
    long last = kb_spool_max_no(K.cfg->collector_spool_dir);
    if (f <= 0 || last < f) {
        done = true;
        return;
    }
    int64_t now = kc_mono_ns() / 1000000;
    if (first_try == 0)
        first_try = now;
    backlog_run b = {NULL, NULL, 0, 0, 0, 0, true, KB_BUF_INIT, KB_BUF_INIT};
    long ef;
    int64_t eo;
    (void)each_leftover(f, o, last, since, collect_or_store, &b, &ef, &eo);
    /* The leader's first snapshot of each of those markets, or closed, or wait. */
    bool ready = true;
    if (b.ncut > 0) {
        kb_buf arr = KB_BUF_INIT;
        kb_buf_putc(&arr, '{');
        for (size_t i = 0; i < b.ncut; i++) {
            if (i > 0)
                kb_buf_putc(&arr, ',');
            kb_buf_putc(&arr, '"');
            for (const char *c = b.cut[i].ticker; *c; c++) {
                if (*c == '"' || *c == '\\')
                    kb_buf_putc(&arr, '\\');
                kb_buf_putc(&arr, *c);
            }
            kb_buf_putc(&arr, '"');
        }
        kb_buf_putc(&arr, '}');
        char sb[24];
        snprintf(sb, sizeof(sb), "%" PRId64, since);
        const char *cp[] = {kb_buf_cstr(&arr), sb};
        PGresult *cr;
        if (!kc_writer_exec(&leader_cutoffs, cp, &cr)) {
            ready = false;
            final = false; /* no answer: nothing is known */
        } else {
            for (int i = 0; i < PQntuples(cr); i++) {
                book_cutoff key = {PQgetvalue(cr, i, 0), 0};
                book_cutoff *c = bsearch(&key, b.cut, b.ncut, sizeof(*b.cut), cutoff_cmp);
                if (c == NULL)
                    continue;
                if (!PQgetisnull(cr, i, 1))
                    c->before_us = strtoll(PQgetvalue(cr, i, 1), NULL, 10);
                else if (strcmp(PQgetvalue(cr, i, 2), "t") != 0)
                    ready = false; /* open, and no snapshot of the leader's yet */
            }
        }
        kb_buf_release(&arr);
    }
    bool give_up = !ready && !final && now - first_try > 120000;
    if (!ready && !final && !give_up) {
        for (size_t i = 0; i < b.ncut; i++)
            free(b.cut[i].ticker);
        free(b.cut);
        return; /* again in a second */
    }
    if (give_up) {
        /* Without a known cutoff no book message after the takeover is stored. */
        for (size_t i = 0; i < b.ncut; i++)
            b.cut[i].before_us = 0;
    }
    kb_ingest ing;
    kb_ingest_init(&ing, &W.db);
    ing.in_tx = true;
    ing.kept = -1;
    b.ing = &ing;
    b.collect = false;
    char src[200];
    snprintf(src, sizeof(src), "%s/takeover/%" PRId64, K.instance, since);
    const char *tp[] = {src};
    bool ok = kb_db_command(&W.db, "BEGIN") == KB_OK &&
              (!final || kc_writer_exec(&takeover_gaps, tp, NULL)) &&
              each_leftover(f, o, last, since, collect_or_store, &b, &ef, &eo);
    if (ok && b.tk.len > 0) {
        kb_buf_putc(&b.tk, '}');
        kb_buf_putc(&b.ms, '}');
        char sb[24], lsrc[220];
        snprintf(sb, sizeof(sb), "%" PRId64, since);
        snprintf(lsrc, sizeof(lsrc), "%s/leftover", src);
        const char *lp[] = {kb_buf_cstr(&b.tk), kb_buf_cstr(&b.ms), sb, lsrc};
        ok = kc_writer_exec(&leftover_gaps, lp, NULL);
    }
    kb_buf_release(&b.tk);
    kb_buf_release(&b.ms);
    char fs[24], os[24];
    snprintf(fs, sizeof(fs), "%ld", ef);
    snprintf(os, sizeof(os), "%" PRId64, eo);
    const char *p[] = {K.instance, fs, os};
    ok = ok && kb_ingest_flush(&ing) && kc_writer_exec(&progress_set_stmt, p, NULL) &&
         kb_db_command(&W.db, "COMMIT") == KB_OK;
    if (!ok)
        (void)kb_db_command(&W.db, "ROLLBACK");
    kb_ingest_release(&ing);
    for (size_t i = 0; i < b.ncut; i++)
        free(b.cut[i].ticker);
    free(b.cut);
    done = ok;
    kb_log_info("standby: %s the spool this instance left unstored: %ld records, %ld left out "
                "(its events; book messages the leader has itself%s)",
                ok ? "stored" : "could not store", b.stored, b.skipped,
                give_up ? "; the leader had no snapshot of some markets after 120 s: all "
                          "their book messages after the takeover"
                        : "");
}

static void
standby(void)
{
    while (!atomic_load(&K.stop)) {
        kb_arena_reset(&W.arena);
        if (lock_now() == 1) {
            backlog(true); /* the old leader is gone: what it stored is all there is */
            return;
        }
        backlog(false);
        write_status("standby");
        for (int i = 0; i < 10 && !atomic_load(&K.stop); i++)
            usleep(100000);
    }
}

/* Leadership: a new epoch; false when the database refuses (try again). */
static bool
take_leadership(void)
{
    PGresult *r;
    const char *p[] = {K.instance};
    if (!kc_writer_exec(&take_lead, p, &r))
        return false;
    W.epoch = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    W.handover = !PQgetisnull(r, 0, 1) && strcmp(PQgetvalue(r, 0, 1), K.instance) != 0;
    kb_log_info("leader (epoch %" PRId64 "%s)", W.epoch,
                W.handover ? ", taking over from another instance" : "");
    return true;
}

/* After a lost session: the lock again, and nobody led in between. */
static bool
regain(void)
{
    int l = lock_now();
    if (l == 0) {
        kb_log_error("another collector took the leader lock while this one's database session "
                     "was gone; exiting to restart as a standby");
        _exit(75);
    }
    if (l < 0)
        return false;
    PGresult *r;
    if (!kc_writer_exec(&leader_epoch, NULL, &r) || PQntuples(r) != 1)
        return false;
    if (strtoll(PQgetvalue(r, 0, 0), NULL, 10) != W.epoch) {
        kb_log_error("another collector led while this one was cut off from Postgres; "
                     "exiting to restart as a standby");
        _exit(75);
    }
    kb_log_info("writer: database connection back, lock held again");
    kc_metric_set(KC_G_LEADER, 1);
    return true;
}

static void
beat(void)
{
    static int64_t last;
    int64_t now = kc_mono_ns() / 1000000;
    if (now - last < 1000)
        return;
    last = now;
    char e[24];
    snprintf(e, sizeof(e), "%" PRId64, W.epoch);
    const char *p[] = {e};
    PGresult *r;
    if (kc_writer_exec(&heartbeat, p, &r) && PQntuples(r) == 0) {
        kb_log_error("the leader row names another epoch: another collector leads; exiting");
        _exit(75);
    }
    write_status("leader");
}

static void
read_progress(long *f, int64_t *o)
{
    PGresult *r;
    const char *p[] = {K.instance};
    *f = 0;
    *o = 0;
    if (kc_writer_exec(&progress_get, p, &r) && PQntuples(r) == 1) {
        *f = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        *o = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    }
}

/* Resume where the progress says, if that spool file is still here; else at the new file. */
static void
start_position(long f, int64_t o)
{
    long pub_file;
    int64_t pub_off;
    kc_spool_published(&pub_file, &pub_off);
    W.file_no = pub_file;
    W.off = 0;
    if (f > 0) {
        char *path = kb_spool_find(K.cfg->collector_spool_dir, f);
        if (path != NULL) {
            W.file_no = f;
            W.off = o;
            kb_log_info("writer: resuming the spool at file %ld offset %" PRId64, f, o);
        } else {
            kb_log_warn("writer: spool file %ld (stored up to offset %" PRId64 ") is gone; "
                        "starting at file %ld",
                        f, o, pub_file);
        }
        free(path);
    }
    W.c_file_no = W.file_no;
    W.c_off = W.off;
}

/* Spool files already stored and older than KB_COLLECTOR_SPOOL_KEEP_H go. */
static void
retention(void)
{
    static int64_t last;
    int64_t now = kc_mono_ns() / 1000000;
    if (K.cfg->collector_spool_keep_h == 0 || now - last < 600000)
        return;
    last = now;
    DIR *d = opendir(K.cfg->collector_spool_dir);
    if (d == NULL)
        return;
    time_t cutoff = time(NULL) - (time_t)K.cfg->collector_spool_keep_h * 3600;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long n;
        if (sscanf(e->d_name, "kb-%8ld-", &n) != 1 || n >= W.c_file_no)
            continue;
        kb_buf path = KB_BUF_INIT;
        kb_buf_printf(&path, "%s/%s", K.cfg->collector_spool_dir, e->d_name);
        struct stat st;
        if (stat(path.buf, &st) == 0 && st.st_mtime < cutoff && unlink(path.buf) == 0)
            kb_log_info("spool file %s stored and older than %ld h: removed", e->d_name,
                        K.cfg->collector_spool_keep_h);
        kb_buf_release(&path);
    }
    closedir(d);
}

static void *
run(void *arg)
{
    (void)arg;
    W.started_s = kc_now_ns() / 1000000000;
    kb_db_init(&W.db, K.cfg->database_url, "kalshibook-collector", K.cfg->db_connect_timeout_s, 0);
    kb_arena_init(&W.arena, 0);
    standby();
    while (!atomic_load(&K.stop) && !take_leadership()) {
        usleep(200000);
        if (!kc_writer_same_session())
            standby();
    }
    if (atomic_load(&K.stop)) {
        set_role(-1);
        goto out;
    }
    /* File numbers never go back below what the progress names, even in a wiped dir. */
    long pf;
    int64_t po;
    read_progress(&pf, &po);
    atomic_store(&K.min_file_no, pf + 1);
    set_role(1);
    /* The reader opens its spool file once it is told to lead. */
    long f;
    int64_t o;
    do {
        usleep(10000);
        kc_spool_published(&f, &o);
    } while (f == 0 && !atomic_load(&K.stop));
    start_position(pf, po);
    kc_store_init();
    /* At a stop, once the reader has closed its links and the spool (their shutdown
     * gaps are its last records: a writer that stopped at the signal would leave them to
     * the next start), what the spool holds beyond the progress is stored while that
     * goes forward, for KB_COLLECTOR_COMMIT_MS x 50 at most; the next start reads the
     * rest. */
    int64_t stop_ms = 0;
    for (;;) {
        int64_t now = kc_mono_ns() / 1000000;
        if (atomic_load(&K.stop) && atomic_load(&K.reader_done)) {
            if (stop_ms == 0)
                stop_ms = now;
            if (!kc_writer_behind() || now - stop_ms > K.cfg->collector_commit_ms * 50)
                break;
        }
        kb_arena_reset(&W.arena);
        /* Without its session this instance does not know it still leads: say so. */
        if (!kc_writer_same_session())
            kc_metric_set(KC_G_LEADER, 0);
        if (!kc_writer_same_session() && !regain()) {
            if (stop_ms != 0)
                break; /* Postgres is gone at shutdown: the spool keeps the rest */
            usleep(200000);
            continue;
        }
        beat();
        long cf = W.c_file_no;
        int64_t co = W.c_off;
        kc_writer_batch();
        if (stop_ms != 0 && cf == W.c_file_no && co == W.c_off)
            break;
        retention();
    }
out:
    kc_store_release();
    kb_arena_release(&W.arena);
    kb_db_release(&W.db);
    return NULL;
}

int
kc_writer_start(void)
{
    if (pthread_create(&th, NULL, run, NULL) != 0)
        return -1;
    started = true;
    return 0;
}

bool
kc_writer_wait_leader(void)
{
    pthread_mutex_lock(&mu);
    while (role == 0 && !atomic_load(&K.stop)) {
        /* Timed: a signal sets K.stop without touching the condition. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    bool lead = role == 1;
    pthread_mutex_unlock(&mu);
    return lead;
}

void
kc_writer_stop(void)
{
    if (started)
        pthread_join(th, NULL);
    started = false;
}
