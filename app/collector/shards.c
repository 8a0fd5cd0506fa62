/* shards.c - the markets this collector wants, their shards (one orderbook_delta and
 * one trade subscription each, KB_COLLECTOR_MARKETS_PER_SUB markets) and the commands
 * that keep Kalshi's subscriptions equal to them.
 *
 * A shard lives on one connection (KB_COLLECTOR_SUBS_PER_CONN shards each). Markets
 * join a shard with room and leave it when they close; the shard's subscriptions
 * follow with update_subscription (add_markets / delete_markets, by sid). A shard that
 * lost data is resubscribed whole: unsubscribe by sids, then subscribe trade and
 * orderbook_delta again (in that order, so trades flow before the snapshot that ends
 * the gap). Kalshi handles one connection's commands in order, so nothing of the old
 * sids arrives after the new snapshots.
 */
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "collector.h"
#include "kb_log.h"
#include "kb_banned.h"

static uint32_t
hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int32_t
kc_market_find(const char *t, size_t len)
{
    if (K.mindex_cap == 0)
        return -1;
    for (uint32_t i = hash(t, len) & (K.mindex_cap - 1);; i = (i + 1) & (K.mindex_cap - 1)) {
        int32_t v = K.mindex[i];
        if (v == 0)
            return -1;
        const char *mt = K.m[v - 1].ticker;
        if (strncmp(mt, t, len) == 0 && mt[len] == '\0')
            return v - 1;
    }
}

static void
index_put(int32_t idx)
{
    const char *t = K.m[idx].ticker;
    uint32_t i = hash(t, strlen(t)) & (K.mindex_cap - 1);
    while (K.mindex[i] != 0)
        i = (i + 1) & (K.mindex_cap - 1);
    K.mindex[i] = idx + 1;
}

static int32_t
market_add(const char *t, size_t len)
{
    if ((uint32_t)(K.nm + 1) * 2 > K.mindex_cap) {
        uint32_t cap = K.mindex_cap ? K.mindex_cap * 2 : 1024;
        free(K.mindex);
        K.mindex = calloc(cap, sizeof(*K.mindex));
        if (K.mindex == NULL)
            abort();
        K.mindex_cap = cap;
        for (int32_t i = 0; i < K.nm; i++)
            index_put(i);
    }
    if (K.nm == K.capm) {
        K.capm = K.capm ? K.capm * 2 : 1024;
        K.m = realloc(K.m, sizeof(*K.m) * (size_t)K.capm);
        if (K.m == NULL)
            abort();
    }
    kc_market *m = &K.m[K.nm];
    memset(m, 0, sizeof(*m));
    m->ticker = strndup(t, len);
    if (m->ticker == NULL)
        abort();
    m->shard = -1;
    m->first = true;
    index_put(K.nm);
    return K.nm++;
}

bool
kc_market_in_scope(const char *t, size_t len)
{
    const char *list = K.cfg->collector_series;
    if (list == NULL)
        return true;
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t sl = comma ? (size_t)(comma - p) : strlen(p);
        if (sl > 0 && len > sl && memcmp(t, p, sl) == 0 && t[sl] == '-')
            return true;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return false;
}

static void
push_i32(int32_t **a, int *n, int *cap, int32_t v)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *a = realloc(*a, sizeof(**a) * (size_t)*cap);
        if (*a == NULL)
            abort();
    }
    (*a)[(*n)++] = v;
}

void
kc_shard_queue(int shard, int ch, bool add, int32_t mi)
{
    kc_shard *s = &K.sh[shard];
    if (add)
        push_i32(&s->add[ch], &s->nadd[ch], &s->capadd[ch], mi);
    else
        push_i32(&s->del[ch], &s->ndel[ch], &s->capdel[ch], mi);
}

static bool
remove_i32(int32_t *a, int *n, int32_t v)
{
    for (int i = 0; i < *n; i++) {
        if (a[i] == v) {
            a[i] = a[--*n];
            return true;
        }
    }
    return false;
}

