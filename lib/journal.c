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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kb_banned.h"

struct kb_journal_entry {
    atomic_int owner; /* pid of the process using the entry, 0 when none */
    atomic_int claim; /* pid settling the orphaned entry, 0 when none */
    atomic_int state; /* kb_jstate */
    kb_journal_charge charge;
};

#define MAGIC "kbjrnl1"

typedef struct region {
    char magic[8]; /* MAGIC once the file is complete (a file journal) */
    char host_id[72];
    char life[40];
    atomic_int orphans;
    kb_journal_entry e[KB_JOURNAL_ENTRIES];
} region;

/* The mapping, inherited by every worker the master forks. */
static region *rg;
/* A file journal's descriptor: its lock (flock) is held while any process of the
 * pool that has it open lives. */
static int rg_fd = -1;

/* Nobody uses e and nothing is pending in it (the invariant at the top). */
static bool
entry_free(kb_journal_entry *e)
{
    return atomic_load(&e->owner) == 0 && atomic_load(&e->claim) == 0 &&
           atomic_load(&e->state) == KB_J_IDLE;
}

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

/* dir/<host>.<life><suffix> into out; false when it does not fit. */
static bool
file_name(char *out, size_t outsz, const char *dir, const char *host_id, const char *life,
          const char *suffix)
{
    int n = snprintf(out, outsz, "%s/%s.%s%s", dir, host_id, life, suffix);
    return n > 0 && (size_t)n < outsz;
}

int
kb_journal_init_file(const char *dir, const char *host_id, const char *life)
{
    char tmp[1024], path[1024];
    if (!file_name(tmp, sizeof(tmp), dir, host_id, life, ".new") ||
        !file_name(path, sizeof(path), dir, host_id, life, ".journal")) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    void *p = MAP_FAILED;
    /* Locked before it has its name: whoever finds the file finds it held. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || ftruncate(fd, (off_t)sizeof(region)) != 0 ||
        (p = mmap(NULL, sizeof(region), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        int e = errno;
        unlink(tmp);
        close(fd);
        errno = e;
        return -1;
    }
    region *r = p;
    memset(r, 0, sizeof(*r));
    snprintf(r->host_id, sizeof(r->host_id), "%s", host_id);
    snprintf(r->life, sizeof(r->life), "%s", life);
    memcpy(r->magic, MAGIC, sizeof(r->magic));
    if (rename(tmp, path) != 0) {
        int e = errno;
        munmap(p, sizeof(region));
        unlink(tmp);
        close(fd);
        errno = e;
        return -1;
    }
    rg = r;
    rg_fd = fd;
    return 0;
}

/* Copy the pending entries of a dead pool's region into this one as orphans.
 * Returns how many; -1 when this journal had no room for all of them. */
static int
adopt_region(const region *old)
{
    int n = 0;
    int from = 0;
    for (int i = 0; i < KB_JOURNAL_ENTRIES; i++) {
        const kb_journal_entry *o = &old->e[i];
        int st = atomic_load(&o->state);
        if (st != KB_J_METERING && st != KB_J_CHARGED)
            continue;
        while (from < KB_JOURNAL_ENTRIES && !entry_free(&rg->e[from]))
            from++;
        if (from == KB_JOURNAL_ENTRIES)
            return -1;
        kb_journal_entry *e = &rg->e[from++];
        e->charge = o->charge;
        /* A damaged file must not make the settling read past a string. */
        kb_journal_charge *c = &e->charge;
        c->request_id[sizeof(c->request_id) - 1] = '\0';
        c->token[sizeof(c->token) - 1] = '\0';
        c->user_id[sizeof(c->user_id) - 1] = '\0';
        c->key_id[sizeof(c->key_id) - 1] = '\0';
        c->endpoint[sizeof(c->endpoint) - 1] = '\0';
        c->cycle_start[sizeof(c->cycle_start) - 1] = '\0';
        c->day[sizeof(c->day) - 1] = '\0';
        atomic_store(&e->state, st);
        atomic_fetch_add(&rg->orphans, 1);
        n++;
    }
    return n;
}

int
kb_journal_adopt(const char *dir, const char *host_id, kb_journal_adopted *out)
{
    memset(out, 0, sizeof(*out));
    if (rg == NULL)
        return -1;
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    size_t hl = strlen(host_id);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t nl = strlen(name);
        /* <host>.<life>.journal, not this pool's own */
        if (nl <= hl + 1 + 8 || strncmp(name, host_id, hl) != 0 || name[hl] != '.' ||
            strcmp(name + nl - 8, ".journal") != 0 ||
            (rg->life[0] != '\0' && strncmp(name + hl + 1, rg->life, strlen(rg->life)) == 0))
            continue;
        char path[1024];
        if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
            continue;
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            out->alive++; /* a process of that pool still has it open */
            close(fd);
            continue;
        }
        struct stat sb;
        void *p = MAP_FAILED;
        if (fstat(fd, &sb) == 0 && sb.st_size == (off_t)sizeof(region))
            p = mmap(NULL, sizeof(region), PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            out->damaged++;
            unlink(path);
            close(fd);
            continue;
        }
        const region *old = p;
        int n = memcmp(old->magic, MAGIC, sizeof(old->magic)) == 0 ? adopt_region(old) : 0;
        munmap(p, sizeof(region));
        if (n < 0) {
            out->full++; /* kept for the next start; what was copied settles twice, harmlessly */
            close(fd);
            continue;
        }
        out->files++;
        out->entries += n;
        unlink(path);
        close(fd);
    }
    closedir(d);
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
        if (!entry_free(e))
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
kb_journal_charged_seq(kb_journal_entry *e, int64_t seq)
{
    if (e != NULL && atomic_load(&e->state) == KB_J_CHARGED)
        __atomic_store_n(&e->charge.seq, seq, __ATOMIC_SEQ_CST);
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
