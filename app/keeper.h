/* keeper.h - the host lease keeper child of the master (app/master.c forks it).
 *
 * It dies with the master (PR_SET_PDEATHSIG SIGKILL: the lease then runs out), and
 * ends the lease on SIGTERM, which the master sends only once every worker is
 * gone (a worker still answering must not have its charge taken for an orphan's).
 */
#ifndef KB_KEEPER_H
#define KB_KEEPER_H

#include <signal.h>
#include <stdbool.h>

/* Exit statuses: the id is held by another live pool (as a misconfiguration:
 * systemd does not restart on it); this pool lost its lease (another host took
 * it for dead). The master stops the pool on either. */
#define KB_KEEPER_HELD 78
#define KB_KEEPER_LOST 75

/* The keeper's loop until *stop: claims the lease first unless leased, then
 * renews it and settles dead hosts' charges. Returns 0 (lease ended) or an exit
 * status above. */
int kb_keeper_main(bool leased, volatile sig_atomic_t *stop);

#endif
