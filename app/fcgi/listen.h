/* listen.h - the FastCGI listen socket the master hands to its workers. */
#ifndef KB_LISTEN_H
#define KB_LISTEN_H

/* The socket systemd passed (LISTEN_PID is us, LISTEN_FDS >= 1: fd 3; the
 * LISTEN_* variables are removed so workers do not see them), or -1. */
int kb_listen_inherited(void);

/* Bind and listen on the unix socket path with mode (a stale socket there is
 * replaced, any other file refused); the fd, or -1 after logging why. */
int kb_listen_bind(const char *path, long mode);

#endif
