/* config.c - the environment table and its loader; see kb_config.h. */
#include "kb_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_str.h"
#include "kb_banned.h"

#define OFF(field) offsetof(kb_config, field)

const kb_config_var kb_config_vars[] = {
    {"KB_DATABASE_URL", KB_CFG_SECRET, true, NULL, 0, 0, OFF(database_url),
     "libpq connection string or URL of the primary (may hold a password)"},
    {"KB_DATABASE_READ_URL", KB_CFG_SECRET, false, NULL, 0, 0, OFF(database_read_url),
     "optional streaming replica for data routes"},
    {"KB_SOCKET", KB_CFG_STRING, false, "/run/kalshibook/fcgi.sock", 0, 0, OFF(socket_path),
     "FastCGI unix socket path (ignored under systemd socket activation)"},
    {"KB_SOCKET_MODE", KB_CFG_OCTAL, false, "0660", 0, 0777, OFF(socket_mode),
     "permissions of the socket the master creates"},
    {"KB_WORKERS", KB_CFG_INT, false, "0", 0, 256, OFF(workers),
     "worker processes; 0 = eight per core, at most 64"},
    {"KB_MAX_BODY", KB_CFG_INT, false, "1048576", 1024, 64L * 1024 * 1024, OFF(max_body),
     "largest request body in bytes (413 above)"},
    {"KB_MAX_REQUESTS", KB_CFG_INT, false, "100000", 0, INT32_MAX, OFF(max_requests),
     "requests a worker serves before it is recycled; 0 = never"},
    {"KB_DRAIN_TIMEOUT_S", KB_CFG_INT, false, "20", 1, 3600, OFF(drain_timeout_s),
     "seconds in-flight requests get on SIGTERM/SIGHUP before workers are killed"},
    {"KB_DB_CONNECT_TIMEOUT_S", KB_CFG_INT, false, "3", 1, 60, OFF(db_connect_timeout_s),
     "libpq connect timeout"},
    {"KB_DB_STATEMENT_TIMEOUT_MS", KB_CFG_INT, false, "15000", 0, 3600000,
     OFF(db_statement_timeout_ms), "server-side statement_timeout per connection; 0 = none"},
    {"KB_HEALTH_MAX_AGE_MS", KB_CFG_INT, false, "1000", 0, 60000, OFF(health_max_age_ms),
     "GET /health takes the worker's connection's last database answer when it is younger "
     "than this and the server has not closed the connection since; 0 = a query every call"},
    {"KB_LOG_LEVEL", KB_CFG_STRING, false, "info", 0, 0, OFF(log_level),
     "debug, info, warn or error"},
    {"KB_MIGRATIONS_DIR", KB_CFG_STRING, false, KB_DEFAULT_MIGRATIONS_DIR, 0, 0,
     OFF(migrations_dir), "directory of NNNN_name.sql migrations for kbctl migrate"},
    {"STRIPE_SECRET_KEY", KB_CFG_SECRET, false, NULL, 0, 0, OFF(stripe_secret_key),
     "Stripe secret key (sk_live_/sk_test_/rk_); unset = billing routes answer 503"},
    {"STRIPE_WEBHOOK_SECRETS", KB_CFG_SECRET, false, NULL, 0, 0, OFF(stripe_webhook_secrets),
     "comma-separated webhook signing secrets (whsec_...), several during rotation"},
    {"STRIPE_PROJECT_PRICE_ID", KB_CFG_STRING, false, NULL, 0, 0, OFF(stripe_project_price),
     "price of the Project plan (kbctl stripe-setup prints it)"},
    {"STRIPE_PAYG_PRICE_ID", KB_CFG_STRING, false, NULL, 0, 0, OFF(stripe_payg_price),
     "metered price of PAYG overage credits"},
    {"STRIPE_METER_EVENT_NAME", KB_CFG_STRING, false, "kalshibook_api_credits", 0, 0,
     OFF(stripe_meter_event), "event_name of the billing meter that counts overage credits"},
    {"STRIPE_API_BASE", KB_CFG_STRING, false, "https://api.stripe.com", 0, 0, OFF(stripe_api_base),
     "Stripe API base URL (tests and make run: the stand-in)"},
    {"STRIPE_CA_FILE", KB_CFG_STRING, false, NULL, 0, 0, OFF(stripe_ca_file),
     "CA bundle for STRIPE_API_BASE; unset = the system store"},
    {"STRIPE_TIMEOUT_S", KB_CFG_INT, false, "20", 1, 300, OFF(stripe_timeout_s),
     "total timeout of one Stripe HTTP attempt"},
    {"STRIPE_MAX_RETRIES", KB_CFG_INT, false, "2", 0, 10, OFF(stripe_max_retries),
     "retries of a Stripe call on network errors, 409, 429 and 5xx"},
    {"STRIPE_WEBHOOK_TOLERANCE_S", KB_CFG_INT, false, "300", 1, 86400,
     OFF(stripe_webhook_tolerance_s), "largest accepted age of a webhook signature"},
    {"KB_APP_URL", KB_CFG_STRING, false, "http://localhost:8000", 0, 0, OFF(app_url),
     "public URL of the dashboard, for Checkout and portal return URLs"},
    {"KB_USAGE_FLUSH_S", KB_CFG_INT, false, "60", 1, 86400, OFF(usage_flush_s),
     "seconds between usage reporter runs (PAYG overage -> Stripe meter events)"},
    {"KB_USAGE_REPORTER", KB_CFG_INT, false, "1", 0, 1, OFF(usage_reporter),
     "1: with STRIPE_SECRET_KEY set, the master runs the usage reporter child; 0: only "
     "kbctl report-usage (e.g. cron, or one reporter host among several)"},
    {"KB_USAGE_MARGIN_S", KB_CFG_INT, false, "60", 0, 86400, OFF(usage_margin_s),
     "outbox rows younger than this are not reported yet (must exceed the statement "
     "timeout, so a row a failing request still refunds is never sent)"},
    {"KB_PAYG_OVERAGE_CAP", KB_CFG_INT, false, "0", 0, INT32_MAX, OFF(payg_overage_cap),
     "default per-cycle PAYG overage cap in credits for POST /billing/payg; 0 = none"},
    {"KB_JWT_SECRET", KB_CFG_SECRET, false, NULL, 0, 0, OFF(jwt_secret),
     "HS256 secret for access tokens, at least 32 bytes (a Supabase project's JWT secret works)"},
    {"KB_JWT_TTL", KB_CFG_INT, false, "3600", 60, 30L * 86400, OFF(jwt_ttl_s),
     "lifetime of issued access tokens in seconds"},
    {"KB_JWT_JWKS_FILE", KB_CFG_STRING, false, NULL, 0, 0, OFF(jwt_jwks_file),
     "optional JWKS file: ES256/RS256 tokens signed by its keys are accepted too"},
    {"KB_AUTH_MAX_CONCURRENT", KB_CFG_INT, false, "0", 0, 256, OFF(auth_max_concurrent),
     "password hashes (argon2id) running at once on this host, 503 above; 0 = half the workers"},
    {"KB_HOST_ID", KB_CFG_STRING, false, NULL, 0, 0, OFF(host_id),
     "this app host's id among those sharing the database (1-64 of A-Za-z0-9._-); unset = "
     "derived from /etc/machine-id; a second live pool with the same id refuses to start"},
    {"KB_JOURNAL_DIR", KB_CFG_STRING, false, "/run/kalshibook-journal", 0, 0, OFF(journal_dir),
     "directory (a tmpfs, emptied at boot) of the pool's charge journal file, so a restart "
     "on this machine settles what a pool that died whole had in flight; \"none\" = memory only"},
    {"KB_HOST_ROWS", KB_CFG_STRING, false, "auto", 0, 0, OFF(host_rows),
     "write each charge's meter_inflight row and answered mark (what lets other hosts "
     "settle a host that never comes back): auto = while another host holds a lease, on, "
     "off"},
    {"KB_HOST_LEASE_MS", KB_CFG_INT, false, "15000", 1000, 600000, OFF(host_lease_ms),
     "lease of the host id, renewed every quarter of it; a host silent this long is taken "
     "for dead and its charges in flight are settled by the other hosts"},
    {"KALSHI_API_KEY_ID", KB_CFG_STRING, false, NULL, 0, 0, OFF(kalshi_key_id),
     "Kalshi API key id (kalshibook-collector); unset = no collector on this host"},
    {"KALSHI_PRIVATE_KEY_FILE", KB_CFG_STRING, false, NULL, 0, 0, OFF(kalshi_key_file),
     "PEM file of that key's RSA private key (readable by the collector only)"},
    {"KALSHI_WS_URL", KB_CFG_STRING, false, "wss://api.elections.kalshi.com/trade-api/ws/v2", 0, 0,
     OFF(kalshi_ws_url),
     "Kalshi WebSocket v2 URL (demo: wss://demo-api.kalshi.co/trade-api/ws/v2)"},
    {"KALSHI_REST_URL", KB_CFG_STRING, false, "https://api.elections.kalshi.com/trade-api/v2", 0, 0,
     OFF(kalshi_rest_url), "Kalshi REST v2 base URL (market discovery)"},
    {"KALSHI_CA_FILE", KB_CFG_STRING, false, NULL, 0, 0, OFF(kalshi_ca_file),
     "CA bundle for the Kalshi URLs; unset = the system store (tests: the stand-in's cert)"},
    {"KB_COLLECTOR_SPOOL_DIR", KB_CFG_STRING, false, "/var/lib/kalshibook/spool", 0, 0,
     OFF(collector_spool_dir), "where the collector appends every received frame (hourly files)"},
    {"KB_COLLECTOR_SPOOL_KEEP_H", KB_CFG_INT, false, "168", 0, 87600, OFF(collector_spool_keep_h),
     "hours a spool file is kept after it is stored in Postgres; 0 = never deleted"},
    {"KB_COLLECTOR_SPOOL_FILE_S", KB_CFG_INT, false, "3600", 1, 86400, OFF(collector_spool_file_s),
     "seconds of wall clock per spool file (3600: a new file every hour, on the hour)"},
    {"KB_COLLECTOR_MARKETS_PER_SUB", KB_CFG_INT, false, "500", 1, 10000,
     OFF(collector_markets_per_sub), "markets per orderbook_delta/trade subscription (a shard)"},
    {"KB_COLLECTOR_SUBS_PER_CONN", KB_CFG_INT, false, "10", 1, 1000, OFF(collector_subs_per_conn),
     "shards per WebSocket connection"},
    {"KB_COLLECTOR_MAX_CONNS", KB_CFG_INT, false, "50", 1, 200, OFF(collector_max_conns),
     "most WebSocket connections (Kalshi allows 200 per user)"},
    {"KB_COLLECTOR_HEARTBEAT_S", KB_CFG_INT, false, "10", 1, 300, OFF(collector_heartbeat_s),
     "heartbeat interval: a connection silent for 3 of them is dead"},
    {"KB_COLLECTOR_RECONCILE_S", KB_CFG_INT, false, "300", 5, 86400, OFF(collector_reconcile_s),
     "seconds between REST reconciliations of the open markets"},
    {"KB_COLLECTOR_REST_RPS", KB_CFG_INT, false, "10", 1, 100, OFF(collector_rest_rps),
     "REST requests per second at most (token bucket; Kalshi's basic tier allows 20)"},
    {"KB_COLLECTOR_BACKOFF_MIN_MS", KB_CFG_INT, false, "500", 10, 600000,
     OFF(collector_backoff_min_ms), "first reconnect delay (jittered, doubling)"},
    {"KB_COLLECTOR_BACKOFF_MAX_MS", KB_CFG_INT, false, "30000", 10, 3600000,
     OFF(collector_backoff_max_ms), "longest reconnect / REST retry delay"},
    {"KB_COLLECTOR_QUEUE_MB", KB_CFG_INT, false, "64", 1, 4096, OFF(collector_queue_mb),
     "memory between the reader and the writer; beyond, the writer reads the spool back"},
    {"KB_COLLECTOR_MAX_FRAME_MB", KB_CFG_INT, false, "64", 1, 1024, OFF(collector_max_frame_mb),
     "largest WebSocket message accepted (a bigger one drops the connection)"},
    {"KB_COLLECTOR_METRICS_PORT", KB_CFG_INT, false, "9469", 0, 65535, OFF(collector_metrics_port),
     "Prometheus metrics on http://127.0.0.1:PORT/metrics; 0 = off"},
    {"KB_COLLECTOR_INSTANCE", KB_CFG_STRING, false, NULL, 0, 0, OFF(collector_instance),
     "this collector's name in the database (default: the host name)"},
    {"KB_COLLECTOR_SERIES", KB_CFG_STRING, false, NULL, 0, 0, OFF(collector_series),
     "comma-separated series tickers to collect (e.g. KXBTCD,KXFED); unset = every market"},
    {"KB_COLLECTOR_COMMIT_MS", KB_CFG_INT, false, "200", 10, 60000, OFF(collector_commit_ms),
     "longest time a received message waits before the writer commits it"},
    {"KB_COLLECTOR_CHECKPOINT_EVERY", KB_CFG_INT, false, "10000", 0, 100000000,
     OFF(collector_checkpoint_every),
     "reconstruction checkpoint every N deltas of a live market (kb_extend_checkpoints); 0 = none"},
    {"KB_COLLECTOR_CHECKPOINT_S", KB_CFG_INT, false, "30", 1, 86400, OFF(collector_checkpoint_s),
     "seconds between checkpoint rounds over the markets that got data"},
};

