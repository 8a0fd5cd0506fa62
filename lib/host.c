/* host.c - host id, lease and the settling of dead hosts' charges; see kb_host.h.
 *
 * Invariant: `self` is written once by kb_host_self_set() before fork.
 */
#include "kb_host.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "kb_config.h"
#include "kb_crypto.h"
#include "kb_log.h"
#include "kb_time.h"
#include "kb_banned.h"

static kb_host_self self;
/* kb_host_rows(), shared by the pool (MAP_SHARED before any fork); NULL: true. Set
 * once from KB_HOST_ROWS, and in auto by the lease keeper (kb_host_rows_refresh()). */
static atomic_int *rows_wanted;

static const kb_stmt claim_stmt = {
    "host_claim",
    "SELECT outcome, holder, holder_hostname, holder_pid, holder_boot, expires_in_ms,"
    " renewed_at FROM kb_host_claim($1, $2::uuid, $3::uuid, $4::integer, $5, $6::integer, $7)",
    7, false};

static const kb_stmt renew_stmt = {"host_renew", "SELECT kb_host_renew($1, $2::uuid, $3::integer)",
                                   3, false};

static const kb_stmt release_stmt = {"host_release", "SELECT kb_host_release($1, $2::uuid)", 2,
                                     false};

/* Other hosts whose lease is live (as kb_host_settle() would not end it). */
static const kb_stmt others_stmt = {
    "host_others",
    "SELECT count(*) FROM app_hosts a"
    " WHERE a.host_id <> $1 AND a.life IS NOT NULL AND NOT kb_host_lease_over(a)",
    1, false};

static const kb_stmt settle_stmt = {
    "host_settle", "SELECT ended, refunded, cleared, pending FROM kb_host_settle($1::integer)", 1,
    false};

bool
kb_host_id_valid(const char *id)
{
    size_t n = id != NULL ? strlen(id) : 0;
    if (n == 0 || n > KB_HOST_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* First line of path into out (trailing newline dropped); false when unreadable or empty. */
static bool
read_line(const char *path, char *out, size_t outsz)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool ok = fgets(out, (int)outsz, f) != NULL;
    fclose(f);
    if (!ok)
        return false;
    out[strcspn(out, "\n")] = '\0';
    return out[0] != '\0';
}

bool
kb_host_id_resolve(const char *configured, char *out, const char **why)
{
    const char *env = configured;
    if (env != NULL && env[0] != '\0') {
        if (!kb_host_id_valid(env)) {
            *why = "KB_HOST_ID must be 1-64 characters of A-Z a-z 0-9 . _ -";
            return false;
        }
        snprintf(out, KB_HOST_ID_MAX + 1, "%s", env);
        return true;
    }
    char mid[128];
    if (!read_line("/etc/machine-id", mid, sizeof(mid))) {
        *why = "KB_HOST_ID is not set and /etc/machine-id is unreadable; set KB_HOST_ID to a "
               "name unique among the hosts sharing the database";
        return false;
    }
    /* The machine id is not to be shown to others (machine-id(5)): a hash of it. */
    char in[160], hex[KB_SHA256_HEX_LEN + 1];
    int n = snprintf(in, sizeof(in), "kalshibook-host:%s", mid);
    kb_sha256_hex(in, (size_t)n, hex);
    snprintf(out, KB_HOST_ID_MAX + 1, "m-%.16s", hex);
    return true;
}

/* KB_HOST_ROWS is mode (unset, as before the configuration is loaded: auto). */
static bool
rows_mode_is(const char *mode)
{
    return strcmp(kb_cfg.host_rows != NULL ? kb_cfg.host_rows : "auto", mode) == 0;
}

void
kb_host_self_set(const char *id)
{
    unsigned char r[16];
    randombytes_buf(r, sizeof(r));
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* variant 10 */
    snprintf(self.id, sizeof(self.id), "%s", id);
    if (rows_wanted == NULL) {
        void *p = mmap(NULL, sizeof(*rows_wanted), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            rows_wanted = p;
            /* on, and auto until the keeper has looked */
            atomic_store(rows_wanted, !rows_mode_is("off"));
        }
    }
    snprintf(self.life, sizeof(self.life),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
             r[15]);
}

const kb_host_self *
kb_host_self_get(void)
{
    return &self;
}

bool
kb_host_rows(void)
{
    return rows_wanted == NULL || atomic_load(rows_wanted) != 0;
}

kb_err
kb_host_rows_refresh(kb_db *db)
{
    if (!rows_mode_is("auto"))
        return KB_OK; /* on or off: nothing to look at */
    kb_arena arena;
    kb_arena_init(&arena, 0);
    const char *params[] = {self.id};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(db, &arena, &others_stmt, params, &r);
    if (!err && PQntuples(r) == 1 && rows_wanted != NULL) {
        int others = strtol(PQgetvalue(r, 0, 0), NULL, 10) > 0;
        if (atomic_exchange(rows_wanted, others) != others)
            kb_log_info(others ? "another host shares the database: charges write their "
                                 "meter_inflight rows"
                               : "no other host holds a lease: charges write no "
                                 "meter_inflight rows (the journal file settles a restart)");
    }
    kb_arena_release(&arena);
    return err;
}

/* This machine's boot and pid namespace: a holder with the same one whose pid is
 * gone is provably dead. "" when the boot id is unreadable (systemd's
 * ProcSubset=pid hides /proc/sys): then no holder is provably dead, and a restart
 * waits for its predecessor's lease to run out (a pid namespace's inode alone is
 * the same on every machine). */
static void
boot_of_self(char *out, size_t outsz)
{
    char boot[64] = "", ns[64] = "";
    out[0] = '\0';
    if (!read_line("/proc/sys/kernel/random/boot_id", boot, sizeof(boot)))
        return;
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
    ns[n > 0 ? n : 0] = '\0';
    snprintf(out, outsz, "%s/%s", boot, ns);
}

/* True when pid runs here as a kalshibook-fcgi master (a zombie does not run). */
static bool
pid_is_pool(long pid)
{
    if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM))
        return false;
    char p[64], stat[512];
    snprintf(p, sizeof(p), "/proc/%ld/stat", pid);
    if (!read_line(p, stat, sizeof(stat)))
        return false;
    const char *open = strchr(stat, '('), *close = strrchr(stat, ')');
    return open != NULL && close != NULL && close - open - 1 == 15 &&
           strncmp(open + 1, "kalshibook-fcgi", 15) == 0 && close[1] == ' ' && close[2] != 'Z' &&
           close[2] != 'X';
}

