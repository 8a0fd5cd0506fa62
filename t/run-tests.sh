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
        grep -hE -A30 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' $hits | head -120
        echo "0 1" >>"$COUNTS"
    fi
}

finish() {
    local rc=$?
    if [ -n "$STACK" ] && [ -d "$STACK" ]; then
        "$ROOT/t/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
        scan_logs "$STACK"
        rm -rf "$LOGDIR" && mkdir -p "$LOGDIR"
        cp "$STACK"/*.log "$LOGDIR"/ 2>/dev/null || true
        rm -rf "$STACK"
    fi
    local passed=0 failed=0 p f
    while read -r p f; do
        passed=$((passed + p))
        failed=$((failed + f))
    done <"$COUNTS"
    rm -f "$COUNTS"
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        echo "!! test run aborted (exit $rc)"
        failed=1
    fi
    [ "$failed" -eq 0 ] || echo "logs of the integration stack: $LOGDIR"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
trap finish EXIT

echo "### unit tests ($B)"
for t in "$B"/t/unit/test_*; do
    [ -x "$t" ] && run_prog "$t"
done

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
for t in "$B"/t/integration/test_*; do
    [ -x "$t" ] && run_prog "$t"
done
