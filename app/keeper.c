/* keeper.c - the host lease keeper child of the master ("kb-host"); see keeper.h.
 *
 * Renews this pool's lease of its host id every quarter of KB_HOST_LEASE_MS and
 * settles the charges dead pools left in flight (kb_host_settle_dead) on every
 * host, so whichever host sees a dead one first settles it (lib/kb_host.h).
 */
#include "keeper.h"

#include <stdint.h>
#include <time.h>

#include "kb_buf.h"
#include "kb_config.h"
#include "kb_db.h"
#include "kb_host.h"
#include "kb_log.h"
#include "kb_time.h"
#include "kb_banned.h"

int
kb_keeper_main(bool leased, volatile sig_atomic_t *stop)
{
    kb_db db;
    kb_db_init(&db, kb_cfg.database_url, "kalshibook-host", kb_cfg.db_connect_timeout_s, 5000);
    long lease = kb_cfg.host_lease_ms;
    long tick = lease / 4 < 250 ? 250 : lease / 4;
    int rc = 0;
    int64_t next_renew = 0;
    while (!*stop) {
        int64_t now = kb_mono_us();
        if (now >= next_renew) {
            kb_buf why = KB_BUF_INIT;
            /* The keeper keeps its own pace (250 ms while the database is away): a
             * lease must not run out in kb_db's reconnect backoff (up to 5 s). */
            db.next_attempt_us = 0;
            kb_host_lease l = leased ? kb_host_renew(&db, lease) : kb_host_claim(&db, lease, 0, &why);
            if (l == KB_HOST_OURS && !leased) {
                kb_log_info("host id '%s' leased", kb_host_self_get()->id);
                leased = true;
            } else if (l == KB_HOST_HELD && !leased) {
                kb_log_error("refusing to serve: %s", kb_buf_cstr(&why));
                rc = KB_KEEPER_HELD;
            } else if (l == KB_HOST_HELD) {
                kb_log_error("this pool lost the lease of host id '%s' (another host took it for "
                             "dead after %ld ms without a renewal and settled its charges in "
                             "flight); stopping",
                             kb_host_self_get()->id, lease);
                rc = KB_KEEPER_LOST;
            }
            kb_buf_release(&why);
            if (rc != 0)
                break;
            /* A renewal that failed is retried soon; the lease has three more ticks. */
            next_renew = now + (l == KB_HOST_UNREACHABLE ? 250000 : tick * 1000);
            long refunded, pending;
            kb_host_settle_dead(&db, 64, &refunded, &pending);
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc == 0 && leased)
        kb_host_release(&db);
    kb_db_release(&db);
    return rc;
}