const size_t kb_config_nvars = sizeof(kb_config_vars) / sizeof(kb_config_vars[0]);

kb_config kb_cfg;

/* Whether kb_config_load insists on a token key; kbctl clears it for commands without tokens. */
static bool jwt_required = true;

void
kb_config_require_jwt(bool required)
{
    jwt_required = required;
}

static void
problem(kb_buf *problems, const char *name, const char *reason)
{
    kb_buf_printf(problems, "%s: %s\n", name, reason);
}

/* Tokens must be verifiable: a strong HS256 secret, or a JWKS file. Returns the problems. */
static int
check_jwt(const kb_config *cfg, kb_buf *problems)
{
    if (cfg->jwt_jwks_file == NULL &&
        (cfg->jwt_secret == NULL || strlen(cfg->jwt_secret) < KB_JWT_SECRET_MIN)) {
        problem(problems, "KB_JWT_SECRET",
                cfg->jwt_secret == NULL
                    ? "is required (at least 32 bytes) unless KB_JWT_JWKS_FILE is set"
                    : "must be at least 32 bytes long");
        return 1;
    }
    if (cfg->jwt_secret != NULL && strlen(cfg->jwt_secret) < KB_JWT_SECRET_MIN) {
        problem(problems, "KB_JWT_SECRET", "must be at least 32 bytes long");
        return 1;
    }
    return 0;
}

