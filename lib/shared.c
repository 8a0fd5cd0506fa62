/* shared.c - the master's shared region and the hash slots; see kb_shared.h. */
#include "kb_shared.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>

#include "kb_config.h"
#include "kb_log.h"
#include "kb_banned.h"

typedef struct region {
    size_t nslots;
    _Atomic int32_t owner[KB_SHARED_MAX_SLOTS];
} region;

static region *shm;

bool
kb_shared_init(void)
{
    if (shm != NULL)
        return true;
    long n = kb_cfg.auth_max_concurrent;
    if (n <= 0) {
        long workers = kb_cfg.workers;
        if (workers <= 0)
            workers = sysconf(_SC_NPROCESSORS_ONLN);
        n = workers / 2;
    }
    if (n < 1)
        n = 1;
    if (n > KB_SHARED_MAX_SLOTS)
        n = KB_SHARED_MAX_SLOTS;
    void *p = mmap(NULL, sizeof(region), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        kb_log_error("unable to map shared memory: %s; password hashing is not capped",
                     strerror(errno));
        return false;
    }
    shm = p;
    shm->nslots = (size_t)n;
    for (size_t i = 0; i < KB_SHARED_MAX_SLOTS; i++)
        atomic_init(&shm->owner[i], 0);
    kb_log_info("password hashing capped at %ld at once", n);
    return true;
}

size_t
kb_shared_slots(void)
{
    return shm ? shm->nslots : 0;
}

int
kb_shared_slot_acquire(void)
{
    if (shm == NULL)
        return KB_SHARED_MAX_SLOTS; /* uncapped: a token release ignores */
    int32_t me = (int32_t)getpid();
    for (size_t i = 0; i < shm->nslots; i++) {
        int32_t expect = 0;
        if (atomic_compare_exchange_strong(&shm->owner[i], &expect, me))
            return (int)i;
    }
    /* All busy: take over a slot whose holder died mid-hash (crash, kill -9). */
    for (size_t i = 0; i < shm->nslots; i++) {
        int32_t holder = atomic_load(&shm->owner[i]);
        if (holder != 0 && holder != me && kill(holder, 0) != 0 && errno == ESRCH &&
            atomic_compare_exchange_strong(&shm->owner[i], &holder, me))
            return (int)i;
    }
    return -1;
}

void
kb_shared_slot_release(int slot)
{
    if (shm == NULL || slot < 0 || (size_t)slot >= shm->nslots)
        return;
    atomic_store(&shm->owner[slot], 0);
}
