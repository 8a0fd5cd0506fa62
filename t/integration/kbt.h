/* kbt.h - integration test harness: HTTP(S) through nginx, SQL, and stack control.
 *
 * The stack (Postgres, kalshibook-fcgi, nginx) is started by t/run-tests.sh
 * with t/stack.sh; its run.env variables reach the tests as environment:
 * KB_BASE_URL, KB_HTTP_URL, KB_CA_CERT, KB_DATABASE_URL, KB_STACK_DIR,
 * KB_FCGI_PID. Every test talks to the real stack over HTTPS with libcurl.
 */
#ifndef KBT_H
#define KBT_H

#include <check.h>
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "kb_buf.h"

typedef struct kbt_resp {
    long status;
    kb_buf body;
    kb_buf headers; /* raw header block of the final response */
    cJSON *json;    /* parsed body, NULL when not JSON */
    int curl_code;  /* CURLcode; 0 when the exchange completed */
} kbt_resp;

/* Call once at program start (curl_global_init). */
void kbt_init(void);

/* Environment variable that must be set, or the test aborts. */
const char *kbt_env(const char *name);

/*
 * Perform a request to KB_BASE_URL + path. headers is a NULL-terminated list
 * of "Name: value" lines (may be NULL). body may be NULL (no body).
 * The caller frees the response with kbt_resp_free().
 */
kbt_resp *kbt_request(const char *method, const char *path, const char *const *headers,
                      const char *body, size_t body_len);

/* Same, against an absolute URL (e.g. the plain-HTTP port). */
kbt_resp *kbt_request_url(const char *method, const char *url, const char *const *headers,
                          const char *body, size_t body_len);

/* Source address for the following requests (NULL = default), e.g. "127.0.0.2"
 * to look like a client that is not this host. */
void kbt_set_source(const char *addr);

/* Shorthand GET. */
kbt_resp *kbt_get(const char *path);

void kbt_resp_free(kbt_resp *r);

/* Value of the Prometheus sample whose name+labels are exactly series in
 * text (GET /metrics), or -1 when there is none. */
double kbt_metrics_sample(const char *text, const char *series);

/* Scrape GET /metrics now and return series (asserted to be there). */
double kbt_metric(const char *series);

/* Value of response header name (case-insensitive), malloc'd, or NULL. Caller frees. */
char *kbt_header(const kbt_resp *r, const char *name);

/* Integer value of response header name, -1 when there is none (asserted to be an integer). */
long kbt_header_long(const kbt_resp *r, const char *name);

/*
 * Assert r is the API.md error envelope for status/code: JSON object with
 * error.code, error.message (string), error.status == status, request_id
 * equal to the X-Request-ID header.
 */
void kbt_assert_envelope(const kbt_resp *r, long status, const char *code);

/* Assert X-Request-ID is present in req_ + 12 hex form. */
void kbt_assert_request_id(const kbt_resp *r);

/* The bytes of file path (relative to KB_REPO_ROOT unless absolute), NUL-terminated and
 * malloc'd, *len (may be NULL) their count; NULL when it cannot be read. */
char *kbt_file_read(const char *path, size_t *len);

/* A fresh libpq connection to KB_DATABASE_URL (aborts the test on failure). */
PGconn *kbt_db(void);

/* Run sql and return the first column of the first row (malloc'd), NULL if no row. */
char *kbt_sql_value(PGconn *c, const char *sql);

/* Run sql, asserting success. */
void kbt_sql_ok(PGconn *c, const char *sql);

/* Run `t/stack.sh <cmd> $KB_STACK_DIR [arg]`; returns its exit status. */
int kbt_stack(const char *cmd, const char *arg);

/*
 * Set name=value in the stack's DIR/app.env (value NULL: remove the line) and
 * restart kalshibook-fcgi so it takes effect; asserts both. Tests that change
 * the app's settings restore them in an unchecked teardown.
 */
void kbt_app_env_set(const char *name, const char *value);

/* Pid of the running kalshibook-fcgi master (from DIR/fcgi.pid). */
pid_t kbt_master_pid(void);

/* Direct children of pid but the host lease keeper "kb-host" (the workers, and the
 * usage reporter when it runs), up to max; returns the count. */
size_t kbt_children(pid_t pid, pid_t *out, size_t max);

/* Poll fn(arg) every 20 ms until it returns true or timeout_ms passes. */
bool kbt_wait_until(bool (*fn)(void *), void *arg, long timeout_ms);

/* Milliseconds of monotonic time. */
long kbt_now_ms(void);

/* ---- auth and keys (issue 4) ---- */

/*
 * method path with "Content-Type: application/json", body (NULL = none) and,
 * when token is not NULL, "Authorization: Bearer <token>".
 */
kbt_resp *kbt_auth_json(const char *method, const char *path, const char *token, const char *body);

