# shellcheck shell=bash
# t/lib/collector.sh - the Kalshi stand-in (t/kalshi) and kalshibook-collector: the live demo
# of `t/stack.sh run`, and one collector per app host in the two-host chaos run
# (t/stack.sh kalshi-start DIR, collector-start DIR N [standby], collector-stop DIR N;
# t/lib/hosts.sh kills a host's collector with the host and starts it again as a standby).
# Sourced by t/stack.sh; uses its globals (DIR, REPO, ports) and helpers.
#
# Each collector runs under a supervisor (a small shell loop, DIR/collector-supervisor.pid)
# that starts it again when it exits 75 (it lost the lead to another instance; systemd's
# Restart= does this in production); the collector's own pid is in DIR/collector.pid, its
# metrics port in DIR/ports.env (KB_COLLECTOR_METRICS_PORT), its spool in DIR/kalshi/spool.
# The stand-in, its keys and certificate are the stack's (the main DIR/kalshi/).

# ---- live demo: the Kalshi stand-in (t/kalshi) and kalshibook-collector (run only) --------
# The stand-in serves a handful of markets over TLS (its own certificate, a Kalshi key pair
# made for it), and the collector records them into the stack's database, so `make run`
# shows markets whose books move. Keys, ports and the spool live under DIR/kalshi/.

KALSHI_MARKETS=${KB_RUN_MARKETS:-6}
KALSHI_MPS=${KB_RUN_MPS:-20}
KALSHI_PORT=
KALSHI_CPORT=
METRICS_PORT=

kalshi_pid() {
    local pid
    pid=$(read_pid "$DIR/kalshi-standin.pid")
    [[ -n $pid ]] && pid_is "$pid" kalshi-standin && printf '%s\n' "$pid"
    return 0
}

collector_pid() {
    local pid
    pid=$(read_pid "$DIR/collector.pid")
    [[ -n $pid ]] && pid_is "$pid" kalshibook-collector && printf '%s\n' "$pid"
    return 0
}

# kalshi_up PID: the stand-in's control port answers, or PID died (stop waiting).
kalshi_up() {
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$KALSHI_CPORT/_control/state" ||
        pid_gone "$1"
}

kalshi_start() {
    local k=$DIR/kalshi bin=${KB_STANDIN_BIN:-$REPO/build/release/t/kalshi/kalshi-standin} pid
    [[ -x $bin ]] || die "$bin not found (make VARIANT=release build/release/t/kalshi/kalshi-standin)"
    mkdir -p "$k"
    if [[ ! -s $k/kalshi.key ]]; then
        make_cert "$k/cert.pem" "$k/tls-key.pem"
        (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
            -out "$k/kalshi.key" 2>/dev/null) || die "openssl could not make a key pair"
        openssl pkey -in "$k/kalshi.key" -pubout -out "$k/kalshi.pub" 2>/dev/null
    fi
    KALSHI_PORT=$(kv_get "$DIR/ports.env" KB_KALSHI_PORT)
    KALSHI_CPORT=$(kv_get "$DIR/ports.env" KB_KALSHI_CONTROL_PORT)
    METRICS_PORT=$(kv_get "$DIR/ports.env" KB_COLLECTOR_METRICS_PORT)
    if [[ -z $KALSHI_PORT || -z $KALSHI_CPORT || -z $METRICS_PORT ]]; then
        KALSHI_PORT=$(pick_port "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT")
        KALSHI_CPORT=$(pick_port "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT" "$KALSHI_PORT")
        METRICS_PORT=$(pick_port "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT" "$KALSHI_PORT" "$KALSHI_CPORT")
        printf 'KB_KALSHI_PORT=%s\nKB_KALSHI_CONTROL_PORT=%s\nKB_COLLECTOR_METRICS_PORT=%s\n' \
            "$KALSHI_PORT" "$KALSHI_CPORT" "$METRICS_PORT" >>"$DIR/ports.env"
    fi
    pid=$(kalshi_pid)
    [[ -n $pid ]] && return
    # KB_KALSHI_ARGS: more options, one word each (the chaos run's truth and fault logs).
    # shellcheck disable=SC2086
    setsid "$bin" --port "$KALSHI_PORT" --control-port "$KALSHI_CPORT" --cert "$k/cert.pem" \
        --key "$k/tls-key.pem" --pubkey "$k/kalshi.pub" --key-id run-demo-key \
        --markets "$KALSHI_MARKETS" --mps "$KALSHI_MPS" --subpenny 34 --fractional 34 \
        ${KB_KALSHI_ARGS:-} </dev/null >>"$DIR/kalshi-standin.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$DIR/kalshi-standin.pid"
    wait_until "$START_TIMEOUT_S" kalshi_up "$pid" ||
        fail_with_log "$DIR/kalshi-standin.log" "the Kalshi stand-in did not answer"
    pid_alive "$pid" || fail_with_log "$DIR/kalshi-standin.log" "the Kalshi stand-in exited"
    log "Kalshi stand-in pid $pid on wss://127.0.0.1:$KALSHI_PORT ($KALSHI_MARKETS markets)"
}

