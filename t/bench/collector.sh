#!/usr/bin/env bash
# t/bench/collector.sh: the live collector's rows of make bench (README "Benchmarks").
#
# Usage: t/bench/collector.sh [REPO_ROOT]
#
# The Kalshi stand-in (t/kalshi, release build) feeds kalshibook-collector (release, REPO/app),
# which writes into the stack's Postgres (fsync on). bench.sh runs this against its own
# stack with KB_DATABASE_URL, KB_BASE_URL, KB_CA_CERT and BENCH_KEY (an API key with its
# limits lifted) exported; run alone, it starts a stack of its own in a temp dir and makes
# such a key. Rows (one "ROW name rps p50_ms p99_ms" line each on stdout, for bench.sh;
# everything else on stderr; all figures also in REPO/var/bench/collector.json):
#   collector-subscribe  BENCH_COLLECTOR_MARKETS (5,000) open markets, collector started:
#                        seconds until every one has its first snapshot (target <= 60);
#                        rps = markets per second
#   collector-ingest     the stand-in at BENCH_COLLECTOR_MPS (60,000 messages/s) over those
#                        markets for BENCH_COLLECTOR_SECONDS (30): messages stored per second
#                        (rows of snapshots, deltas and trades, from market_stats), next to
#                        the messages sent and the writer's backlog at both ends (target
#                        >= 50,000)
#   collector-resnapshot the connection reset mid-frame (all markets ride one connection by
#                        default): per-market time from the reset to the new snapshot that
#                        ends its gap (gaps.end_at, p50/p99), and the wall time until the
#                        collector has every market live again (target <= 2 s + 1 s per
#                        1,000 markets)
#   collector-visible    BENCH_COLLECTOR_VISIBLE_MPS (5,000 messages/s) over
#                        BENCH_COLLECTOR_VISIBLE_MARKETS (100) markets, a new stand-in and
#                        collector: exchange time -> visible through POST /deltas
#                        (t/bench/visible.py; poll interval included), target p99 <= 1 s
#   collector-rss        the collector's RSS sampled every 5 s for BENCH_COLLECTOR_RSS_SECONDS
#                        (120; the 1-hour run: 3600) at BENCH_COLLECTOR_RSS_MPS (5,000) over
#                        the 5,000 markets, the first 10 % skipped: first, last and largest
#                        sample; "flat" when the last is within 10 % + 8 MB of the first
# Everything started here is stopped on exit. BENCH_KEEP=1 keeps the temp dir;
# BENCH_COLLECTOR_VISIBLE=0 leaves the visible row out (the hour-long RSS run).
set -euo pipefail

REPO=$(cd "${1:-$(dirname "${BASH_SOURCE[0]}")/../..}" && pwd -P)
MARKETS=${BENCH_COLLECTOR_MARKETS:-5000}
MPS=${BENCH_COLLECTOR_MPS:-60000}
SECONDS_ROW=${BENCH_COLLECTOR_SECONDS:-30}
VIS_MARKETS=${BENCH_COLLECTOR_VISIBLE_MARKETS:-100}
VIS_MPS=${BENCH_COLLECTOR_VISIBLE_MPS:-5000}
RSS_SECONDS=${BENCH_COLLECTOR_RSS_SECONDS:-120}
RSS_MPS=${BENCH_COLLECTOR_RSS_MPS:-5000}
BIN=${BENCH_BIN_DIR:-$REPO/app}
STANDIN=${KB_STANDIN_BIN:-$REPO/build/release/t/kalshi/kalshi-standin}
# shellcheck source=t/lib/wait.sh
. "$REPO/t/lib/wait.sh"

W=$(mktemp -d /tmp/kb-bench-collector.XXXXXX)
OWN_STACK=
SPID=
CPID=

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench collector: %s\n' "$*" >&2
    exit 1
}

