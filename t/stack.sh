#!/usr/bin/env bash
# t/stack.sh: run the whole KalshiBook stack (Postgres, kalshibook-fcgi, nginx) from one directory.
#
# Usage:
#   t/stack.sh start DIR               start everything, wait for /health, write DIR/run.env
#   t/stack.sh stop DIR                stop everything; idempotent, never fails
#   t/stack.sh run DIR                 start, print URLs and examples, stop on Ctrl-C/SIGTERM
#   t/stack.sh pg-stop DIR [fast|immediate]
#   t/stack.sh pg-start DIR            stop/start only Postgres ("DB down" tests)
#   t/stack.sh app-stop DIR
#   t/stack.sh app-start DIR           stop/start only kalshibook-fcgi (drain tests)
#   t/stack.sh replica-start DIR       add a streaming replica (pg_basebackup) and restart the
#                                      app with KB_DATABASE_READ_URL pointing at it
#   t/stack.sh nginx-test-prod         nginx -t on the production site nginx/kalshibook.conf
#   t/stack.sh host-start|host-stop|host-kill|host-app-start DIR N
#                                      more app hosts on this stack's Postgres (t/lib/hosts.sh)
#   t/stack.sh replica-resync DIR      stop the replica, rebuild it from the primary, start it
#                                      (the app keeps running; t/lib/hosts.sh)
#   t/stack.sh bouncer-start DIR       PgBouncer in session mode between the pools and the
#                                      primary; app restarted through it (t/lib/hosts.sh)
#
# DIR holds all state (created if missing): pg/ (cluster), pgsock/, tls/
# (self-signed cert), nginx/ (instantiated config), fcgi.sock, *.pid, *.log,
# ports.env (remembered ports), run.env (for tests and people).
#
# Environment:
#   KB_BIN_DIR          where kalshibook-fcgi and kbctl are (default <repo>/app)
#   KB_HTTPS_PORT, KB_HTTP_PORT, KB_PG_PORT
#                       fixed ports; otherwise remembered ones, otherwise free ones
#   KB_PG_BIN           Postgres bin dir (default: newest /usr/lib/postgresql/*/bin)
#   KB_NGINX_EXTRA_CONF file of extra server-level nginx directives (benchmarks)
#   KB_START_TIMEOUT_S  deadline for each wait during start (default 60)
#   KB_KEEP_ON_FAILURE  set to 1 to leave a failed start running for inspection
# The app inherits the caller's environment (KB_*, STRIPE_*), then DIR/app.env
# (sourced, optional), then the stack's own KB_DATABASE_URL and KB_SOCKET.
#
# Invariants: every wait polls a condition against a deadline; stop only
# signals processes whose pid file and command line both say they are ours;
# a failed start prints the tail of the relevant log and stops what it started.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=t/lib/wait.sh
. "$REPO/t/lib/wait.sh"
KB_BIN_DIR=${KB_BIN_DIR:-$REPO/app}
START_TIMEOUT_S=${KB_START_TIMEOUT_S:-60}
DB_NAME=kalshibook
DB_USER=kb

# Set by set_dir.
DIR=
PGDATA_DIR=
PGSOCK_DIR=
REPLICA_DIR=
REPLICA_SOCK=

log() {
    printf 'stack: %s\n' "$*" >&2
}

die() {
    printf 'stack.sh: %s\n' "$*" >&2
    exit 1
}

# fail_with_log LOGFILE MESSAGE: report a failure with the end of LOGFILE.
fail_with_log() {
    local file=$1
    shift
    printf 'stack.sh: %s\n' "$*" >&2
    if [[ -s $file ]]; then
        printf -- '----- last lines of %s -----\n' "$file" >&2
        tail -n 40 "$file" >&2
        printf -- '-----\n' >&2
    fi
    exit 1
}

