/* test_collector_feed.c - the collector reader's gap bookkeeping (app/collector/feed.c
 * and shards.c) driven frame by frame, without a network: the WebSocket side (ws.c),
 * the spool (rspool.c) and the metrics are stubs here that record what was sent and
 * which gap events were spooled.
 *
 * The invariant checked: a market whose book the collector does not follow (no
 * snapshot on its current subscription) always has a gap open, so a lost link never
 * leaves data outside a gap.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "check_main.h"
#include "collector.h"
#include "kb_banned.h"

kc_state K;
static kb_config cfg;
static kc_conn conn;

/* ---- stubs of ws.c, rspool.c, rest.c, metrics.c, main.c ---- */

#define MAX_SENT 64
static char *sent[MAX_SENT];
static int nsent;

void
kc_ws_send(kc_conn *c, char *text)
{
    (void)c;
    ck_assert_int_lt(nsent, MAX_SENT);
    sent[nsent++] = text;
}

void
kc_ws_kill(kc_conn *c, const char *reason)
{
    ck_abort_msg("connection %d killed (%s)", c->idx, reason);
}

int64_t
kc_cmd_new(kc_conn *c, int kind, int ch, int shard, const int32_t *m, int n)
{
    if (c->ncmds == c->capcmds) {
        c->capcmds = c->capcmds ? c->capcmds * 2 : 16;
        c->cmds = realloc(c->cmds, sizeof(*c->cmds) * (size_t)c->capcmds);
        ck_assert_ptr_nonnull(c->cmds);
    }
    kc_cmd *k = &c->cmds[c->ncmds++];
    memset(k, 0, sizeof(*k));
    k->id = ++K.next_cmd_id;
    k->kind = kind;
    k->ch = ch;
    k->shard = shard;
    if (n > 0) {
        k->m = malloc(sizeof(*m) * (size_t)n);
        ck_assert_ptr_nonnull(k->m);
        memcpy(k->m, m, sizeof(*m) * (size_t)n);
        k->n = n;
    }
    return k->id;
}

void kc_ws_map_sid(kc_conn *c, int64_t sid, int32_t v);

void
kc_ws_map_sid(kc_conn *c, int64_t sid, int32_t v)
{
    if (sid >= c->nsid) {
        int64_t n = sid * 2 + 16;
        c->sidmap = realloc(c->sidmap, sizeof(*c->sidmap) * (size_t)n);
        ck_assert_ptr_nonnull(c->sidmap);
        for (int64_t i = c->nsid; i < n; i++)
            c->sidmap[i] = -1;
        c->nsid = n;
    }
    c->sidmap[sid] = v;
}

/* Gap state per market as the spooled events tell it (what ingest will store). */
#define NM 8
static const char *tickers[NM] = {"KXT-26DEC01-T0", "KXT-26DEC01-T1", "KXT-26DEC01-T2",
                                  "KXT-26DEC01-T3", "KXT-26DEC01-T4", "KXT-26DEC01-T5",
                                  "KXT-26DEC01-T6", "KXT-26DEC01-T7"};
static int open_ob[NM];   /* orderbook gaps open (events) */
static int opened_ob[NM]; /* orderbook gap_open events so far */

static int
ticker_index(const char *t)
{
    for (int i = 0; i < NM; i++)
        if (strcmp(tickers[i], t) == 0)
            return i;
    ck_abort_msg("unknown ticker %s", t);
    return -1;
}

void
kc_spool_event(const kb_buf *json)
{
    cJSON *j = cJSON_ParseWithLength(json->buf, json->len);
    ck_assert_ptr_nonnull(j);
    const char *kb = cJSON_GetObjectItemCaseSensitive(j, "kb")->valuestring;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "channel");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "markets");
    const cJSON *t;
    cJSON_ArrayForEach(t, ms) {
        int i = ticker_index(t->valuestring);
        if (strcmp(kb, "gap_open") == 0 && strcmp(ch->valuestring, "orderbook") == 0) {
            open_ob[i] = 1; /* ingest: one open gap per market and channel */
            opened_ob[i]++;
        } else if (strcmp(kb, "gap_close") == 0) {
            open_ob[i] = 0;
        }
    }
    cJSON_Delete(j);
}

void
kc_rest_check(const char *ticker)
{
    (void)ticker;
}

void
kc_metric_add(enum kc_counter c, uint64_t n)
{
    (void)c;
    (void)n;
}