/* A gap event for markets (ticker list) into the spool; channel NULL: both. */
static void
gap_event(const char *type, const char *channel, const char *reason, int64_t ts_ms, int64_t epoch,
          int64_t sid, const char *detail, const int32_t *m, int n)
{
    if (n == 0)
        return;
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b, "{\"kb\":\"%s\",\"%s\":%" PRId64, type,
                  strcmp(type, "gap_open") == 0 ? "start_ms" : "end_ms", ts_ms);
    if (channel != NULL)
        kb_buf_printf(&b, ",\"channel\":\"%s\"", channel);
    if (reason != NULL)
        kb_buf_printf(&b, ",\"reason\":\"%s\"", reason);
    if (epoch > 0)
        kb_buf_printf(&b, ",\"epoch\":%" PRId64 ",\"sid\":%" PRId64, epoch, sid);
    if (detail != NULL) {
        kb_buf_puts(&b, ",\"detail\":");
        kb_buf_json_str(&b, detail, strlen(detail));
    }
    kb_buf_puts(&b, ",\"markets\":");
    kc_shard_tickers_json(NULL, m, n, &b);
    kb_buf_putc(&b, '}');
    kc_spool_event(&b);
    kb_buf_release(&b);
}

void
kc_shard_tickers_json(const kc_shard *s, const int32_t *m, int n, kb_buf *b)
{
    if (s != NULL) {
        m = s->m;
        n = s->n;
    }
    kb_buf_putc(b, '[');
    for (int i = 0; i < n; i++) {
        if (i)
            kb_buf_putc(b, ',');
        const char *t = K.m[m[i]].ticker;
        kb_buf_json_str(b, t, strlen(t));
    }
    kb_buf_putc(b, ']');
}

int32_t
kc_market_want(const char *t, size_t len, bool want)
{
    int32_t i = kc_market_find(t, len);
    if (i < 0) {
        if (!want || !kc_market_in_scope(t, len))
            return -1;
        i = market_add(t, len);
    }
    kc_market *m = &K.m[i];
    if (want == m->wanted)
        return i;
    m->wanted = want;
    if (want)
        K.unassigned = true;
    K.tick_now = true; /* subscriptions follow at once */
    if (!want && m->shard >= 0) {
        kc_shard *s = &K.sh[m->shard];
        remove_i32(s->m, &s->n, i);
        for (int ch = 0; ch < 2; ch++) {
            /* Not added yet: nothing to delete. */
            if (!remove_i32(s->add[ch], &s->nadd[ch], i) &&
                (ch == KC_CH_OB ? s->ob.state : s->tr.state) != KC_SUB_NONE)
                kc_shard_queue(m->shard, ch, false, i);
        }
        m->shard = -1;
        m->live = false;
    }
    if (!want && m->gap) {
        /* Closed with a gap open: nothing follows the close, so the gap ends here. */
        m->gap = false;
        gap_event("gap_close", NULL, NULL, kc_now_ns() / 1000000, 0, 0, NULL, &i, 1);
    }
    if (!want) {
        gap_event("unwatch", NULL, NULL, kc_now_ns() / 1000000, 0, 0, NULL, &i, 1);
        m->first = true;
    }
    return i;
}

static int
shard_for_new_market(void)
{
    long per_sub = K.cfg->collector_markets_per_sub;
    for (int s = K.nsh - 1; s >= 0 && s >= K.nsh - 2; s--) {
        if (K.sh[s].n < per_sub)
            return s;
    }
    for (int s = 0; s < K.nsh; s++) {
        if (K.sh[s].n < per_sub)
            return s;
    }
    /* A new shard on the first connection with room. */
    int conn = -1;
    for (int c = 0; c < K.nconns && conn < 0; c++) {
        if (K.conns[c].nshards < K.cfg->collector_subs_per_conn)
            conn = c;
    }
    if (conn < 0)
        return -1;
    if (K.nsh == K.capsh) {
        K.capsh = K.capsh ? K.capsh * 2 : 16;
        K.sh = realloc(K.sh, sizeof(*K.sh) * (size_t)K.capsh);
        if (K.sh == NULL)
            abort();
    }
    kc_shard *s = &K.sh[K.nsh];
    memset(s, 0, sizeof(*s));
    s->conn = conn;
    K.conns[conn].nshards++;
    return K.nsh++;
}

