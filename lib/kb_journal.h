/* kb_journal.h - charges not settled yet, in memory the whole pool shares.
 *
 * A charge is settled when its 2xx answer has gone out (the charge stands)
 * or its refund has committed. Until then the worker that made it keeps it in
 * its journal entry. The meter (lib/meter.c) leaves its transaction open until
 * the entry holds the transaction id and everything a refund needs, and only
 * then commits; so an entry is in one of three states:
 *   IDLE      nothing pending;
 *   METERING  the meter statement is out and its transaction not committed:
 *             if the worker or its connection dies now, Postgres aborts it, so
 *             nothing was charged (settling is just forgetting);
 *   CHARGED   the charge is journaled (xid, server life, account charge count
 *             and details) and its commit was sent or is about to be: whoever
 *             settles asks Postgres whether that transaction committed
 *             (kb_meter_settle(): pg_xact_status() while the server has not
 *             crashed since, the account's footprint after a crash, when the id
 *             may have been handed out again) and refunds it if it did.
 * An entry outlives its worker: when the master reaps a worker that died
 * (SIGKILL, a crash) it marks the entry orphaned, and another worker claims and
 * settles it. A worker may also hand its own entry over as an orphan when its
 * charge cannot be decided yet (kb_journal_detach()).
 *
 * Entry states move only in the owning process (or the one holding the claim
 * of an orphan); the master only orphans entries of dead pids. The details are
 * written before the state that needs them (seq_cst stores).
 *
 * Without kb_journal_init() (kbctl, unit tests) the journal is off:
 * kb_journal_attach() returns NULL and the calls on a NULL entry do nothing.
 * In a file (kb_journal_init_file()), the journal also outlives the whole pool (the
 * master and its workers killed at once): the pool's next start on this machine adopts
 * it. What the journal cannot cover, a host that does not come back (the machine
 * is gone), meter_inflight does: each charge also writes its row there, keyed by
 * host id, the pool's life and entry index (kb_host.h), and marks it just before its
 * answer's last write; hosts whose lease ran out are settled from those rows.
 */
#ifndef KB_JOURNAL_H
#define KB_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KB_JOURNAL_ENTRIES 1024
#define KB_JOURNAL_REQUEST_ID_MAX 64

typedef enum kb_jstate {
    KB_J_IDLE = 0, /* nothing pending */
    KB_J_METERING, /* meter statement out, its transaction uncommitted */
    KB_J_CHARGED,  /* charge journaled; committed or committing; no 2xx answer yet */
} kb_jstate;

/* A journaled charge: what kb_meter_settle() needs to refund it. Strings as
 * Postgres printed them (UUIDs, timestamptz, date); outbox_id 0 = none. */
typedef struct kb_journal_charge {
    char request_id[KB_JOURNAL_REQUEST_ID_MAX];
    uint64_t xid;
    char token[40]; /* server life (kb_incarnation()) and account charge count, */
    int64_t seq;    /* which settle the charge when a crash made xid ambiguous */
    char user_id[40];
    char key_id[40];
    int64_t cost;
    char endpoint[64];
    char cycle_start[40];
    char day[16];
    int64_t outbox_id;
} kb_journal_charge;

typedef struct kb_journal_entry kb_journal_entry;

/* Map the shared region (master, before it forks) in anonymous memory: it dies with
 * the pool. 0, or -1 on failure. */
int kb_journal_init(void);

/*
 * Map the shared region in a file, dir/<host_id>.<life>.journal (dir created 0700 when
 * missing), instead: it outlives the whole pool, so the next pool of this host id on
 * this machine settles what it had in flight (kb_journal_adopt()). The file is locked
 * (flock) and every process the master forks keeps the lock's descriptor, so the lock
 * is free exactly when no process of the pool is left. dir should be a tmpfs (/run),
 * emptied at boot: after a reboot, what a file holds is not to be trusted. 0, or -1
 * with errno.
 */
int kb_journal_init_file(const char *dir, const char *host_id, const char *life);

typedef struct kb_journal_adopted {
    int files;   /* journals of dead pools taken over (and removed) */
    int entries; /* their pending entries, now orphans of this journal */
    int alive;   /* journals skipped: a process of that pool still lives */
    int full;    /* journals kept: this one had no room for their entries */
    int damaged; /* files of the wrong size, removed */
} kb_journal_adopted;

/*
 * Master, after kb_journal_init_file() and the host id's lease, before forking: take
 * over the journal files in dir of earlier pools of host_id whose processes are all
 * gone (their lock is free). Their pending entries become orphans here, which the
 * workers settle like those of a worker that died (kb_meter_settle_pending());
 * settling is idempotent, so an entry settled twice refunds once. 0, or -1.
 */
int kb_journal_adopt(const char *dir, const char *host_id, kb_journal_adopted *out);

/* Take a free entry for the calling process. NULL when the journal is off or full. */
kb_journal_entry *kb_journal_attach(void);

/* e's index in the region (its slot in meter_inflight, migration 0024); -1 for NULL. */
int kb_journal_index(const kb_journal_entry *e);

/* State of e (KB_J_IDLE for NULL). */
kb_jstate kb_journal_state(const kb_journal_entry *e);

/* The charge recorded with e (zeroed for NULL). */
void kb_journal_get(const kb_journal_entry *e, kb_journal_charge *out);

/* Move e to METERING for request_id. */
void kb_journal_metering(kb_journal_entry *e, const char *request_id);

/* Record charge c in e and move it to CHARGED. */
void kb_journal_charged(kb_journal_entry *e, const kb_journal_charge *c);

/* The account charge count of e's charge, learned once its reply came (a
 * one-round-trip charge is journaled before with none, 0). */
void kb_journal_charged_seq(kb_journal_entry *e, int64_t seq);

/* Move e back to IDLE: nothing pending. */
void kb_journal_idle(kb_journal_entry *e);

/* Hand e, still pending, over as an orphan for any worker to settle; the caller
 * no longer owns it (attach a new entry). */
void kb_journal_detach(kb_journal_entry *e);

/* True when e is pending or an orphan waits to be settled. */
bool kb_journal_work_waiting(const kb_journal_entry *e);

/*
 * Claim an orphaned pending entry: copies its state and charge out and
 * returns its index, or -1 when there is none. The caller settles it and then
 * calls kb_journal_release(index, settled).
 */
int kb_journal_claim(kb_jstate *state, kb_journal_charge *out);

/* Give back a claim; settled = the entry is done (it becomes free). */
void kb_journal_release(int index, bool settled);

/* Master: the worker pid has been reaped; orphan its entry and drop its claims.
 * Returns the number of pending entries it orphaned (0 or 1). */
int kb_journal_orphan(pid_t pid);

#endif
