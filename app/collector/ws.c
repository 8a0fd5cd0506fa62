/* ws.c - the reader: one libwebsockets context, its connections to Kalshi and the loop.
 *
 * Each connection is signed afresh on every connect (the timestamp is part of the
 * signature). A connection that delivers nothing, not even the pong to our ping, for
 * three heartbeats is dead and is dropped (a half-open link never says so itself).
 * Reconnects back off with equal jitter, doubling from KB_COLLECTOR_BACKOFF_MIN_MS to
 * _MAX_MS, and start over once a connection stayed up for three heartbeats. Received
 * messages are reassembled from their fragments, appended to the spool batch, and
 * parsed only after the batch is written (rspool.c calls feed.c).
 */
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "collector.h"
#include "kb_log.h"
#include "kb_banned.h"

/* lws's own idle pings stay out of the way: ours are per heartbeat. */
static const lws_retry_bo_t idle_policy = {
    .secs_since_valid_ping = 3600,
    .secs_since_valid_hangup = 7200,
};

static lws_sorted_usec_list_t tick_sul;

static void
lws_log_line(int level, const char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    kb_log(level == LLL_ERR ? KB_LOG_WARN : KB_LOG_INFO, "libwebsockets: %.*s", (int)n, line);
}

static kc_conn *
conn_of(struct lws *wsi)
{
    return wsi != NULL ? lws_get_opaque_user_data(wsi) : NULL;
}

int64_t
kc_cmd_new(kc_conn *c, int kind, int ch, int shard, const int32_t *m, int n)
{
    if (c->ncmds == c->capcmds) {
        c->capcmds = c->capcmds ? c->capcmds * 2 : 16;
        c->cmds = realloc(c->cmds, sizeof(*c->cmds) * (size_t)c->capcmds);
        if (c->cmds == NULL)
            abort();
    }
    kc_cmd *k = &c->cmds[c->ncmds++];
    memset(k, 0, sizeof(*k));
    k->id = ++K.next_cmd_id;
    k->kind = kind;
    k->ch = ch;
    k->shard = shard;
    k->sent_us = kc_mono_ns() / 1000;
    if (n > 0) {
        k->m = malloc(sizeof(*m) * (size_t)n);
        if (k->m == NULL)
            abort();
        memcpy(k->m, m, sizeof(*m) * (size_t)n);
        k->n = n;
    }
    return k->id;
}

void
kc_ws_send(kc_conn *c, char *text)
{
    if (c->nout == c->capout) {
        c->capout = c->capout ? c->capout * 2 : 16;
        c->outq = realloc(c->outq, sizeof(*c->outq) * (size_t)c->capout);
        if (c->outq == NULL)
            abort();
    }
    c->outq[c->nout++] = text;
    if (c->wsi != NULL)
        lws_callback_on_writable(c->wsi);
}

void
kc_ws_kill(kc_conn *c, const char *reason)
{
    if (c->wsi == NULL || c->kill_reason != NULL)
        return;
    c->kill_reason = reason;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void
conn_event(kc_conn *c, const char *what, const char *why)
{
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b, "{\"kb\":\"%s\",\"conn\":%d,\"epoch\":%" PRId64, what, c->idx, c->epoch);
    if (why != NULL) {
        kb_buf_puts(&b, ",\"reason\":");
        kb_buf_json_str(&b, why, strlen(why));
    }
    kb_buf_putc(&b, '}');
    kc_spool_event(&b);
    kb_buf_release(&b);
}

/* The connection is gone (or never came): forget its commands, plan the next try. */
static void
conn_down(kc_conn *c, const char *why)
{
    int64_t now = kc_mono_ns() / 1000;
    bool was_up = c->state == KC_UP;
    const char *reason = c->kill_reason != NULL ? c->kill_reason : "disconnect";
    if (was_up) {
        kc_conn_lost(c, reason);
        conn_event(c, "conn_down", why != NULL ? why : reason);
        kc_metric_add(KC_M_RECONNECTS, 1);
        kb_log_warn("connection %d (epoch %" PRId64 ") lost: %s", c->idx, c->epoch,
                    why != NULL ? why : reason);
    } else {
        kc_metric_add(KC_M_HANDSHAKE_FAIL, 1);
        kb_log_warn("connection %d could not be opened: %s", c->idx, why ? why : "unknown error");
    }
    /* The backoff starts over after a connection that was healthy. */
    if (c->healthy || c->backoff_ms == 0)
        c->backoff_ms = K.cfg->collector_backoff_min_ms;
    else if (c->backoff_ms < K.cfg->collector_backoff_max_ms)
        c->backoff_ms = c->backoff_ms * 2 > K.cfg->collector_backoff_max_ms
                            ? K.cfg->collector_backoff_max_ms
                            : c->backoff_ms * 2;
    c->next_try_us = now + kc_jitter_ms(c->backoff_ms) * 1000;
    if (c->healthy)
        kc_metric_set(KC_G_CONNS_HEALTHY, kc_metric_get(KC_G_CONNS_HEALTHY) - 1);
    c->healthy = false;
    c->state = KC_DOWN;
    c->wsi = NULL;
    c->kill_reason = NULL;
    for (int i = 0; i < c->nout; i++)
        free(c->outq[i]);
    c->nout = 0;
    for (int i = 0; i < c->ncmds; i++)
        free(c->cmds[i].m);
    c->ncmds = 0;
    for (int64_t i = 0; i < c->nsid; i++)
        c->sidmap[i] = -1;
    kb_buf_reset(&c->rx);
    kc_metric_set(KC_G_CONNS_UP, kc_metric_get(KC_G_CONNS_UP) - was_up);
}