static void
assign_markets(void)
{
    static bool warned;
    if (!K.unassigned)
        return;
    K.unassigned = false;
    for (int32_t i = 0; i < K.nm; i++) {
        kc_market *m = &K.m[i];
        if (!m->wanted || m->shard >= 0)
            continue;
        int s = shard_for_new_market();
        if (s < 0) {
            if (!warned)
                kb_log_error("no room for market '%s': every connection has its shards "
                             "(raise KB_COLLECTOR_MAX_CONNS, _SUBS_PER_CONN or _MARKETS_PER_SUB)",
                             m->ticker);
            warned = true;
            K.unassigned = true; /* again once a connection has room */
            return;
        }
        kc_shard *sh = &K.sh[s];
        m->shard = s;
        push_i32(&sh->m, &sh->n, &sh->cap, i);
        if (!sh->resync) {
            if (sh->tr.state != KC_SUB_NONE)
                kc_shard_queue(s, KC_CH_TRADE, true, i);
            if (sh->ob.state != KC_SUB_NONE)
                kc_shard_queue(s, KC_CH_OB, true, i);
        }
    }
}

/* {"id":N,"cmd":"subscribe","params":{"channels":[CH],"market_tickers":[...]}} */
static void
subscribe(kc_conn *c, int shard, int ch)
{
    kc_shard *s = &K.sh[shard];
    int64_t id = kc_cmd_new(c, KC_CMD_SUB, ch, shard, NULL, 0);
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b,
                  "{\"id\":%" PRId64 ",\"cmd\":\"subscribe\",\"params\":{\"channels\":[\"%s\"],"
                  "\"market_tickers\":",
                  id, ch == KC_CH_OB ? "orderbook_delta" : "trade");
    kc_shard_tickers_json(s, NULL, 0, &b);
    /* NO prices stay on the NO leg, as stored (KALSHI.md: set it, do not trust the default). */
    if (ch == KC_CH_OB)
        kb_buf_puts(&b, ",\"use_yes_price\":false");
    kb_buf_puts(&b, "}}");
    kc_ws_send(c, kb_buf_detach(&b, NULL));
    (ch == KC_CH_OB ? &s->ob : &s->tr)->state = KC_SUB_PENDING;
}

static void
update(kc_conn *c, int shard, int ch, bool add, const int32_t *m, int n)
{
    kc_shard *s = &K.sh[shard];
    kc_sub *sub = ch == KC_CH_OB ? &s->ob : &s->tr;
    int64_t id = kc_cmd_new(c, add ? KC_CMD_ADD : KC_CMD_DEL, ch, shard, m, n);
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b,
                  "{\"id\":%" PRId64
                  ",\"cmd\":\"update_subscription\",\"params\":{\"sids\":[%" PRId64
                  "],\"market_tickers\":",
                  id, sub->sid);
    kc_shard_tickers_json(NULL, m, n, &b);
    kb_buf_printf(&b, ",\"action\":\"%s\"}}", add ? "add_markets" : "delete_markets");
    kc_ws_send(c, kb_buf_detach(&b, NULL));
}

static void
retire(kc_conn *c, kc_sub *sub)
{
    if (sub->sid > 0 && sub->sid < c->nsid)
        c->sidmap[sub->sid] = -1;
}

/* Unsubscribe the shard's live sids (by sids, the only way Kalshi takes it). */
static void
unsubscribe(kc_conn *c, kc_shard *s, int shard)
{
    int64_t sids[2];
    int n = 0;
    if (s->tr.state == KC_SUB_LIVE)
        sids[n++] = s->tr.sid;
    if (s->ob.state == KC_SUB_LIVE)
        sids[n++] = s->ob.sid;
    retire(c, &s->tr);
    retire(c, &s->ob);
    s->tr.state = s->ob.state = KC_SUB_NONE;
    if (n == 0)
        return;
    int64_t id = kc_cmd_new(c, KC_CMD_UNSUB, KC_CH_OB, shard, NULL, 0);
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b, "{\"id\":%" PRId64 ",\"cmd\":\"unsubscribe\",\"params\":{\"sids\":[%" PRId64,
                  id, sids[0]);
    if (n == 2)
        kb_buf_printf(&b, ",%" PRId64, sids[1]);
    kb_buf_puts(&b, "]}}");
    kc_ws_send(c, kb_buf_detach(&b, NULL));
}

static void open_gaps(int shard, int loss, const char *reason, const char *detail);