kalshi_stop() {
    local pid
    pid=$(kalshi_pid)
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/kalshi-standin.pid"
}

# collector_metric PORT NAME: the value of metric NAME on the metrics port PORT (nothing
# when it does not answer).
collector_metric() {
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v n="$2" '$1 == n { print $2 }'
}

# collector_ready MODE PID: the collector answers on its metrics port and, unless MODE is
# standby, leads with every demo market's first snapshot; or PID died (stop waiting).
collector_ready() {
    local live
    pid_gone "$2" && return 0
    if [[ $1 == standby ]]; then
        [[ -n $(collector_metric "$METRICS_PORT" kalshibook_collector_leader) ]]
        return
    fi
    live=$(collector_metric "$METRICS_PORT" 'kalshibook_collector_markets{state="live"}')
    [[ ${live:-0} -ge $KALSHI_MARKETS ]]
}

# collector_started SUPERVISOR_PID: the supervisor wrote a live collector's pid, or died.
collector_started() {
    [[ -n $(collector_pid) ]] || pid_gone "$1"
}

# The supervisor: $1 the pid file, the rest the collector's command line.
# shellcheck disable=SC2016  # expanded by the supervisor's shell
COLLECTOR_SUPERVISOR='pidf=$1
shift
while :; do
    "$@" &
    echo "$!" >"$pidf"
    rc=0
    wait "$!" || rc=$?
    [ "$rc" = 75 ] || exit "$rc"
    echo "kb-collector-supervisor: the collector lost the lead (exit 75); starting it again" >&2
done'

collector_supervisor_pid() {
    local pid
    pid=$(read_pid "$DIR/collector-supervisor.pid")
    [[ -n $pid ]] && pid_is "$pid" kb-collector-supervisor && printf '%s\n' "$pid"
    return 0
}