/* An email address no other test (or run) uses, containing tag (malloc'd). */
char *kbt_auth_email(const char *tag);

/* POST /auth/signup (asserting 200); access token and user id are malloc'd (may be NULL). */
void kbt_auth_signup(const char *email, const char *password, char **token, char **user_id);

/* String member name of r's top-level JSON object (or of its "data" object), NULL if absent. */
const char *kbt_auth_str(const kbt_resp *r, const char *name);

/*
 * Remember a secret the test created (raw API key, token, password, Stripe
 * key): t/run-tests.sh fails the run if any log of the stack contains it.
 */
void kbt_secret_note(const char *secret);

/* ---- metering helpers (test_meter.c and others) ---- */

typedef struct kbt_account {
    char user_id[40];
    char key[64]; /* raw API key "kb-..." */
    char key_hash[65];
    char key_id[40];
} kbt_account;

/*
 * Create a user with one API key and a billing account. tier is "free",
 * "payg" or "project"; credits_total and rpm_override are per-account
 * overrides (0 = the tier's figure); payg_enabled as given. Uses its own connection c.
 */
void kbt_account_new(PGconn *c, kbt_account *a, const char *tier, int credits_total,
                     int rpm_override, bool payg);

/* Integer value of a one-value query with one text parameter. */
long kbt_sql_long1(PGconn *c, const char *sql, const char *param);

/* ---- Stripe helpers (test_stripe*.c): the stand-in at $KB_STRIPE_URL ---- */

/* METHOD $KB_STRIPE_URL/_control/<path> with a JSON body (may be NULL). Caller frees. */
kbt_resp *kbt_stripe_control(const char *method, const char *path, const char *json);

/* Stripe-Signature value for body signed with secret at Unix time t. Caller frees. */
char *kbt_stripe_sign(const char *secret, long t, const char *body);

/* POST body to /billing/webhook through nginx with the given Stripe-Signature (NULL: none). */
kbt_resp *kbt_stripe_webhook(const char *signature, const char *body);

/* POST body to /billing/webhook signed now with $STRIPE_WEBHOOK_SECRET; returns the status. */
long kbt_stripe_webhook_ok(const char *body);

/*
 * Run `$KB_BIN_DIR/kbctl <args...>` (NULL-terminated) with the test's
 * environment; returns its pid (not waited) when background, else its exit status.
 */
int kbt_stripe_kbctl(bool background, const char *const *args);
/* ---- spec conformance helpers (static/openapi.json; see t/docs/) ---- */

/*
 * Assert that r is what static/openapi.json documents for (method, path, r->status):
 * the body validated against the operation's response schema (unknown paths and
 * methods against the error envelope), error.status and the code's status consistent,
 * and the headers checked (X-Request-ID = request_id; X-Credits-*, X-RateLimit-* and
 * Retry-After integers; credit headers on metered 200s; Allow on 405). path is the
 * concrete request path (a query string is ignored). Runs
 * node t/docs/validate-response.js under KB_REPO_ROOT; fails the test with its messages.
 */
void kbt_docs_assert_conforms(const kbt_resp *r, const char *method, const char *path);

/* The same check without asserting: true when r conforms; otherwise msg (of msg_size
 * bytes, NUL-terminated) holds the validator's messages. */
bool kbt_docs_conforms(const kbt_resp *r, const char *method, const char *path, char *msg,
                       size_t msg_size);
/* ---- market data helpers (test_data.c and others) ---- */

/*
 * Run `$KB_BIN_DIR/kbctl <args>` (args is a shell-quoted string, e.g.
 * "import --strict t/data/x.jsonl", paths relative to KB_REPO_ROOT) with
 * stdout and stderr captured into out (may be NULL). Returns the exit status,
 * after the replica (if any) has caught up.
 */
int kbt_data_kbctl(const char *args, kb_buf *out);

/*
 * When KB_DATABASE_READ_URL is set (the suite runs with a streaming replica),
 * wait until the replica has replayed everything the primary has written so
 * far (kbt_data_kbctl calls it after every run).
 */
void kbt_data_wait_replica(void);

/* A user + key + project account with effectively unlimited credits and rate. */
void kbt_data_account(PGconn *c, kbt_account *a);

/* POST path with a JSON body and the account's key. */
kbt_resp *kbt_data_post(const kbt_account *a, const char *path, const char *json);

/* GET path with the account's key. */
kbt_resp *kbt_data_get(const kbt_account *a, const char *path);

/* Assert the object's member names are exactly names (NULL-terminated), in order. */
void kbt_data_assert_keys(const cJSON *obj, const char *const *names);
/* ---- parameterised SQL (every test passes values as parameters, never as SQL text) ---- */

