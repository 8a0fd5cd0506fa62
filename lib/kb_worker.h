/* kb_worker.h - the long-lived handles of a process that serves requests.
 *
 * One kb_worker per FastCGI worker (app/fcgi/worker.c), reached from every request
 * as ctx->w: its Postgres connections, its charge-journal entry, the access
 * token verifier and the Stripe client's libcurl handle. Each is made on first
 * use (or by the worker at start) and released by kb_worker_release(), so
 * nothing a request uses lives in a file-scope static. kbctl, the reporter and
 * the tests use the same struct for the handles they need.
 */
#ifndef KB_WORKER_H
#define KB_WORKER_H

#include <stdbool.h>

#include "kb_db.h"
#include "kb_journal.h"
#include "kb_jwt.h"

typedef struct kb_worker kb_worker;

/* An API key the meter has seen answered: its hash and ids, so the next
 * charge can go straight to the account row (lib/meter.c). Not a credential:
 * the account row alone says whether the key is still live. 2-way set
 * associative by hash, KB_WORKER_KEYS entries (~220 KiB). */
#define KB_WORKER_KEYS 1024
typedef struct kb_worker_key {
    char hash[65]; /* SHA-256 hex; "" = empty slot */
    char user_id[40];
    char key_id[40];
    char key_prefix[16];
    /* From the key's last charge (fast path): the cycle and UTC day it counted in and
     * the end of the fast path's window (µs since the epoch; 0 = unknown), so its next
     * charge can be journaled whole before it is sent (lib/meter.c). */
    char cycle_start[40];
    char day[16];
    int64_t fast_until_us;
} kb_worker_key;

struct kb_worker {
    kb_db db;      /* primary: metering, billing, auth, everything that writes */
    kb_db db_read; /* replica for data routes when KB_DATABASE_READ_URL is set */
    bool has_read_replica;
    kb_journal_entry *journal; /* this process's charge-journal entry, NULL when none */
    kb_jwt_verifier jwt;       /* access-token verifier (lib/auth.c), built on first use */
    bool jwt_loaded;
    kb_worker_key keys[KB_WORKER_KEYS];         /* by hash: set i is keys[2i], keys[2i + 1] */
    unsigned char keys_lru[KB_WORKER_KEYS / 2]; /* per set: the way to replace next */
    void *stripe_curl;    /* the Stripe client's CURL easy handle (lib/stripe.c), NULL
                                * until the first call */
    char life[40];        /* the server's life (kb_incarnation()) as db's connection number */
    uint64_t life_conn;   /* life_conn (db.connects) learned it; "" = not yet (lib/meter.c) */
    unsigned long served; /* requests served */
};

/*
 * Fill w for a process of role app_name ("kalshibook-worker"): the primary
 * connection from kb_cfg and, with KB_DATABASE_READ_URL, the replica's.
 * Nothing connects until first use.
 */
void kb_worker_init(kb_worker *w, const char *app_name);

/* Close and free everything w holds. */
void kb_worker_release(kb_worker *w);

#endif