# collector_start [standby]: this DIR's collector (the stack's, or host N's after host_dir)
# on the stack's stand-in; waits until it leads with every market live, or with standby
# only until it answers (another instance holds the lead).
collector_start() {
    local mode=${1:-lead} main=${HOST_MAIN_DIR:-$DIR} k pid
    k=$main/kalshi
    need_bin kalshibook-collector
    pid=$(collector_pid)
    [[ -n $pid ]] && return
    KALSHI_PORT=$(kv_get "$main/ports.env" KB_KALSHI_PORT)
    [[ -n $KALSHI_PORT && -s $k/kalshi.key ]] || die "no Kalshi stand-in in '$main' (kalshi-start first)"
    METRICS_PORT=$(kv_get "$DIR/ports.env" KB_COLLECTOR_METRICS_PORT)
    if [[ -z $METRICS_PORT ]]; then
        METRICS_PORT=$(pick_port "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT" "$KALSHI_PORT")
        printf 'KB_COLLECTOR_METRICS_PORT=%s\n' "$METRICS_PORT" >>"$DIR/ports.env"
    fi
    mkdir -p "$DIR/kalshi"
    rm -f "$DIR/collector.pid"
    (
        export KALSHI_API_KEY_ID=run-demo-key KALSHI_PRIVATE_KEY_FILE=$k/kalshi.key
        export KALSHI_WS_URL=wss://127.0.0.1:$KALSHI_PORT/trade-api/ws/v2
        export KALSHI_REST_URL=https://127.0.0.1:$KALSHI_PORT/trade-api/v2
        export KALSHI_CA_FILE=$k/cert.pem KB_COLLECTOR_SPOOL_DIR=$DIR/kalshi/spool
        export KB_COLLECTOR_METRICS_PORT=$METRICS_PORT
        export KB_COLLECTOR_INSTANCE=${COLLECTOR_INSTANCE:-make-run}
        export KB_COLLECTOR_CHECKPOINT_EVERY=${KB_COLLECTOR_CHECKPOINT_EVERY:-1000}
        app_exec setsid bash -c "$COLLECTOR_SUPERVISOR" kb-collector-supervisor \
            "$DIR/collector.pid" "$KB_BIN_DIR/kalshibook-collector"
    ) </dev/null >>"$DIR/collector.log" 2>&1 &
    printf '%s\n' "$!" >"$DIR/collector-supervisor.pid"
    : >"$DIR/collector.on"
    wait_until "$START_TIMEOUT_S" collector_started "$!" ||
        fail_with_log "$DIR/collector.log" "kalshibook-collector did not start"
    pid=$(collector_pid)
    wait_until "$START_TIMEOUT_S" collector_ready "$mode" "$pid" ||
        fail_with_log "$DIR/collector.log" "kalshibook-collector did not subscribe the demo markets"
    pid_alive "$pid" || fail_with_log "$DIR/collector.log" "kalshibook-collector exited"
    log "kalshibook-collector pid $pid (metrics http://127.0.0.1:$METRICS_PORT/metrics)"
}

# collector_stop: the supervisor first (it would start the collector again), then the
# collector (SIGTERM: it records its shutdown gap and stores what its spool holds).
collector_stop() {
    local pid sup
    sup=$(collector_supervisor_pid)
    [[ -z $sup ]] || kill -TERM "$sup" 2>/dev/null || true
    pid=$(collector_pid)
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 30 || kill -KILL "$pid" 2>/dev/null || true
    fi
    [[ -z $sup ]] || wait_gone "$sup" 5 || kill -KILL "$sup" 2>/dev/null || true
    rm -f "$DIR/collector.pid" "$DIR/collector-supervisor.pid" "$DIR/collector.on"
}

print_live_examples() {
    local base="https://127.0.0.1:$HTTPS_PORT" ca="$DIR/tls/cert.pem" t
    t=$(curl -s "http://127.0.0.1:$KALSHI_CPORT/_control/markets" | sed 's/^\["\([^"]*\)".*/\1/')
    cat <<EOF

Live collector: kalshibook-collector records $KALSHI_MARKETS markets of the Kalshi stand-in
($KALSHI_MPS book changes/s, subpenny and fractional ones among them) into this database.
  metrics    http://127.0.0.1:$METRICS_PORT/metrics
  logs       $DIR/collector.log $DIR/kalshi-standin.log; spool $DIR/kalshi/spool
  a fault    curl -XPOST 'http://127.0.0.1:$KALSHI_CPORT/_control/fault?kind=reset'   (a gap, then a new snapshot)
Market $t now (run it twice, the book moves):
  curl --cacert $ca -H 'Authorization: Bearer $DEMO_KEY' -H 'Content-Type: application/json' \\
       -d "{\"market_ticker\":\"$t\",\"timestamp\":\"\$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)\",\"depth\":3}" \\
       $base/orderbook
EOF
}