void
kc_metric_set(enum kc_gauge g, int64_t v)
{
    (void)g;
    (void)v;
}

void
kc_metric_age(int64_t age_ms)
{
    (void)age_ms;
}

int64_t
kc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
kc_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
kc_jitter_ms(int64_t d)
{
    return d;
}

/* ---- the driver ---- */

static void
setup(void)
{
    memset(&K, 0, sizeof(K));
    memset(&cfg, 0, sizeof(cfg));
    memset(&conn, 0, sizeof(conn));
    memset(open_ob, 0, sizeof(open_ob));
    memset(opened_ob, 0, sizeof(opened_ob));
    cfg.collector_markets_per_sub = NM;
    cfg.collector_subs_per_conn = 4;
    cfg.collector_max_conns = 1;
    cfg.collector_backoff_min_ms = 100;
    K.cfg = &cfg;
    K.lc_conn = 0; /* the lifecycle channel is not under test */
    conn.state = KC_UP;
    conn.epoch = 1;
    K.conns = &conn;
    K.nconns = 1;
    nsent = 0;
    for (int i = 0; i < NM; i++) {
        int32_t mi = kc_market_want(tickers[i], strlen(tickers[i]), true);
        ck_assert_int_ge(mi, 0);
        K.m[mi].first = false; /* as after its first snapshot: no restart gap to close */
    }
}

static void
teardown(void)
{
    for (int i = 0; i < nsent; i++)
        free(sent[i]);
    for (int i = 0; i < conn.ncmds; i++)
        free(conn.cmds[i].m);
    free(conn.cmds);
    free(conn.sidmap);
    kc_shards_release();
}

static void frame(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
frame(const char *fmt, ...)
{
    char b[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof(b), fmt, ap);
    va_end(ap);
    ck_assert(n > 0 && (size_t)n < sizeof(b));
    kc_feed_frame(&conn, b, (size_t)n, kc_now_ns());
}

/* The commands sent since *from: answers each subscribe with the next sid; returns the
 * orderbook sid (0: none subscribed) and whether an unsubscribe went out. */
static int64_t
answer(int *from, int64_t *next_sid, bool *unsubscribed)
{
    int64_t ob = 0;
    *unsubscribed = false;
    for (; *from < nsent; (*from)++) {
        cJSON *j = cJSON_Parse(sent[*from]);
        ck_assert_ptr_nonnull(j);
        const char *cmd = cJSON_GetObjectItemCaseSensitive(j, "cmd")->valuestring;
        int64_t id = (int64_t)cJSON_GetObjectItemCaseSensitive(j, "id")->valuedouble;
        if (strcmp(cmd, "unsubscribe") == 0) {
            *unsubscribed = true;
        } else if (strcmp(cmd, "subscribe") == 0) {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "params");
            const char *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(p, "channels"), 0)
                                 ->valuestring;
            int64_t sid = (*next_sid)++;
            frame("{\"id\":%lld,\"type\":\"subscribed\",\"msg\":{\"channel\":\"%s\",\"sid\":%lld}}",
                  (long long)id, ch, (long long)sid);
            if (strcmp(ch, "orderbook_delta") == 0)
                ob = sid;
        }
        cJSON_Delete(j);
    }
    return ob;
}

static void
snapshots(int64_t sid, int64_t *seq)
{
    for (int i = 0; i < NM; i++)
        frame(
            "{\"type\":\"orderbook_snapshot\",\"sid\":%lld,\"seq\":%lld,\"msg\":{\"market_ticker\":"
            "\"%s\",\"yes\":[[40,10]],\"no\":[[50,5]],\"ts_ms\":%lld}}",
            (long long)sid, (long long)++*seq, tickers[i], (long long)(kc_now_ns() / 1000000));
}

/* Every market not followed has a gap open, in the collector and in the spooled events. */
static void
assert_unfollowed_in_gap(const char *when)
{
    for (int i = 0; i < NM; i++) {
        const kc_market *m = &K.m[kc_market_find(tickers[i], strlen(tickers[i]))];
        ck_assert_msg(m->live || (m->gap && open_ob[i]),
                      "%s: %s is not followed (no snapshot on its subscription) and has no gap "
                      "open (collector %d, spooled events %d)",
                      when, tickers[i], m->gap, open_ob[i]);
    }
}

