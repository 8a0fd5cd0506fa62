/* keeper.h - the host lease keeper child of kalshibook-fcgi's master ("kb-host").
 *
 * Before forking anything the master claims its host id's lease in Postgres
 * (lib/kb_host.h); the keeper then renews it every quarter of KB_HOST_LEASE_MS
 * and settles the charges dead pools left in flight (kb_host_settle_dead) on
 * every host, so whichever host sees a dead one first settles it. It dies with
 * the master (PR_SET_PDEATHSIG SIGKILL: the lease then runs out), and ends the
 * lease on SIGTERM, which the master sends only once every worker is gone (a
 * worker still answering must not have its charge taken for an orphan's). The
 * master calls these from its own loop.
 */
#ifndef KB_KEEPER_H
#define KB_KEEPER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Exit statuses: the id is held by another live pool (a misconfiguration:
 * systemd does not restart on it); this pool lost its lease (another host took
 * it for dead). The master stops the pool on either, exiting with it. */
#define KB_KEEPER_HELD 78
#define KB_KEEPER_LOST 75

typedef struct kb_keeper {
    pid_t pid;          /* the running child, 0 when none */
    int64_t respawn_at; /* monotonic; 0 = none scheduled */
    bool leased;        /* the lease is this pool's (the master's claim, or the keeper's) */
    bool told;          /* SIGTERM sent (end the lease) */
} kb_keeper;

/* Fork the keeper unless it runs. The child closes close_fds[0..n) first. A
 * failed fork is retried in 1 s. */
void kb_keeper_start(kb_keeper *k, const int *close_fds, size_t n);

/* True when pid was the keeper. *stop_rc is set to its exit status when the pool
 * must stop (KB_KEEPER_HELD, KB_KEEPER_LOST), else left alone and, unless the
 * master is stopping, its respawn scheduled in 1 s. */
bool
kb_keeper_reaped(kb_keeper *k, pid_t pid, int status, const char *how, bool stopping, int *stop_rc);

/* Every worker is gone: SIGTERM (the keeper ends the lease and exits). */
void kb_keeper_stop(kb_keeper *k);

/* Drain deadline passed: SIGKILL. */
void kb_keeper_kill(const kb_keeper *k);

/* The keeper's loop until *stop (in the child): claims the lease first unless
 * leased, then renews it and settles dead hosts' charges. Returns 0 (lease
 * ended) or an exit status above. */
int kb_keeper_main(bool leased, volatile sig_atomic_t *stop);

#endif
