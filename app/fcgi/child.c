/* child.c - what a child of the master does first; see child.h. */
#include "child.h"

#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "kb_log.h"
#include "kb_banned.h"

void
kb_child_enter(pid_t master_pid, const int *close_fds, size_t n, const char *role, const char *name,
               void (*on_term)(int), int parent_death_signal)
{
    for (size_t i = 0; i < n; i++)
        close(close_fds[i]);
    kb_log_set_role(role);
    prctl(PR_SET_NAME, name);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, parent_death_signal);
    /* The master may have died between fork and the line above. */
    if (getppid() != master_pid)
        _exit(0);
}
