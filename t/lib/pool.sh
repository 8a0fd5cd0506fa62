# shellcheck shell=bash
# t/lib/pool.sh - the app: kalshibook-fcgi's worker pool and kbctl, run with the stack's
# environment.
#
# Sourced by t/stack.sh; uses its DIR, KB_BIN_DIR, REPO, START_TIMEOUT_S. The app
# inherits the caller's environment, then DIR/app.env, then the stack's own
# KB_DATABASE_URL and KB_SOCKET (app_exec). Invariant: the master runs in its own
# session, and no worker outlives a stop.

# app_exec CMD...: exec CMD with the caller's environment, DIR/app.env, and
# the stack's own settings on top (app.env cannot move the socket or the DB).
# Replaces the current process: call it in a subshell or as a background job
# (then $! is CMD's pid).
app_exec() {
    if [[ -f $DIR/app.env ]]; then
        set -a
        # shellcheck disable=SC1091  # optional, written by later tooling
        . "$DIR/app.env"
        set +a
    fi
    export KB_DATABASE_URL KB_SOCKET KB_MIGRATIONS_DIR KB_JOURNAL_DIR
    KB_DATABASE_URL=$(database_url)
    KB_SOCKET=$DIR/fcgi.sock
    # The charge journal's file: one directory per host, as on separate machines.
    KB_JOURNAL_DIR=$DIR/journal
    KB_MIGRATIONS_DIR=${KB_MIGRATIONS_DIR:-$REPO/db/migrations}
    exec "$@"
}

# A per-stack HS256 access-token secret: written once to DIR/app.env (which
# the app sources) unless the caller's environment or app.env already has one.
ensure_jwt_secret() {
    local f=$DIR/app.env
    [[ -n ${KB_JWT_SECRET:-} ]] && return
    [[ -f $f ]] && grep -q '^KB_JWT_SECRET=' "$f" && return
    (umask 077 && printf 'KB_JWT_SECRET=%s\n' "$(openssl rand -hex 32)" >>"$f") ||
        die "cannot write $f"
}

# The secret the app uses (app.env wins over the environment), for run.env.
jwt_secret() {
    local s
    s=$(kv_get "$DIR/app.env" KB_JWT_SECRET)
    printf '%s\n' "${s:-${KB_JWT_SECRET:-}}"
}

need_bin() {
    [[ -x $KB_BIN_DIR/$1 ]] || die "$KB_BIN_DIR/$1 not found (build first, or set KB_BIN_DIR)"
}

app_migrate() {
    need_bin kbctl
    (app_exec "$KB_BIN_DIR/kbctl" migrate) >>"$DIR/migrate.log" 2>&1 ||
        fail_with_log "$DIR/migrate.log" "kbctl migrate failed"
}

fcgi_pid() {
    local pid
    pid=$(read_pid "$DIR/fcgi.pid")
    [[ -n $pid ]] && pid_is "$pid" kalshibook-fcgi && printf '%s\n' "$pid"
    return 0
}

# fcgi_started PID: the socket is there, or the master PID died (stop waiting).
fcgi_started() {
    [[ -S $DIR/fcgi.sock ]] || pid_gone "$1"
}

app_start() {
    need_bin kalshibook-fcgi
    local pid
    pid=$(fcgi_pid)
    if [[ -n $pid ]]; then
        log "kalshibook-fcgi already running (pid $pid)"
        return
    fi
    rm -f "$DIR/fcgi.sock"
    # Own session (setsid): Ctrl-C in the terminal reaches only this script,
    # which then drains the pool with SIGTERM; and stop can signal the
    # master's whole process group if it must.
    app_exec setsid "$KB_BIN_DIR/kalshibook-fcgi" </dev/null >>"$DIR/app.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$DIR/fcgi.pid"
    wait_until "$START_TIMEOUT_S" fcgi_started "$pid" ||
        fail_with_log "$DIR/app.log" "kalshibook-fcgi did not create $DIR/fcgi.sock in ${START_TIMEOUT_S}s"
    pid_alive "$pid" || fail_with_log "$DIR/app.log" "kalshibook-fcgi exited during start"
    log "kalshibook-fcgi pid $pid on $DIR/fcgi.sock"
}

app_stop() {
    local pid
    pid=$(fcgi_pid)
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        # The master drains in-flight requests for up to KB_DRAIN_TIMEOUT_S.
        if ! wait_gone "$pid" $((${KB_DRAIN_TIMEOUT_S:-20} + 10)); then
            log "kalshibook-fcgi $pid did not stop after SIGTERM; killing it"
            kill_group_or_pid KILL "$pid"
            wait_gone "$pid" 5 || true
        fi
        # Workers are the master's children in its session; none may outlive it.
        if pgrep -g "$pid" >/dev/null 2>&1; then
            pkill -KILL -g "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$DIR/fcgi.pid" "$DIR/fcgi.sock"
}
