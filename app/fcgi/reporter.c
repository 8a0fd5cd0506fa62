/* reporter.c - the usage reporter child of the master; see reporter.h. */
#include "reporter.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child.h"
#include "kb_config.h"
#include "kb_log.h"
#include "kb_time.h"
#include "kb_usage.h"
#include "kb_banned.h"

static volatile sig_atomic_t reporter_stop;

static void
on_term(int sig)
{
    (void)sig;
    reporter_stop = 1;
}

/* In the child: signals of its own, then the loop; never returns. */
static void
child(pid_t master_pid, const int *close_fds, size_t n)
{
    kb_child_enter(master_pid, close_fds, n, "reporter", "kb-reporter", on_term, SIGTERM);
    exit(kb_usage_reporter_main(&reporter_stop));
}

void
kb_reporter_start(kb_reporter *r, const int *close_fds, size_t n)
{
    r->respawn_at = 0;
    if (kb_cfg.stripe_secret_key == NULL || kb_cfg.usage_reporter == 0 || r->pid != 0)
        return;
    pid_t master_pid = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        kb_log_error("unable to fork the usage reporter: %s", strerror(errno));
        r->respawn_at = kb_mono_us() + 5000000;
        return;
    }
    if (pid == 0)
        child(master_pid, close_fds, n);
    r->pid = pid;
    kb_log_info("started usage reporter %ld", (long)pid);
}

bool
kb_reporter_reaped(kb_reporter *r, pid_t pid, const char *how, bool stopping)
{
    if (pid == 0 || pid != r->pid)
        return false;
    r->pid = 0;
    if (!stopping) {
        kb_log_error("usage reporter %ld %s; respawning in 2 s", (long)pid, how);
        r->respawn_at = kb_mono_us() + 2000000;
    }
    return true;
}

void
kb_reporter_stop(kb_reporter *r)
{
    r->respawn_at = 0;
    if (r->pid)
        kill(r->pid, SIGTERM);
}

void
kb_reporter_kill(const kb_reporter *r)
{
    if (r->pid)
        kill(r->pid, SIGKILL);
}