static void
sync_shard(int i, int64_t now_us)
{
    kc_shard *s = &K.sh[i];
    kc_conn *c = &K.conns[s->conn];
    if (c->state != KC_UP || now_us < s->retry_us)
        return;
    bool pending = s->ob.state == KC_SUB_PENDING || s->tr.state == KC_SUB_PENDING;
    if (s->resync || (s->ob.state == KC_SUB_NONE && !pending && s->n > 0)) {
        if (pending)
            return; /* the answers to the old subscribe come first */
        /* A resync asked while the shard waited for the snapshots of a subscription (a
         * loss found on an older sid, an error 25 naming a retired one) found no live
         * market and opened no gap; the snapshots that came since made markets live and
         * closed their gaps. From the unsubscribe to the new snapshot their books are not
         * followed, and if the link dies first nothing else opens a gap for them (they
         * are no longer live): it opens here, before the unsubscribe. */
        open_gaps(i, -1, s->why != NULL ? s->why : "error", "resubscribed");
        unsubscribe(c, s, i);
        s->resync = false;
        s->nadd[0] = s->nadd[1] = s->ndel[0] = s->ndel[1] = 0;
        s->ob.dups = s->tr.dups = 0;
        if (s->n > 0) {
            subscribe(c, i, KC_CH_TRADE);
            subscribe(c, i, KC_CH_OB);
        }
        return;
    }
    if (s->ob.state != KC_SUB_LIVE || s->tr.state != KC_SUB_LIVE)
        return;
    if (s->n == 0) {
        unsubscribe(c, s, i);
        s->nadd[0] = s->nadd[1] = s->ndel[0] = s->ndel[1] = 0;
        return;
    }
    /* Trades first, as in subscribe: the snapshot then finds trades already flowing. */
    for (int k = 0; k < 2; k++) {
        int ch = k == 0 ? KC_CH_TRADE : KC_CH_OB;
        if (s->nadd[ch] > 0)
            update(c, i, ch, true, s->add[ch], s->nadd[ch]);
        if (s->ndel[ch] > 0)
            update(c, i, ch, false, s->del[ch], s->ndel[ch]);
        s->nadd[ch] = s->ndel[ch] = 0;
    }
}

void
kc_shards_sync(void)
{
    int64_t now = kc_mono_ns() / 1000;
    assign_markets();
    for (int i = 0; i < K.nsh; i++)
        sync_shard(i, now);
    /* The lifecycle channel rides on the first connection that is up. */
    if (K.lc_conn < 0) {
        for (int c = 0; c < K.nconns && K.lc_conn < 0; c++) {
            kc_conn *k = &K.conns[c];
            if (k->state != KC_UP)
                continue;
            int64_t id = kc_cmd_new(k, KC_CMD_SUB, KC_CH_LIFECYCLE, -1, NULL, 0);
            kb_buf b = KB_BUF_INIT;
            kb_buf_printf(&b,
                          "{\"id\":%" PRId64 ",\"cmd\":\"subscribe\",\"params\":{\"channels\":"
                          "[\"market_lifecycle_v2\"]}}",
                          id);
            kc_ws_send(k, kb_buf_detach(&b, NULL));
            k->lc.state = KC_SUB_PENDING;
            K.lc_conn = c;
        }
    }
    /* The market gauges: a pass over every market, ten times a second at most. */
    static int64_t gauged;
    if (now - gauged < 100000)
        return;
    gauged = now;
    int wanted = 0, gap = 0, live = 0;
    for (int32_t i = 0; i < K.nm; i++) {
        wanted += K.m[i].wanted;
        gap += K.m[i].wanted && K.m[i].gap;
        live += K.m[i].wanted && K.m[i].live;
    }
    kc_metric_set(KC_G_MARKETS_WANTED, wanted);
    kc_metric_set(KC_G_MARKETS_GAP, gap);
    kc_metric_set(KC_G_MARKETS_LIVE, live);
}

int
kc_shards_live_markets(void)
{
    int n = 0;
    for (int32_t i = 0; i < K.nm; i++)
        n += K.m[i].wanted && K.m[i].live;
    return n;
}

static enum kc_counter
gap_counter(const char *reason)
{
    if (strcmp(reason, "seq_jump") == 0)
        return KC_M_GAP_SEQ_JUMP;
    if (strcmp(reason, "seq_duplicate") == 0)
        return KC_M_GAP_SEQ_DUP;
    if (strcmp(reason, "overflow") == 0)
        return KC_M_GAP_OVERFLOW;
    if (strcmp(reason, "heartbeat") == 0)
        return KC_M_GAP_HEARTBEAT;
    if (strcmp(reason, "disconnect") == 0)
        return KC_M_GAP_DISCONNECT;
    return KC_M_GAP_ERROR;
}

