/* feed.c - what each received message means to the reader: command answers, every
 * Kalshi error code, per-sid seq tracking and the gaps it finds, lifecycle events.
 *
 * seq is checked for every message that carries a sid and a seq (snapshots, deltas,
 * trades, lifecycle, and the "ok" of update_subscription). The next expected is the
 * last in order + 1; a larger one is a jump (messages lost); a smaller or equal one a
 * duplicate: one alone is a redelivery and is dropped here (ingest stores it once
 * anyway), two in a row mean the sequence restarted under us and count as a gap.
 * A message on a sid this connection no longer maps (unsubscribed, resubscribing) is
 * kept in the spool and otherwise ignored: it lies inside the gap that retired it.
 */
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "collector.h"
#include "kb_log.h"
#include "kb_banned.h"

void kc_ws_map_sid(kc_conn *c, int64_t sid, int32_t v);

/* Commands unanswered this long are treated as error 18 (Kalshi's command timeout). */
#define CMD_TIMEOUT_US (10 * 1000000LL)

enum { SEQ_OK, SEQ_DUP, SEQ_DUPRUN, SEQ_JUMP };

static int
seq_check(kc_sub *s, int64_t seq, int64_t *expected)
{
    *expected = s->seq + 1;
    if (seq == s->seq + 1) {
        s->seq = seq;
        s->dups = 0;
        return SEQ_OK;
    }
    if (seq <= s->seq)
        return ++s->dups >= 2 ? SEQ_DUPRUN : SEQ_DUP;
    return SEQ_JUMP;
}

static int64_t
num(const cJSON *o, const char *k, int64_t def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble >= -9e15 && v->valuedouble <= 9e15
               ? (int64_t)v->valuedouble
               : def;
}

static const char *
str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Exchange time of msg in ms: ts_ms, else ts (seconds, or ms above 1e12); 0 if none. */
static int64_t
exchange_ms(const cJSON *msg)
{
    int64_t ms = num(msg, "ts_ms", 0);
    if (ms > 0)
        return ms;
    int64_t ts = num(msg, "ts", 0);
    return ts > 1000000000000LL ? ts : ts * 1000;
}

/* Take command id off c's list; false when unknown (then *out is untouched). */
static bool
take_cmd(kc_conn *c, int64_t id, kc_cmd *out)
{
    for (int i = 0; i < c->ncmds; i++) {
        if (c->cmds[i].id == id) {
            *out = c->cmds[i];
            c->cmds[i] = c->cmds[--c->ncmds];
            return true;
        }
    }
    return false;
}

static kc_sub *
sub_of(int shard, int ch)
{
    return ch == KC_CH_OB ? &K.sh[shard].ob : &K.sh[shard].tr;
}

static void
on_subscribed(kc_conn *c, int64_t id, const cJSON *msg)
{
    kc_cmd cmd;
    if (!take_cmd(c, id, &cmd))
        return;
    int64_t sid = num(msg, "sid", 0);
    kc_sub *s = cmd.ch == KC_CH_LIFECYCLE ? &c->lc : sub_of(cmd.shard, cmd.ch);
    s->sid = sid;
    s->seq = 0;
    s->dups = 0;
    /* Until its first message: what comes on it is no older than now (less a margin for
     * the two clocks). */
    s->last_ts = kc_now_ns() / 1000000 - 1000;
    s->state = KC_SUB_LIVE;
    kc_ws_map_sid(c, sid, cmd.ch == KC_CH_LIFECYCLE ? KC_CH_LIFECYCLE : cmd.shard * 4 + cmd.ch);
    if (cmd.shard >= 0)
        K.sh[cmd.shard].retries = 0;
    free(cmd.m);
}

