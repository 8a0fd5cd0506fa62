#!/usr/bin/env bash
# t/collector/chaos.sh BUILD_DIR [MARKETS] [MPS] [ROUNDS] - the collector chaos run.
#
# An own stack (Postgres, pool, nginx), the Kalshi stand-in (t/kalshi) with a truth log,
# a leader and a standby collector. Then, ROUNDS times: every fault the stand-in knows
# (sequence skips, duplicates, reordering, bad JSON, error 25, fragments, unknown types,
# resets mid-frame, half-open links, closes, refused handshakes, REST 429s, command
# errors, lifecycle churn), a Postgres stop, and a SIGKILL of the leader (the standby
# takes over; the killed one comes back as the standby). After each, everything must be
# subscribed again within 60 s. Then the feed stops, the writer catches up, and
# collector-check (t/collector/check.c) checks: every fault is a gap with a start and an
# end; outside gaps the API's books equal the stand-in's true books at 1,000 random
# (market, instant) pairs; no duplicate rows; nothing that reached a spool is missing.
# Exit status 0 when every check holds. Logs and the stand-in's logs stay in
# build/collector-chaos/. CHAOS_SHORT=1 (make check): fewer markets and one round.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:?build dir}
cd "$ROOT"
if [[ ${CHAOS_SHORT:-0} == 1 ]]; then
    MARKETS=${2:-24} MPS=${3:-400} ROUNDS=${4:-1}
else
    MARKETS=${2:-200} MPS=${3:-3000} ROUNDS=${4:-3}
fi
BIN=$ROOT/$B/app
[[ $B == build/release ]] && BIN=$ROOT/app
STANDIN=$ROOT/$B/t/kalshi/kalshi-standin
CHECK=$ROOT/$B/t/collector/collector-check
. "$ROOT/t/lib/wait.sh"

OUT=$ROOT/build/collector-chaos
STACK=$(mktemp -d /tmp/kbcchaos.XXXXXX)
W=$STACK/cc
mkdir -p "$W"
PIDS=()

log() { printf 'collector-chaos: %s\n' "$*" >&2; }

