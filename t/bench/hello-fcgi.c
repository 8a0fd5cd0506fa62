/* hello-fcgi: the benchmark's FastCGI baseline; every request gets 200 {"status":"ok"}.
 *
 * Usage: hello-fcgi SOCKET [WORKERS]
 *
 * Shaped like the kalshibook-fcgi pool so the comparison is fair: a master
 * binds the unix socket (mode 0660), forks WORKERS children (default: online
 * CPUs) that share it, each in an FCGX_Accept_r loop, and the reply carries
 * X-Request-ID from the KB_REQUEST_ID param as the app's does. It does no
 * routing, no database and no logging: what /health costs beyond this is the
 * app's own work. SIGTERM or SIGINT to the master stops the children and
 * removes the socket. Built by t/bench/bench.sh; never installed.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcgiapp.h>

#define MAX_WORKERS 256

static volatile sig_atomic_t stop_requested;

static void
on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void
serve(int fd)
{
    static const char body[] = "{\"status\":\"ok\"}";
    FCGX_Request req;
    char head[256];

    if (FCGX_InitRequest(&req, fd, 0) != 0) {
        fprintf(stderr, "hello-fcgi: unable to init request\n");
        _exit(1);
    }
    while (FCGX_Accept_r(&req) >= 0) {
        const char *rid = FCGX_GetParam("KB_REQUEST_ID", req.envp);
        /* snprintf, not FCGX_FPrintF: libfcgi's formatter has no %zu. */
        int n = snprintf(head, sizeof(head),
                         "Status: 200 OK\r\nContent-Type: application/json\r\n"
                         "%s%.64s%sContent-Length: %zu\r\n\r\n",
                         rid != NULL ? "X-Request-ID: " : "", rid != NULL ? rid : "",
                         rid != NULL ? "\r\n" : "", sizeof(body) - 1);
        if (n > 0 && (size_t)n < sizeof(head)) {
            FCGX_PutStr(head, n, req.out);
            FCGX_PutStr(body, (int)(sizeof(body) - 1), req.out);
        }
        FCGX_Finish_r(&req);
    }
    _exit(0);
}

int
main(int argc, char **argv)
{
    pid_t kids[MAX_WORKERS];
    long n;
    int fd;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: hello-fcgi SOCKET [WORKERS]\n");
        return 2;
    }
    n = argc == 3 ? strtol(argv[2], NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1 || n > MAX_WORKERS) {
        fprintf(stderr, "hello-fcgi: workers must be between 1 and %d\n", MAX_WORKERS);
        return 2;
    }

    if (FCGX_Init() != 0) {
        fprintf(stderr, "hello-fcgi: unable to init libfcgi\n");
        return 1;
    }
    if (unlink(argv[1]) != 0 && errno != ENOENT) {
        fprintf(stderr, "hello-fcgi: unable to remove '%s': %s\n", argv[1], strerror(errno));
        return 1;
    }
    fd = FCGX_OpenSocket(argv[1], 1024);
    if (fd < 0) {
        fprintf(stderr, "hello-fcgi: unable to listen on '%s'\n", argv[1]);
        return 1;
    }
    if (chmod(argv[1], 0660) != 0) {
        fprintf(stderr, "hello-fcgi: unable to chmod '%s': %s\n", argv[1], strerror(errno));
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "hello-fcgi: unable to fork: %s\n", strerror(errno));
            n = i;
            stop_requested = 1;
            break;
        }
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            serve(fd);
        }
        kids[i] = pid;
    }

    /* Any exit of a child, or a stop signal, ends the whole pool. */
    int status = 0;
    while (!stop_requested) {
        pid_t pid = wait(&status);
        if (pid > 0) {
            fprintf(stderr, "hello-fcgi: worker %d exited\n", (int)pid);
            break;
        }
        if (errno != EINTR)
            break;
    }
    for (long i = 0; i < n; i++)
        kill(kids[i], SIGTERM);
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    unlink(argv[1]);
    return stop_requested ? 0 : 1;
}
