/* listen.c - the master's FastCGI listen socket; see listen.h. */
#include "listen.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kb_log.h"
#include "kb_str.h"
#include "kb_banned.h"

int
kb_listen_inherited(void)
{
    const char *pid = getenv("LISTEN_PID");
    const char *fds = getenv("LISTEN_FDS");
    int64_t p, n;
    const char *err;
    if (pid == NULL || fds == NULL)
        return -1;
    if (!kb_parse_i64(kb_str_c(pid), 1, INT32_MAX, &p, &err) || p != getpid())
        return -1;
    if (!kb_parse_i64(kb_str_c(fds), 0, 64, &n, &err) || n < 1)
        return -1;
    if (n > 1)
        kb_log_warn("systemd passed %lld sockets; using the first", (long long)n);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return 3; /* SD_LISTEN_FDS_START */
}

int
kb_listen_bind(const char *path, long mode)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        kb_log_error("socket path '%s' is too long", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            kb_log_error("refusing to replace '%s': not a socket", path);
            return -1;
        }
        unlink(path); /* stale socket of a previous run */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc != 0 || chmod(path, (mode_t)mode) != 0 || listen(fd, 4096) != 0) {
        kb_log_error("unable to listen on '%s': %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}
