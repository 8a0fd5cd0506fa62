/* main.c - kalshibook-collector: configuration, threads, leadership, signals.
 *
 * Start: the environment is validated (exit 78 on a problem, like kbctl check-config),
 * the Kalshi key loaded, the metrics port opened and the writer thread started. It
 * waits for the leader lock (a standby stays here); once leading, the spool is opened,
 * discovery starts and the reader loop runs until SIGTERM/SIGINT. Stop: connections
 * close (recorded as gaps), the spool is flushed and synced, and the writer stores
 * what the spool holds beyond its progress while Postgres answers (what it cannot
 * store, the next start reads back from the spool).
 */
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "collector.h"
#include "kb_log.h"
#include "kb_banned.h"

kc_state K;

static kb_config cfg;
static _Thread_local uint64_t rng;

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

uint64_t
kc_rand(void)
{
    if (rng == 0)
        rng = (uint64_t)kc_mono_ns() ^ (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&rng;
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

int64_t
kc_jitter_ms(int64_t d)
{
    if (d <= 1)
        return d;
    return d / 2 + (int64_t)(kc_rand() % (uint64_t)(d / 2 + 1));
}

static void
on_signal(int sig)
{
    (void)sig;
    /* The reader's 100 ms tick sees it; nothing else here is async-signal-safe. */
    atomic_store(&K.stop, 1);
}

static int
usage(int rc)
{
    fprintf(rc ? stderr : stdout,
            "usage: kalshibook-collector\n\n"
            "Records every open Kalshi market's orderbook, trades and lifecycle into the\n"
            "KalshiBook database. Configured from the environment (KALSHI_*, KB_COLLECTOR_*,\n"
            "KB_DATABASE_URL; `kbctl check-config --list` shows them all). Exit codes: 0 on\n"
            "SIGTERM, 1 failure, 75 lost leadership (restart as a standby), 78 configuration.\n");
    return rc;
}

static int
configure(void)
{
    kb_buf problems = KB_BUF_INIT;
    kb_config_require_jwt(false);
    int bad = kb_config_load(&cfg, &problems);
    if (bad == 0 && cfg.kalshi_key_id == NULL) {
        kb_buf_puts(&problems, "KALSHI_API_KEY_ID: is required by kalshibook-collector\n");
        bad++;
    }
    if (bad == 0)
        bad += kb_kalshi_check_config(&cfg, &problems);
    if (bad) {
        fprintf(stderr, "kalshibook-collector: configuration has %d problem%s:\n%s", bad,
                bad == 1 ? "" : "s", kb_buf_cstr(&problems));
        kb_buf_release(&problems);
        return 78;
    }
    kb_buf_release(&problems);
    kb_log_level lvl = KB_LOG_INFO;
    kb_log_level_parse(cfg.log_level, &lvl);
    kb_log_init("collector", lvl);
    K.cfg = &cfg;
    kb_buf why = KB_BUF_INIT;
    if (!kb_kalshi_key_load(&K.key, cfg.kalshi_key_id, cfg.kalshi_key_file, &why)) {
        fprintf(stderr, "kalshibook-collector: %s\n", kb_buf_cstr(&why));
        kb_buf_release(&why);
        return 78;
    }
    kb_buf_release(&why);
    if (!kb_kalshi_url_split(cfg.kalshi_ws_url, K.ws_host, sizeof(K.ws_host), &K.ws_port, &K.ws_tls,
                             &K.ws_path))
        return 78;
    const char *inst = cfg.collector_instance;
    char host[64];
    if (inst == NULL) {
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "collector");
        host[sizeof(host) - 1] = '\0';
        inst = host;
    }
    snprintf(K.instance, sizeof(K.instance), "%s", inst);
    return 0;
}

int
main(int argc, char **argv)
{
    kb_log_init("collector", KB_LOG_INFO);
    if (argc > 1)
        return usage(strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ? 0 : 64);
    int rc = configure();
    if (rc != 0)
        return rc;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    kc_queue_init((size_t)cfg.collector_queue_mb << 20);
    if (kc_metrics_start((int)cfg.collector_metrics_port) < 0 || kc_writer_start() < 0) {
        atomic_store(&K.stop, 1);
        kc_metrics_stop();
        return 1;
    }
    kb_log_info("instance '%s' waiting for the leader lock", K.instance);
    if (kc_writer_wait_leader()) {
        if (kc_spool_open() == 0 && kc_ws_init() == 0 && kc_rest_start() == 0 &&
            kc_upkeep_start() == 0) {
            kb_log_info("collecting from %s (spool %s)", cfg.kalshi_ws_url,
                        cfg.collector_spool_dir);
            kc_ws_run();
        } else {
            rc = 1;
        }
        atomic_store(&K.stop, 1);
        kc_rest_stop();
        kc_upkeep_stop();
        kc_spool_close();
        kc_shards_release();
    }
    atomic_store(&K.stop, 1);
    atomic_store(&K.reader_done, 1);
    kc_writer_stop();
    kc_metrics_stop();
    kb_kalshi_key_release(&K.key);
    curl_global_cleanup();
    kb_log_info("stopped");
    return rc;
}
