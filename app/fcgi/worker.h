/* worker.h - the worker loop, entered in a child right after fork. */
#ifndef KB_APP_WORKER_H
#define KB_APP_WORKER_H

#include <sys/types.h>

/*
 * Serve requests on listen_fd until SIGTERM or the request budget is spent.
 * Writes its pid to ready_fd once it can accept. Returns the exit status.
 */
int kb_worker_main(int listen_fd, int ready_fd, pid_t master);

#endif