stop_pid() {
    [[ -n $1 ]] || return 0
    kill -TERM "$1" 2>/dev/null || true
    wait_until 30 pid_gone "$1" || kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$CPID"
    stop_pid "$SPID"
    [[ -z $OWN_STACK ]] || "$REPO/t/stack.sh" stop "$OWN_STACK" >/dev/null 2>&1 || true
    if [[ ${BENCH_KEEP:-0} == 1 || $rc != 0 ]]; then
        printf 'bench collector: logs kept in %s %s\n' "$W" "$OWN_STACK" >&2
    else
        rm -rf -- "$W" ${OWN_STACK:+"$OWN_STACK"}
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for b in "$BIN/kalshibook-collector" "$BIN/kbctl" "$STANDIN"; do
    [[ -x $b ]] || die "$b not found: make VARIANT=release all build/release/t/kalshi/kalshi-standin"
done

if [[ -z ${KB_DATABASE_URL:-} || -z ${KB_BASE_URL:-} || -z ${BENCH_KEY:-} ]]; then
    OWN_STACK=$(mktemp -d /tmp/kb-bench-stack.XXXXXX)
    unset KB_PG_PORT KB_HTTPS_PORT KB_HTTP_PORT KB_STRIPE_PORT KB_DATABASE_READ_URL
    KB_BIN_DIR=$BIN KB_LOG_LEVEL=warn "$REPO/t/stack.sh" start "$OWN_STACK" >/dev/null 2>&1 ||
        die "the stack did not start (logs in $OWN_STACK)"
    set -a
    # shellcheck disable=SC1091  # written by t/stack.sh start
    . "$OWN_STACK/run.env"
    set +a
    BENCH_KEY="kb-$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
    "$KB_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$KB_DATABASE_URL" \
        -v hash="$(printf '%s' "$BENCH_KEY" | sha256sum | cut -d' ' -f1)" -v prefix="${BENCH_KEY:0:7}" <<'SQL' ||
WITH u AS (INSERT INTO users (email, password_hash) VALUES ('bench-collector@kalshibook.local', 'x')
           RETURNING id),
     k AS (INSERT INTO api_keys (user_id, key_hash, key_prefix) SELECT id, :'hash', :'prefix' FROM u)
INSERT INTO billing_accounts (user_id, tier, credits_total, credits_override, rpm_override)
SELECT id, 'project', 2000000000, 2000000000, 1000000000 FROM u;
SQL
        die "cannot create the bench account"
fi
export KB_DATABASE_URL
PSQL=(psql)
[[ -n ${KB_PG_BIN:-} ]] && PSQL=("$KB_PG_BIN/psql")
sql() { "${PSQL[@]}" -X -q -t -A -v ON_ERROR_STOP=1 "$KB_DATABASE_URL" -c "$1"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$W/tls-key.pem" -out "$W/cert.pem" >/dev/null 2>&1
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/kalshi.key" 2>/dev/null
openssl pkey -in "$W/kalshi.key" -pubout -out "$W/kalshi.pub"

PORT=
CTL=
MPORT=
# standin_start MARKETS MPS SEED: a stand-in with pings every 5 s (Kalshi's 10 s would do).
standin_start() {
    PORT=$(free_port)
    local cport
    cport=$(free_port)
    CTL=http://127.0.0.1:$cport/_control
    setsid "$STANDIN" --port "$PORT" --control-port "$cport" --cert "$W/cert.pem" \
        --key "$W/tls-key.pem" --pubkey "$W/kalshi.pub" --key-id bench-key --markets "$1" \
        --mps "$2" --seed "$3" --ping-ms 5000 --subpenny 30 --fractional 30 \
        </dev/null >>"$W/standin.log" 2>&1 &
    SPID=$!
    standin_up() { curl -sf "$CTL/state" >/dev/null || pid_gone "$SPID"; }
    wait_until 15 standin_up && ! pid_gone "$SPID" || die "the stand-in did not start: $(tail -n 5 "$W/standin.log")"
}
collector_start() {
    MPORT=$(free_port)
    (
        export KALSHI_API_KEY_ID=bench-key KALSHI_PRIVATE_KEY_FILE=$W/kalshi.key
        export KALSHI_WS_URL=wss://127.0.0.1:$PORT/trade-api/ws/v2
        export KALSHI_REST_URL=https://127.0.0.1:$PORT/trade-api/v2
        export KALSHI_CA_FILE=$W/cert.pem KB_COLLECTOR_SPOOL_DIR=$W/spool-$1
        export KB_COLLECTOR_METRICS_PORT=$MPORT KB_COLLECTOR_INSTANCE=bench-$1 KB_LOG_LEVEL=warn
        exec setsid "$BIN/kalshibook-collector"
    ) </dev/null >>"$W/collector-$1.log" 2>&1 &
    CPID=$!
}
metrics() { curl -sf --max-time 2 "http://127.0.0.1:$MPORT/metrics" 2>/dev/null; }
metric() { metrics | awk -v s="$1" '$1 == s { print $2 }'; }
all_live() {
    local m live gap
    m=$(metrics) || return 1
    live=$(awk '$1 == "kalshibook_collector_markets{state=\"live\"}" { print $2 }' <<<"$m")
    gap=$(awk '$1 == "kalshibook_collector_markets{state=\"gap\"}" { print $2 }' <<<"$m")
    [[ ${live:-0} -ge $1 && ${gap:-1} == 0 ]]
}
not_all_live() { ! all_live "$1"; }
# The writer has caught up: under 1 MB between the reader and the database.
caught_up() { [[ $(metric kalshibook_collector_writer_lag_bytes) -lt 1048576 ]]; }
# closed_gaps SINCE N: N orderbook gaps opened by the reset have ended in the database.
closed_gaps() {
    [[ $(sql "SELECT count(*) FROM gaps WHERE channel = 'orderbook' AND reason = 'disconnect'
                 AND end_at IS NOT NULL AND start_at >= to_timestamp($1 - 5)") -ge $2 ]]
}
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
HZ=$(getconf CLK_TCK)
declare -A J
row() {
    printf 'ROW %s %s %s %s\n' "$1" "$2" "$3" "$4"
}

# ---- visible: a small, busy feed ------------------------------------------------------
J[visible]=null
if [[ ${BENCH_COLLECTOR_VISIBLE:-1} == 1 ]]; then
log "collector-visible: $VIS_MARKETS markets at $VIS_MPS msgs/s (${SECONDS_ROW}s)"
standin_start "$VIS_MARKETS" "$VIS_MPS" 1801
collector_start visible
wait_until 60 all_live "$VIS_MARKETS" || die "collector-visible: not every market live within 60 s"
sleep 3
mapfile -t TICKERS < <(curl -sf "$CTL/markets" | jq -r '.[]' | head -n 5)
vis=$(python3 "$REPO/t/bench/visible.py" "$KB_BASE_URL" "$KB_CA_CERT" "$BENCH_KEY" \
    "$SECONDS_ROW" "${TICKERS[@]}") || die "collector-visible: the prober failed"
J[visible]=$vis
row collector-visible "$VIS_MPS" "$(jq -r .p50_ms <<<"$vis")" "$(jq -r .p99_ms <<<"$vis")"
log "collector-visible: $vis"
stop_pid "$CPID"
CPID=
stop_pid "$SPID"
SPID=
fi

# ---- subscribe, ingest, resnapshot, RSS: the 5,000-market feed ----------------------
log "collector-subscribe: $MARKETS markets"
standin_start "$MARKETS" "$MPS" 1802
t0=$(now)
collector_start main
wait_until 120 all_live "$MARKETS" || die "collector-subscribe: not every market live within 120 s"
t1=$(now)
sub_s=$(calc %.2f "$t1 - $t0")
row collector-subscribe "$(calc %.1f "$MARKETS / ($t1 - $t0)")" null "$(calc %.0f "($t1 - $t0) * 1000")"
log "collector-subscribe: $MARKETS markets live after $sub_s s"

log "collector-ingest: $MPS msgs/s (${SECONDS_ROW}s after 5 s of warm-up)"
sleep 5
stored_rows() { sql "SELECT coalesce(sum(snapshot_count + delta_count + trade_count), 0) FROM market_stats"; }
r0=$(stored_rows)
q0=$(metric kalshibook_collector_writer_records_total)
l0=$(metric kalshibook_collector_writer_lag_bytes)
s0=$(curl -sf "$CTL/state" | jq .msgs_sent)
c0=$(ticks "$CPID") p0=$(ticks "$SPID") t0=$(now)
sleep "$SECONDS_ROW"
r1=$(stored_rows)
q1=$(metric kalshibook_collector_writer_records_total)
l1=$(metric kalshibook_collector_writer_lag_bytes)
s1=$(curl -sf "$CTL/state" | jq .msgs_sent)
c1=$(ticks "$CPID") p1=$(ticks "$SPID") t1=$(now)
el=$(calc %.3f "$t1 - $t0")
stored=$(calc %.1f "($r1 - $r0) / $el")
records=$(calc %.1f "($q1 - $q0) / $el")
offered=$(calc %.1f "($s1 - $s0) / $el")
ccpu=$(calc %.1f "($c1 - $c0) / $HZ / $el * 100")
scpu=$(calc %.1f "($p1 - $p0) / $HZ / $el * 100")
J[ingest]=$(jq -nc --argjson stored "$stored" --argjson records "$records" --argjson offered "$offered" --argjson lag0 "${l0:-0}" \
    --argjson lag1 "${l1:-0}" --argjson ccpu "$ccpu" --argjson scpu "$scpu" \
    '{stored_per_s: $stored, spool_records_per_s: $records, sent_per_s: $offered, writer_lag_bytes_start: $lag0,
      writer_lag_bytes_end: $lag1, collector_cpu_pct: $ccpu, standin_cpu_pct: $scpu}')
row collector-ingest "$stored" null null
log "collector-ingest: ${J[ingest]}"

log "collector-resnapshot: a connection reset mid-frame"
# The writer first catches up so the gaps it is about to write are quick to read back.
curl -sf -XPOST "$CTL/rate?mps=$RSS_MPS" >/dev/null
wait_until 120 caught_up || log "collector-resnapshot: the writer still has a backlog"
sleep 2
fault_at=$(now)
curl -sf -XPOST "$CTL/fault?kind=reset" >"$W/reset.json" || die "collector-resnapshot: no connection to reset"
reset_n=$(jq .markets "$W/reset.json")
wait_until 10 not_all_live "$MARKETS" || true
wait_until 60 all_live "$MARKETS" || die "collector-resnapshot: not every market live again within 60 s"
rec_s=$(calc %.3f "$(now) - $fault_at")
wait_until 60 closed_gaps "$fault_at" "$reset_n" ||
    log "collector-resnapshot: not every gap of the reset is closed in the database"
pcts=$(sql "SELECT count(*), round((percentile_cont(0.5) WITHIN GROUP (ORDER BY e) * 1000)::numeric, 1),
                   round((percentile_cont(0.99) WITHIN GROUP (ORDER BY e) * 1000)::numeric, 1),
                   round((max(e) * 1000)::numeric, 1)
              FROM (SELECT extract(epoch FROM end_at) - $fault_at AS e FROM gaps
                     WHERE channel = 'orderbook' AND reason = 'disconnect' AND end_at IS NOT NULL
                       AND start_at >= to_timestamp($fault_at - 5)) g")
IFS='|' read -r ngaps rp50 rp99 rmax <<<"$pcts"
target=$(calc %.1f "2 + $reset_n / 1000")
J[resnapshot]=$(jq -nc --argjson n "$ngaps" --argjson p50 "${rp50:-null}" --argjson p99 "${rp99:-null}" \
    --argjson max "${rmax:-null}" --argjson all "$rec_s" --argjson target "$target" \
    '{markets: $n, p50_ms: $p50, p99_ms: $p99, max_ms: $max, all_live_s: $all, target_s: $target}')
row collector-resnapshot "$(calc %.1f "$ngaps / $rec_s")" "${rp50:-null}" "${rp99:-null}"
log "collector-resnapshot: ${J[resnapshot]}"

log "collector-rss: ${RSS_SECONDS}s at $RSS_MPS msgs/s, a sample every 5 s"
: >"$W/rss.tsv"
end=$((EPOCHSECONDS + RSS_SECONDS))
while ((EPOCHSECONDS < end)); do
    printf '%s\t%s\n' "$EPOCHSECONDS" "$(rss_kb "$CPID")" >>"$W/rss.tsv"
    pid_gone "$CPID" && die "collector-rss: the collector exited"
    sleep 5
done
J[rss]=$(awk -v skip="$((RSS_SECONDS / 10))" 'NR == 1 { t0 = $1 } $1 - t0 >= skip {
        if (!n++) first = $2; last = $2; if ($2 > max) max = $2 }
    END { flat = (last <= first * 1.1 + 8192) ? "true" : "false"
          printf "{\"seconds\":%d,\"samples\":%d,\"first_mb\":%.1f,\"last_mb\":%.1f,\"max_mb\":%.1f,\"flat\":%s}",
                 $1 - t0, n, first / 1024, last / 1024, max / 1024, flat }' "$W/rss.tsv")
cp "$W/rss.tsv" "$REPO/var/bench/collector-rss.tsv" 2>/dev/null || true
log "collector-rss: ${J[rss]}"

errors=$(cat "$W"/collector-*.log | grep -c '"level":"error"' || true)
mkdir -p "$REPO/var/bench"
jq -n --argjson v "${J[visible]}" --argjson i "${J[ingest]}" --argjson r "${J[resnapshot]}" \
    --argjson m "${J[rss]}" --argjson sub "$sub_s" --argjson markets "$MARKETS" \
    --argjson errors "$errors" \
    '{markets: $markets, subscribe_s: $sub, visible: $v, ingest: $i, resnapshot: $r, rss: $m,
      collector_error_lines: $errors}' >"$REPO/var/bench/collector.json"
{
    printf '\ncollector: subscribe %s markets %s s (target <= 60); ingest %s messages/s stored of %s sent (target >= 50000), collector %s%% CPU, stand-in %s%%\n' \
        "$MARKETS" "$sub_s" "$stored" "$offered" "$ccpu" "$scpu"
    printf 'collector: visible p50 %s ms, p99 %s ms (target <= 1000); resnapshot of %s markets p99 %s ms, max %s ms, all live %s s (target <= %s s)\n' \
        "$(jq -r .p50_ms <<<"${J[visible]}")" "$(jq -r .p99_ms <<<"${J[visible]}")" "$ngaps" \
        "$rp99" "$rmax" "$rec_s" "$target"
    printf 'collector: RSS %s (BENCH_COLLECTOR_RSS_SECONDS=3600 for the hour); %s error lines in its logs\n' \
        "${J[rss]}" "$errors"
} >&2
