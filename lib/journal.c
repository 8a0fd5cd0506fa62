/* journal.c - charges not settled yet, shared by the pool; see kb_journal.h.
 *
 * Invariants: an entry is free when owner == 0, claim == 0 and state == IDLE.
 * `orphans` counts entries with owner == 0 and state != IDLE; the master
 * raises it when it orphans a pending entry, a claimer lowers it when it
 * settles one. A pending orphan is settled by at most one claimer at a time.
 */
#include "kb_journal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kb_banned.h"

typedef struct entry {
    atomic_int owner; /* pid of the worker using the entry, 0 when none */
    atomic_int claim; /* pid settling the orphaned entry, 0 when none */
    atomic_int state; /* kb_jstate */
    char request_id[KB_JOURNAL_REQUEST_ID_MAX];
} entry;

typedef struct region {
    atomic_int orphans;
    char host[64];
    entry e[KB_JOURNAL_ENTRIES];
} region;

static region *rg;
static int mine = -1;
static char my_key[KB_JOURNAL_KEY_MAX];

int
kb_journal_init(void)
{
    void *p = mmap(NULL, sizeof(region), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        return -1;
    memset(p, 0, sizeof(region)); /* all zero: every entry free */
    rg = p;
    if (gethostname(rg->host, sizeof(rg->host) - 1) != 0 || rg->host[0] == '\0')
        snprintf(rg->host, sizeof(rg->host), "localhost");
    return 0;
}

static void
entry_key(int i, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s:%d", rg->host, i);
}

bool
kb_journal_attach(void)
{
    if (rg == NULL)
        return false;
    int self = (int)getpid();
    for (int i = 0; i < KB_JOURNAL_ENTRIES; i++) {
        entry *e = &rg->e[i];
        if (atomic_load(&e->owner) != 0 || atomic_load(&e->claim) != 0 ||
            atomic_load(&e->state) != KB_J_IDLE)
            continue;
        int zero = 0;
        if (!atomic_compare_exchange_strong(&e->owner, &zero, self))
            continue;
        /* An orphan claimer may have just finished (state IDLE, claim not yet
         * cleared); it touches nothing but `claim` after that, so the entry is ours. */
        mine = i;
        e->request_id[0] = '\0';
        entry_key(i, my_key, sizeof(my_key));
        return true;
    }
    return false;
}

const char *
kb_journal_key(void)
{
    return mine >= 0 ? my_key : NULL;
}

kb_jstate
kb_journal_state(void)
{
    return mine >= 0 ? (kb_jstate)atomic_load(&rg->e[mine].state) : KB_J_IDLE;
}

const char *
kb_journal_request_id(void)
{
    return mine >= 0 ? rg->e[mine].request_id : "";
}

void
kb_journal_set(kb_jstate st, const char *request_id)
{
    if (mine < 0)
        return;
    entry *e = &rg->e[mine];
    if (request_id != NULL)
        snprintf(e->request_id, sizeof(e->request_id), "%s", request_id);
    /* seq_cst store: the request id is visible before the state that needs it. */
    atomic_store(&e->state, (int)st);
}

bool
kb_journal_work_waiting(void)
{
    if (rg == NULL)
        return false;
    return kb_journal_state() != KB_J_IDLE || atomic_load(&rg->orphans) > 0;
}

int
kb_journal_claim(char *key, size_t keysz, char *request_id, size_t ridsz)
{
    if (rg == NULL || atomic_load(&rg->orphans) <= 0)
        return -1;
    int self = (int)getpid();
    for (int i = 0; i < KB_JOURNAL_ENTRIES; i++) {
        entry *e = &rg->e[i];
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
        entry_key(i, key, keysz);
        snprintf(request_id, ridsz, "%s", e->request_id);
        return i;
    }
    return -1;
}

void
kb_journal_release(int index, bool settled)
{
    if (rg == NULL || index < 0 || index >= KB_JOURNAL_ENTRIES)
        return;
    entry *e = &rg->e[index];
    if (settled) {
        atomic_store(&e->state, KB_J_IDLE);
        atomic_fetch_sub(&rg->orphans, 1);
    }
    atomic_store(&e->claim, 0);
}

void
kb_journal_orphan(pid_t pid)
{
    if (rg == NULL || pid <= 0)
        return;
    for (int i = 0; i < KB_JOURNAL_ENTRIES; i++) {
        entry *e = &rg->e[i];
        int p = (int)pid;
        /* A claim held by the dead process: the orphan is up for grabs again. */
        atomic_compare_exchange_strong(&e->claim, &p, 0);
        p = (int)pid;
        if (atomic_load(&e->owner) != p)
            continue;
        if (atomic_load(&e->state) != KB_J_IDLE)
            atomic_fetch_add(&rg->orphans, 1);
        atomic_store(&e->owner, 0);
    }
}
