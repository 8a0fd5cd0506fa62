# t/lib/hosts.sh: more app hosts on one stack's Postgres (issue 22), sourced by t/stack.sh.
#
#   t/stack.sh host-start DIR N    start host N (2..9): its own kalshibook-fcgi pool (host id
#                                  "stack-hN", its own socket, reporter per the caller's
#                                  KB_USAGE_REPORTER) and its own nginx (own ports, the stack's
#                                  certificate), on the stack's primary (and replica, when the
#                                  stack has one); state in DIR/hN, env in DIR/hN/run.env
#   t/stack.sh host-stop DIR N     stop both; idempotent
#   t/stack.sh host-kill DIR N     SIGKILL the host's pool whole (master, workers, reporter,
#                                  lease keeper at once), as a host that dies; nginx stays;
#                                  and its collector (collector-start), the stand-in told;
#                                  when it led, the time until another leads goes to
#                                  DIR/collector-kills.log
#   t/stack.sh host-app-start DIR N   start the pool again (after host-kill), and its
#                                  collector as the standby
#   t/stack.sh kalshi-start DIR    the Kalshi stand-in for the hosts' collectors
#   t/stack.sh collector-start DIR N [standby] | collector-stop DIR N
#                                  host N's collector (1: the stack's own; t/lib/collector.sh)
#   t/stack.sh replica-resync DIR  stop the stack's replica, rebuild it, start it again
#   t/stack.sh bouncer-start DIR   PgBouncer (session mode) between every pool and the primary
#
# The stack's own pool is host 1 (its default host id). Stopping the stack (stop) stops its
# hosts first. Functions here run inside stack.sh and use its helpers; host_dir switches
# DIR to the host's directory after reading what it needs of the stack's.

HOST_MAIN_DIR=
HOST_DB_URL=
HOST_READ_URL=

# host_dir DIR N: DIR becomes DIR/hN (created), with its own ports; the stack's database
# (and replica) URL kept for the app; database_url() answers the stack's primary.
host_dir() {
    local main=$1 n=$2
    [[ $n =~ ^[2-9]$ ]] || die "host number must be 2..9"
    set_dir "$main" no || die "no stack dir '$main'"
    load_ports
    [[ -n $PG_PORT ]] || die "no stack in '$DIR' (run start first)"
    HOST_MAIN_DIR=$DIR
    HOST_DB_URL=$(database_url)
    HOST_READ_URL=
    [[ -f $REPLICA_DIR/PG_VERSION ]] && HOST_READ_URL=$(replica_url)
    mkdir -p "$HOST_MAIN_DIR/h$n"
    DIR=$HOST_MAIN_DIR/h$n
    local f=$DIR/ports.env mport
    HTTPS_PORT=$(kv_get "$f" KB_HTTPS_PORT)
    HTTP_PORT=$(kv_get "$f" KB_HTTP_PORT)
    mport=$(kv_get "$f" KB_COLLECTOR_METRICS_PORT)
    [[ -n $HTTPS_PORT ]] || HTTPS_PORT=$(pick_port "$PG_PORT")
    [[ -n $HTTP_PORT ]] || HTTP_PORT=$(pick_port "$HTTPS_PORT" "$PG_PORT")
    printf 'KB_HTTPS_PORT=%s\nKB_HTTP_PORT=%s\nKB_PG_PORT=%s\n' "$HTTPS_PORT" "$HTTP_PORT" \
        "$PG_PORT" >"$f"
    # The host's collector keeps its metrics port (collector-start).
    [[ -z $mport ]] || printf 'KB_COLLECTOR_METRICS_PORT=%s\n' "$mport" >>"$f"
    # The host serves the stack's certificate, so one CA file reaches every host.
    mkdir -p "$DIR/tls"
    cp -f "$HOST_MAIN_DIR/tls/cert.pem" "$HOST_MAIN_DIR/tls/key.pem" "$DIR/tls/"
    # The stack's app settings (JWT secret, Stripe stand-in, replica), then the host's id.
    {
        [[ -f $HOST_MAIN_DIR/app.env ]] && cat "$HOST_MAIN_DIR/app.env"
        printf 'KB_HOST_ID=stack-h%s\n' "$n"
    } >"$DIR/app.env"
    chmod 600 "$DIR/app.env"
}