/* Retry a command Kalshi could not run (17 internal error, 18 timeout, ...). */
static void
retry(kc_conn *c, kc_cmd *cmd, int code)
{
    if (cmd->shard < 0) {
        /* The lifecycle subscription: ask again at the next sync. */
        c->lc.state = KC_SUB_NONE;
        if (K.lc_conn == c->idx)
            K.lc_conn = -1;
        return;
    }
    kc_shard *s = &K.sh[cmd->shard];
    if (++s->retries > 5) {
        kc_ws_kill(c, "error");
        return;
    }
    int64_t backoff = K.cfg->collector_backoff_min_ms << (s->retries - 1);
    s->retry_us = kc_mono_ns() / 1000 + kc_jitter_ms(backoff) * 1000;
    kb_log_warn("shard %d: command %" PRId64 " failed with %d, retry %d", cmd->shard, cmd->id, code,
                s->retries);
    if (cmd->kind == KC_CMD_SUB) {
        sub_of(cmd->shard, cmd->ch)->state = KC_SUB_NONE;
        /* Both channels are resubscribed together. */
        kc_shard_resync(cmd->shard, -1, "error", "subscribe failed");
    } else if (cmd->kind == KC_CMD_ADD || cmd->kind == KC_CMD_DEL) {
        /* Again at the next sync, on the channel that failed only. */
        for (int i = 0; i < cmd->n; i++) {
            kc_market *m = &K.m[cmd->m[i]];
            bool still = m->wanted && m->shard == cmd->shard;
            if (cmd->kind == KC_CMD_ADD ? still : !still)
                kc_shard_queue(cmd->shard, cmd->ch, cmd->kind == KC_CMD_ADD, cmd->m[i]);
        }
    }
}

static void
on_error(kc_conn *c, int64_t id, int64_t sid, const cJSON *msg)
{
    int code = (int)num(msg, "code", 0);
    const char *text = str(msg, "msg");
    kc_metric_add(KC_M_ERRORS, 1);
    kb_log_warn("connection %d: Kalshi error %d (command %" PRId64 ", sid %" PRId64 "): %s", c->idx,
                code, id, sid, text ? text : "");
    if (code == 25) {
        /* Subscription buffer overflow: Kalshi dropped messages for a slow reader. */
        int32_t v = sid > 0 && sid < c->nsid ? c->sidmap[sid] : -1;
        for (int i = 0; i < K.nsh; i++) {
            if ((v >= 0 && (v & 3) != KC_CH_LIFECYCLE) ? i == v >> 2 : K.sh[i].conn == c->idx)
                kc_shard_resync(i, v >= 0 && (v & 3) != KC_CH_LIFECYCLE ? v & 3 : -1, "overflow",
                                text);
        }
        if (v >= 0 && (v & 3) == KC_CH_LIFECYCLE)
            K.reconcile_now = true;
        return;
    }
    kc_cmd cmd;
    if (!take_cmd(c, id, &cmd))
        return;
    switch (code) {
    case 6: /* already subscribed: our map and Kalshi's disagree; start this link over */
        kc_ws_kill(c, "error");
        break;
    case 7: /* unknown sid */
        if (cmd.kind != KC_CMD_UNSUB && cmd.shard >= 0)
            kc_shard_resync(cmd.shard, -1, "error", "unknown sid");
        break;
    case 16: { /* market not found: ask REST which, and hold the shard back meanwhile */
        if (cmd.shard < 0)
            break;
        kc_shard *s = &K.sh[cmd.shard];
        const int32_t *m = cmd.kind == KC_CMD_SUB ? s->m : cmd.m;
        int n = cmd.kind == KC_CMD_SUB ? s->n : cmd.n;
        for (int i = 0; i < n; i++) {
            if (!K.m[m[i]].checking) {
                K.m[m[i]].checking = true;
                kc_rest_check(K.m[m[i]].ticker);
            }
        }
        retry(c, &cmd, code);
        break;
    }
    case 4:
    case 12:
    case 14: /* our command was malformed: a bug; resubscribe cleanly */
        kb_log_error("Kalshi refused command %" PRId64 " as malformed (%d)", cmd.id, code);
        if (cmd.shard >= 0 && cmd.kind != KC_CMD_UNSUB)
            kc_shard_resync(cmd.shard, -1, "error", text);
        break;
    default: /* 17 internal error, 18 command timeout, anything new: try again */
        if (cmd.kind != KC_CMD_UNSUB)
            retry(c, &cmd, code);
    }
    free(cmd.m);
}

static void
gap_close(int32_t mi, int64_t end_ms)
{
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b, "{\"kb\":\"gap_close\",\"end_ms\":%" PRId64 ",\"markets\":[", end_ms);
    kb_buf_json_str(&b, K.m[mi].ticker, strlen(K.m[mi].ticker));
    kb_buf_puts(&b, "]}");
    kc_spool_event(&b);
    kb_buf_release(&b);
}

/*
 * A message of sid with seq and exchange time ts (0: none) in order on its subscription;
 * the shard it belongs to, or -1 when it is not (a retired sid, a jump, a duplicate).
 */
