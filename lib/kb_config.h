/* kb_config.h - configuration, read only from the environment.
 *
 * kb_config_vars[] is the one table of variables (name, kind, default,
 * description); kb_config_load() fills a kb_config from it and reports every
 * missing or malformed variable. The process-wide kb_cfg is set once before
 * fork and read-only afterwards. Secrets are never printed: check-config and
 * the logs name them only.
 */
#ifndef KB_CONFIG_H
#define KB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "kb_buf.h"

typedef struct kb_config {
    const char *database_url;      /* KB_DATABASE_URL (required) */
    const char *database_read_url; /* KB_DATABASE_READ_URL, NULL when unset */
    const char *socket_path;       /* KB_SOCKET */
    long socket_mode;              /* KB_SOCKET_MODE (octal) */
    long workers;                  /* KB_WORKERS, 0 = number of cores */
    long max_body;                 /* KB_MAX_BODY bytes */
    long max_requests;             /* KB_MAX_REQUESTS per worker, 0 = unlimited */
    long drain_timeout_s;          /* KB_DRAIN_TIMEOUT_S */
    long db_connect_timeout_s;     /* KB_DB_CONNECT_TIMEOUT_S */
    long db_statement_timeout_ms;  /* KB_DB_STATEMENT_TIMEOUT_MS */
    long health_max_age_ms;        /* KB_HEALTH_MAX_AGE_MS */
    const char *log_level;         /* KB_LOG_LEVEL */
    const char *migrations_dir;    /* KB_MIGRATIONS_DIR */
    /* Stripe (lib/stripe.c, lib/usage.c, app/fcgi/h_webhook.c); see README "Stripe setup". */
    const char *stripe_secret_key;      /* STRIPE_SECRET_KEY, NULL = billing off */
    const char *stripe_webhook_secrets; /* STRIPE_WEBHOOK_SECRETS, comma-separated */
    const char *stripe_project_price;   /* STRIPE_PROJECT_PRICE_ID */
    const char *stripe_payg_price;      /* STRIPE_PAYG_PRICE_ID */
    const char *stripe_meter_event;     /* STRIPE_METER_EVENT_NAME */
    const char *stripe_api_base;        /* STRIPE_API_BASE */
    const char *stripe_ca_file;         /* STRIPE_CA_FILE, NULL = system store */
    long stripe_timeout_s;              /* STRIPE_TIMEOUT_S */
    long stripe_max_retries;            /* STRIPE_MAX_RETRIES */
    long stripe_webhook_tolerance_s;    /* STRIPE_WEBHOOK_TOLERANCE_S */
    const char *app_url;                /* KB_APP_URL */
    long usage_flush_s;                 /* KB_USAGE_FLUSH_S */
    long usage_reporter;                /* KB_USAGE_REPORTER: 1 = master runs it */
    long usage_margin_s;                /* KB_USAGE_MARGIN_S */
    long payg_overage_cap;              /* KB_PAYG_OVERAGE_CAP, 0 = none */
    const char *jwt_secret;             /* KB_JWT_SECRET (HS256), NULL when unset */
    long jwt_ttl_s;                     /* KB_JWT_TTL: access token lifetime */
    const char *jwt_jwks_file;          /* KB_JWT_JWKS_FILE (ES256/RS256 keys), NULL when unset */
    long auth_max_concurrent;           /* KB_AUTH_MAX_CONCURRENT argon2 jobs per host, 0 = auto */
    const char *host_id;                /* KB_HOST_ID, NULL = derived from /etc/machine-id */
    const char *journal_dir; /* KB_JOURNAL_DIR: the charge journal's file (kb_journal.h) */
    const char *host_rows;   /* KB_HOST_ROWS: auto, on, off (kb_host_rows()) */
    long host_lease_ms;      /* KB_HOST_LEASE_MS: lease of the host id (lib/kb_host.h) */
    /* kalshibook-collector (app/collector/, lib/kalshi.c); README "Live collector". */
    const char *kalshi_key_id;       /* KALSHI_API_KEY_ID, NULL = no collector on this host */
    const char *kalshi_key_file;     /* KALSHI_PRIVATE_KEY_FILE (PEM, RSA) */
    const char *kalshi_ws_url;       /* KALSHI_WS_URL */
    const char *kalshi_rest_url;     /* KALSHI_REST_URL */
    const char *kalshi_ca_file;      /* KALSHI_CA_FILE, NULL = the system store */
    const char *collector_spool_dir; /* KB_COLLECTOR_SPOOL_DIR */
    long collector_spool_keep_h;     /* KB_COLLECTOR_SPOOL_KEEP_H, 0 = keep every file */
    long collector_spool_file_s;     /* KB_COLLECTOR_SPOOL_FILE_S */
    long collector_markets_per_sub;  /* KB_COLLECTOR_MARKETS_PER_SUB */
    long collector_subs_per_conn;    /* KB_COLLECTOR_SUBS_PER_CONN */
    long collector_max_conns;        /* KB_COLLECTOR_MAX_CONNS */
    long collector_heartbeat_s;      /* KB_COLLECTOR_HEARTBEAT_S */
    long collector_reconcile_s;      /* KB_COLLECTOR_RECONCILE_S */
    long collector_rest_rps;         /* KB_COLLECTOR_REST_RPS */
    long collector_backoff_min_ms;   /* KB_COLLECTOR_BACKOFF_MIN_MS */
    long collector_backoff_max_ms;   /* KB_COLLECTOR_BACKOFF_MAX_MS */
    long collector_queue_mb;         /* KB_COLLECTOR_QUEUE_MB */
    long collector_max_frame_mb;     /* KB_COLLECTOR_MAX_FRAME_MB */
    long collector_metrics_port;     /* KB_COLLECTOR_METRICS_PORT, 0 = off */
    const char *collector_instance;  /* KB_COLLECTOR_INSTANCE, NULL = the host name */
    const char *collector_series;    /* KB_COLLECTOR_SERIES, NULL = every series */
    long collector_commit_ms;        /* KB_COLLECTOR_COMMIT_MS */
    long collector_checkpoint_every; /* KB_COLLECTOR_CHECKPOINT_EVERY, 0 = none */
    long collector_checkpoint_s;     /* KB_COLLECTOR_CHECKPOINT_S */
} kb_config;