cleanup() {
    local rc=$? f
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    # The collectors the supervisors started (their pids are in $W/*.pid).
    for f in "$W"/*.pid; do
        [[ -f $f ]] && PIDS+=("$(cat "$f")") && kill -TERM "$(cat "$f")" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait_until 15 pid_gone "$p" || kill -KILL "$p" 2>/dev/null || true
    done
    "$ROOT/t/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
    rm -rf "$OUT" && mkdir -p "$OUT"
    cp "$STACK"/*.log "$W"/*.log "$W"/*.jsonl "$OUT"/ 2>/dev/null || true
    rm -rf "$STACK"
    exit "$rc"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

unset KB_PG_PORT KB_HTTPS_PORT KB_HTTP_PORT KB_STRIPE_PORT KB_DATABASE_READ_URL
export KB_BIN_DIR=$BIN KB_REPO_ROOT=$ROOT KB_LOG_LEVEL=warn KB_WORKERS=2
"$ROOT/t/stack.sh" start "$STACK" >/dev/null
set -a
# shellcheck disable=SC1091
. "$STACK/run.env"
set +a

# TLS for the stand-in, the test's Kalshi key pair.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$W/tls-key.pem" -out "$W/cert.pem" >/dev/null 2>&1
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/kalshi.key" 2>/dev/null
openssl pkey -in "$W/kalshi.key" -pubout -out "$W/kalshi.pub"

PORT=$(free_port) CPORT=$(free_port)
CTL=http://127.0.0.1:$CPORT/_control
"$STANDIN" --port "$PORT" --control-port "$CPORT" --cert "$W/cert.pem" --key "$W/tls-key.pem" \
    --pubkey "$W/kalshi.pub" --key-id chaos-key --markets "$MARKETS" --mps "$MPS" --seed 18 \
    --ping-ms 1000 --big 1 --subpenny 30 --fractional 30 \
    --truth "$W/truth.log" --faults "$W/faults.jsonl" >>"$W/standin.log" 2>&1 &
PIDS+=($!)
standin_up() { curl -sf "$CTL/state" >/dev/null; }
wait_until 15 standin_up || { log "the stand-in did not start"; exit 1; }

declare -A CPID MPORT SUP
# coll_start NAME: a collector under a supervisor loop that restarts it after exit 75
# (it lost the lead: systemd's Restart=always does this in production); its pid is in
# $W/NAME.pid.
coll_start() {
    local name=$1
    MPORT[$name]=$(free_port)
    (
        while :; do
            run_collector "$name" &
            echo $! >"$W/$name.pid"
            rc=0
            wait $! || rc=$?
            [[ $rc == 75 ]] || exit "$rc"
        done
    ) 2>>"$W/supervisor.log" &
    SUP[$name]=$!
    PIDS+=($!)
    disown "$!"
    wait_until 5 test -s "$W/$name.pid"
}
coll_pid() { cat "$W/$1.pid"; }
run_collector() {
    local name=$1
    exec env KALSHI_API_KEY_ID=chaos-key KALSHI_PRIVATE_KEY_FILE="$W/kalshi.key" \
        KALSHI_WS_URL="wss://127.0.0.1:$PORT/trade-api/ws/v2" \
        KALSHI_REST_URL="https://127.0.0.1:$PORT/trade-api/v2" KALSHI_CA_FILE="$W/cert.pem" \
        KB_COLLECTOR_SPOOL_DIR="$W/spool-$name" KB_COLLECTOR_METRICS_PORT="${MPORT[$name]}" \
        KB_COLLECTOR_INSTANCE="chaos-$name" KB_COLLECTOR_HEARTBEAT_S=1 \
        KB_COLLECTOR_MARKETS_PER_SUB=8 KB_COLLECTOR_SUBS_PER_CONN=3 \
        KB_COLLECTOR_BACKOFF_MIN_MS=100 KB_COLLECTOR_BACKOFF_MAX_MS=2000 \
        KB_COLLECTOR_COMMIT_MS=100 KB_COLLECTOR_RECONCILE_S=20 \
        KB_COLLECTOR_CHECKPOINT_EVERY=50 KB_COLLECTOR_CHECKPOINT_S=2 \
        "$BIN/kalshibook-collector" >>"$W/collector-$name.log" 2>&1
}
metric() {
    curl -sf "http://127.0.0.1:${MPORT[$1]}/metrics" 2>/dev/null | awk -v s="$2" '$1 == s {print $2}'
}
leader_is() { [[ $(metric "$1" kalshibook_collector_leader) == 1 ]]; }
# The one leader (nothing while none or both say so).
leader() {
    if leader_is a && ! leader_is b; then echo a; elif leader_is b && ! leader_is a; then echo b; fi
}
has_leader() { [[ -n $(leader) ]]; }
# shellcheck source=t/lib/collector-live.sh
. "$ROOT/t/lib/collector-live.sh"
fault() {
    curl -sf -XPOST "$CTL/fault?$1" >/dev/null || log "fault $1: no target (skipped)"
}
recovered() {
    local t0=$EPOCHSECONDS
    wait_until 60 all_subscribed || { log "not every market subscribed 60 s after: $1"; exit 1; }
    log "$1: all subscribed again after $((EPOCHSECONDS - t0)) s"
}

coll_start a
wait_until 10 leader_is a || { log "collector a did not lead"; exit 1; }
coll_start b
recovered "start ($MARKETS markets)"

for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round"
    for f in "kind=skip&n=2" "kind=dup&n=2" "kind=dup_run&n=3" "kind=reorder" "kind=badjson" \
        "kind=error25&n=5" "kind=fragment&n=50" "kind=unknown&n=10" "kind=skip&ch=trade" \
        "kind=reset" "kind=halfopen" "kind=close"; do
        fault "$f"
        recovered "$f"
    done
    fault "kind=handshake&status=401"
    fault "kind=handshake&status=429"
    fault "kind=handshake&status=503"
    fault "kind=reset"
    recovered "handshakes refused 401, 429, 503 after a reset"
    fault "kind=rest&status=429&n=3"
    fault "kind=cmd_error&code=17"
    curl -sf -XPOST "$CTL/churn?create=3&pause=2&close=2" >/dev/null
    recovered "lifecycle churn with REST 429s and a command error"
    curl -sf -XPOST "$CTL/churn?resume=2&close=1" >/dev/null
    recovered "lifecycle churn"
    # Postgres away for a while: the spool carries it.
    curl -sf -XPOST "$CTL/note?kind=pg_stop&gap=0" >/dev/null
    "$ROOT/t/stack.sh" pg-stop "$STACK" fast
    fault "kind=skip"
    db_down() { [[ $(metric a kalshibook_collector_db_up) == 0 || $(metric b kalshibook_collector_db_up) == 0 ]]; }
    wait_until 10 db_down || true
    "$ROOT/t/stack.sh" pg-start "$STACK" >/dev/null
    recovered "Postgres stopped and started"
    # The leader dies: the standby takes over within 5 s; the dead one returns as standby.
    wait_until 10 has_leader || { log "no single leader"; exit 1; }
    lead=$(leader)
    standby=a
    [[ $lead == a ]] && standby=b
    # Frozen first, then the note, then the kill: nothing the leader stores can be later
    # than the instant the note records (its links stay up until the kill, so the note
    # still names their markets).
    kill -STOP "$(coll_pid "$lead")"
    curl -sf -XPOST "$CTL/note?kind=sigkill&gap=1" >/dev/null
    t0=$EPOCHREALTIME
    kill -KILL "$(coll_pid "$lead")"
    wait_until 5 leader_is "$standby" || { log "standby $standby did not lead within 5 s"; exit 1; }
    # The supervisor sees the SIGKILL (not 75) and ends; start the killed one again.
    wait_until 10 pid_gone "${SUP[$lead]}" || true
    log "SIGKILL of $lead: $standby leads after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
    recovered "takeover by $standby"
    coll_start "$lead"
done

# The end: no more messages; every spool stored.
curl -sf -XPOST "$CTL/feed?run=0" >/dev/null
wait_until 10 has_leader || { log "no single leader at the end"; exit 1; }
lead=$(leader)
caught_up() {
    [[ $(metric "$lead" kalshibook_collector_writer_lag_bytes) == 0 &&
        $(metric "$lead" kalshibook_collector_queue_bytes) == 0 ]]
}
wait_until 60 caught_up || { log "the writer did not catch up"; exit 1; }
curl -sf -XPOST "$CTL/flush" >/dev/null
for n in a b; do
    kill -TERM "$(coll_pid "$n")" 2>/dev/null || true
done
for n in a b; do
    wait_until 30 pid_gone "${SUP[$n]}" || { log "collector $n did not stop"; exit 1; }
done
if grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$W"/*.log 2>/dev/null; then
    log "sanitizer reports in the logs above"
    exit 1
fi
log "checking"
"$CHECK" --faults "$W/faults.jsonl" --truth "$W/truth.log" --spool "$W/spool-a" \
    --spool "$W/spool-b" --pairs "${CHAOS_PAIRS:-1000}" --seed 18
