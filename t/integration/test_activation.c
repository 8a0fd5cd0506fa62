/* test_activation.c - systemd integration of kalshibook-fcgi without systemd:
 * socket activation (an inherited listening fd, LISTEN_FDS/LISTEN_PID) and
 * readiness notification (READY=1, RELOADING=1 + READY=1, STOPPING=1 on a
 * NOTIFY_SOCKET datagram socket the test listens on).
 *
 * Each test starts its own master (KB_BIN_DIR/kalshibook-fcgi, 2 workers,
 * the stack's database) in a temp dir, playing systemd's part itself: bind
 * and listen, fork, dup2 the socket to fd 3, set LISTEN_FDS=1 and
 * LISTEN_PID=<the child's pid>, exec. Requests are spoken as FastCGI directly
 * on the unix socket, as nginx would. The master runs in its own process
 * group, killed in teardown whatever happened; its log must be free of
 * sanitizer reports.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

#define NWORKERS 2

static char basedir[32]; /* one per run, removed by main */
static char tmpdir[64];
static char act_path[128];    /* the "systemd" socket */
static char own_path[128];    /* KB_SOCKET: only used when nothing is inherited */
static char notify_path[128]; /* NOTIFY_SOCKET */
static char log_path[128];
static int notify_fd = -1;
static pid_t master = -1;
static bool with_notify; /* set NOTIFY_SOCKET for the next master */

/* Fails the test when the master's log holds a sanitizer report. */
static void
assert_clean_log(void)
{
    FILE *f = fopen(log_path, "r");
    if (f == NULL)
        return;
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL) {
        bool bad = strstr(line, "ERROR: AddressSanitizer") != NULL ||
                   strstr(line, "ERROR: LeakSanitizer") != NULL ||
                   strstr(line, "runtime error:") != NULL;
        ck_assert_msg(!bad, "sanitizer report in %s: %s", log_path, line);
    }
    fclose(f);
}

/* Kill the master's group (the temp dirs go at the end of main). */
static void
cleanup(void)
{
    if (master > 0) {
        kill(-master, SIGKILL);
        waitpid(master, NULL, 0);
        master = -1;
    }
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
}

static void
setup(void)
{
    /* setup runs in each test's own process: the pid names its dir. */
    snprintf(tmpdir, sizeof(tmpdir), "%s/%ld", basedir, (long)getpid());
    ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
    snprintf(act_path, sizeof(act_path), "%s/act.sock", tmpdir);
    snprintf(own_path, sizeof(own_path), "%s/own.sock", tmpdir);
    snprintf(notify_path, sizeof(notify_path), "%s/notify.sock", tmpdir);
    snprintf(log_path, sizeof(log_path), "%s/master.log", tmpdir);
    master = -1;
    with_notify = true;

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, notify_path, strlen(notify_path) + 1);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(notify_fd, 0);
    ck_assert_int_eq(bind(notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void
teardown(void)
{
    cleanup();
}

/* A listening unix socket at path, as systemd's ListenStream= makes it. */
static int
listen_at(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 128), 0);
    return fd;
}

/*
 * Start the master. listen_fd >= 0 is passed as fd 3 with LISTEN_FDS=1;
 * listen_pid_bogus sets LISTEN_PID to a pid that is not the master's (the
 * variables were meant for another process and must be ignored).
 */