/* Shortest KB_JWT_SECRET accepted (bytes). */
#define KB_JWT_SECRET_MIN 32

typedef enum kb_config_kind {
    KB_CFG_STRING,
    KB_CFG_SECRET, /* a string that is never printed */
    KB_CFG_INT,
    KB_CFG_OCTAL,
} kb_config_kind;

typedef struct kb_config_var {
    const char *name;
    kb_config_kind kind;
    bool required;
    const char *def; /* default as text, NULL for none */
    long min, max;   /* for KB_CFG_INT / KB_CFG_OCTAL */
    size_t offset;   /* into kb_config */
    const char *help;
} kb_config_var;

extern const kb_config_var kb_config_vars[];
extern const size_t kb_config_nvars;

/* The process-wide configuration (set by the programs before fork). */
extern kb_config kb_cfg;

/*
 * Fill cfg from the environment. Each problem is appended to problems as one
 * line "NAME: reason\n". Returns the number of problems (0 = usable).
 * String values point into the environment and live as long as the process.
 */
int kb_config_load(kb_config *cfg, kb_buf *problems);

/*
 * Whether the following kb_config_load() calls require a usable token key (KB_JWT_SECRET of
 * at least 32 bytes, or KB_JWT_JWKS_FILE) and judge a secret that is set. On by default (the
 * server, `kbctl check-config`); kbctl turns it off for the commands that neither sign nor
 * verify tokens (migrate, import, status, ...). Call before fork, like the loader.
 */
void kb_config_require_jwt(bool required);

#endif