# The app of a host reaches the stack's primary, not a cluster of its own; through the
# stack's PgBouncer when it runs one (bouncer-start).
database_url() {
    local bp
    bp=$(kv_get "${HOST_MAIN_DIR:-$DIR}/bouncer.env" KB_BOUNCER_PORT)
    if [[ -n $HOST_DB_URL ]]; then
        printf '%s\n' "$HOST_DB_URL"
    elif [[ -n $bp ]]; then
        printf 'host=127.0.0.1 port=%s user=%s dbname=%s\n' "$bp" "$DB_USER" "$DB_NAME"
    else
        printf 'host=%s port=%s user=%s dbname=%s\n' "$PGSOCK_DIR" "$PG_PORT" "$DB_USER" "$DB_NAME"
    fi
}

# ---- PgBouncer (session mode) between the app and the primary --------------------------

bouncer_pid() {
    local pid
    pid=$(read_pid "$DIR/pgbouncer/pgbouncer.pid")
    [[ -n $pid ]] && pid_is "$pid" pgbouncer && printf '%s\n' "$pid"
    return 0
}

bouncer_answers() {
    "$PG_BIN/psql" -X -q -t -A -h 127.0.0.1 -p "$1" -U "$DB_USER" -d "$DB_NAME" -c 'SELECT 1' \
        >/dev/null 2>&1
}

# t/stack.sh bouncer-start DIR: PgBouncer in session mode on the stack's primary (run as
# postgres; trust on 127.0.0.1, as the test cluster itself), then the app (and kbctl and
# run.env) restarted to go through it.
cmd_bouncer_start() {
    set_dir "$1" no || die "no stack dir '$1'"
    PG_BIN=$(find_pg_bin)
    load_ports
    local bin port
    bin=$(command -v pgbouncer || printf '/usr/sbin/pgbouncer')
    [[ -x $bin ]] || die "pgbouncer not found (make deps)"
    port=$(kv_get "$DIR/bouncer.env" KB_BOUNCER_PORT)
    [[ -n $port ]] || port=$(pick_port "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT")
    mkdir -p "$DIR/pgbouncer"
    cat >"$DIR/pgbouncer/pgbouncer.ini" <<INI
; Written by t/stack.sh bouncer-start: session pooling in front of $PGDATA_DIR.
[databases]
$DB_NAME = host=$PGSOCK_DIR port=$PG_PORT dbname=$DB_NAME
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $DIR/pgbouncer/userlist.txt
pool_mode = session
max_client_conn = 400
default_pool_size = 200
server_reset_query = DISCARD ALL
; After Postgres restarts, PgBouncer waits server_login_retry (15 s by default) before
; it tries the server again; a host lease (KB_HOST_LEASE_MS) must outlast that.
server_login_retry = 1
pidfile = $DIR/pgbouncer/pgbouncer.pid
logfile = $DIR/pgbouncer.log
INI
    printf '"%s" ""\n' "$DB_USER" >"$DIR/pgbouncer/userlist.txt"
    touch "$DIR/pgbouncer.log"
    if is_root; then
        chown -R postgres: "$DIR/pgbouncer" "$DIR/pgbouncer.log"
    fi
    if [[ -z $(bouncer_pid) ]]; then
        as_pg "$bin" -d "$DIR/pgbouncer/pgbouncer.ini" >>"$DIR/pgbouncer.log" 2>&1 ||
            fail_with_log "$DIR/pgbouncer.log" "pgbouncer did not start"
    fi
    wait_until "$START_TIMEOUT_S" bouncer_answers "$port" ||
        fail_with_log "$DIR/pgbouncer.log" "pgbouncer does not answer on 127.0.0.1:$port"
    printf 'KB_BOUNCER_PORT=%s\n' "$port" >"$DIR/bouncer.env"
    log "pgbouncer (session mode) on 127.0.0.1:$port"
    app_stop
    app_start
    write_run_env
}