static int
add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
           unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

static int
on_writable(kc_conn *c, struct lws *wsi)
{
    if (c->kill_reason != NULL)
        return -1;
    int64_t now = kc_mono_ns() / 1000;
    unsigned char ping[LWS_PRE + 16];
    if (now - c->ping_us >= K.cfg->collector_heartbeat_s * 1000000) {
        c->ping_us = now;
        memcpy(ping + LWS_PRE, "kb", 2);
        if (lws_write(wsi, ping + LWS_PRE, 2, LWS_WRITE_PING) < 0)
            return -1;
    } else if (c->nout > 0) {
        char *t = c->outq[0];
        size_t n = strlen(t);
        unsigned char *buf = malloc(LWS_PRE + n);
        if (buf == NULL)
            abort();
        memcpy(buf + LWS_PRE, t, n);
        int w = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
        free(buf);
        if (w < (int)n)
            return -1;
        free(t);
        memmove(c->outq, c->outq + 1, sizeof(*c->outq) * (size_t)--c->nout);
    }
    if (c->nout > 0)
        lws_callback_on_writable(wsi);
    return 0;
}

static int
on_receive(kc_conn *c, struct lws *wsi, const void *in, size_t len)
{
    size_t max = (size_t)K.cfg->collector_max_frame_mb << 20;
    if (lws_is_first_fragment(wsi))
        kb_buf_reset(&c->rx);
    if (c->rx.len + len > max) {
        kb_log_error("connection %d: a message over KB_COLLECTOR_MAX_FRAME_MB; dropping it",
                     c->idx);
        c->kill_reason = "frame_too_large";
        return -1;
    }
    kb_buf_append(&c->rx, in, len);
    c->last_rx_us = kc_mono_ns() / 1000;
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
        kc_spool_frame(c, c->rx.buf, c->rx.len, kc_now_ns(), kc_mono_ns());
        kb_buf_reset(&c->rx);
    }
    return 0;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void)user;
    kc_conn *c = conn_of(wsi);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = in, *end = *p + len;
        char ts[24], sig[KB_KALSHI_SIG_MAX];
        int64_t ms = kc_now_ns() / 1000000;
        snprintf(ts, sizeof(ts), "%" PRId64, ms);
        if (!kb_kalshi_sign(&K.key, ms, "GET", K.ws_path, sig, sizeof(sig)) ||
            add_header(wsi, "KALSHI-ACCESS-KEY:", K.key.id, p, end) ||
            add_header(wsi, "KALSHI-ACCESS-TIMESTAMP:", ts, p, end) ||
            add_header(wsi, "KALSHI-ACCESS-SIGNATURE:", sig, p, end))
            return -1;
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c == NULL)
            return -1;
        c->state = KC_UP;
        c->epoch = ++K.next_epoch;
        c->up_us = c->last_rx_us = c->ping_us = kc_mono_ns() / 1000;
        kc_metric_set(KC_G_CONNS_UP, kc_metric_get(KC_G_CONNS_UP) + 1);
        conn_event(c, "conn_up", NULL);
        kb_log_info("connection %d up (epoch %" PRId64 ")", c->idx, c->epoch);
        kc_shards_sync();
        if (c->nout > 0)
            lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return c != NULL ? on_receive(c, wsi, in, len) : -1;
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (c != NULL)
            c->last_rx_us = kc_mono_ns() / 1000;
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return c != NULL ? on_writable(c, wsi) : -1;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[160];
        int st = lws_http_client_http_response(wsi);
        snprintf(why, sizeof(why), "%.*s%s%d", in ? (int)strnlen(in, 100) : 0,
                 in ? (const char *)in : "", st ? ", HTTP " : "", st);
        if (c != NULL && c->wsi == wsi)
            conn_down(c, why);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c != NULL && c->wsi == wsi)
            conn_down(c, NULL);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"kalshi", callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void
connect_conn(kc_conn *c)
{
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof(ci));
    ci.context = K.lws;
    ci.address = K.ws_host;
    ci.port = K.ws_port;
    ci.path = K.ws_path;
    ci.host = K.ws_host;
    ci.origin = K.ws_host;
    ci.ssl_connection = K.ws_tls ? LCCSCF_USE_SSL : 0;
    ci.local_protocol_name = "kalshi";
    ci.opaque_user_data = c;
    ci.retry_and_idle_policy = &idle_policy;
    ci.pwsi = &c->wsi;
    c->state = KC_CONNECTING;
    c->kill_reason = NULL;
    if (lws_client_connect_via_info(&ci) == NULL && c->state == KC_CONNECTING) {
        c->wsi = NULL;
        conn_down(c, "connect failed at once");
    }
}