static pid_t
start_master(int listen_fd, bool listen_pid_bogus)
{
    char bin[512];
    snprintf(bin, sizeof(bin), "%s/kalshibook-fcgi", kbt_env("KB_BIN_DIR"));
    kbt_env("KB_DATABASE_URL");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        /* A failed assertion ends the test process without its teardown:
         * the master must not outlive it (its workers follow the master). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(127);
        int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (logfd < 0)
            _exit(127);
        dup2(logfd, 1);
        dup2(logfd, 2);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        if (listen_fd >= 0) {
            if (listen_fd == 3)
                fcntl(3, F_SETFD, 0);
            else if (dup2(listen_fd, 3) != 3)
                _exit(127);
            char buf[32];
            snprintf(buf, sizeof(buf), "%ld", listen_pid_bogus ? 1L : (long)getpid());
            setenv("LISTEN_PID", buf, 1);
            setenv("LISTEN_FDS", "1", 1);
            setenv("LISTEN_FDNAMES", "kalshibook.socket", 1);
        } else {
            unsetenv("LISTEN_PID");
            unsetenv("LISTEN_FDS");
        }
        if (with_notify)
            setenv("NOTIFY_SOCKET", notify_path, 1);
        else
            unsetenv("NOTIFY_SOCKET");
        setenv("KB_SOCKET", own_path, 1);
        setenv("KB_WORKERS", "2", 1);
        setenv("KB_DRAIN_TIMEOUT_S", "5", 1);
        /* A pool of its own beside the stack's: another host id (issue 22). */
        setenv("KB_HOST_ID", "activation-test", 1);
        char journal[600];
        snprintf(journal, sizeof(journal), "%s/journal-activation", kbt_env("KB_STACK_DIR"));
        setenv("KB_JOURNAL_DIR", journal, 1);
        execl(bin, "kalshibook-fcgi", (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    master = pid;
    return pid;
}

/* The next notification (NUL-terminated in out), or "" after timeout_ms. */
static const char *
next_notification(char *out, size_t outsz, int timeout_ms)
{
    out[0] = '\0';
    struct pollfd p = {notify_fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) == 1) {
        ssize_t n = recv(notify_fd, out, outsz - 1, 0);
        if (n > 0)
            out[n] = '\0';
    }
    return out;
}

static void
expect_notification(const char *want)
{
    char got[256];
    next_notification(got, sizeof(got), 20000);
    ck_assert_msg(strcmp(got, want) == 0, "expected %s on NOTIFY_SOCKET, got '%s' (log: %s)", want,
                  got, log_path);
}

/* ---- a minimal FastCGI client (responder role, one request per connection) */

static void
put_record(kb_buf *b, int type, const void *data, size_t len)
{
    unsigned char h[8] = {
        1, (unsigned char)type, 0, 1, (unsigned char)(len >> 8), (unsigned char)(len & 0xff), 0, 0};
    kb_buf_append(b, h, sizeof(h));
    if (len > 0)
        kb_buf_append(b, data, len);
}

static void
put_param(kb_buf *b, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    ck_assert(nl < 128 && vl < 128);
    unsigned char lens[2] = {(unsigned char)nl, (unsigned char)vl};
    kb_buf_append(b, lens, 2);
    kb_buf_append(b, name, nl);
    kb_buf_append(b, value, vl);
}

/* Connect to path and send a complete GET request for uri; returns the fd. */
static int
fcgi_send(const char *path, const char *uri)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    kb_buf params = KB_BUF_INIT, out = KB_BUF_INIT;
    put_param(&params, "REQUEST_METHOD", "GET");
    put_param(&params, "REQUEST_URI", uri);
    put_param(&params, "QUERY_STRING", "");
    put_param(&params, "SERVER_PROTOCOL", "HTTP/1.1");
    put_param(&params, "REMOTE_ADDR", "127.0.0.1");
    put_param(&params, "KB_REQUEST_ID", "req_0123456789ab");
    static const unsigned char begin[8] = {0, 1, 0, 0, 0, 0, 0, 0}; /* responder, no keep-conn */
    put_record(&out, 1, begin, sizeof(begin));
    put_record(&out, 4, kb_buf_cstr(&params), params.len);
    put_record(&out, 4, NULL, 0);
    put_record(&out, 5, NULL, 0);
    ck_assert_int_eq(write(fd, kb_buf_cstr(&out), out.len), (ssize_t)out.len);
    kb_buf_release(&params);
    kb_buf_release(&out);
    return fd;
}

static bool
read_full(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* Read the response on fd (closed here); returns its Status, -1 on failure. */
static int
fcgi_status(int fd, kb_buf *body)
{
    kb_buf stdout_data = KB_BUF_INIT;
    bool ended = false;
    unsigned char h[8], content[65536 + 256];
    while (!ended && read_full(fd, h, sizeof(h))) {
        size_t len = ((size_t)h[4] << 8 | h[5]) + h[6];
        if (!read_full(fd, content, len))
            break;
        if (h[1] == 6)
            kb_buf_append(&stdout_data, content, len - h[6]);
        ended = h[1] == 3;
    }
    close(fd);
    int status = -1;
    const char *s = kb_buf_cstr(&stdout_data);
    const char *st = strstr(s, "Status: ");
    const char *sep = strstr(s, "\r\n\r\n");
    if (ended && st != NULL)
        status = (int)strtol(st + 8, NULL, 10);
    if (body != NULL && sep != NULL)
        kb_buf_puts(body, sep + 4);
    kb_buf_release(&stdout_data);
    return status;
}

static int
fcgi_get_status(const char *path, const char *uri)
{
    int fd = fcgi_send(path, uri);
    return fd < 0 ? -1 : fcgi_status(fd, NULL);
}

/* SIGTERM the master: STOPPING=1 arrives and it exits 0. */
static void
stop_master(void)
{
    ck_assert_int_eq(kill(master, SIGTERM), 0);
    expect_notification("STOPPING=1");
    int status = 0;
    ck_assert_int_eq(waitpid(master, &status, 0), master);
    master = -1;
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "master did not exit cleanly (status 0x%x)", status);
    assert_clean_log();
}

static bool
exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

