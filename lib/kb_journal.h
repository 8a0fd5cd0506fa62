/* kb_journal.h - charges not settled yet, in memory the whole pool shares.
 *
 * A charge is settled when its 2xx answer has gone out (the charge stands)
 * or its refund has committed. Until then the worker that made it keeps it
 * in its journal entry: the request id, and whether the meter statement is
 * in flight (its outcome unknown when the connection dies under it) or has
 * committed. An entry outlives its worker: when the master reaps a worker
 * that died (SIGKILL, a crash) it marks the entry orphaned, and another
 * worker claims and settles it. Settling happens in Postgres by the entry's
 * key (kb_meter_settle(), migration 0009), which refunds the charge when the
 * meter committed it and no refund has yet.
 *
 * Entry states move only in the owning process (or the one holding the
 * claim of an orphan); the master only orphans entries of dead pids. All
 * fields other than the request id are atomics.
 *
 * Without kb_journal_init() (kbctl, unit tests) the journal is off:
 * kb_journal_key() returns NULL and the state calls do nothing.
 * What the journal cannot cover: a crash of the master or of the whole host
 * loses the entries (the requests in flight at that moment, at most one per
 * worker, keep their charge).
 */
#ifndef KB_JOURNAL_H
#define KB_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define KB_JOURNAL_ENTRIES 1024
#define KB_JOURNAL_KEY_MAX 96
#define KB_JOURNAL_REQUEST_ID_MAX 64

typedef enum kb_jstate {
    KB_J_IDLE = 0, /* nothing pending */
    KB_J_METERING, /* meter statement sent; it may or may not have committed */
    KB_J_CHARGED,  /* charge committed; the answer has not gone out as 2xx yet */
} kb_jstate;

/* Map the shared region (master, before it forks). 0, or -1 on failure. */
int kb_journal_init(void);

/* Take a free entry for the calling worker. False when the journal is off or full. */
bool kb_journal_attach(void);

/* The database key of the caller's entry ("host:index"), NULL when it has none. */
const char *kb_journal_key(void);

/* State of the caller's entry (KB_J_IDLE when it has none). */
kb_jstate kb_journal_state(void);

/* Request id recorded with the caller's entry ("" when none). */
const char *kb_journal_request_id(void);

/* Move the caller's entry to st; request_id (may be NULL) is recorded with METERING. */
void kb_journal_set(kb_jstate st, const char *request_id);

/* True when the caller's entry is pending or an orphan waits to be settled. */
bool kb_journal_work_waiting(void);

/*
 * Claim an orphaned pending entry: copies its key and request id out and
 * returns its index, or -1 when there is none. The caller settles it and then
 * calls kb_journal_release(index, settled).
 */
int kb_journal_claim(char *key, size_t keysz, char *request_id, size_t ridsz);

/* Give back a claim; settled = the entry is done (it becomes free). */
void kb_journal_release(int index, bool settled);

/* Master: the worker pid has been reaped; orphan its entry and drop its claims. */
void kb_journal_orphan(pid_t pid);

#endif