/*
 * Run one statement sql with nparams (at most 8) text parameters given as const char *
 * arguments (NULL = SQL NULL), asserting success. kbt_sqlp_value returns the first column
 * of the first row (malloc'd; NULL when there is no row or the value is NULL).
 */
char *kbt_sqlp_value(PGconn *c, const char *sql, int nparams, ...);
void kbt_sqlp_ok(PGconn *c, const char *sql, int nparams, ...);

/* ---- requests held in flight (test_journal.c, test_metered_http.c) ---- */

/* kbt_wait_until conditions: exactly one (two) worker connections of the database c (a
 * PGconn *) are waiting on a lock. */
bool kbt_one_worker_waits_on_lock(void *c);
bool kbt_two_workers_wait_on_lock(void *c);

/* GET path with "Authorization: Bearer key", for a thread: resp is set when it returns. */
typedef struct kbt_keyed_get {
    const char *key;
    const char *path;
    kbt_resp *resp;
} kbt_keyed_get;

/* pthread entry point running one kbt_keyed_get (arg). */
void *kbt_keyed_get_thread(void *arg);

/* A request of the database c, for kbt_wait_until conditions about it. */
typedef struct kbt_request_ref {
    PGconn *c;
    const char *request_id;
} kbt_request_ref;

/* kbt_wait_until condition (arg: a kbt_request_ref): the request's refund is recorded. */
bool kbt_refund_recorded(void *arg);

/* Shift the whole cluster's kb_now() by a Postgres interval ("61 seconds"), and put it
 * back (use kbt_clock_restore as an unchecked teardown fixture). */
void kbt_clock_shift(const char *interval);
void kbt_clock_restore(void);

/* kbt_clock_shift so that kb_now() reads the instant at (timestamptz text) + extra (an
 * interval); c is any connection, for the arithmetic. */
void kbt_clock_to(PGconn *c, const char *at, const char *extra);

/* Shift kb_now() to the top of the next minute (of the real clock), so that a rate window
 * cannot roll for a while; returns the shift in seconds. */
long kbt_clock_next_minute(void);

/* True when fd of process p is a socket (/proc/p/fd). */
bool kbt_fd_is_socket(pid_t p, long fd);

/* ---- the meter's lookup and commit in its round trip (test_metered_http.c,
 * test_one_trip_http.c, test_journal_crash.c) ---- */

/* Unchecked fixtures: the app without its read replica (KB_DATABASE_READ_URL taken out of
 * this environment and app.env, the app restarted), so a by-id lookup rides with the
 * meter on the primary; and the suite's replica put back (nothing when there was none). */
void kbt_primary_only(void);
void kbt_replica_back(void);

/* The event KBT-AHEAD-EV and its markets KBT-AHEAD-A and KBT-AHEAD-B (idempotent). */
void kbt_ahead_markets(PGconn *c);

/* The counters of charges in one round trip, from one GET /metrics. Every GET /metrics
 * ends the transaction its worker had begun ahead: that worker's next charge takes two
 * round trips (and begins one ahead again). */
typedef struct kbt_trips {
    double sent;       /* kalshibook_charges_one_trip_total */
    double missed;     /* kalshibook_charges_one_trip_missed_total */
    double sent_ahead; /* kalshibook_db_sent_ahead_total: lookups answered from the meter's trip */
} kbt_trips;

void kbt_trips_read(kbt_trips *t);

/* Return once each worker (KB_WORKERS, 3 unless set) has its database connection, after
 * rounds of concurrent GET /metrics: when Postgres restarted, a worker finds its old
 * connection dead only on its next use, and a charge then fails with 503. */
void kbt_workers_connect(void);

/*
 * Warm every worker for key on path, a by-id route on the primary (kbt_primary_only),
 * until its charges go in one round trip (kbt_workers_connect() first). A worker charges
 * a key the slow way first, then on the fast path once, learning its window, then in one
 * round trip. Sends rounds of KB_WORKERS concurrent GETs, each asserted 200, until two
 * rounds in a row went in one round trip but for at most one request (the one whose
 * worker answered the GET /metrics before them). Returns how many requests it sent (each
 * charged once); *after (may be NULL) the counters as it ended.
 */
long kbt_one_trip_warm(const char *key, const char *path, kbt_trips *after);

/*
 * Ready warmed workers to charge a's next request in one round trip, and say which moves
 * of the counters will be that request's: *before is read (GET /metrics, which ends its
 * worker's transaction begun ahead), then one GET path (asserted 200, one credit) goes
 * to that worker, as a lone request does, and begins one there again. Returns how many
 * charges in one round trip since *before were that request's: 1 when it raised the
 * account's charge_xid, which only a charge in one round trip writes (0028), else 0.
 * Nothing else may use a's key meanwhile.
 */
double kbt_one_trip_prime(PGconn *c, const kbt_account *a, const char *path, kbt_trips *before);

#endif
