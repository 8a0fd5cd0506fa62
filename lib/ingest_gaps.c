/* ingest_gaps.c - kalshibook-collector's events (spool E records) -> gaps and
 * collector_markets (0018_collector.sql).
 *
 *   {"kb":"start", ...}            a collector starts: a gap (im->start_reason: restart or
 *                                  handover) for every market it was collecting, both
 *                                  channels, from the market's last stored data (or when
 *                                  collecting started), unless one is open already;
 *   {"kb":"gap_open", "channel", "start_ms", "reason", "markets", ...}
 *                                  messages lost: a gap per market, the rest of the event
 *                                  (epoch, sid, what the collector saw) as its detail;
 *   {"kb":"gap_close", "end_ms", "markets"}
 *                                  a snapshot arrived (or the market closed): open gaps of
 *                                  both channels that started by then end there; the
 *                                  markets are being collected;
 *   {"kb":"unwatch", "markets"}    closed or out of scope: not collected any more.
 * Other events (conn_up, conn_down) are the spool's record only. Gap rows are keyed by
 * the event's spool position (source), so a replay adds none twice; a late close never
 * ends a gap that started after it.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kb_ingest.h"
#include "kb_banned.h"

static const kb_stmt gap_open = {
    "ing_gap_open",
    "INSERT INTO gaps (market_ticker, channel, start_at, reason, detail, source)"
    " SELECT t, $6, 'epoch'::timestamptz + $2::bigint * interval '1 millisecond', $3, $4::jsonb,"
    "        $5"
    "   FROM unnest($1::text[]) AS t"
    " ON CONFLICT DO NOTHING",
    6, false};
static const kb_stmt gap_close = {
    "ing_gap_close",
    "UPDATE gaps SET end_at = 'epoch'::timestamptz + $2::bigint * interval '1 millisecond',"
    "       closed_at = now()"
    " WHERE market_ticker = ANY($1::text[]) AND end_at IS NULL"
    "   AND start_at <= 'epoch'::timestamptz + $2::bigint * interval '1 millisecond'",
    2, false};
static const kb_stmt gap_restart = {
    "ing_gap_restart",
    "INSERT INTO gaps (market_ticker, channel, start_at, reason, source)"
    " SELECT c.ticker, ch, coalesce(greatest(s.first_data_at, s.last_data_at), c.updated_at),"
    "        $1, $2"
    "   FROM collector_markets c LEFT JOIN market_stats s ON s.ticker = c.ticker,"
    "        unnest(ARRAY['orderbook', 'trade']) AS ch"
    "  WHERE c.collecting"
    " ON CONFLICT DO NOTHING",
    2, false};
static const kb_stmt watch = {
    "ing_watch",
    "INSERT INTO collector_markets (ticker, collecting)"
    " SELECT t, $2::boolean FROM unnest($1::text[]) AS t"
    " ON CONFLICT (ticker) DO UPDATE SET collecting = $2::boolean, updated_at = now()"
    "   WHERE collector_markets.collecting <> $2::boolean",
    2, false};

/* The markets of an event as a Postgres text[] literal (arena-owned). */
static const char *
markets(kb_ingest *im, const cJSON *j)
{
    kb_buf b = KB_BUF_INIT;
    const cJSON *it;
    cJSON_ArrayForEach(it, kb__ingest_get(j, "markets")) {
        if (cJSON_IsString(it))
            kb__ingest_arr_str(&b, it->valuestring, strlen(it->valuestring));
    }
    const char *s = kb_arena_strdup(&im->arena, kb__ingest_arr_end(&b));
    kb_buf_release(&b);
    return s;
}

static bool
exec(kb_ingest *im, const kb_stmt *st, const char *const *p, const char **reason)
{
    if (kb_db_exec(im->db, &im->arena, st, p, NULL) != KB_OK) {
        *reason = kb_arena_printf(&im->arena, "database refused the event (SQLSTATE %s)",
                                  im->db->sqlstate);
        return false;
    }
    return true;
}

bool
kb__ingest_event(kb_ingest *im, const char *json, size_t len, int64_t wall_us, const char *source,
                 const char **reason)
{
    cJSON *j = kb__ingest_parse_whole(json, len);
    const char *what = kb__ingest_str(j, "kb");
    bool ok = true;
    char num[24];
    if (what == NULL) {
        *reason = "a collector event without \"kb\"";
        ok = false;
    } else if (strcmp(what, "start") == 0) {
        const char *p[] = {im->start_reason, source};
        ok = exec(im, &gap_restart, p, reason);
    } else if (strcmp(what, "gap_open") == 0 || strcmp(what, "gap_close") == 0) {
        bool open = what[4] == 'o';
        int64_t ms;
        if (!kb__ingest_int_val(kb__ingest_get(j, open ? "start_ms" : "end_ms"), &ms) || ms <= 0)
            ms = wall_us / 1000;
        snprintf(num, sizeof(num), "%" PRId64, ms);
        const char *arr = markets(im, j);
        if (open) {
            const char *ch = kb__ingest_str(j, "channel");
            const char *why = kb__ingest_str(j, "reason");
            why = kb_arena_strdup(&im->arena, why != NULL ? why : "error");
            ch = ch != NULL && strcmp(ch, "trade") == 0 ? "trade" : "orderbook";
            /* The detail: what the collector knew (epoch, sid, seq), not the markets. */
            cJSON_DeleteItemFromObjectCaseSensitive(j, "markets");
            cJSON_DeleteItemFromObjectCaseSensitive(j, "kb");
            cJSON_DeleteItemFromObjectCaseSensitive(j, "start_ms");
            cJSON_DeleteItemFromObjectCaseSensitive(j, "channel");
            cJSON_DeleteItemFromObjectCaseSensitive(j, "reason");
            char *detail = cJSON_PrintUnformatted(j);
            const char *p[] = {arr, num, why, detail, source, ch};
            ok = exec(im, &gap_open, p, reason);
            free(detail);
        } else {
            const char *p[] = {arr, num}, *w[] = {arr, "true"};
            ok = exec(im, &gap_close, p, reason) && exec(im, &watch, w, reason);
        }
    } else if (strcmp(what, "unwatch") == 0) {
        const char *w[] = {markets(im, j), "false"};
        ok = exec(im, &watch, w, reason);
    }
    if (ok)
        im->events++;
    cJSON_Delete(j);
    return ok;
}