START_TEST(inherited_socket_serves_requests_queued_before_start)
{
    int lfd = listen_at(act_path);
    /* Like a request arriving while systemd (re)starts the service: it waits
     * in the backlog of the socket systemd holds. */
    int early = fcgi_send(act_path, "/health");
    ck_assert_int_ge(early, 0);
    start_master(lfd, false);
    kb_buf body = KB_BUF_INIT;
    ck_assert_int_eq(fcgi_status(early, &body), 200);
    ck_assert_str_eq(kb_buf_cstr(&body), "{\"status\":\"ok\"}");
    kb_buf_release(&body);
    expect_notification("READY=1");
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(fcgi_get_status(act_path, "/health"), 200);
    ck_assert_int_eq(fcgi_get_status(act_path, "/no-such-path"), 404);
    ck_assert_msg(!exists(own_path), "the master bound KB_SOCKET despite LISTEN_FDS");
    stop_master();
    ck_assert_msg(exists(act_path), "the master removed the socket it inherited");
}
END_TEST

START_TEST(inherited_socket_survives_a_restart)
{
    int lfd = listen_at(act_path);
    start_master(lfd, false);
    expect_notification("READY=1");
    ck_assert_int_eq(fcgi_get_status(act_path, "/health"), 200);
    stop_master();
    /* Between the two masters only the socket (held here, as by systemd) lives. */
    int waiting = fcgi_send(act_path, "/health");
    ck_assert_int_ge(waiting, 0);
    start_master(lfd, false);
    ck_assert_int_eq(fcgi_status(waiting, NULL), 200);
    expect_notification("READY=1");
    stop_master();
    close(lfd);
}
END_TEST

START_TEST(listen_fds_for_another_pid_are_ignored)
{
    int lfd = listen_at(act_path);
    start_master(lfd, true);
    expect_notification("READY=1");
    ck_assert_msg(exists(own_path), "the master did not bind KB_SOCKET");
    ck_assert_int_eq(fcgi_get_status(own_path, "/health"), 200);
    stop_master();
    ck_assert_msg(!exists(own_path), "the master left its own socket behind");
    close(lfd);
}
END_TEST

START_TEST(ready_reloading_stopping_are_notified)
{
    int lfd = listen_at(act_path);
    start_master(lfd, false);
    expect_notification("READY=1");
    /* READY=1 means every worker is up and accepting. */
    pid_t before[8], after[8];
    ck_assert_uint_eq(kbt_children(master, before, 8), NWORKERS);
    ck_assert_int_eq(fcgi_get_status(act_path, "/health"), 200);

    ck_assert_int_eq(kill(master, SIGHUP), 0);
    expect_notification("RELOADING=1");
    expect_notification("READY=1");
    /* READY=1 after a reload: every worker was replaced (retired ones may
     * still be draining, so look for the new ones among the children). */
    size_t n = kbt_children(master, after, 8);
    size_t fresh = 0;
    for (size_t i = 0; i < n; i++) {
        bool old = false;
        for (size_t k = 0; k < NWORKERS; k++)
            old = old || after[i] == before[k];
        fresh += !old;
    }
    ck_assert_uint_eq(fresh, NWORKERS);
    ck_assert_int_eq(fcgi_get_status(act_path, "/health"), 200);

    char extra[256];
    ck_assert_str_eq(next_notification(extra, sizeof(extra), 200), "");
    stop_master();
    close(lfd);
}
END_TEST

START_TEST(no_notify_socket_is_harmless)
{
    int lfd = listen_at(act_path);
    with_notify = false;
    start_master(lfd, false);
    /* A master started without NOTIFY_SOCKET (plain `kalshibook-fcgi`) runs
     * the same; probe until the pool answers. */
    long deadline = kbt_now_ms() + 20000;
    int status = -1;
    while (status != 200 && kbt_now_ms() < deadline)
        status = fcgi_get_status(act_path, "/health");
    ck_assert_int_eq(status, 200);
    ck_assert_int_eq(kill(master, SIGTERM), 0);
    int ws = 0;
    ck_assert_int_eq(waitpid(master, &ws, 0), master);
    master = -1;
    ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    assert_clean_log();
    close(lfd);
}
END_TEST

int
main(void)
{
    kbt_init();
    snprintf(basedir, sizeof(basedir), "/tmp/kbact.XXXXXX");
    if (mkdtemp(basedir) == NULL) {
        perror("test_activation: mkdtemp");
        return 1;
    }
    Suite *s = suite_create("activation");
    TCase *tc = tcase_create("activation");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, inherited_socket_serves_requests_queued_before_start);
    tcase_add_test(tc, inherited_socket_survives_a_restart);
    tcase_add_test(tc, listen_fds_for_another_pid_are_ignored);
    tcase_add_test(tc, ready_reloading_stopping_are_notified);
    tcase_add_test(tc, no_notify_socket_is_harmless);
    suite_add_tcase(s, tc);
    int rc = kb_check_run(s);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", basedir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_activation: could not remove %s\n", basedir);
    return rc;
}
