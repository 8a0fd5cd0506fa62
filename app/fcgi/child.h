/*
 * child.h - the start every long-lived child of the master shares (the usage
 * reporter, the host lease keeper): inherited descriptors closed, its log role
 * and process name, SIGTERM/SIGINT to its stop handler, SIGHUP ignored, every
 * signal unblocked, and a signal when the master dies.
 */
#ifndef KB_CHILD_H
#define KB_CHILD_H

#include <stddef.h>
#include <sys/types.h>

/* In the child, right after fork(). Exits (0) when the master died before
 * PR_SET_PDEATHSIG could take effect; otherwise returns. */
void kb_child_enter(pid_t master_pid, const int *close_fds, size_t n, const char *role,
                    const char *name, void (*on_term)(int), int parent_death_signal);

#endif
