#!/usr/bin/env bash
# run-tests.sh BUILD_DIR - run every unit test, then every integration test
# against a real stack (Postgres, kalshibook-fcgi, nginx) started in a temp
# dir on free ports, and always tear it down. Sanitizer reports in any log
# count as failures. The closing line is "N passed, N failed".
set -euo pipefail

B=${1:-build/asan}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

COUNTS=$(mktemp /tmp/kbcounts.XXXXXX)
export KB_TEST_COUNTS=$COUNTS
# Secrets the tests create (raw keys, tokens, passwords); no log may hold one.
SECRETS=$(mktemp /tmp/kbsecrets.XXXXXX)
export KB_TEST_SECRETS=$SECRETS
# Sanitizers: leaks and UB fail the process; reports go to stderr (the logs).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-20}

STACK=""
LOGDIR="$ROOT/build/test-logs"

run_prog() {
    local prog=$1 before after rc=0
    before=$(wc -l <"$COUNTS")
    echo "== $prog"
    "$prog" || rc=$?
    after=$(wc -l <"$COUNTS")
    if [ "$rc" -ne 0 ] && [ "$before" -eq "$after" ]; then
        echo "!! $prog exited with $rc before reporting results"
        echo "0 1" >>"$COUNTS"
    fi
}

scan_logs() {
    local dir=$1 hits
    hits=$(grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$dir"/*.log 2>/dev/null || true)
    if [ -n "$hits" ]; then
        echo "!! sanitizer reports in: $hits"
        # shellcheck disable=SC2086  # one word per file name
        grep -hE -A30 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' $hits | head -120
        echo "0 1" >>"$COUNTS"
    fi
}

scan_secrets() {
    local dir=$1 hits
    # Also the stack's own secrets (app.env: JWT secret, Stripe keys).
    if [ -f "$dir/app.env" ]; then
        sed -n "s/^[A-Z_]*\(SECRET\|KEY\)[A-Z_]*=['\"]\{0,1\}\([^'\"]\{8,\}\)['\"]\{0,1\}$/\2/p" "$dir/app.env" | tr ',' '\n' >>"$SECRETS"
    fi
    [ -s "$SECRETS" ] || { echo "secret scan: no secrets were registered"; return; }
    hits=$(grep -F -l -f "$SECRETS" "$dir"/*.log 2>/dev/null || true)
    if [ -n "$hits" ]; then
        echo "!! a secret appears in: $hits"
        echo "0 1" >>"$COUNTS"
    else
        echo "secret scan: $(sort -u "$SECRETS" | wc -l) secrets, none in any log"
        echo "1 0" >>"$COUNTS"
    fi
}

finish() {
    local rc=$?
    if [ -n "$STACK" ] && [ -d "$STACK" ]; then
        "$ROOT/t/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
        scan_logs "$STACK"
        scan_secrets "$STACK"
        # the stack's logs replace the last run's; browser/ (screenshots) is the browser run's own
        mkdir -p "$LOGDIR" && rm -f "$LOGDIR"/*.log
        cp "$STACK"/*.log "$LOGDIR"/ 2>/dev/null || true
        rm -rf "$STACK"
    fi
    local passed=0 failed=0 p f
    while read -r p f; do
        passed=$((passed + p))
        failed=$((failed + f))
    done <"$COUNTS"
    rm -f "$COUNTS" "$SECRETS"
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        echo "!! test run aborted (exit $rc)"
        failed=1
    fi
    [ "$failed" -eq 0 ] || echo "logs of the integration stack: $LOGDIR"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
trap finish EXIT

echo "### format (make format-check: the C sources as the root .clang-format writes them)"
if make -s -C "$ROOT" format-check; then echo "1 0" >>"$COUNTS"; else echo "0 1" >>"$COUNTS"; fi

echo "### unit tests ($B)"
# One program per source file: a binary left in the build tree by a suite that
# was renamed or split is not run (it would repeat tests against the same database).
for src in t/unit/test_*.c; do
    t="$B/t/unit/$(basename "$src" .c)"
    [ -x "$t" ] || { echo "!! $t was not built"; echo "0 1" >>"$COUNTS"; continue; }
    run_prog "$t"
done

echo "### nginx -t on the production site (nginx/kalshibook.conf)"
if "$ROOT/t/stack.sh" nginx-test-prod; then echo "1 0" >>"$COUNTS"; else echo "0 1" >>"$COUNTS"; fi

echo "### fuzz targets, ${KB_FUZZ_CHECK_SECONDS:-3}s each on their corpus"
"$ROOT/t/fuzz/run.sh" "${KB_FUZZ_CHECK_SECONDS:-3}" || true

echo "### integration tests (nginx -> kalshibook-fcgi -> Postgres)"
STACK=$(mktemp -d /tmp/kbstack.XXXXXX)
export KB_BIN_DIR="$ROOT/$B/app"
export KB_REPO_ROOT="$ROOT"
export KB_WORKERS=3 KB_MAX_BODY=262144 KB_MAX_REQUESTS=400 KB_DRAIN_TIMEOUT_S=3
"$ROOT/t/stack.sh" start "$STACK"
# Data routes read from a real streaming replica (KB_TEST_REPLICA=0 skips it).
if [ "${KB_TEST_REPLICA:-1}" = 1 ]; then
    "$ROOT/t/stack.sh" replica-start "$STACK"
fi
set -a
# shellcheck disable=SC1091
. "$STACK/run.env"
set +a
for src in t/integration/test_*.c; do
    t="$B/t/integration/$(basename "$src" .c)"
    [ -x "$t" ] || { echo "!! $t was not built"; echo "0 1" >>"$COUNTS"; continue; }
    run_prog "$t"
done

echo "### package tests (the .deb: tree, units, installed layout against the stack's database)"
for t in t/pkg/test-*.sh; do
    [ -x "$t" ] && run_prog "$t"
done
# The static surface: openapi.json (validated, against API.md and the router table),
# llms*.txt (every example checked against the spec; replayed when its route is routed),
# nginx's static answers, and the pages in Debian's Chromium. Screenshots stay in
# build/test-logs/browser.
echo "### static surface (t/docs, t/browser: node + Chromium)"
export NODE_EXTRA_CA_CERTS="$KB_CA_CERT"
export KB_TEST_OUTPUT_DIR="$ROOT/build/test-logs/browser"
rm -rf "$KB_TEST_OUTPUT_DIR"
run_prog "$ROOT/t/docs/test-docs.js"
run_prog "$ROOT/t/browser/test-browser.js"

# Short reliability runs (make chaos / make soak are the full ones; docs/testing.md "Reliability"):
# chaos with the Stripe-side faults and every money invariant (two app hosts on one Postgres
# with a replica, whole-host kills, a collector per host whose lead is taken over when its
# host dies: CHAOS_HOSTS=2; KB_CHAOS_SHORT_HOSTS=1 for one host), the
# collector's chaos run (24 markets, one round of every fault; its data checks), and a soak
# under ASan with leak detection. Each starts its own stack from a clean environment; one
# "passed failed" line each.
echo "### reliability, short (t/chaos/run.sh, t/soak/run.sh under ASan)"
run_reliability() {
    local name=$1
    shift
    echo "== $name"
    if env -i PATH="$PATH" HOME="${HOME:-/root}" ASAN_OPTIONS="$ASAN_OPTIONS" \
        UBSAN_OPTIONS="$UBSAN_OPTIONS" CHAOS_SHORT=1 SOAK_CHUNK_S=5 \
        CHAOS_HOSTS="${hosts:-${KB_CHAOS_SHORT_HOSTS:-2}}" "$@"; then
        echo "1 0" >>"$COUNTS"
    else
        echo "!! $name failed"
        echo "0 1" >>"$COUNTS"
    fi
}
run_reliability chaos-short "$ROOT/t/chaos/run.sh" "$B" "${KB_CHAOS_SHORT_REQUESTS:-2000}" 64 1
# A host alone sends most charges with their commit in one round trip (migration 0028),
# which two hosts never do (their charges write meter_inflight rows): the same faults on it.
hosts=1 run_reliability chaos-short-one-host "$ROOT/t/chaos/run.sh" "$B" \
    "${KB_CHAOS_SHORT_REQUESTS:-2000}" 64 1
run_reliability collector-chaos-short "$ROOT/t/collector/chaos.sh" "$B"
run_reliability soak-short "$ROOT/t/soak/run.sh" "$B" "${KB_SOAK_SHORT_REQUESTS:-3000}"
