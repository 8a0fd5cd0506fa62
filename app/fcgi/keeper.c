/* keeper.c - the host lease keeper child of the master ("kb-host"); see keeper.h. */
#include "keeper.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
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
            kb_host_lease l = leased ? kb_host_renew(&db, lease)
                                     : kb_host_claim(&db, lease, 0, &why);
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
            if (leased)
                kb_host_rows_refresh(&db);
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc == 0 && leased)
        kb_host_release(&db);
    kb_db_release(&db);
    return rc;
}

static volatile sig_atomic_t keeper_stop;

static void
on_term(int sig)
{
    (void)sig;
    keeper_stop = 1;
}

/* In the child: signals of its own, then the loop; never returns. The lease must
 * stop being renewed the moment the master is gone (SIGKILL). */
static void
child(pid_t master_pid, const int *close_fds, size_t n, bool leased)
{
    kb_child_enter(master_pid, close_fds, n, "host", "kb-host", on_term, SIGKILL);
    exit(kb_keeper_main(leased, &keeper_stop));
}

void
kb_keeper_start(kb_keeper *k, const int *close_fds, size_t n)
{
    k->respawn_at = 0;
    if (k->pid != 0)
        return;
    pid_t master_pid = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        kb_log_error("unable to fork the host lease keeper: %s", strerror(errno));
        k->respawn_at = kb_mono_us() + 1000000;
        return;
    }
    if (pid == 0)
        child(master_pid, close_fds, n, k->leased);
    k->pid = pid;
    k->told = false;
}

bool
kb_keeper_reaped(kb_keeper *k, pid_t pid, int status, const char *how, bool stopping, int *stop_rc)
{
    if (pid == 0 || pid != k->pid)
        return false;
    k->pid = 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == KB_KEEPER_HELD || code == KB_KEEPER_LOST) {
        *stop_rc = code;
    } else if (!stopping) {
        kb_log_error("host lease keeper %ld %s; respawning in 1 s", (long)pid, how);
        k->respawn_at = kb_mono_us() + 1000000;
    }
    return true;
}

void
kb_keeper_stop(kb_keeper *k)
{
    k->respawn_at = 0;
    if (k->pid != 0 && !k->told) {
        kill(k->pid, SIGTERM);
        k->told = true;
    }
}

void
kb_keeper_kill(const kb_keeper *k)
{
    if (k->pid != 0)
        kill(k->pid, SIGKILL);
}
