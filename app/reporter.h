/* reporter.h - the usage reporter child of kalshibook-fcgi's master.
 *
 * With STRIPE_SECRET_KEY set (and KB_USAGE_REPORTER=1) the master runs one
 * more child beside the workers: lib/usage.c's reporter loop. It never serves
 * requests, so reloads leave it alone; its work is idempotent (kb_usage.h), so
 * killing it anywhere is safe. The master calls these from its own loop.
 */
#ifndef KB_REPORTER_H
#define KB_REPORTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct kb_reporter {
    pid_t pid;          /* the running child, 0 when none */
    int64_t respawn_at; /* monotonic; 0 = none scheduled */
} kb_reporter;

/*
 * Fork the reporter when it is wanted and not running. The child closes the
 * master's descriptors close_fds[0..n) first. A failed fork is retried in 5 s.
 */
void kb_reporter_start(kb_reporter *r, const int *close_fds, size_t n);

/* True when pid was the reporter (how: "exited with status 1"); unless the
 * master is stopping, its respawn is scheduled in 2 s. */
bool kb_reporter_reaped(kb_reporter *r, pid_t pid, const char *how, bool stopping);

/* Master stopping: no respawn, SIGTERM to the child (it finishes its run). */
void kb_reporter_stop(kb_reporter *r);

/* Drain deadline passed: SIGKILL. */
void kb_reporter_kill(const kb_reporter *r);

#endif
