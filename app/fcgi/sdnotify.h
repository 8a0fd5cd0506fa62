/* sdnotify.h - systemd readiness notification without libsystemd. */
#ifndef KB_SDNOTIFY_H
#define KB_SDNOTIFY_H

/* Send state ("READY=1", ...) to $NOTIFY_SOCKET; does nothing when unset. */
void kb_sd_notify(const char *state);

#endif
