/* kb_shared.h - a little memory shared by every worker of one master.
 *
 * The master maps it (MAP_SHARED | MAP_ANONYMOUS) once, before it forks any
 * worker, so respawned workers inherit it too. It holds the slots that cap
 * how many password hashes (argon2id, ~64 MiB and tens of ms each) run at
 * once on this host, so a burst of logins cannot occupy every worker.
 *
 * Invariants: a slot holds 0 (free) or the pid of the worker using it; a
 * slot whose pid has died (a crashed worker) is reclaimed by the next taker.
 * Without kb_shared_init() (unit tests, kbctl) there is no cap.
 */
#ifndef KB_SHARED_H
#define KB_SHARED_H

#include <stdbool.h>
#include <stddef.h>

#define KB_SHARED_MAX_SLOTS 256

/*
 * Map the region with the configured number of hash slots
 * (KB_AUTH_MAX_CONCURRENT, or half the workers, at least 1). Call once in
 * the master before forking. Returns false (and logs) when mmap fails; the
 * server then runs without a cap.
 */
bool kb_shared_init(void);

/* Slots in force (0 when not initialised). */
size_t kb_shared_slots(void);

/*
 * Take a hash slot without waiting. Returns its index, or -1 when every
 * slot is busy (answer 503 + Retry-After). Always succeeds without init.
 */
int kb_shared_slot_acquire(void);

/* Give back a slot from kb_shared_slot_acquire (-1 is ignored). */
void kb_shared_slot_release(int slot);

#endif