/*
 * The collector-chaos failure of be9056a: a seq jump on the orderbook sid resubscribes the
 * shard; Kalshi's error 25 for the old, retired sid then arrives while the shard waits for
 * its new snapshots (every shard of the link resyncs; none of its markets is live, so no
 * gap opens); the new snapshots make them live and close the gap; the pending resync then
 * resubscribes them again, and the link dies before the next snapshots. Every market must
 * be inside a gap from that unsubscribe on, and after the loss of the link.
 */
START_TEST(resync_pending_while_snapshots_arrive_keeps_markets_in_a_gap)
{
    int from = 0;
    int64_t next_sid = 1, seq = 0;
    bool unsub;
    kc_shards_sync();
    int64_t ob = answer(&from, &next_sid, &unsub);
    ck_assert_int_gt(ob, 0);
    snapshots(ob, &seq);
    assert_unfollowed_in_gap("first snapshots");

    /* A jump: gap opened, shard resubscribed. */
    frame(
        "{\"type\":\"orderbook_delta\",\"sid\":%lld,\"seq\":%lld,\"msg\":{\"market_ticker\":\"%s\","
        "\"price\":40,\"delta\":1,\"side\":\"yes\",\"ts_ms\":%lld}}",
        (long long)ob, (long long)(seq + 2), tickers[0], (long long)(kc_now_ns() / 1000000));
    for (int i = 0; i < NM; i++)
        ck_assert_int_eq(opened_ob[i], 1);
    kc_shards_sync();
    int64_t old = ob;
    ob = answer(&from, &next_sid, &unsub);
    ck_assert(unsub);
    ck_assert_int_gt(ob, old);

    /* Error 25 naming the retired sid, before the new snapshots. */
    frame("{\"type\":\"error\",\"sid\":%lld,\"msg\":{\"code\":25,\"msg\":\"Subscription buffer "
          "overflow\"}}",
          (long long)old);
    assert_unfollowed_in_gap("error 25 on a retired sid");

    seq = 0;
    snapshots(ob, &seq);
    assert_unfollowed_in_gap("snapshots on the new subscription");

    /* The pending resync resubscribes them: from the unsubscribe on, they are in a gap. */
    kc_shards_sync();
    old = ob;
    ob = answer(&from, &next_sid, &unsub);
    ck_assert(unsub);
    ck_assert_int_gt(ob, old);
    assert_unfollowed_in_gap("resubscribed again");

    /* The link dies before the snapshots of that subscription. */
    kc_conn_lost(&conn, "disconnect");
    assert_unfollowed_in_gap("link lost");
    for (int i = 0; i < NM; i++)
        ck_assert_int_eq(open_ob[i], 1);
}
END_TEST

/* The plain case stays as it was: one loss, one gap, closed by the next snapshot. */
START_TEST(one_loss_is_one_gap_closed_by_the_next_snapshot)
{
    int from = 0;
    int64_t next_sid = 1, seq = 0;
    bool unsub;
    kc_shards_sync();
    int64_t ob = answer(&from, &next_sid, &unsub);
    snapshots(ob, &seq);
    frame(
        "{\"type\":\"orderbook_delta\",\"sid\":%lld,\"seq\":%lld,\"msg\":{\"market_ticker\":\"%s\","
        "\"price\":40,\"delta\":1,\"side\":\"yes\",\"ts_ms\":%lld}}",
        (long long)ob, (long long)(seq + 3), tickers[1], (long long)(kc_now_ns() / 1000000));
    assert_unfollowed_in_gap("seq jump");
    kc_shards_sync();
    ob = answer(&from, &next_sid, &unsub);
    ck_assert(unsub);
    seq = 0;
    snapshots(ob, &seq);
    kc_shards_sync(); /* nothing pending: no second resubscription, no second gap */
    ck_assert_int_eq(from, nsent);
    for (int i = 0; i < NM; i++) {
        ck_assert_int_eq(opened_ob[i], 1);
        ck_assert_int_eq(open_ob[i], 0);
        ck_assert(K.m[kc_market_find(tickers[i], strlen(tickers[i]))].live);
    }
}
END_TEST

static Suite *
suite(void)
{
    Suite *s = suite_create("collector_feed");
    TCase *tc = tcase_create("gaps");
    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, resync_pending_while_snapshots_arrive_keeps_markets_in_a_gap);
    tcase_add_test(tc, one_loss_is_one_gap_closed_by_the_next_snapshot);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return kb_check_run(suite());
}