static int
in_order(kc_conn *c, int64_t sid, int64_t seq, int64_t ts, int64_t wall_ns)
{
    int32_t v = sid > 0 && sid < c->nsid ? c->sidmap[sid] : -1;
    if (v < 0 || (v & 3) == KC_CH_LIFECYCLE)
        return -1; /* a retired sid: inside the gap that retired it */
    int shard = v >> 2, ch = v & 3;
    kc_sub *s = sub_of(shard, ch);
    int64_t expected;
    int r = seq_check(s, seq, &expected);
    if (r == SEQ_DUP) {
        kc_metric_add(KC_M_DUPLICATES, 1);
        return -1;
    }
    if (r != SEQ_OK) {
        char d[128];
        snprintf(d, sizeof(d), "%s sid %" PRId64 ": expected seq %" PRId64 ", got %" PRId64,
                 ch == KC_CH_OB ? "orderbook_delta" : "trade", sid, expected, seq);
        kc_shard_resync(shard, ch, r == SEQ_JUMP ? "seq_jump" : "seq_duplicate", d);
        return -1;
    }
    if (ts > 0)
        kc_metric_age(wall_ns / 1000000 - ts);
    if (ts > s->last_ts)
        s->last_ts = ts;
    return shard;
}

static void
data(kc_conn *c, int64_t sid, int64_t seq, const cJSON *msg, int kind, int64_t wall_ns)
{
    int64_t ts = exchange_ms(msg), wall_ms = wall_ns / 1000000;
    int shard = in_order(c, sid, seq, ts, wall_ns);
    if (shard < 0 || kind != 's')
        return;
    const char *t = str(msg, "market_ticker");
    int32_t mi = t != NULL ? kc_market_find(t, strlen(t)) : -1;
    if (mi < 0 || K.m[mi].shard != shard)
        return;
    kc_market *m = &K.m[mi];
    m->live = true;
    if (m->gap || m->first)
        gap_close(mi, ts > 0 ? ts : wall_ms);
    m->gap = false;
    m->first = false;
}

static void
lifecycle(kc_conn *c, int64_t sid, int64_t seq, const cJSON *msg)
{
    if (c->lc.state == KC_SUB_LIVE && sid == c->lc.sid) {
        int64_t expected;
        int r = seq_check(&c->lc, seq, &expected);
        if (r == SEQ_DUP)
            return;
        if (r != SEQ_OK) {
            /* Lost lifecycle messages: REST says what is open now. */
            kb_log_warn("market_lifecycle_v2 sid %" PRId64 ": expected seq %" PRId64
                        ", got %" PRId64 "; reconciling over REST",
                        sid, expected, seq);
            K.reconcile_now = true;
            if (r == SEQ_DUPRUN)
                c->lc.seq = seq;
        }
    }
    const char *t = str(msg, "market_ticker"), *ev = str(msg, "event_type");
    if (t == NULL || ev == NULL)
        return;
    if (strcmp(ev, "created") == 0 || strcmp(ev, "activated") == 0)
        kc_market_want(t, strlen(t), true);
    else if (strcmp(ev, "determined") == 0 || strcmp(ev, "settled") == 0 ||
             strcmp(ev, "closed") == 0)
        kc_market_want(t, strlen(t), false);
    /* deactivated is a pause: the market stays subscribed. */
}

/* A decimal at *s (advanced past it); false when there is none. */
static bool
digits(const char **s, const char *end, int64_t *v)
{
    const char *d = *s;
    int64_t x = 0;
    while (*s < end && **s >= '0' && **s <= '9' && x < (INT64_MAX - 9) / 10)
        x = x * 10 + (*(*s)++ - '0');
    *v = x;
    return *s > d;
}

static bool
lit(const char **s, const char *end, const char *t)
{
    size_t n = strlen(t);
    if ((size_t)(end - *s) < n || memcmp(*s, t, n) != 0)
        return false;
    *s += n;
    return true;
}

/*
 * The common shape, {"type":"orderbook_delta"|"trade","sid":N,"seq":N,"msg":{...
 * "ts_ms":N...}}, read without a cJSON tree (most of what arrives): true when taken
 * (seq checked as data() does), false for anything else, which the cJSON path reads.
 * Only the envelope and ts_ms matter here; the writer reads the rest exactly.
 */
