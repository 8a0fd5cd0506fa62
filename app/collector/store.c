/* store.c - what one spool record does in Postgres, inside the writer's transaction.
 *
 *   F (a WebSocket message) and R (a REST body): the lib ingest module, the code
 *     kbctl import runs, so a live message and a replayed spool line are stored alike.
 *   E events: "start" opens a restart (or handover) gap for every market being
 *     collected (collector_markets) and channel that has no gap open, from its last
 *     data; "gap_open" opens a gap per market of its channel from start_ms;
 *     "gap_close" (a snapshot arrived) ends the open gaps (both channels) of its
 *     markets and marks them collected; "unwatch"
 *     (closed, out of scope) marks them not collected any more.
 * Gap rows are keyed by the event's spool position, so a replay adds none twice.
 */
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kb_log.h"
#include "writer.h"
#include "kb_banned.h"

static const kb_stmt gap_open = {
    "kc_gap_open",
    "INSERT INTO gaps (market_ticker, channel, start_at, reason, detail, source)"
    " SELECT t, $6, 'epoch'::timestamptz + $2::bigint * interval '1 millisecond', $3, $4::jsonb,"
    "        $5"
    "   FROM unnest($1::text[]) AS t"
    " ON CONFLICT DO NOTHING",
    6, false};
static const kb_stmt gap_close = {
    "kc_gap_close",
    "UPDATE gaps SET end_at = 'epoch'::timestamptz + $2::bigint * interval '1 millisecond',"
    "       closed_at = now()"
    " WHERE market_ticker = ANY($1::text[]) AND end_at IS NULL"
    "   AND start_at <= 'epoch'::timestamptz + $2::bigint * interval '1 millisecond'",
    2, false};
/* Markets being collected: their book is unknown from their last stored data on. */
static const kb_stmt gap_restart = {
    "kc_gap_restart",
    "INSERT INTO gaps (market_ticker, channel, start_at, reason, source)"
    " SELECT c.ticker, ch, coalesce(greatest(s.first_data_at, s.last_data_at), c.updated_at),"
    "        $1, $2"
    "   FROM collector_markets c LEFT JOIN market_stats s ON s.ticker = c.ticker,"
    "        unnest(ARRAY['orderbook', 'trade']) AS ch"
    "  WHERE c.collecting"
    " ON CONFLICT DO NOTHING",
    2, false};
/* A snapshot arrived (collecting) or the market closed (not any more). */
static const kb_stmt watch = {
    "kc_watch",
    "INSERT INTO collector_markets (ticker, collecting)"
    " SELECT t, $2::boolean FROM unnest($1::text[]) AS t"
    " ON CONFLICT (ticker) DO UPDATE SET collecting = $2::boolean, updated_at = now()"
    "   WHERE collector_markets.collecting <> $2::boolean",
    2, false};
static const kb_stmt progress_set = {
    "kc_progress_set",
    "INSERT INTO collector_progress (instance, file_no, file_offset, updated_at)"
    " VALUES ($1, $2, $3, now())"
    " ON CONFLICT (instance) DO UPDATE SET file_no = $2, file_offset = $3, updated_at = now()",
    3, false};

void
kc_store_init(void)
{
}

void
kc_store_release(void)
{
}

bool
kc_store_begin(void)
{
    if (kb_db_command(&W.db, "BEGIN") != KB_OK)
        return false;
    /* A reconnect inside BEGIN left the lock behind on the old session. */
    if (!kc_writer_same_session()) {
        (void)kb_db_command(&W.db, "ROLLBACK");
        return false;
    }
    return true;
}

/* {"a","b"} with each element quoted for a Postgres array literal. */
static char *
text_array(const cJSON *arr)
{
    kb_buf b = KB_BUF_INIT;
    kb_buf_putc(&b, '{');
    const cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it))
            continue;
        kb_buf_puts(&b, n++ ? ",\"" : "\"");
        for (const char *c = it->valuestring; *c; c++) {
            if (*c == '"' || *c == '\\')
                kb_buf_putc(&b, '\\');
            kb_buf_putc(&b, *c);
        }
        kb_buf_putc(&b, '"');
    }
    kb_buf_putc(&b, '}');
    return kb_buf_detach(&b, NULL);
}

static bool
event(const kb_spool_rec *r, long file_no, int64_t off)
{
    cJSON *j = cJSON_ParseWithLength(r->data, r->len);
    const cJSON *kb = cJSON_GetObjectItemCaseSensitive(j, "kb");
    bool ok = true;
    char source[192], num[24];
    snprintf(source, sizeof(source), "%s/%ld/%" PRId64, K.instance, file_no, off);
    const char *what = cJSON_IsString(kb) ? kb->valuestring : "";
    if (strcmp(what, "start") == 0) {
        const char *p[] = {W.handover ? "handover" : "restart", source};
        ok = kc_writer_exec(&gap_restart, p, NULL);
    } else if (strcmp(what, "gap_open") == 0 || strcmp(what, "gap_close") == 0) {
        bool open = what[4] == 'o';
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, open ? "start_ms" : "end_ms");
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(j, "reason");
        int64_t t = cJSON_IsNumber(ms) && ms->valuedouble > 0 ? (int64_t)ms->valuedouble
                                                              : r->wall_ns / 1000000;
        snprintf(num, sizeof(num), "%" PRId64, t);
        char *arr = text_array(cJSON_GetObjectItemCaseSensitive(j, "markets"));
        if (open) {
            /* The detail: what the collector knew (epoch, sid, seq), without the markets. */
            const cJSON *chj = cJSON_GetObjectItemCaseSensitive(j, "channel");
            const char *ch = cJSON_IsString(chj) && strcmp(chj->valuestring, "trade") == 0
                                 ? "trade"
                                 : "orderbook";
            cJSON_DeleteItemFromObjectCaseSensitive(j, "markets");
            cJSON_DeleteItemFromObjectCaseSensitive(j, "kb");
            cJSON_DeleteItemFromObjectCaseSensitive(j, "start_ms");
            cJSON_DeleteItemFromObjectCaseSensitive(j, "channel");
            char *detail = cJSON_PrintUnformatted(j);
            const char *p[] = {arr, num, cJSON_IsString(reason) ? reason->valuestring : "error",
                               detail, source, ch};
            ok = kc_writer_exec(&gap_open, p, NULL);
            free(detail);
        } else {
            const char *p[] = {arr, num}, *w[] = {arr, "true"};
            ok = kc_writer_exec(&gap_close, p, NULL) && kc_writer_exec(&watch, w, NULL);
        }
        free(arr);
    } else if (strcmp(what, "unwatch") == 0) {
        char *arr = text_array(cJSON_GetObjectItemCaseSensitive(j, "markets"));
        const char *w[] = {arr, "false"};
        ok = kc_writer_exec(&watch, w, NULL);
        free(arr);
    }
    cJSON_Delete(j);
    return ok;
}

bool
kc_store_record(const kb_spool_rec *r, long file_no, int64_t off)
{
    kb_arena_reset(&W.arena);
    if (r->kind == 'E')
        return event(r, file_no, off);
    return true;
}

bool
kc_store_commit(long file_no, int64_t off)
{
    char f[24], o[24];
    snprintf(f, sizeof(f), "%ld", file_no);
    snprintf(o, sizeof(o), "%" PRId64, off);
    const char *p[] = {K.instance, f, o};
    return kc_writer_exec(&progress_set, p, NULL) && kb_db_command(&W.db, "COMMIT") == KB_OK;
}

void
kc_store_abort(void)
{
    (void)kb_db_command(&W.db, "ROLLBACK");
}
