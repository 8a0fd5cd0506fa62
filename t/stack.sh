#!/usr/bin/env bash
# t/stack.sh: run the whole KalshiBook stack (Postgres, kalshibook-fcgi, nginx) from one directory.
#
# Usage:
#   t/stack.sh start DIR               start everything, wait for /health, write DIR/run.env
#   t/stack.sh stop DIR                stop everything; idempotent, never fails
#   t/stack.sh run DIR                 start, plus the Kalshi stand-in and a live collector (a few
#                                      demo markets updating), print URLs and examples, stop on
#                                      Ctrl-C/SIGTERM
#   t/stack.sh pg-stop DIR [fast|immediate]
#   t/stack.sh pg-start DIR            stop/start only Postgres ("DB down" tests)
#   t/stack.sh app-stop DIR
#   t/stack.sh app-start DIR           stop/start only kalshibook-fcgi (drain tests)
#   t/stack.sh demo DIR                the demo data set and key of `run`, on a started stack
#   t/stack.sh replica-start DIR       add a streaming replica (pg_basebackup) and restart the
#                                      app with KB_DATABASE_READ_URL pointing at it
#   t/stack.sh nginx-test-prod         nginx -t on the production site nginx/kalshibook.conf
#   t/stack.sh host-start|host-stop|host-kill|host-app-start DIR N
#                                      more app hosts on this stack's Postgres (t/lib/hosts.sh)
#   t/stack.sh replica-resync DIR      stop the replica, rebuild it from the primary, start it
#                                      (the app keeps running; t/lib/hosts.sh)
#   t/stack.sh bouncer-start DIR       PgBouncer in session mode between the pools and the
#                                      primary; app restarted through it (t/lib/hosts.sh)
#   t/stack.sh kalshi-start DIR        the Kalshi stand-in alone (KB_RUN_MARKETS, KB_RUN_MPS,
#                                      KB_KALSHI_ARGS; t/lib/collector.sh)
#   t/stack.sh collector-start DIR N [standby] | collector-stop DIR N
#                                      host N's kalshibook-collector (1: the stack's own) on it;
#                                      host-kill kills it too, host-app-start starts it again
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
#   KB_DEMO_ARGS        options for the demo set's `kbctl demo-data` (run, demo; default none)
# The app inherits the caller's environment (KB_*, STRIPE_*), then DIR/app.env
# (sourced, optional), then the stack's own KB_DATABASE_URL and KB_SOCKET.
#
# The parts live in t/lib/, one concern each, sourced below: wait.sh (deadlines),
# proc.sh (pids and signals), ports.sh, tls.sh, pg.sh (cluster and replica),
# pool.sh (kalshibook-fcgi and kbctl), nginx.sh, stripe.sh (the stand-in), demo.sh
# (make run's data set and key), collector.sh (make run's Kalshi stand-in and collector).
# This file keeps the stack directory, run.env, and the commands.
#
# Invariants: every wait polls a condition against a deadline; stop only
# signals processes whose pid file and command line both say they are ours;
# a failed start prints the tail of the relevant log and stops what it started.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
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

# shellcheck source=t/lib/wait.sh
. "$REPO/t/lib/wait.sh"
# shellcheck source=t/lib/proc.sh
. "$REPO/t/lib/proc.sh"
# shellcheck source=t/lib/ports.sh
. "$REPO/t/lib/ports.sh"
# shellcheck source=t/lib/tls.sh
. "$REPO/t/lib/tls.sh"
# shellcheck source=t/lib/pg.sh
. "$REPO/t/lib/pg.sh"
# shellcheck source=t/lib/pool.sh
. "$REPO/t/lib/pool.sh"
# shellcheck source=t/lib/nginx.sh
. "$REPO/t/lib/nginx.sh"
# shellcheck source=t/lib/stripe.sh
. "$REPO/t/lib/stripe.sh"
# shellcheck source=t/lib/demo.sh
. "$REPO/t/lib/demo.sh"
# shellcheck source=t/lib/hosts.sh
. "$REPO/t/lib/hosts.sh"
# shellcheck source=t/lib/collector.sh
. "$REPO/t/lib/collector.sh"

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
    collector_stop || true
    kalshi_stop || true
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

cmd_demo() {
    set_dir "$1" no || die "no stack dir '$1'"
    load_ports
    [[ -n $PG_PORT ]] || die "no stack in '$DIR' (run start first)"
    PG_BIN=$(find_pg_bin)
    demo_setup
}

cmd_app_stop() {
    set_dir "$1" no || die "no stack dir '$1'"
    app_stop
}

cmd_replica_start() {
    set_dir "$1" no || die "no stack dir '$1'"
    PG_BIN=$(find_pg_bin)
    load_ports
    pg_running || die "the primary is not running in '$DIR'"
    replica_start
    if [[ -f $DIR/app.env ]]; then
        sed -i '/^KB_DATABASE_READ_URL=/d' "$DIR/app.env"
    fi
    printf "KB_DATABASE_READ_URL='%s'\n" "$(replica_url)" >>"$DIR/app.env"
    app_stop
    app_start
    write_run_env
}

# ---- run (make run) ------------------------------------------------------------------

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
    [[ -z $(collector_pid) ]] || print_live_examples
    printf '\nCtrl-C stops everything.\n'
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
    kalshi_start
    collector_start
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
    demo) [[ $# == 1 ]] || usage; cmd_demo "$1" ;;
    replica-start) [[ $# == 1 ]] || usage; cmd_replica_start "$1" ;;
    nginx-test-prod) [[ $# == 0 ]] || usage; nginx_test_prod ;;
    replica-resync) [[ $# == 1 ]] || usage; cmd_replica_resync "$1" ;;
    bouncer-start) [[ $# == 1 ]] || usage; cmd_bouncer_start "$1" ;;
    host-start | host-stop | host-kill | host-app-start)
        [[ $# == 2 ]] || usage
        "cmd_${cmd//-/_}" "$@"
        ;;
    kalshi-start) [[ $# == 1 ]] || usage; cmd_kalshi_start "$1" ;;
    collector-start) [[ $# == 2 || $# == 3 ]] || usage; cmd_collector_start "$@" ;;
    collector-stop) [[ $# == 2 ]] || usage; cmd_collector_stop "$@" ;;
    *) usage ;;
    esac
}

main "$@"