usage() {
    sed -n '3,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

is_root() {
    [[ $(id -u) == 0 ]]
}

# ---- tools ------------------------------------------------------------------

find_pg_bin() {
    if [[ -n ${KB_PG_BIN:-} ]]; then
        printf '%s\n' "$KB_PG_BIN"
        return
    fi
    # The newest /usr/lib/postgresql/N/bin (numerically: 16 beats 9).
    local d v best='' best_v=-1 initdb
    for d in /usr/lib/postgresql/*/bin; do
        v=${d#/usr/lib/postgresql/}
        v=${v%%/*}
        if [[ -x $d/postgres && $v =~ ^[0-9]+$ ]] && ((v > best_v)); then
            best=$d
            best_v=$v
        fi
    done
    if [[ -z $best ]]; then
        initdb=$(command -v initdb) || die "no Postgres found: install postgresql or set KB_PG_BIN"
        best=$(dirname "$initdb")
    fi
    printf '%s\n' "$best"
}

find_nginx() {
    command -v nginx 2>/dev/null && return
    [[ -x /usr/sbin/nginx ]] && { printf '/usr/sbin/nginx\n'; return; }
    die "nginx not found"
}

# as_pg CMD...: run a Postgres server program (initdb, pg_ctl) as the
# postgres user when we are root (Postgres refuses to run as root), from a
# directory that user can enter.
as_pg() {
    if is_root; then
        (cd "$DIR" && runuser -u postgres -- "$@")
    else
        (cd "$DIR" && "$@")
    fi
}

# ---- processes --------------------------------------------------------------

# pid_alive PID: the process exists and is not a zombie (pid_gone: t/lib/wait.sh).
pid_alive() {
    ! pid_gone "$1"
}

# pid_is PID WORD: PID is alive and WORD appears in its command line.
pid_is() {
    pid_alive "$1" || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

# read_pid FILE: print the pid stored in FILE, or nothing.
read_pid() {
    local pid=
    if [[ -r $1 ]]; then
        read -r pid <"$1" || true
    fi
    [[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
    return 0
}

# pids_gone PID...: every one of them is gone.
pids_gone() {
    local p
    for p in "$@"; do
        pid_gone "$p" || return 1
    done
}

# wait_gone PID SECONDS: poll until PID is gone; fail when the deadline passes.
wait_gone() {
    wait_until "$2" pid_gone "$1"
}

# kill_group_or_pid SIG PID: signal PID's process group when PID leads it
# (our daemons run in their own session), else just PID.
kill_group_or_pid() {
    local sig=$1 pid=$2 pgid
    pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') || true
    if [[ $pgid == "$pid" ]]; then
        kill "-$sig" -- "-$pid" 2>/dev/null || true
    else
        kill "-$sig" "$pid" 2>/dev/null || true
    fi
}

# ---- ports ------------------------------------------------------------------

# TCP ports in LISTEN state on this host (IPv4 and IPv6).
listening_ports() {
    local f sl addr rem st rest
    for f in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $f ]] || continue
        # shellcheck disable=SC2034  # sl, rem and rest are fields we skip
        while read -r sl addr rem st rest; do
            [[ $st == 0A ]] && printf '%d\n' "$((16#${addr##*:}))"
        done < <(tail -n +2 "$f")
    done
}

port_in_use() {
    listening_ports | grep -qx -- "$1"
}

# pick_port EXCLUDED...: a free port in 20000..32199 not in EXCLUDED. The
# range stays below Linux's ephemeral ports (32768..60999), which outgoing
# connections take without listening, so a port that looks free there can
# still be taken by the time Postgres or nginx binds it.
pick_port() {
    local used p i
    used=$(listening_ports | sort -u)
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12200))
        grep -qx -- "$p" <<<"$used" && continue
        [[ " $* " == *" $p "* ]] && continue
        printf '%s\n' "$p"
        return
    done
    die "no free port found"
}

# kv_get FILE NAME: value of NAME=value in FILE (no sourcing).
kv_get() {
    [[ -r $1 ]] || return 0
    sed -n "s/^$2=//p" "$1" | tail -n 1 | tr -d "'"
}

# Sets HTTPS_PORT, HTTP_PORT, PG_PORT: the environment first, then the ports
# remembered in DIR/ports.env, then free ones; remembers the result.
choose_ports() {
    local f=$DIR/ports.env
    HTTPS_PORT=${KB_HTTPS_PORT:-$(kv_get "$f" KB_HTTPS_PORT)}
    HTTP_PORT=${KB_HTTP_PORT:-$(kv_get "$f" KB_HTTP_PORT)}
    PG_PORT=${KB_PG_PORT:-$(kv_get "$f" KB_PG_PORT)}
    [[ -n $HTTPS_PORT ]] || HTTPS_PORT=$(pick_port "$HTTP_PORT" "$PG_PORT")
    [[ -n $HTTP_PORT ]] || HTTP_PORT=$(pick_port "$HTTPS_PORT" "$PG_PORT")
    [[ -n $PG_PORT ]] || PG_PORT=$(pick_port "$HTTPS_PORT" "$HTTP_PORT")
    local p
    for p in "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT"; do
        if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then
            die "bad port '$p'"
        fi
    done
    printf 'KB_HTTPS_PORT=%s\nKB_HTTP_PORT=%s\nKB_PG_PORT=%s\n' \
        "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT" >"$f.tmp"
    mv -f "$f.tmp" "$f"
}

# Ports only, for the commands that must not pick new ones.
load_ports() {
    local f=$DIR/ports.env
    HTTPS_PORT=$(kv_get "$f" KB_HTTPS_PORT)
    HTTP_PORT=$(kv_get "$f" KB_HTTP_PORT)
    PG_PORT=$(kv_get "$f" KB_PG_PORT)
}

# ---- stack dir ----------------------------------------------------------------

# set_dir DIR CREATE: resolve DIR to an absolute path the configs can hold.
set_dir() {
    local d=$1 create=$2
    [[ -n $d ]] || usage
    if [[ $create == yes ]]; then
        mkdir -p -- "$d"
    elif [[ ! -d $d ]]; then
        DIR=
        return 1
    fi
    DIR=$(cd -- "$d" && pwd -P)
    # The path goes into nginx and Postgres configs and a libpq conninfo
    # string unquoted; keep it to characters none of them treat specially.
    [[ $DIR =~ ^[A-Za-z0-9._/+,~-]+$ ]] ||
        die "stack dir '$DIR' may only contain letters, digits and . _ / + , ~ -"
    # Unix socket paths are limited to 107 bytes (".../pgsock/.s.PGSQL.NNNNN").
    ((${#DIR} <= 80)) || die "stack dir '$DIR' is too long for unix socket paths (max 80 chars)"
    PGDATA_DIR=$DIR/pg
    PGSOCK_DIR=$DIR/pgsock
    REPLICA_DIR=$DIR/pgr
    REPLICA_SOCK=$DIR/pgrsock
}

database_url() {
    printf 'host=%s port=%s user=%s dbname=%s\n' "$PGSOCK_DIR" "$PG_PORT" "$DB_USER" "$DB_NAME"
}

# ---- TLS ----------------------------------------------------------------------

# make_cert CERT KEY: self-signed P-256 certificate for localhost and 127.0.0.1.
make_cert() {
    local cert=$1 key=$2
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -days 3650 -subj /CN=localhost \
        -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
        -keyout "$key" -out "$cert" >/dev/null 2>&1) || die "openssl could not create a certificate"
    chmod 644 "$cert"
}

ensure_cert() {
    mkdir -p "$DIR/tls"
    if [[ ! -s $DIR/tls/cert.pem || ! -s $DIR/tls/key.pem ]]; then
        make_cert "$DIR/tls/cert.pem" "$DIR/tls/key.pem"
        log "created self-signed certificate $DIR/tls/cert.pem"
    fi
}

# ---- Postgres -----------------------------------------------------------------

pg_running() {
    [[ -f $PGDATA_DIR/PG_VERSION ]] || return 1
    as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1
}

pg_init() {
    if is_root; then
        runuser -u postgres -- test -x "$DIR" ||
            die "the postgres user cannot enter '$DIR'; use a dir whose parents are world-traversable (e.g. under /tmp)"
    fi
    mkdir -p "$PGSOCK_DIR"
    touch "$DIR/pg.log"
    if is_root; then
        chown postgres: "$PGSOCK_DIR" "$DIR/pg.log"
    fi
    chmod 755 "$PGSOCK_DIR"
    [[ -f $PGDATA_DIR/PG_VERSION ]] && return
    # A cluster dir without PG_VERSION is a half-finished initdb: start over.
    rm -rf -- "$PGDATA_DIR"
    mkdir -m 700 "$PGDATA_DIR"
    is_root && chown postgres: "$PGDATA_DIR"
    log "initdb $PGDATA_DIR"
    # trust: the cluster only listens on 127.0.0.1 and a private socket dir,
    # and initdb's pg_hba.conf only has loopback host lines.
    as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U "$DB_USER" -E UTF8 --locale=C \
        --auth-local=trust --auth-host=trust --no-instructions >"$DIR/pg-init.log" 2>&1 ||
        fail_with_log "$DIR/pg-init.log" "initdb failed"
    printf "\ninclude_if_exists = 'kalshibook-stack.conf'\n" >>"$PGDATA_DIR/postgresql.conf"
}

# Settings rewritten on every start, so a changed port takes effect.
pg_write_conf() {
    cat >"$PGDATA_DIR/kalshibook-stack.conf" <<EOF
# Written by t/stack.sh on every start.
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGSOCK_DIR'
fsync = on
synchronous_commit = on
full_page_writes = on
# SSD/NVMe: an index probe costs about what a sequential page read does. At
# the default 4.0 the planner scans small, hot tables (billing_accounts,
# api_keys with a few hundred rows) sequentially, visibility-checking every
# row version, on every metered request (docs/ops.md, step 3).
random_page_cost = 1.1
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    chmod 644 "$PGDATA_DIR/kalshibook-stack.conf"
}

pg_wait_ready() {
    wait_until "$START_TIMEOUT_S" \
        "$PG_BIN/pg_isready" -q -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" -d postgres ||
        fail_with_log "$DIR/pg.log" "Postgres not ready after ${START_TIMEOUT_S}s"
}

pg_start() {
    if pg_running; then
        log "postgres already running"
    else
        if port_in_use "$PG_PORT"; then
            die "Postgres port $PG_PORT is already in use (set KB_PG_PORT or remove $DIR/ports.env)"
        fi
        pg_write_conf
        as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA_DIR" -l "$DIR/pg.log" -w -t "$START_TIMEOUT_S" -s ||
            fail_with_log "$DIR/pg.log" "Postgres did not start"
        log "postgres on 127.0.0.1:$PG_PORT and $PGSOCK_DIR"
    fi
    pg_wait_ready
}

pg_stop() {
    local mode=${1:-fast}
    pg_running || return 0
    as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m "$mode" -w -t 60 -s ||
        as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m immediate -w -t 30 -s ||
        log "could not stop Postgres in $PGDATA_DIR"
    return 0
}

pg_create_db() {
    local found
    found=$("$PG_BIN/psql" -X -q -t -A -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" 2>>"$DIR/pg.log") ||
        fail_with_log "$DIR/pg.log" "cannot query Postgres"
    if [[ $found != 1 ]]; then
        "$PG_BIN/createdb" -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" "$DB_NAME" 2>>"$DIR/pg.log" ||
            fail_with_log "$DIR/pg.log" "createdb $DB_NAME failed"
        log "created database $DB_NAME"
    fi
}

# ---- the app --------------------------------------------------------------------

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
    export KB_DATABASE_URL KB_SOCKET KB_MIGRATIONS_DIR
    KB_DATABASE_URL=$(database_url)
    KB_SOCKET=$DIR/fcgi.sock
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

# ---- nginx ----------------------------------------------------------------------

nginx_pid() {
    local pid
    pid=$(read_pid "$DIR/nginx.pid")
    [[ -n $pid ]] && pid_is "$pid" nginx && printf '%s\n' "$pid"
    return 0
}

# sed replacement text: escape \, & and the | delimiter.
sed_repl() {
    printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}

nginx_args() {
    printf '%s\n' -p "$DIR/nginx/" -c "$DIR/nginx/nginx.conf" -e "$DIR/nginx-error.log"
}

# Instantiate nginx/kalshibook.conf.in into DIR/nginx/nginx.conf, with the
# shared snippets copied next to it.
nginx_config() {
    local out=$DIR/nginx/nginx.conf user_line='' extra=''
    mkdir -p "$DIR/nginx/snippets" "$DIR/nginx/tmp"
    cp -f "$REPO"/nginx/kalshibook-*.conf "$DIR/nginx/snippets/"
    # Workers must reach the 0660 app socket, owned by whoever started the app:
    # as root that is root. Without root, nginx's workers run as the caller.
    is_root && user_line='user root;'
    if [[ -n ${KB_NGINX_EXTRA_CONF:-} ]]; then
        [[ -r $KB_NGINX_EXTRA_CONF ]] || die "KB_NGINX_EXTRA_CONF '$KB_NGINX_EXTRA_CONF' not readable"
        extra="include $KB_NGINX_EXTRA_CONF;"
    fi
    [[ $REPO =~ ^[A-Za-z0-9._/+,~-]+$ ]] || die "repo path '$REPO' has characters nginx configs cannot hold"
    sed -e "s|@USER_LINE@|$(sed_repl "$user_line")|g" \
        -e "s|@STACK_DIR@|$(sed_repl "$DIR")|g" \
        -e "s|@HTTPS_PORT@|$HTTPS_PORT|g" \
        -e "s|@HTTP_PORT@|$HTTP_PORT|g" \
        -e "s|@TLS_CERT@|$(sed_repl "$DIR/tls/cert.pem")|g" \
        -e "s|@TLS_KEY@|$(sed_repl "$DIR/tls/key.pem")|g" \
        -e "s|@SOCKET@|$(sed_repl "$DIR/fcgi.sock")|g" \
        -e "s|@STATIC_ROOT@|$(sed_repl "$REPO/static")|g" \
        -e "s|@EXTRA_LOCATIONS@|$(sed_repl "$extra")|g" \
        "$REPO/nginx/kalshibook.conf.in" >"$out.tmp"
    if grep -n '^[^#]*@[A-Z_]*@' "$out.tmp" >&2; then
        die "unreplaced placeholders in $out (above)"
    fi
    mv -f "$out.tmp" "$out"
    local -a args
    mapfile -t args < <(nginx_args)
    "$NGINX" -t -q "${args[@]}" >>"$DIR/nginx-error.log" 2>&1 ||
        fail_with_log "$DIR/nginx-error.log" "nginx -t failed for $out"
}

nginx_start() {
    local -a args
    mapfile -t args < <(nginx_args)
    nginx_config
    local pid
    pid=$(nginx_pid)
    if [[ -n $pid ]]; then
        log "nginx already running (pid $pid); reloading its config"
        local old_workers
        old_workers=$(pgrep -P "$pid" || true)
        kill -HUP "$pid" || fail_with_log "$DIR/nginx-error.log" "nginx reload failed"
        # Reload is asynchronous: wait (15 s at most) until the workers with the
        # old config are gone, so whatever follows sees the new one.
        # shellcheck disable=SC2086  # one argument per pid
        wait_until 15 pids_gone $old_workers || true
        return
    fi
    local p
    for p in "$HTTPS_PORT" "$HTTP_PORT"; do
        port_in_use "$p" && die "port $p is already in use (set KB_HTTPS_PORT/KB_HTTP_PORT or remove $DIR/ports.env)"
    done
    rm -f "$DIR/nginx.pid"
    # nginx daemonizes (own session); the master writes DIR/nginx.pid.
    "$NGINX" "${args[@]}" </dev/null 2>>"$DIR/nginx-error.log" ||
        fail_with_log "$DIR/nginx-error.log" "nginx did not start"
    wait_until "$START_TIMEOUT_S" nginx_pid_written ||
        fail_with_log "$DIR/nginx-error.log" "nginx wrote no pid file"
    pid=$(nginx_pid)
    log "nginx pid $pid on https://127.0.0.1:$HTTPS_PORT and http://127.0.0.1:$HTTP_PORT"
}

# nginx_pid_written: the nginx master has written its pid file.
nginx_pid_written() {
    local p
    p=$(nginx_pid) && [[ -n $p ]]
}

nginx_stop() {
    local pid
    pid=$(nginx_pid)
    [[ -n $pid ]] || return 0
    kill -QUIT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 15; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" 5; then
            kill_group_or_pid KILL "$pid"
            wait_gone "$pid" 5 || true
        fi
    fi
    rm -f "$DIR/nginx.pid"
}

# ---- health and run.env ------------------------------------------------------------

# health_settled URL FPID NPID: GET URL answered 200, or the pool (FPID) or nginx
# (NPID) died (stop waiting). Leaves the last status in the caller's `code`.
health_settled() {
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        --cacert "$DIR/tls/cert.pem" "$1" 2>/dev/null) || true
    [[ $code == 200 ]] || pid_gone "$2" || pid_gone "$3"
}

wait_health() {
    local url="https://127.0.0.1:$HTTPS_PORT/health" code=''
    local fpid npid
    fpid=$(fcgi_pid)
    npid=$(nginx_pid)
    wait_until "$START_TIMEOUT_S" health_settled "$url" "$fpid" "$npid" || true
    [[ $code == 200 ]] && return
    pid_alive "$fpid" || fail_with_log "$DIR/app.log" "kalshibook-fcgi exited before /health answered"
    pid_alive "$npid" || fail_with_log "$DIR/nginx-error.log" "nginx exited before /health answered"
    fail_with_log "$DIR/app.log" "GET $url did not answer 200 within ${START_TIMEOUT_S}s (last status ${code:-none})"
}

# env_line NAME VALUE: a line the shell can source; single quotes only when
# the value has characters outside a safe set (KB_DATABASE_URL has spaces).
env_line() {
    if [[ $2 =~ ^[A-Za-z0-9_./:=@%+,-]*$ ]]; then
        printf '%s=%s\n' "$1" "$2"
    else
        printf "%s='%s'\n" "$1" "$2"
    fi
}

write_run_env() {
    {
        printf '# Written by t/stack.sh start; shell NAME=value lines.\n'
        env_line KB_BASE_URL "https://127.0.0.1:$HTTPS_PORT"
        env_line KB_HTTP_URL "http://127.0.0.1:$HTTP_PORT"
        env_line KB_DATABASE_URL "$(database_url)"
        env_line KB_STACK_DIR "$DIR"
        env_line KB_FCGI_PID "$(fcgi_pid)"
        env_line KB_NGINX_PID "$(nginx_pid)"
        env_line KB_PG_PORT "$PG_PORT"
        env_line KB_PGDATA "$PGDATA_DIR"
        env_line KB_PG_BIN "$PG_BIN"
        env_line KB_CA_CERT "$DIR/tls/cert.pem"
        env_line KB_JWT_SECRET "$(jwt_secret)"
        if [[ -f $REPLICA_DIR/PG_VERSION ]]; then
            env_line KB_DATABASE_READ_URL "$(replica_url)"
        fi
        if [[ -n $DEMO_KEY ]]; then
            env_line KB_DEMO_API_KEY "$DEMO_KEY"
        fi
    } >"$DIR/run.env.tmp"
    mv -f "$DIR/run.env.tmp" "$DIR/run.env"
    # Every rewrite (start, replica-start, run) keeps the stand-in's lines.
    if [[ -f $DIR/stripe.env ]]; then
        stripe_config
        stripe_run_env
    fi
}

# ---- Stripe stand-in (t/stripe/standin.py) ---------------------------------------
# Started before the app, so the app's DIR/app.env can point STRIPE_API_BASE at
# it; it delivers signed webhooks to https://127.0.0.1:$HTTPS_PORT/billing/webhook.
# Keys and ports are generated once per DIR and remembered in DIR/stripe.env.
# The app.env lines live between the two marker lines below (other tooling
# may add its own lines to app.env).

STRIPE_MARK_BEGIN='# >>> stripe stand-in (stack.sh stripe_app_env)'
STRIPE_MARK_END='# <<< stripe stand-in'
STRIPE_PORT=
STRIPE_KEY=
STRIPE_WHSEC=
STRIPE_WHSEC_OLD=

stripe_pid() {
    local pid
    pid=$(read_pid "$DIR/stripe.pid")
    [[ -n $pid ]] && pid_is "$pid" standin.py && printf '%s\n' "$pid"
    return 0
}

stripe_config() {
    local f=$DIR/stripe.env
    STRIPE_PORT=${KB_STRIPE_PORT:-$(kv_get "$f" KB_STRIPE_PORT)}
    STRIPE_KEY=$(kv_get "$f" STRIPE_SECRET_KEY)
    STRIPE_WHSEC=$(kv_get "$f" STRIPE_WEBHOOK_SECRET)
    STRIPE_WHSEC_OLD=$(kv_get "$f" STRIPE_WEBHOOK_SECRET_OLD)
    [[ -n $STRIPE_PORT ]] || STRIPE_PORT=$(pick_port "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT")
    [[ -n $STRIPE_KEY ]] || STRIPE_KEY=sk_test_standin_$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
    [[ -n $STRIPE_WHSEC ]] || STRIPE_WHSEC=whsec_$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
    # A second, "previous" secret is accepted too, as during a rotation.
    [[ -n $STRIPE_WHSEC_OLD ]] || STRIPE_WHSEC_OLD=whsec_$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
    printf 'KB_STRIPE_PORT=%s\nSTRIPE_SECRET_KEY=%s\nSTRIPE_WEBHOOK_SECRET=%s\nSTRIPE_WEBHOOK_SECRET_OLD=%s\n' \
        "$STRIPE_PORT" "$STRIPE_KEY" "$STRIPE_WHSEC" "$STRIPE_WHSEC_OLD" >"$f.tmp"
    mv -f "$f.tmp" "$f"
}

# stripe_app_env REPORTER: (re)write the stand-in block of DIR/app.env.
stripe_app_env() {
    local f=$DIR/app.env
    (umask 077 && touch "$f")
    sed -i "/^$STRIPE_MARK_BEGIN\$/,/^$STRIPE_MARK_END\$/d" "$f"
    {
        printf '%s\n' "$STRIPE_MARK_BEGIN"
        env_line STRIPE_API_BASE "http://127.0.0.1:$STRIPE_PORT"
        env_line STRIPE_SECRET_KEY "$STRIPE_KEY"
        env_line STRIPE_WEBHOOK_SECRETS "$STRIPE_WHSEC,$STRIPE_WHSEC_OLD"
        env_line STRIPE_PROJECT_PRICE_ID price_standin_project
        env_line STRIPE_PAYG_PRICE_ID price_standin_payg
        env_line KB_APP_URL "https://127.0.0.1:$HTTPS_PORT"
        # The reporter child is on for `run`; tests run it explicitly
        # (kbctl report-usage) and may start the app with KB_USAGE_REPORTER=1.
        # shellcheck disable=SC2016  # expanded when app.env is sourced
        printf 'KB_USAGE_REPORTER=${KB_USAGE_REPORTER:-%s}\n' "$1"
        printf '%s\n' "$STRIPE_MARK_END"
    } >>"$f"
}

# standin_settled PID: the stand-in answers, or PID died (stop waiting).
standin_settled() {
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$STRIPE_PORT/_control/events" ||
        pid_gone "$1"
}

stripe_start() {
    local reporter=${1:-0} pid py
    stripe_config
    stripe_app_env "$reporter"
    pid=$(stripe_pid)
    if [[ -n $pid ]]; then
        log "stripe stand-in already running (pid $pid)"
        return
    fi
    py=$(command -v python3) || die "python3 not found (make deps)"
    setsid "$py" "$REPO/t/stripe/standin.py" --port "$STRIPE_PORT" --api-key "$STRIPE_KEY" \
        --webhook-secret "$STRIPE_WHSEC" \
        --webhook-url "https://127.0.0.1:$HTTPS_PORT/billing/webhook" \
        --cafile "$DIR/tls/cert.pem" </dev/null >>"$DIR/stripe.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$DIR/stripe.pid"
    wait_until "$START_TIMEOUT_S" standin_settled "$pid" ||
        fail_with_log "$DIR/stripe.log" "stripe stand-in did not answer"
    pid_alive "$pid" || fail_with_log "$DIR/stripe.log" "stripe stand-in exited during start"
    log "stripe stand-in pid $pid on http://127.0.0.1:$STRIPE_PORT"
}

stripe_stop() {
    local pid
    pid=$(stripe_pid)
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/stripe.pid"
}

stripe_run_env() {
    {
        env_line KB_STRIPE_URL "http://127.0.0.1:$STRIPE_PORT"
        env_line STRIPE_API_BASE "http://127.0.0.1:$STRIPE_PORT"
        env_line STRIPE_SECRET_KEY "$STRIPE_KEY"
        env_line STRIPE_WEBHOOK_SECRET "$STRIPE_WHSEC"
        env_line STRIPE_WEBHOOK_SECRET_OLD "$STRIPE_WHSEC_OLD"
        env_line STRIPE_WEBHOOK_SECRETS "$STRIPE_WHSEC,$STRIPE_WHSEC_OLD"
        env_line STRIPE_PROJECT_PRICE_ID price_standin_project
        env_line STRIPE_PAYG_PRICE_ID price_standin_payg
        # Programs tests start themselves (kbctl, a master) inherit this.
        env_line KB_USAGE_REPORTER "${STRIPE_REPORTER:-0}"
    } >>"$DIR/run.env"
}

# ---- commands ----------------------------------------------------------------------

# On a failed start, stop what is running (unless KB_KEEP_ON_FAILURE=1), so a
# test's temp dir never leaks a Postgres or a pool.
on_start_exit() {
    local rc=$?
    ((rc == 0)) && return
    if [[ ${KB_KEEP_ON_FAILURE:-0} == 1 ]]; then
        log "start failed; leaving $DIR running (KB_KEEP_ON_FAILURE=1)"
    else
        log "start failed; stopping the stack in $DIR"
        stop_all
    fi
    exit "$rc"
}

start_all() {
    PG_BIN=$(find_pg_bin)
    NGINX=$(find_nginx)
    chmod 755 "$DIR"
    rm -f "$DIR/run.env"
    trap on_start_exit EXIT
    choose_ports
    ensure_cert
    stripe_start "${STRIPE_REPORTER:-0}"
    pg_init
    pg_start
    pg_create_db
    ensure_jwt_secret
    app_migrate
    app_start
    nginx_start
    wait_health
    write_run_env
    trap - EXIT
    log "ready: https://127.0.0.1:$HTTPS_PORT (env in $DIR/run.env)"
}

stop_all() {
    PG_BIN=${PG_BIN:-$(find_pg_bin)}
    hosts_stop_all || true
    app_stop || true
    nginx_stop || true
    replica_stop || true
    pg_stop fast || true
    stripe_stop || true
    rm -f "$DIR/run.env"
}

cmd_start() {
    set_dir "$1" yes
    start_all
}

cmd_stop() {
    set_dir "$1" no || return 0
    stop_all
}

cmd_pg_stop() {
    local mode=${2:-fast}
    [[ $mode == fast || $mode == immediate || $mode == smart ]] || die "pg-stop mode must be fast or immediate"
    set_dir "$1" no || die "no stack dir '$1'"
    PG_BIN=$(find_pg_bin)
    pg_stop "$mode"
}

cmd_pg_start() {
    set_dir "$1" no || die "no stack dir '$1'"
    PG_BIN=$(find_pg_bin)
    load_ports
    [[ -n $PG_PORT && -f $PGDATA_DIR/PG_VERSION ]] || die "no cluster in '$DIR' (run start first)"
    pg_start
}

# app-start/app-stop: only the worker pool (tests restart it after a drain).
cmd_app_start() {
    set_dir "$1" no || die "no stack dir '$1'"
    load_ports
    [[ -n $PG_PORT ]] || die "no stack in '$DIR' (run start first)"
    app_start
}

cmd_app_stop() {
    set_dir "$1" no || die "no stack dir '$1'"
    app_stop
}

# ---- read replica (integration tests) --------------------------------------------------

replica_url() {
    printf 'host=%s port=%s user=%s dbname=%s\n' "$REPLICA_SOCK" "$(kv_get "$DIR/ports.env" KB_PG_REPLICA_PORT)" \
        "$DB_USER" "$DB_NAME"
}

replica_running() {
    [[ -f $REPLICA_DIR/PG_VERSION ]] || return 1
    as_pg "$PG_BIN/pg_ctl" status -D "$REPLICA_DIR" >/dev/null 2>&1
}

replica_stop() {
    replica_running || return 0
    as_pg "$PG_BIN/pg_ctl" stop -D "$REPLICA_DIR" -m fast -w -t 60 -s ||
        as_pg "$PG_BIN/pg_ctl" stop -D "$REPLICA_DIR" -m immediate -w -t 30 -s || true
}

# A hot standby of the running primary (pg_basebackup -R, streaming), then the
# app restarted with KB_DATABASE_READ_URL pointing at it (via DIR/app.env).
# replica_in_recovery PORT: the replica on PORT answers as a standby.
replica_in_recovery() {
    [[ $("$PG_BIN/psql" -X -q -t -A -h "$REPLICA_SOCK" -p "$1" -U "$DB_USER" -d "$DB_NAME" \
        -c 'SELECT pg_is_in_recovery()' 2>/dev/null) == t ]]
}

cmd_replica_start() {
    set_dir "$1" no || die "no stack dir '$1'"
    PG_BIN=$(find_pg_bin)
    load_ports
    pg_running || die "the primary is not running in '$DIR'"
    replica_build
    if [[ -f $DIR/app.env ]]; then
        sed -i '/^KB_DATABASE_READ_URL=/d' "$DIR/app.env"
    fi
    printf "KB_DATABASE_READ_URL='%s'\n" "$(replica_url)" >>"$DIR/app.env"
    app_stop
    app_start
    write_run_env
}

# The replica of the running primary, made with pg_basebackup unless it runs already.
replica_build() {
    local port
    port=$(kv_get "$DIR/ports.env" KB_PG_REPLICA_PORT)
    if [[ -z $port ]]; then
        port=$(pick_port "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT")
        printf 'KB_PG_REPLICA_PORT=%s\n' "$port" >>"$DIR/ports.env"
    fi
    if ! replica_running; then
        rm -rf -- "$REPLICA_DIR"
        mkdir -m 700 "$REPLICA_DIR"
        mkdir -p "$REPLICA_SOCK"
        chmod 755 "$REPLICA_SOCK"
        touch "$DIR/pg-replica.log"
        if is_root; then
            chown postgres: "$REPLICA_DIR" "$REPLICA_SOCK" "$DIR/pg-replica.log"
        fi
        as_pg "$PG_BIN/pg_basebackup" -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" \
            -D "$REPLICA_DIR" -R -X stream -c fast >>"$DIR/pg-replica.log" 2>&1 ||
            fail_with_log "$DIR/pg-replica.log" "pg_basebackup failed"
        cat >"$REPLICA_DIR/kalshibook-stack.conf" <<EOF
# Written by t/stack.sh replica-start: a hot standby of $PGDATA_DIR.
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$REPLICA_SOCK'
hot_standby = on
logging_collector = off
log_line_prefix = '%m [%p] replica %q%u@%d '
EOF
        chmod 644 "$REPLICA_DIR/kalshibook-stack.conf"
        as_pg "$PG_BIN/pg_ctl" start -D "$REPLICA_DIR" -l "$DIR/pg-replica.log" -w \
            -t "$START_TIMEOUT_S" -s || fail_with_log "$DIR/pg-replica.log" "the replica did not start"
        log "replica on 127.0.0.1:$port and $REPLICA_SOCK"
    fi
    wait_until "$START_TIMEOUT_S" replica_in_recovery "$port" ||
        fail_with_log "$DIR/pg-replica.log" "the replica is not answering"
}

print_examples() {
    local base="https://127.0.0.1:$HTTPS_PORT" ca="$DIR/tls/cert.pem"
    cat <<EOF

KalshiBook is running from $DIR
  API        $base   (http://127.0.0.1:$HTTP_PORT redirects to it)
  docs       $base/docs
  logs       $DIR/app.log $DIR/nginx-access.log $DIR/nginx-error.log $DIR/pg.log
  database   psql "$(database_url)"
  env        $DIR/run.env
  stripe     http://127.0.0.1:$STRIPE_PORT (stand-in: Checkout URLs open its "Pay (test)" page)

Try:
  curl --cacert $ca $base/health
  curl --cacert $ca $base/no-such-path          # JSON 404 envelope
  curl --cacert $ca $base/llms.txt
EOF
    [[ -z $DEMO_KEY ]] || print_demo_examples
    printf '\nCtrl-C stops everything.\n'
}

# ---- demo data and key (make run) ----------------------------------------------------

DEMO_KEY=
DEMO_EMAIL=demo@kalshibook.local

demo_psql() {
    "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" \
        -d "$DB_NAME" "$@"
}

# demo_setup: load `kbctl demo-data` once (skipped when its markets exist; a data set from
# before its fixed-point markets is loaded again, which only adds them) and keep
# one demo API key on a project account. The raw key lives only in DIR/demo.env
# (mode 600) so a second run prints the same key; the database holds its SHA-256.
demo_setup() {
    local loaded key hash
    loaded=$(demo_psql -c "SELECT count(*) FROM markets WHERE ticker LIKE 'KXRAINNYCM-26JAN-%'" \
        2>>"$DIR/demo.log") || fail_with_log "$DIR/demo.log" "cannot query the demo data"
    if [[ $loaded == 0 ]]; then
        log "loading the demo data set (kbctl demo-data, first run only)"
        (app_exec "$KB_BIN_DIR/kbctl" demo-data) >>"$DIR/demo.log" 2>&1 ||
            fail_with_log "$DIR/demo.log" "kbctl demo-data failed"
    fi
    key=$(kv_get "$DIR/demo.env" KB_DEMO_API_KEY)
    if ! [[ $key =~ ^kb-[A-Za-z0-9_-]{43}$ ]]; then
        key="kb-$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
        (umask 077 && printf 'KB_DEMO_API_KEY=%s\n' "$key" >"$DIR/demo.env")
    fi
    hash=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
    demo_psql -v hash="$hash" -v prefix="${key:0:7}" -v email="$DEMO_EMAIL" \
        >>"$DIR/demo.log" 2>&1 <<'SQL' || fail_with_log "$DIR/demo.log" "cannot create the demo key"
INSERT INTO users (email, password_hash) VALUES (:'email', '!demo-no-login')
    ON CONFLICT (email) DO NOTHING;
INSERT INTO api_keys (user_id, key_hash, key_prefix, name)
    SELECT id, :'hash', :'prefix', 'demo' FROM users WHERE email = :'email'
    ON CONFLICT (key_hash) DO NOTHING;
INSERT INTO billing_accounts (user_id, tier, credits_total)
    SELECT id, 'project', 4000 FROM users WHERE email = :'email'
    ON CONFLICT (user_id) DO NOTHING;
SQL
    DEMO_KEY=$key
}

print_demo_examples() {
    local base="https://127.0.0.1:$HTTPS_PORT" ca="$DIR/tls/cert.pem"
    local auth="Authorization: Bearer $DEMO_KEY" json='Content-Type: application/json'
    cat <<EOF

Demo API key (project account, 4000 credits; also KB_DEMO_API_KEY in $DIR/run.env):
  $DEMO_KEY

Market data (demo set: 22 markets, 2026-01-08 .. 2026-01-15; KXRAINNYCM-26JAN-T2 ticks
in \$0.001 (tapered_deci_cent), KXRAINNYCM-26JAN-T3 trades fractional contracts):
  curl --cacert $ca -H '$auth' $base/markets
  curl --cacert $ca -H '$auth' -H '$json' \\
       -d '{"market_ticker":"KXBTCD-26JAN15-T94000","timestamp":"2026-01-12T15:32:30Z","depth":5}' \\
       $base/orderbook
  curl --cacert $ca -H '$auth' -H '$json' \\
       -d '{"market_ticker":"KXRAINNYCM-26JAN-T2","timestamp":"2026-01-12T15:32:30Z","depth":3}' \\
       $base/orderbook
  curl --cacert $ca -H '$auth' -H '$json' \\
       -d '{"market_ticker":"KXBTCD-26JAN15-T94000","start_time":"2026-01-12T15:00:00Z","end_time":"2026-01-12T15:05:00Z","limit":5}' \\
       $base/deltas
  curl --cacert $ca -H '$auth' -H '$json' \\
       -d '{"market_ticker":"KXRAINNYCM-26JAN-T3","start_time":"2026-01-12T00:00:00Z","end_time":"2026-01-13T00:00:00Z","limit":5}' \\
       $base/trades
  curl --cacert $ca -H '$auth' -H '$json' \\
       -d '{"market_ticker":"KXFED-26JAN-T300","start_time":"2026-01-12T00:00:00Z","end_time":"2026-01-13T00:00:00Z","limit":5}' \\
       $base/trades
  curl --cacert $ca -H '$auth' \\
       '$base/candles/KXBTCD-26JAN15-T94000?start_time=2026-01-12T00:00:00Z&end_time=2026-01-13T00:00:00Z&interval=1h'
  curl --cacert $ca -H '$auth' $base/events/KXFED-26JAN
  curl --cacert $ca -H '$auth' '$base/settlements?event_ticker=KXFED-26JAN'
EOF
}

RUN_SLEEPER=

run_stop_and_exit() {
    trap - INT TERM HUP EXIT
    if [[ -n $RUN_SLEEPER ]]; then
        kill "$RUN_SLEEPER" 2>/dev/null || true
    fi
    log "stopping"
    stop_all
    exit "$1"
}

cmd_run() {
    set_dir "$1" yes
    STRIPE_REPORTER=1
    start_all
    load_ports
    demo_setup
    write_run_env
    print_examples
    trap 'run_stop_and_exit 0' INT TERM HUP
    trap 'run_stop_and_exit 1' EXIT
    local fpid npid
    fpid=$(fcgi_pid)
    npid=$(nginx_pid)
    while :; do
        # A short sleep in the background keeps the shell free to run the
        # trap as soon as a signal arrives (with or without a TTY).
        sleep 1 &
        RUN_SLEEPER=$!
        wait "$RUN_SLEEPER" || true
        RUN_SLEEPER=
        if ! pid_alive "$fpid"; then
            fail_with_log "$DIR/app.log" "kalshibook-fcgi (pid $fpid) exited"
        fi
        if ! pid_alive "$npid"; then
            fail_with_log "$DIR/nginx-error.log" "nginx (pid $npid) exited"
        fi
    done
}

# nginx -t on the production site: wrap it in an http{} with the shared
# snippets, a self-signed certificate for the letsencrypt paths and log paths
# in a temp dir.
cmd_nginx_test_prod() {
    NGINX=$(find_nginx)
    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $tmp now
    trap "rm -rf -- '$tmp'" EXIT
    mkdir -p "$tmp/snippets" "$tmp/tls" "$tmp/log" "$tmp/tmp"
    cp "$REPO"/nginx/kalshibook-*.conf "$tmp/snippets/"
    make_cert "$tmp/tls/fullchain.pem" "$tmp/tls/privkey.pem"
    cp "$tmp/tls/fullchain.pem" "$tmp/tls/chain.pem"
    sed -e "s|/etc/letsencrypt/live/api.kalshibook.io/|$tmp/tls/|g" \
        -e "s|/var/log/nginx/|$tmp/log/|g" \
        "$REPO/nginx/kalshibook.conf" >"$tmp/kalshibook.conf"
    if grep -nE '/etc/letsencrypt|/var/log/' "$tmp/kalshibook.conf" >&2; then
        die "nginx/kalshibook.conf has paths the test wrapper does not substitute (above)"
    fi
    cat >"$tmp/nginx.conf" <<EOF
pid $tmp/nginx.pid;
error_log $tmp/log/error.log;
events {}
http {
    access_log $tmp/log/access.log;
    client_body_temp_path $tmp/tmp/body;
    fastcgi_temp_path $tmp/tmp/fastcgi;
    proxy_temp_path $tmp/tmp/proxy;
    uwsgi_temp_path $tmp/tmp/uwsgi;
    scgi_temp_path $tmp/tmp/scgi;
    include $tmp/kalshibook.conf;
}
EOF
    "$NGINX" -t -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/log/error.log"
}

# shellcheck source=t/lib/hosts.sh
. "$REPO/t/lib/hosts.sh"

main() {
    local cmd=${1:-}
    shift || true
    case $cmd in
    start) [[ $# == 1 ]] || usage; cmd_start "$1" ;;
    stop) [[ $# == 1 ]] || usage; cmd_stop "$1" ;;
    run) [[ $# == 1 ]] || usage; cmd_run "$1" ;;
    pg-stop) [[ $# == 1 || $# == 2 ]] || usage; cmd_pg_stop "$@" ;;
    pg-start) [[ $# == 1 ]] || usage; cmd_pg_start "$1" ;;
    app-start) [[ $# == 1 ]] || usage; cmd_app_start "$1" ;;
    app-stop) [[ $# == 1 ]] || usage; cmd_app_stop "$1" ;;
    replica-start) [[ $# == 1 ]] || usage; cmd_replica_start "$1" ;;
    nginx-test-prod) [[ $# == 0 ]] || usage; cmd_nginx_test_prod ;;
    replica-resync) [[ $# == 1 ]] || usage; cmd_replica_resync "$1" ;;
    bouncer-start) [[ $# == 1 ]] || usage; cmd_bouncer_start "$1" ;;
    host-start | host-stop | host-kill | host-app-start)
        [[ $# == 2 ]] || usage
        "cmd_${cmd//-/_}" "$@"
        ;;
    *) usage ;;
    esac
}

main "$@"