/*
 * Where a channel's gap starts: at the last message in order on its own sid. Messages
 * are sent in exchange-time order, so a lost one is no older than that; and nothing
 * newer is safe, even on a link that merely died: a message the server dropped on
 * that sid since (a seq jump not seen yet, for want of a next message) is lost too.
 */
static int64_t
gap_start(const kc_shard *s, int ch)
{
    int64_t own = ch == KC_CH_OB ? s->ob.last_ts : s->tr.last_ts;
    int64_t mx = s->ob.last_ts > s->tr.last_ts ? s->ob.last_ts : s->tr.last_ts;
    int64_t t = own > 0 ? own : mx;
    return t > 0 ? t : kc_now_ns() / 1000000;
}

/* Open a gap for every market of the shard with a trusted book (live, no gap open): it
 * loses its book and trades from the gap's start. Every market of the shard is then no
 * longer live: only a snapshot on a new subscription makes it live again. */
static void
open_gaps(int shard, int loss, const char *reason, const char *detail)
{
    kc_shard *s = &K.sh[shard];
    int32_t *g = NULL;
    int ng = 0, capg = 0;
    for (int k = 0; k < s->n; k++) {
        kc_market *m = &K.m[s->m[k]];
        if (m->live && !m->gap) {
            m->gap = true;
            push_i32(&g, &ng, &capg, s->m[k]);
        }
        m->live = false;
    }
    kc_conn *c = &K.conns[s->conn];
    int64_t sid = loss == KC_CH_TRADE ? s->tr.sid : s->ob.sid;
    gap_event("gap_open", "orderbook", reason, gap_start(s, KC_CH_OB), c->epoch, sid, detail, g,
              ng);
    gap_event("gap_open", "trade", reason, gap_start(s, KC_CH_TRADE), c->epoch, sid, detail, g, ng);
    if (ng > 0) {
        kc_metric_add(gap_counter(reason), (uint64_t)ng);
        kb_log_warn("gap '%s' opened for the %d markets of shard %d (connection %d, epoch %" PRId64
                    ", sid %" PRId64 ")%s%s",
                    reason, ng, shard, s->conn, c->epoch, sid, detail ? ": " : "",
                    detail ? detail : "");
    }
    free(g);
}

void
kc_shard_resync(int shard, int loss, const char *reason, const char *detail)
{
    kc_shard *s = &K.sh[shard];
    /* Even when a resync is pending already: a snapshot on the old subscription may have
     * made some of its markets live again meanwhile, and they lose data now too. */
    s->resync = true;
    s->why = reason;
    K.tick_now = true;
    open_gaps(shard, loss, reason, detail);
}

void
kc_conn_lost(kc_conn *c, const char *reason)
{
    for (int i = 0; i < K.nsh; i++) {
        kc_shard *s = &K.sh[i];
        if (s->conn != c->idx)
            continue;
        kc_shard_resync(i, -1, reason, NULL);
        s->ob.state = s->tr.state = KC_SUB_NONE;
        s->ob.sid = s->tr.sid = 0;
        s->retries = 0;
        s->retry_us = 0;
    }
    if (K.lc_conn == c->idx) {
        /* Lifecycle messages may have been missed: ask REST what is open now. */
        K.lc_conn = -1;
        K.reconcile_now = true;
    }
    c->lc.state = KC_SUB_NONE;
}

void
kc_shards_release(void)
{
    for (int32_t i = 0; i < K.nm; i++)
        free(K.m[i].ticker);
    free(K.m);
    free(K.mindex);
    for (int i = 0; i < K.nsh; i++) {
        kc_shard *s = &K.sh[i];
        free(s->m);
        for (int ch = 0; ch < 2; ch++) {
            free(s->add[ch]);
            free(s->del[ch]);
        }
    }
    free(K.sh);
    K.m = NULL;
    K.mindex = NULL;
    K.sh = NULL;
    K.nm = K.capm = 0;
    K.mindex_cap = 0;
    K.nsh = K.capsh = 0;
}
