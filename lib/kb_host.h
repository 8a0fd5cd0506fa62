/* kb_host.h - which app host this pool is, its lease in Postgres, and the settling
 * of charges that dead hosts left in flight (migration 0024).
 *
 * A host's id is KB_HOST_ID, or derived from /etc/machine-id (never the
 * hostname: clones and containers share hostnames). The pool holding the id is
 * one "life" (a random uuid made when the master starts). The master claims the
 * id before it forks its workers (kb_host_claim()): a second live pool with the
 * same id is refused with a message naming the holder; a lease that expired, or
 * one whose holder is provably dead on this very machine (same boot and pid
 * namespace, its pid gone), is taken over. Then the lease keeper child renews
 * it (kb_host_renew()) and settles what dead pools left (kb_host_settle_dead()).
 *
 * While other hosts share the database (KB_HOST_ROWS=auto; on: always), every
 * charge writes its row of meter_inflight (host id, life, journal entry) in its
 * own transaction, and marks it answered just before the answer's last write
 * (lib/meter.c); the life it writes must hold the host's lease, so a pool whose
 * lease another host ended can commit no charge, and a restarted pool never
 * writes over the rows its dead predecessor left. A host alone needs no rows:
 * its restart on the same machine settles from its journal file (kb_journal.h).
 *
 * Invariant: kb_host_self_set() runs in the master before any fork; the id and
 * life are read-only afterwards (like kb_cfg).
 */
#ifndef KB_HOST_H
#define KB_HOST_H

#include <stdbool.h>

#include "kb_buf.h"
#include "kb_db.h"
#include "kb_err.h"

#define KB_HOST_ID_MAX 64

/* This pool's host id and life ("" when not set: kbctl, unit tests). */
typedef struct kb_host_self {
    char id[KB_HOST_ID_MAX + 1];
    char life[40];
} kb_host_self;

/* True when id is a valid host id: 1-64 of [A-Za-z0-9._-]. */
bool kb_host_id_valid(const char *id);

/*
 * The host id: configured (KB_HOST_ID) when not NULL, else "m-" + 16 hex digits of SHA-256 of
 * /etc/machine-id (the machine id itself is not exposed). Writes it to out
 * (KB_HOST_ID_MAX + 1 bytes); false with the reason in *why when neither works.
 */
bool kb_host_id_resolve(const char *configured, char *out, const char **why);

/* Set this process's id and a fresh life (master, before fork). */
void kb_host_self_set(const char *id);

/* The id and life set by kb_host_self_set() (both "" when unset). */
const kb_host_self *kb_host_self_get(void);

typedef enum kb_host_lease {
    KB_HOST_OURS,        /* the lease is this life's */
    KB_HOST_HELD,        /* another pool holds the id (claim: refuse to start; renew: lost) */
    KB_HOST_UNREACHABLE, /* the database did not answer: try again later */
} kb_host_lease;

/*
 * Claim this pool's id with a lease of lease_ms. When a pool on another
 * machine (or one not provably dead here) holds an unexpired lease, waits up to
 * wait_ms for it to expire, watching for renewals: renewed -> KB_HOST_HELD. On
 * KB_HOST_HELD, why holds a message for the operator (caller releases it).
 * KB_HOST_OURS also when this life already holds it.
 */
kb_host_lease kb_host_claim(kb_db *db, long lease_ms, long wait_ms, kb_buf *why);

/* Renew the lease: KB_HOST_OURS, KB_HOST_HELD when this life lost it (another host
 * ended it as expired, or a pool took the id over), KB_HOST_UNREACHABLE. */
kb_host_lease kb_host_renew(kb_db *db, long lease_ms);

/* End the lease at a clean stop (best effort). */
void kb_host_release(kb_db *db);

/* Whether charges write their meter_inflight row now (KB_HOST_ROWS; in auto, what
 * the lease keeper last saw: another host holding a lease; true until it has
 * looked). Shared by the pool: kb_host_self_set() maps it before any fork. */
bool kb_host_rows(void);

/* Lease keeper: look whether another host holds a live lease, and set kb_host_rows()
 * for the pool from it (KB_HOST_ROWS=auto). KB_E_UNAVAILABLE leaves it as it was. */
kb_err kb_host_rows_refresh(kb_db *db);

/* Settle up to max rows that dead pools left in flight (any host may run this).
 * *refunded: charges refunded now. KB_E_UNAVAILABLE when the database is down. */
kb_err kb_host_settle_dead(kb_db *db, int max, long *refunded, long *pending);

#endif