int
kb_config_load(kb_config *cfg, kb_buf *problems)
{
    int bad = 0;
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < kb_config_nvars; i++) {
        const kb_config_var *v = &kb_config_vars[i];
        const char *val = getenv(v->name);
        if (val != NULL && val[0] == '\0')
            val = NULL;
        if (val == NULL && v->required) {
            problem(problems, v->name, "is required but not set");
            bad++;
            continue;
        }
        if (val == NULL)
            val = v->def;
        char *field = (char *)cfg + v->offset;
        if (v->kind == KB_CFG_STRING || v->kind == KB_CFG_SECRET) {
            memcpy(field, &val, sizeof(val));
            continue;
        }
        if (val == NULL)
            continue;
        long num = 0;
        if (v->kind == KB_CFG_OCTAL) {
            char *end = NULL;
            unsigned long u = strtoul(val, &end, 8);
            if (end == val || *end != '\0' || u > (unsigned long)v->max) {
                problem(problems, v->name, "must be an octal mode such as 0660");
                bad++;
                continue;
            }
            num = (long)u;
        } else {
            int64_t n;
            const char *err;
            if (!kb_parse_i64(kb_str_c(val), v->min, v->max, &n, &err)) {
                kb_buf_printf(problems, "%s: must be an integer in [%ld, %ld] (%s)\n", v->name,
                              v->min, v->max, err);
                bad++;
                continue;
            }
            num = (long)n;
        }
        memcpy(field, &num, sizeof(num));
    }
    if (cfg->log_level != NULL) {
        static const char *const levels[] = {"debug", "info", "warn", "error"};
        bool ok = false;
        for (size_t i = 0; i < 4; i++)
            ok = ok || strcmp(cfg->log_level, levels[i]) == 0;
        if (!ok) {
            problem(problems, "KB_LOG_LEVEL", "must be debug, info, warn or error");
            bad++;
        }
    }
    /* A program that never signs or verifies a token does not ask (kb_config_require_jwt). */
    if (jwt_required)
        bad += check_jwt(cfg, problems);
    /* Money rule 8: never run billing with a webhook nobody can verify. */
    if (cfg->stripe_secret_key != NULL && cfg->stripe_webhook_secrets == NULL) {
        problem(problems, "STRIPE_WEBHOOK_SECRETS",
                "is required when STRIPE_SECRET_KEY is set (the webhook cannot be verified)");
        bad++;
    }
    if (strcmp(cfg->host_rows, "auto") != 0 && strcmp(cfg->host_rows, "on") != 0 &&
        strcmp(cfg->host_rows, "off") != 0) {
        problem(problems, "KB_HOST_ROWS", "must be auto, on or off");
        bad++;
    }
    if (cfg->host_id != NULL &&
        (strlen(cfg->host_id) > 64 ||
         strspn(cfg->host_id,
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
             strlen(cfg->host_id))) {
        problem(problems, "KB_HOST_ID", "must be 1-64 characters of A-Z a-z 0-9 . _ -");
        bad++;
    }
    return bad;
}
