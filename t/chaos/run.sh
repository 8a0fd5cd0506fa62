#!/usr/bin/env bash
# t/chaos/run.sh BUILD_DIR REQUESTS CLIENTS FAULT_ROUNDS - start an own stack (KB_WORKERS=4,
# usage reporter child on, short reporter margin), load a small demo data set, run
# BUILD_DIR/t/chaos/chaos against it, stop the stack. Exit status of chaos; sanitizer
# reports in the stack's logs fail too. Logs are kept in build/chaos-logs/.
# CHAOS_HOSTS=2: a second complete app host on the same Postgres (t/lib/hosts.sh: its own
# nginx, pool, reporter and host id), load through both, and the host faults (a whole host
# SIGKILLed and restarted, or left dead past its lease), a streaming replica for the data
# routes that is stopped and rebuilt as a fault, rate limits across hosts and webhook
# retries landing on the other host (t/chaos/faults.c, invariants.c); and the Kalshi
# stand-in with one kalshibook-collector per host on the shared primary (host 2's leads,
# host 1's stands by; a host's kill kills its collector, its restart starts it again as the
# standby), checked at the end by t/chaos/collector.sh (takeover within 5 s of each kill of
# the leading collector's host, and t/collector's checks: gaps, books, duplicates, spools).
# CHAOS_BOUNCER=1: the pools reach Postgres through PgBouncer in session mode
# (t/stack.sh bouncer-start; docs/ops.md "Scaling out").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:?build dir}
N=${2:-10000} C=${3:-64} R=${4:-1}
cd "$ROOT"
BIN=$ROOT/$B/app
[ "$B" = build/release ] && BIN=$ROOT/app
STACK=$(mktemp -d /tmp/kbchaos.XXXXXX)
cleanup() {
    "$ROOT/t/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
    rm -rf "$ROOT/build/chaos-logs" && mkdir -p "$ROOT/build/chaos-logs"
    cp "$STACK"/*.log "$STACK"/kalshi/faults.jsonl "$ROOT/build/chaos-logs/" 2>/dev/null || true
    for h in "$STACK"/h[2-9]; do
        [ -d "$h" ] || continue
        for f in "$h"/*.log; do
            [ -f "$f" ] && cp "$f" "$ROOT/build/chaos-logs/${h##*/}-${f##*/}"
        done
    done
    rm -rf "$STACK"
}
trap cleanup EXIT
unset KB_PG_PORT KB_HTTPS_PORT KB_HTTP_PORT KB_STRIPE_PORT KB_DATABASE_READ_URL
export KB_BIN_DIR=$BIN KB_REPO_ROOT=$ROOT
export KB_WORKERS=4 KB_MAX_REQUESTS=${KB_MAX_REQUESTS:-3000} KB_DRAIN_TIMEOUT_S=3
export STRIPE_REPORTER=1 KB_USAGE_REPORTER=1 KB_USAGE_FLUSH_S=1 KB_USAGE_MARGIN_S=2
export KB_DB_STATEMENT_TIMEOUT_MS=1500 STRIPE_TIMEOUT_S=3 STRIPE_MAX_RETRIES=1
export KB_LOG_LEVEL=${KB_LOG_LEVEL:-warn} KB_HOST_LEASE_MS=${KB_HOST_LEASE_MS:-3000}
HOSTS=${CHAOS_HOSTS:-1}
"$ROOT/t/stack.sh" start "$STACK" >/dev/null
# CHAOS_BOUNCER=1: every pool reaches the primary through PgBouncer in session mode.
if [ "${CHAOS_BOUNCER:-0}" = 1 ]; then
    "$ROOT/t/stack.sh" bouncer-start "$STACK" >/dev/null
fi
if [ "$HOSTS" = 2 ]; then
    # Data routes on a streaming replica (both hosts), stopped and rebuilt as a fault.
    "$ROOT/t/stack.sh" replica-start "$STACK" >/dev/null
    "$ROOT/t/stack.sh" host-start "$STACK" 2 >/dev/null
    KB_BASE_URL_2=$(sed -n 's/^KB_BASE_URL=//p' "$STACK/h2/run.env")
    export KB_BASE_URL_2 CHAOS_HOSTS=2
fi
set -a
# shellcheck disable=SC1091
. "$STACK/run.env"
set +a
export KB_STACK_DIR=$STACK
"$BIN/kbctl" demo-data --markets 4 --days 1 --deltas-per-hour 20 --trades-per-hour 2 --quiet \
    >/dev/null 2>&1 || "$BIN/kbctl" demo-data --markets 4 --days 1 --deltas-per-hour 20 \
    --trades-per-hour 2 >/dev/null
if [ "$HOSTS" = 2 ]; then
    # The collector joins the run: the stand-in (truth and fault logs for collector-check),
    # host 2's collector first so it leads (the short run kills host 2 first), then host
    # 1's as the standby. The settings of t/collector/chaos.sh: quick heartbeats, reconnects
    # and commits. Every later host-app-start (faults.c) inherits them.
    mkdir -p "$STACK/kalshi"
    if [ "${CHAOS_SHORT:-0}" = 1 ]; then
        KB_RUN_MARKETS=${CHAOS_COLLECTOR_MARKETS:-12} KB_RUN_MPS=${CHAOS_COLLECTOR_MPS:-150}
        CHAOS_PAIRS=${CHAOS_PAIRS:-300}
    else
        KB_RUN_MARKETS=${CHAOS_COLLECTOR_MARKETS:-24} KB_RUN_MPS=${CHAOS_COLLECTOR_MPS:-400}
        CHAOS_PAIRS=${CHAOS_PAIRS:-1000}
    fi
    export KB_RUN_MARKETS KB_RUN_MPS CHAOS_PAIRS
    export KB_STANDIN_BIN=$ROOT/$B/t/kalshi/kalshi-standin
    export KB_KALSHI_ARGS="--seed 22 --ping-ms 1000 --truth $STACK/kalshi/truth.log --faults $STACK/kalshi/faults.jsonl"
    export KB_COLLECTOR_HEARTBEAT_S=1 KB_COLLECTOR_MARKETS_PER_SUB=4 KB_COLLECTOR_SUBS_PER_CONN=2
    export KB_COLLECTOR_BACKOFF_MIN_MS=100 KB_COLLECTOR_BACKOFF_MAX_MS=2000
    export KB_COLLECTOR_COMMIT_MS=100 KB_COLLECTOR_RECONCILE_S=20
    export KB_COLLECTOR_CHECKPOINT_EVERY=50 KB_COLLECTOR_CHECKPOINT_S=2
    t0=$EPOCHREALTIME
    "$ROOT/t/stack.sh" kalshi-start "$STACK" >/dev/null
    "$ROOT/t/stack.sh" collector-start "$STACK" 2 >/dev/null
    "$ROOT/t/stack.sh" collector-start "$STACK" 1 standby >/dev/null
    echo "collectors: host 2's leads with $KB_RUN_MARKETS markets live, host 1's stands by" \
        "(started in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s)"
    export CHAOS_COLLECTOR=$ROOT/t/chaos/collector.sh
    export CHAOS_COLLECTOR_CHECK=$ROOT/$B/t/collector/collector-check
fi
rc=0
"$ROOT/$B/t/chaos/chaos" "$N" "$C" "$R" || rc=$?
"$ROOT/t/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
if grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$STACK"/*.log "$STACK"/h*/*.log 2>/dev/null; then
    echo "!! sanitizer reports in the chaos stack's logs (build/chaos-logs)"
    rc=1
fi
exit "$rc"