typedef struct holder {
    bool ours;
    char life[40], hostname[256], boot[160], renewed[64];
    long pid, expires_in_ms;
} holder;

/* One claim attempt; prev = a life proven dead (or NULL). */
static kb_host_lease
claim_once(kb_db *db, kb_arena *arena, long lease_ms, const char *prev, holder *h)
{
    char ttl[24], pid[24], host[256] = "", boot[160];
    snprintf(ttl, sizeof(ttl), "%ld", lease_ms);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    if (gethostname(host, sizeof(host) - 1) != 0)
        host[0] = '\0';
    boot_of_self(boot, sizeof(boot));
    const char *params[] = {self.id, self.life, prev, ttl, host, pid, boot};
    PGresult *r = NULL;
    kb_err err = kb_db_exec(db, arena, &claim_stmt, params, &r);
    if (err || PQntuples(r) != 1)
        return KB_HOST_UNREACHABLE;
    if (strcmp(PQgetvalue(r, 0, 0), "claimed") == 0)
        return KB_HOST_OURS;
    snprintf(h->life, sizeof(h->life), "%s", PQgetvalue(r, 0, 1));
    snprintf(h->hostname, sizeof(h->hostname), "%s", PQgetvalue(r, 0, 2));
    h->pid = strtol(PQgetvalue(r, 0, 3), NULL, 10);
    snprintf(h->boot, sizeof(h->boot), "%s", PQgetvalue(r, 0, 4));
    h->expires_in_ms = strtol(PQgetvalue(r, 0, 5), NULL, 10);
    snprintf(h->renewed, sizeof(h->renewed), "%s", PQgetvalue(r, 0, 6));
    h->ours = boot[0] != '\0' && strcmp(h->boot, boot) == 0;
    return KB_HOST_HELD;
}