static bool
fast_frame(kc_conn *c, const char *p, size_t n, int64_t wall_ns)
{
    const char *s = p, *end = p + n;
    int kind;
    if (lit(&s, end, "{\"type\":\"orderbook_delta\",\"sid\":"))
        kind = 'd';
    else if (lit(&s, end, "{\"type\":\"trade\",\"sid\":"))
        kind = 't';
    else
        return false;
    int64_t sid, seq, ts;
    if (!digits(&s, end, &sid) || !lit(&s, end, ",\"seq\":") || !digits(&s, end, &seq) ||
        !lit(&s, end, ",\"msg\":{"))
        return false;
    const char *t = memmem(s, (size_t)(end - s), "\"ts_ms\":", 8);
    if (t == NULL)
        return false;
    t += 8;
    if (!digits(&t, end, &ts) || ts <= 0)
        return false;
    kc_metric_add(kind == 'd' ? KC_M_DELTAS : KC_M_TRADES, 1);
    (void)in_order(c, sid, seq, ts, wall_ns);
    return true;
}

void
kc_feed_frame(kc_conn *c, const char *p, size_t n, int64_t wall_ns)
{
    kc_metric_add(KC_M_FRAMES, 1);
    kc_metric_add(KC_M_FRAME_BYTES, n);
    if (fast_frame(c, p, n, wall_ns))
        return;
    cJSON *j = cJSON_ParseWithLength(p, n);
    if (j == NULL || !cJSON_IsObject(j)) {
        kc_metric_add(KC_M_BAD, 1);
        kb_log_debug("connection %d: a message that is not a JSON object (%zu bytes)", c->idx, n);
        cJSON_Delete(j);
        return;
    }
    const char *type = str(j, "type");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "msg");
    int64_t sid = num(j, "sid", 0), seq = num(j, "seq", -1), id = num(j, "id", 0);
    if (type == NULL) {
        kc_metric_add(KC_M_BAD, 1);
    } else if (strcmp(type, "orderbook_delta") == 0) {
        kc_metric_add(KC_M_DELTAS, 1);
        data(c, sid, seq, msg, 'd', wall_ns);
    } else if (strcmp(type, "orderbook_snapshot") == 0) {
        kc_metric_add(KC_M_SNAPSHOTS, 1);
        data(c, sid, seq, msg, 's', wall_ns);
    } else if (strcmp(type, "trade") == 0) {
        kc_metric_add(KC_M_TRADES, 1);
        data(c, sid, seq, msg, 't', wall_ns);
    } else if (strcmp(type, "market_lifecycle_v2") == 0 || strcmp(type, "market_lifecycle") == 0) {
        kc_metric_add(KC_M_LIFECYCLE, 1);
        lifecycle(c, sid, seq, msg);
    } else if (strcmp(type, "subscribed") == 0) {
        kc_metric_add(KC_M_REPLIES, 1);
        on_subscribed(c, id, msg);
    } else if (strcmp(type, "ok") == 0) {
        kc_metric_add(KC_M_REPLIES, 1);
        kc_cmd cmd;
        if (take_cmd(c, id, &cmd))
            free(cmd.m);
        /* update_subscription's ok carries the sid's next seq. */
        if (sid > 0 && seq > 0)
            data(c, sid, seq, NULL, 'o', wall_ns);
    } else if (strcmp(type, "unsubscribed") == 0) {
        kc_metric_add(KC_M_REPLIES, 1);
        kc_cmd cmd;
        if (take_cmd(c, id, &cmd))
            free(cmd.m);
    } else if (strcmp(type, "error") == 0) {
        on_error(c, id, sid, msg);
    } else {
        kc_metric_add(KC_M_UNKNOWN, 1);
    }
    cJSON_Delete(j);
}

void
kc_feed_timeouts(kc_conn *c, int64_t now_us)
{
    for (int i = 0; i < c->ncmds; i++) {
        if (now_us - c->cmds[i].sent_us < CMD_TIMEOUT_US)
            continue;
        kc_cmd cmd = c->cmds[i];
        c->cmds[i] = c->cmds[--c->ncmds];
        i--;
        kb_log_warn("connection %d: command %" PRId64 " unanswered after %lld s", c->idx, cmd.id,
                    CMD_TIMEOUT_US / 1000000);
        if (cmd.kind != KC_CMD_UNSUB)
            retry(c, &cmd, 18);
        free(cmd.m);
    }
}