bouncer_stop() {
    local pid
    pid=$(bouncer_pid)
    [[ -n $pid ]] || return 0
    kill -INT "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
}

host_write_env() {
    {
        printf '# Written by t/stack.sh host-start; shell NAME=value lines.\n'
        env_line KB_BASE_URL "https://127.0.0.1:$HTTPS_PORT"
        env_line KB_HTTP_URL "http://127.0.0.1:$HTTP_PORT"
        env_line KB_HOST_DIR "$DIR"
        env_line KB_FCGI_PID "$(fcgi_pid)"
        env_line KB_NGINX_PID "$(nginx_pid)"
    } >"$DIR/run.env.tmp"
    mv -f "$DIR/run.env.tmp" "$DIR/run.env"
}

cmd_host_start() {
    host_dir "$1" "$2"
    NGINX=$(find_nginx)
    app_start
    nginx_start
    wait_health
    host_write_env
    log "host $2 ready: https://127.0.0.1:$HTTPS_PORT (env in $DIR/run.env)"
}

cmd_host_stop() {
    set_dir "$1" no || return 0
    [[ -d $DIR/h$2 ]] || return 0
    DIR=$DIR/h$2
    collector_stop || true
    app_stop || true
    nginx_stop || true
    rm -f "$DIR/run.env"
}

# ---- the hosts' collectors (one per host on the stack's Kalshi stand-in) ---------------

# host_collector_dirs MAIN: the stack's directory and its hosts' that run a collector.
host_collector_dirs() {
    local d
    for d in "$1" "$1"/h[2-9]; do
        [[ -f $d/collector.on ]] && printf '%s\n' "$d"
    done
    return 0
}

# host_collector_leaders MAIN: the directories whose collector says it holds the lead.
host_collector_leaders() {
    local d p
    while read -r d; do
        p=$(kv_get "$d/ports.env" KB_COLLECTOR_METRICS_PORT)
        [[ -n $p && $(collector_metric "$p" kalshibook_collector_leader) == 1 ]] &&
            printf '%s\n' "$d"
    done < <(host_collector_dirs "$1")
    return 0
}

host_collector_one_leader() {
    [[ $(host_collector_leaders "$1" | wc -l) == 1 ]]
}

# host_collector_other_leads MAIN DIR: a collector other than DIR's holds the lead.
host_collector_other_leads() {
    local l
    l=$(host_collector_leaders "$1")
    [[ -n $l && $l != "$2" ]]
}

HC_PID=
HC_LED=
# host_collector_freeze MAIN: before a host dies whole, its collector (if it runs one) is
# frozen (SIGSTOP) and its supervisor killed; then the stand-in notes the kill (a gap for
# every subscribed market when this one led: nothing it stores can be later than that
# instant). Sets HC_PID and HC_LED (1 leading, 0 standby, ? no single leader before).
host_collector_freeze() {
    local main=$1 sup cport
    HC_PID=$(collector_pid)
    HC_LED=
    [[ -n $HC_PID ]] || return 0
    if wait_until 10 host_collector_one_leader "$main"; then
        HC_LED=0
        [[ $(host_collector_leaders "$main") == "$DIR" ]] && HC_LED=1
    else
        HC_LED='?'
    fi
    sup=$(collector_supervisor_pid)
    [[ -z $sup ]] || kill -KILL "$sup" 2>/dev/null || true
    kill -STOP "$HC_PID" 2>/dev/null || true
    cport=$(kv_get "$main/ports.env" KB_KALSHI_CONTROL_PORT)
    curl -s -o /dev/null --max-time 5 -X POST \
        "http://127.0.0.1:$cport/_control/note?kind=host_kill&gap=$([[ $HC_LED == 0 ]] && echo 0 || echo 1)" ||
        true
}

