/* journal.c - charges not settled yet, shared by the pool; see kb_journal.h.
 *
 * Invariants: an entry is free when owner == 0, claim == 0 and state == IDLE.
 * `orphans` counts entries with owner == 0 and state != IDLE; the master
 * raises it when it orphans a pending entry (a worker when it detaches its
 * own), a claimer lowers it when it settles one. A pending orphan is settled
 * by at most one claimer at a time. The charge fields are written only by the
 * owner (or the claimer) before the state store that publishes them.
 */
#include "kb_journal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kb_banned.h"

struct kb_journal_entry {
    atomic_int owner; /* pid of the process using the entry, 0 when none */
    atomic_int claim; /* pid settling the orphaned entry, 0 when none */
    atomic_int state; /* kb_jstate */
    kb_journal_charge charge;
};

typedef struct region {
    atomic_int orphans;
    kb_journal_entry e[KB_JOURNAL_ENTRIES];
} region;

/* The mapping, inherited by every worker the master forks. */
static region *rg;

int
kb_journal_init(void)
{
    void *p = mmap(NULL, sizeof(region), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    memset(p, 0, sizeof(region)); /* all zero: every entry free */
    rg = p;
    return 0;
}

kb_journal_entry *
kb_journal_attach(void)
{
    if (rg == NULL)
        return NULL;
    int self = (int)getpid();
    for (int i = 0; i < KB_JOURNAL_ENTRIES; i++) {
        kb_journal_entry *e = &rg->e[i];
        if (atomic_load(&e->owner) != 0 || atomic_load(&e->claim) != 0 ||
            atomic_load(&e->state) != KB_J_IDLE)
            continue;
        int zero = 0;
        if (!atomic_compare_exchange_strong(&e->owner, &zero, self))
            continue;
        /* An orphan claimer may have just finished (state IDLE, claim not yet
         * cleared); it touches nothing but `claim` after that, so the entry is ours. */
        memset(&e->charge, 0, sizeof(e->charge));
        return e;
    }
    return NULL;
}

int
kb_journal_index(const kb_journal_entry *e)
{
    if (e == NULL || rg == NULL)
        return -1;
    return (int)(e - rg->e);
}

kb_jstate
kb_journal_state(const kb_journal_entry *e)
{
    return e != NULL ? (kb_jstate)atomic_load(&e->state) : KB_J_IDLE;
}

void
kb_journal_get(const kb_journal_entry *e, kb_journal_charge *out)
{
    if (e == NULL)
        memset(out, 0, sizeof(*out));
    else
        *out = e->charge;
}

void
kb_journal_metering(kb_journal_entry *e, const char *request_id)
{
    if (e == NULL)
        return;
    memset(&e->charge, 0, sizeof(e->charge));
    snprintf(e->charge.request_id, sizeof(e->charge.request_id), "%s", request_id);
    /* seq_cst store: the request id is visible before the state that needs it. */
    atomic_store(&e->state, KB_J_METERING);
}

void
kb_journal_charged(kb_journal_entry *e, const kb_journal_charge *c)
{
    if (e == NULL)
        return;
    e->charge = *c;
    atomic_store(&e->state, KB_J_CHARGED);
}

void
kb_journal_idle(kb_journal_entry *e)
{
    if (e != NULL)
        atomic_store(&e->state, KB_J_IDLE);
}

void
kb_journal_detach(kb_journal_entry *e)
{
    if (e == NULL)
        return;
    if (atomic_load(&e->state) != KB_J_IDLE)
        atomic_fetch_add(&rg->orphans, 1);
    atomic_store(&e->owner, 0);
}

bool
kb_journal_work_waiting(const kb_journal_entry *e)
{
    if (rg == NULL)
        return false;
    return kb_journal_state(e) != KB_J_IDLE || atomic_load(&rg->orphans) > 0;
}

int
kb_journal_claim(kb_jstate *state, kb_journal_charge *out)
{
    if (rg == NULL || atomic_load(&rg->orphans) <= 0)
        return -1;
    int self = (int)getpid();
    for (int i = 0; i < KB_JOURNAL_ENTRIES; i++) {
        kb_journal_entry *e = &rg->e[i];
        if (atomic_load(&e->owner) != 0 || atomic_load(&e->state) == KB_J_IDLE)
            continue;
        int zero = 0;
        if (!atomic_compare_exchange_strong(&e->claim, &zero, self))
            continue;
        /* Re-check under the claim: another claimer may have settled it meanwhile. */
        if (atomic_load(&e->owner) != 0 || atomic_load(&e->state) == KB_J_IDLE) {
            atomic_store(&e->claim, 0);
            continue;
        }
        *state = (kb_jstate)atomic_load(&e->state);
        *out = e->charge;
        return i;
    }
    return -1;
}

void
kb_journal_release(int index, bool settled)
{
    if (rg == NULL || index < 0 || index >= KB_JOURNAL_ENTRIES)
        return;
    kb_journal_entry *e = &rg->e[index];
    if (settled) {
        atomic_store(&e->state, KB_J_IDLE);
        atomic_fetch_sub(&rg->orphans, 1);
    }
    atomic_store(&e->claim, 0);
}

int
kb_journal_orphan(pid_t pid)
{
    int orphaned = 0;
    if (rg == NULL || pid <= 0)
        return 0;
    for (int i = 0; i < KB_JOURNAL_ENTRIES; i++) {
        kb_journal_entry *e = &rg->e[i];
        int p = (int)pid;
        /* A claim held by the dead process: the orphan is up for grabs again. */
        atomic_compare_exchange_strong(&e->claim, &p, 0);
        p = (int)pid;
        if (atomic_load(&e->owner) != p)
            continue;
        if (atomic_load(&e->state) != KB_J_IDLE) {
            atomic_fetch_add(&rg->orphans, 1);
            orphaned++;
        }
        atomic_store(&e->owner, 0);
    }
    return orphaned;
}