static void
on_tick(lws_sorted_usec_list_t *sul)
{
    lws_sul_schedule(K.lws, 0, sul, on_tick, 100 * LWS_US_PER_MS);
}

/* Timers, every 10 ms at most: heartbeats, command timeouts, connects, reconciles. */
static void
tick(void)
{
    static int64_t last;
    int64_t now = kc_mono_ns() / 1000, hb = K.cfg->collector_heartbeat_s * 1000000;
    if (now - last < 10000 && !K.tick_now)
        return;
    last = now;
    K.tick_now = false;
    kc_rest_drain();
    for (int i = 0; i < K.nconns; i++) {
        kc_conn *c = &K.conns[i];
        if (c->state != KC_UP)
            continue;
        if (!c->healthy && now - c->up_us >= 3 * hb) {
            c->healthy = true;
            kc_metric_set(KC_G_CONNS_HEALTHY, kc_metric_get(KC_G_CONNS_HEALTHY) + 1);
        }
        if (now - c->last_rx_us > 3 * hb) {
            kc_ws_kill(c, "heartbeat");
            continue;
        }
        if (now - c->ping_us >= hb && c->wsi != NULL)
            lws_callback_on_writable(c->wsi);
        kc_feed_timeouts(c, now);
    }
    if (K.reconcile_now || now >= K.reconcile_due_us) {
        K.reconcile_now = false;
        K.reconcile_due_us = now + K.cfg->collector_reconcile_s * 1000000;
        kc_rest_reconcile();
    }
    kc_shards_sync();
    for (int i = 0; i < K.nconns; i++) {
        kc_conn *c = &K.conns[i];
        if (c->state == KC_DOWN && (c->nshards > 0 || i == 0) && now >= c->next_try_us)
            connect_conn(c);
    }
}

int
kc_ws_init(void)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_filepath = K.cfg->kalshi_ca_file;
    info.fd_limit_per_thread = (unsigned int)(K.cfg->collector_max_conns + 16);
    info.pt_serv_buf_size = 256 * 1024;
    info.timeout_secs = 15;
    info.connect_timeout_secs = 10;
    K.lws = lws_create_context(&info);
    if (K.lws == NULL) {
        kb_log_error("unable to create the libwebsockets context (CA file '%s'?)",
                     K.cfg->kalshi_ca_file ? K.cfg->kalshi_ca_file : "system");
        return -1;
    }
    K.nconns = (int)K.cfg->collector_max_conns;
    K.conns = calloc((size_t)K.nconns, sizeof(*K.conns));
    if (K.conns == NULL)
        abort();
    for (int i = 0; i < K.nconns; i++) {
        K.conns[i].idx = i;
        K.conns[i].backoff_ms = 0;
    }
    K.lc_conn = -1;
    lws_sul_schedule(K.lws, 0, &tick_sul, on_tick, 100 * LWS_US_PER_MS);
    return 0;
}

void
kc_ws_wake(void)
{
    if (K.lws != NULL)
        lws_cancel_service(K.lws);
}

/* Track sids a connection's answers name (called by feed.c through the sidmap). */
void kc_ws_map_sid(kc_conn *c, int64_t sid, int32_t v);

void
kc_ws_map_sid(kc_conn *c, int64_t sid, int32_t v)
{
    if (sid <= 0 || sid > 1000000)
        return;
    if (sid >= c->nsid) {
        int64_t n = sid * 2 + 16;
        c->sidmap = realloc(c->sidmap, sizeof(*c->sidmap) * (size_t)n);
        if (c->sidmap == NULL)
            abort();
        for (int64_t i = c->nsid; i < n; i++)
            c->sidmap[i] = -1;
        c->nsid = n;
    }
    c->sidmap[sid] = v;
}

void
kc_ws_run(void)
{
    tick();
    while (!atomic_load(&K.stop)) {
        if (lws_service(K.lws, 0) < 0)
            break;
        kc_spool_flush();
        tick();
        kc_spool_flush();
    }
    /* Closing every connection records where collection stops (gaps, conn_down). */
    for (int i = 0; i < K.nconns; i++) {
        if (K.conns[i].state == KC_UP)
            K.conns[i].kill_reason = "shutdown";
    }
    lws_sul_cancel(&tick_sul);
    lws_context_destroy(K.lws);
    K.lws = NULL;
    kc_spool_flush();
    for (int i = 0; i < K.nconns; i++) {
        kc_conn *c = &K.conns[i];
        for (int k = 0; k < c->nout; k++)
            free(c->outq[k]);
        for (int k = 0; k < c->ncmds; k++)
            free(c->cmds[k].m);
        free(c->outq);
        free(c->cmds);
        free(c->sidmap);
        kb_buf_release(&c->rx);
    }
    free(K.conns);
    K.conns = NULL;
    K.nconns = 0;
}