# host_collector_takeover MAIN N T0_US: after the kill, how long until another collector
# leads (when this one did), one line in MAIN/collector-kills.log for t/chaos/collector.sh.
host_collector_takeover() {
    local main=$1 n=$2 t0=$3 ms=-1
    [[ -n $HC_PID ]] || return 0
    wait_gone "$HC_PID" 10 || true
    if [[ $HC_LED == 1 ]]; then
        wait_until 15 host_collector_other_leads "$main" "$DIR" &&
            ms=$((($(wait_now_us) - t0) / 1000))
    fi
    printf 'host %s leading %s takeover_ms %s\n' "$n" "$HC_LED" "$ms" >>"$main/collector-kills.log"
}

# SIGKILL the master and all its children at once (stopped first, so it respawns nothing),
# and the host's collector with them.
cmd_host_kill() {
    local main pid kids t0
    set_dir "$1" no || die "no stack dir '$1'"
    main=$DIR
    [[ $2 == 1 ]] || DIR=$DIR/h$2
    pid=$(fcgi_pid)
    [[ -n $pid ]] || die "no pool running in '$DIR'"
    host_collector_freeze "$main"
    kill -STOP "$pid"
    kids=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true)
    # shellcheck disable=SC2086  # one argument per pid
    [[ -z $kids ]] || kill -KILL $kids 2>/dev/null || true
    kill -KILL "$pid"
    t0=$(wait_now_us)
    [[ -z $HC_PID ]] || kill -KILL "$HC_PID" 2>/dev/null || true
    wait_gone "$pid" 10 || die "pool $pid did not die"
    host_collector_takeover "$main" "$2" "$t0"
}

# Start the pool again (after host-kill), and the host's collector when it ran one (as
# the standby: another one leads by now).
cmd_host_app_start() {
    if [[ $2 == 1 ]]; then
        cmd_app_start "$1"
    else
        host_dir "$1" "$2"
        app_start
        host_write_env
    fi
    if [[ -f $DIR/collector.on ]]; then
        COLLECTOR_INSTANCE=stack-h$2 collector_start standby
    fi
}

# t/stack.sh kalshi-start DIR: the Kalshi stand-in for the stack's collectors
# (KB_RUN_MARKETS, KB_RUN_MPS, KB_KALSHI_ARGS; t/lib/collector.sh).
cmd_kalshi_start() {
    set_dir "$1" no || die "no stack dir '$1'"
    load_ports
    [[ -n $PG_PORT ]] || die "no stack in '$DIR' (run start first)"
    kalshi_start
}

# t/stack.sh collector-start DIR N [standby]: host N's collector (1: the stack's own) on the
# stack's stand-in and primary.
cmd_collector_start() {
    if [[ $2 == 1 ]]; then
        set_dir "$1" no || die "no stack dir '$1'"
        load_ports
    else
        host_dir "$1" "$2"
    fi
    COLLECTOR_INSTANCE=stack-h$2 collector_start "${3:-lead}"
}

cmd_collector_stop() {
    set_dir "$1" no || die "no stack dir '$1'"
    [[ $2 == 1 ]] || DIR=$DIR/h$2
    collector_stop
}

# Stop every host N of the stack in DIR (before the stack itself), and its PgBouncer.
hosts_stop_all() {
    local d n
    for d in "$DIR"/h[2-9]; do
        [[ -d $d ]] || continue
        n=${d##*/h}
        (cmd_host_stop "$DIR" "$n") || true
    done
    if [[ -f $DIR/bouncer.env ]]; then
        app_stop || true
        bouncer_stop || true
    fi
}

# The replica stopped, thrown away and rebuilt from the primary (pg_basebackup), while the
# app keeps running: its data routes answer from the primary or 503 meanwhile.
cmd_replica_resync() {
    set_dir "$1" no || die "no stack dir '$1'"
    PG_BIN=$(find_pg_bin)
    load_ports
    [[ -f $REPLICA_DIR/PG_VERSION ]] || die "no replica in '$DIR' (run replica-start first)"
    replica_stop
    replica_start
}
