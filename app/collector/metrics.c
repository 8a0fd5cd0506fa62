/* metrics.c - the collector's counters and gauges (relaxed atomics, any thread) and
 * their Prometheus text on http://127.0.0.1:KB_COLLECTOR_METRICS_PORT/metrics, served
 * by a small thread of its own (one request per connection, loopback only). */
#include <stdio.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "collector.h"
#include "kb_log.h"
#include "kb_banned.h"

static _Atomic uint64_t counters[KC_M_COUNT_];
static _Atomic int64_t gauges[KC_G_COUNT_];

/* Message age buckets, ms (upper bounds), then +Inf. */
static const int64_t age_le_ms[] = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
#define NAGE (sizeof(age_le_ms) / sizeof(age_le_ms[0]))
static _Atomic uint64_t age_bucket[NAGE + 1];
static _Atomic uint64_t age_sum_ms, age_count;

static int listen_fd = -1;
static pthread_t th;
static bool running;

void
kc_metric_add(enum kc_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

uint64_t
kc_metric_count(enum kc_counter c)
{
    return atomic_load_explicit(&counters[c], memory_order_relaxed);
}

void
kc_metric_set(enum kc_gauge g, int64_t v)
{
    atomic_store_explicit(&gauges[g], v, memory_order_relaxed);
}

int64_t
kc_metric_get(enum kc_gauge g)
{
    return atomic_load_explicit(&gauges[g], memory_order_relaxed);
}

void
kc_metric_age(int64_t age_ms)
{
    if (age_ms < 0)
        age_ms = 0; /* clocks a little apart: count it as fresh */
    size_t i = 0;
    while (i < NAGE && age_ms > age_le_ms[i])
        i++;
    atomic_fetch_add_explicit(&age_bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&age_sum_ms, (uint64_t)age_ms, memory_order_relaxed);
    atomic_fetch_add_explicit(&age_count, 1, memory_order_relaxed);
}

static void
head(kb_buf *b, const char *name, const char *type, const char *help)
{
    kb_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
labelled(kb_buf *b, const char *name, const char *type, const char *help, const char *label,
         const char *const *values, const enum kc_counter *cs, size_t n)
{
    head(b, name, type, help);
    for (size_t i = 0; i < n; i++)
        kb_buf_printf(b, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, values[i],
                      kc_metric_count(cs[i]));
}

static void
one(kb_buf *b, const char *name, const char *type, const char *help, int64_t v)
{
    head(b, name, type, help);
    kb_buf_printf(b, "%s %" PRId64 "\n", name, v);
}

static void
render(kb_buf *b)
{
    static const char *const types[] = {"orderbook_snapshot",
                                        "orderbook_delta",
                                        "trade",
                                        "market_lifecycle_v2",
                                        "reply",
                                        "error",
                                        "unknown",
                                        "bad"};
    static const enum kc_counter tc[] = {KC_M_SNAPSHOTS, KC_M_DELTAS, KC_M_TRADES,  KC_M_LIFECYCLE,
                                         KC_M_REPLIES,   KC_M_ERRORS, KC_M_UNKNOWN, KC_M_BAD};
    labelled(b, "kalshibook_collector_messages_total", "counter",
             "WebSocket messages received, by type (bad: not a JSON object)", "type", types, tc, 8);
    one(b, "kalshibook_collector_message_bytes_total", "counter", "bytes of those messages",
        (int64_t)kc_metric_count(KC_M_FRAME_BYTES));
    one(b, "kalshibook_collector_duplicates_total", "counter", "messages dropped as a repeated seq",
        (int64_t)kc_metric_count(KC_M_DUPLICATES));
    head(b, "kalshibook_collector_message_age_seconds", "histogram",
         "receive time minus the message's exchange time (ts_ms)");
    uint64_t cum = 0;
    for (size_t i = 0; i <= NAGE; i++) {
        cum += atomic_load_explicit(&age_bucket[i], memory_order_relaxed);
        if (i < NAGE)
            kb_buf_printf(b,
                          "kalshibook_collector_message_age_seconds_bucket{le=\"%" PRId64
                          ".%03" PRId64 "\"} %" PRIu64 "\n",
                          age_le_ms[i] / 1000, age_le_ms[i] % 1000, cum);
        else
            kb_buf_printf(b,
                          "kalshibook_collector_message_age_seconds_bucket{le=\"+Inf\"} %" PRIu64
                          "\n",
                          cum);
    }
    uint64_t sum = atomic_load_explicit(&age_sum_ms, memory_order_relaxed);
    kb_buf_printf(b, "kalshibook_collector_message_age_seconds_sum %" PRIu64 ".%03" PRIu64 "\n",
                  sum / 1000, sum % 1000);
    kb_buf_printf(b, "kalshibook_collector_message_age_seconds_count %" PRIu64 "\n",
                  (uint64_t)atomic_load_explicit(&age_count, memory_order_relaxed));
    static const char *const reasons[] = {"seq_jump",   "seq_duplicate", "overflow",
                                          "disconnect", "heartbeat",     "error"};
    static const enum kc_counter rc[] = {KC_M_GAP_SEQ_JUMP,   KC_M_GAP_SEQ_DUP,   KC_M_GAP_OVERFLOW,
                                         KC_M_GAP_DISCONNECT, KC_M_GAP_HEARTBEAT, KC_M_GAP_ERROR};
    labelled(b, "kalshibook_collector_gaps_total", "counter",
             "market gaps opened, by reason (one per market)", "reason", reasons, rc, 6);
    one(b, "kalshibook_collector_reconnects_total", "counter", "established connections lost",
        (int64_t)kc_metric_count(KC_M_RECONNECTS));
    one(b, "kalshibook_collector_connect_failures_total", "counter",
        "connection attempts refused or failed (handshake 401/429/503, TLS, TCP)",
        (int64_t)kc_metric_count(KC_M_HANDSHAKE_FAIL));
    static const char *const rest[] = {"ok", "429", "5xx", "error"};
    static const enum kc_counter rsc[] = {KC_M_REST_OK, KC_M_REST_429, KC_M_REST_5XX,
                                          KC_M_REST_ERR};
    labelled(b, "kalshibook_collector_rest_requests_total", "counter",
             "REST requests by outcome (429 and 5xx are retried)", "result", rest, rsc, 4);
    one(b, "kalshibook_collector_spool_bytes_total", "counter", "bytes appended to the spool",
        (int64_t)kc_metric_count(KC_M_SPOOL_BYTES));
    one(b, "kalshibook_collector_queue_dropped_total", "counter",
        "batches the full queue refused (the writer read them from the spool)",
        (int64_t)kc_metric_count(KC_M_QUEUE_DROPS));
    one(b, "kalshibook_collector_queue_bytes", "gauge", "bytes waiting for the writer",
        kc_metric_get(KC_G_QUEUE_BYTES));
    one(b, "kalshibook_collector_writer_lag_bytes", "gauge",
        "spool bytes not yet committed to Postgres", kc_metric_get(KC_G_WRITER_LAG_BYTES));
    one(b, "kalshibook_collector_writer_records_total", "counter", "spool records stored",
        (int64_t)kc_metric_count(KC_M_WRITER_RECORDS));
    one(b, "kalshibook_collector_writer_commits_total", "counter", "writer transactions committed",
        (int64_t)kc_metric_count(KC_M_WRITER_COMMITS));
    one(b, "kalshibook_collector_writer_errors_total", "counter",
        "writer transactions that failed (retried from the spool)",
        (int64_t)kc_metric_count(KC_M_WRITER_ERRORS));
    one(b, "kalshibook_collector_writer_refused_total", "counter",
        "spool records the ingest refused as bad (kept in the spool, logged at debug)",
        (int64_t)kc_metric_count(KC_M_WRITER_BAD));
    one(b, "kalshibook_collector_writer_spool_reads_total", "counter",
        "times the writer read the spool back (queue full, Postgres slow or down, restart)",
        (int64_t)kc_metric_count(KC_M_WRITER_SPOOL_READS));
    one(b, "kalshibook_collector_writer_spool_records_total", "counter",
        "records the writer read back from the spool files (the rest came from the queue)",
        (int64_t)kc_metric_count(KC_M_WRITER_SPOOL_RECORDS));
    one(b, "kalshibook_collector_checkpoints_total", "counter",
        "reconstruction checkpoints added to live markets",
        (int64_t)kc_metric_count(KC_M_CHECKPOINTS));
    one(b, "kalshibook_collector_leader", "gauge", "1 while this instance holds the leader lock",
        kc_metric_get(KC_G_LEADER));
    one(b, "kalshibook_collector_db_up", "gauge", "1 while the writer's connection works",
        kc_metric_get(KC_G_DB_UP));
    one(b, "kalshibook_collector_connections_up", "gauge", "WebSocket connections established",
        kc_metric_get(KC_G_CONNS_UP));
    one(b, "kalshibook_collector_connections_healthy", "gauge",
        "connections up for 3 heartbeats (their next reconnect starts at the first delay)",
        kc_metric_get(KC_G_CONNS_HEALTHY));
    head(b, "kalshibook_collector_markets", "gauge",
         "markets: open on Kalshi's REST listing, wanted (open or paused), subscribed with a "
         "snapshot (live), in a gap");
    kb_buf_printf(b, "kalshibook_collector_markets{state=\"open\"} %" PRId64 "\n",
                  kc_metric_get(KC_G_OPEN_MARKETS_REST));
    kb_buf_printf(b, "kalshibook_collector_markets{state=\"wanted\"} %" PRId64 "\n",
                  kc_metric_get(KC_G_MARKETS_WANTED));
    kb_buf_printf(b, "kalshibook_collector_markets{state=\"live\"} %" PRId64 "\n",
                  kc_metric_get(KC_G_MARKETS_LIVE));
    kb_buf_printf(b, "kalshibook_collector_markets{state=\"gap\"} %" PRId64 "\n",
                  kc_metric_get(KC_G_MARKETS_GAP));
}

static void
serve(int fd)
{
    char req[2048];
    size_t n = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (n < sizeof(req) - 1 && poll(&p, 1, 2000) > 0) {
        ssize_t r = read(fd, req + n, sizeof(req) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL)
            break;
    }
    req[n] = '\0';
    kb_buf body = KB_BUF_INIT, out = KB_BUF_INIT;
    bool ok = strncmp(req, "GET /metrics ", 13) == 0 || strncmp(req, "GET /metrics?", 13) == 0;
    if (ok)
        render(&body);
    else
        kb_buf_puts(&body, "not found: GET /metrics\n");
    kb_buf_printf(&out,
                  "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                  "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                  ok ? "200 OK" : "404 Not Found", body.len);
    kb_buf_append(&out, body.buf, body.len);
    size_t off = 0;
    while (off < out.len) {
        ssize_t w = write(fd, out.buf + off, out.len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    kb_buf_release(&body);
    kb_buf_release(&out);
}

static void *
loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&K.stop)) {
        struct pollfd p = {.fd = listen_fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0)
            continue;
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        serve(fd);
        close(fd);
    }
    return NULL;
}

int
kc_metrics_start(int port)
{
    if (port == 0)
        return 0;
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one_ = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one_, sizeof(one_));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(listen_fd, 16) < 0) {
        kb_log_error("unable to listen for metrics on 127.0.0.1:%d: %s", port, strerror(errno));
        close(listen_fd);
        listen_fd = -1;
        return -1;
    }
    if (pthread_create(&th, NULL, loop, NULL) != 0)
        return -1;
    running = true;
    return 0;
}

void
kc_metrics_stop(void)
{
    if (running)
        pthread_join(th, NULL);
    running = false;
    if (listen_fd >= 0)
        close(listen_fd);
    listen_fd = -1;
}