kb_host_lease
kb_host_claim(kb_db *db, long lease_ms, long wait_ms, kb_buf *why)
{
    kb_arena arena;
    kb_arena_init(&arena, 0);
    holder h, first;
    memset(&first, 0, sizeof(first));
    kb_host_lease res = claim_once(db, &arena, lease_ms, NULL, &first);
    int64_t deadline = kb_mono_us() + (int64_t)wait_ms * 1000;
    if (res == KB_HOST_HELD && first.ours && !pid_is_pool(first.pid)) {
        /* The previous pool of this machine died (SIGKILL, a crash): its life is over;
         * its charges in flight are settled as any dead host's. */
        kb_log_warn("host id '%s': the previous pool (pid %ld) is gone; taking its lease over",
                    self.id, first.pid);
        res = claim_once(db, &arena, lease_ms, first.life, &h);
    }
    /* A holder elsewhere (or alive here): wait for its lease to run out, unless it
     * is renewed meanwhile. */
    while (res == KB_HOST_HELD && !(first.ours && pid_is_pool(first.pid)) &&
           kb_mono_us() < deadline) {
        kb_arena_reset(&arena);
        long ms = first.expires_in_ms > 0 ? first.expires_in_ms + 50 : 50;
        if (ms > 500)
            ms = 500;
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        memset(&h, 0, sizeof(h));
        res = claim_once(db, &arena, lease_ms, NULL, &h);
        if (res == KB_HOST_HELD &&
            (strcmp(h.life, first.life) != 0 || strcmp(h.renewed, first.renewed) != 0)) {
            first = h; /* renewed or replaced: a live pool holds it */
            break;
        }
        if (res == KB_HOST_HELD)
            first = h;
    }
    if (res == KB_HOST_HELD)
        kb_buf_printf(why,
                      "host id '%s' is held by a live pool (host '%s', pid %ld, lease renewed "
                      "%s, expires in %ld ms); every pool sharing the database needs its own "
                      "KB_HOST_ID: stop the other pool or give this one another id",
                      self.id, first.hostname, first.pid, first.renewed, first.expires_in_ms);
    kb_arena_release(&arena);
    return res;
}

kb_host_lease
kb_host_renew(kb_db *db, long lease_ms)
{
    kb_arena arena;
    kb_arena_init(&arena, 0);
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%ld", lease_ms);
    const char *params[] = {self.id, self.life, ttl};
    PGresult *r = NULL;
    kb_host_lease res = KB_HOST_UNREACHABLE;
    if (kb_db_exec(db, &arena, &renew_stmt, params, &r) == KB_OK && PQntuples(r) == 1)
        res = strcmp(PQgetvalue(r, 0, 0), "t") == 0 ? KB_HOST_OURS : KB_HOST_HELD;
    kb_arena_release(&arena);
    return res;
}

void
kb_host_release(kb_db *db)
{
    kb_arena arena;
    kb_arena_init(&arena, 0);
    const char *params[] = {self.id, self.life};
    PGresult *r = NULL;
    if (kb_db_exec(db, &arena, &release_stmt, params, &r) != KB_OK)
        kb_log_warn("unable to release the lease of host id '%s'; it expires by itself", self.id);
    kb_arena_release(&arena);
}

kb_err
kb_host_settle_dead(kb_db *db, int max, long *refunded, long *pending)
{
    kb_arena arena;
    kb_arena_init(&arena, 0);
    char m[16];
    snprintf(m, sizeof(m), "%d", max);
    const char *params[] = {m};
    PGresult *r = NULL;
    *refunded = *pending = 0;
    kb_err err = kb_db_exec(db, &arena, &settle_stmt, params, &r);
    if (!err && PQntuples(r) == 1) {
        long ended = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        *refunded = strtol(PQgetvalue(r, 0, 1), NULL, 10);
        long cleared = strtol(PQgetvalue(r, 0, 2), NULL, 10);
        *pending = strtol(PQgetvalue(r, 0, 3), NULL, 10);
        if (ended > 0)
            kb_log_warn("ended %ld expired host lease(s): their pools are taken for dead", ended);
        if (*refunded > 0 || cleared > 0)
            kb_log_warn("settled the charges dead pools left in flight: %ld refunded, %ld had "
                        "nothing to refund",
                        *refunded, cleared);
    } else if (!err) {
        err = KB_E_INTERNAL;
    }
    kb_arena_release(&arena);
    return err;
}
