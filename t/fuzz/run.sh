#!/usr/bin/env bash
# run.sh SECONDS - run every libFuzzer target in build/fuzz/t/fuzz for SECONDS
# on its seed corpus (t/fuzz/corpus/NAME, read-only) plus its working corpus
# (build/fuzz/corpus/NAME), with the dictionary t/fuzz/NAME.dict when it
# exists. Prints one line per target with its exec count;
# exits non-zero when any target found a crash (saved in build/fuzz/crashes/).
# With KB_TEST_COUNTS set (make check), records "passed failed" per target.
set -euo pipefail
SECONDS_PER=${1:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
mkdir -p build/fuzz/crashes
rc=0
for bin in build/fuzz/t/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/^fuzz_//')
    work=build/fuzz/corpus/$name
    mkdir -p "$work" "t/fuzz/corpus/$name"
    log=build/fuzz/$name.log
    dict=()
    [ ! -f "t/fuzz/$name.dict" ] || dict=(-dict="t/fuzz/$name.dict")
    if "$bin" ${dict[@]+"${dict[@]}"} -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=build/fuzz/crashes/"$name"- -print_final_stats=1 \
        "$work" "t/fuzz/corpus/$name" >"$log" 2>&1; then
        execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
        echo "fuzz $name: ok, ${execs:-?} execs in ${SECONDS_PER}s"
        [ -z "${KB_TEST_COUNTS:-}" ] || echo "1 0" >>"$KB_TEST_COUNTS"
    else
        echo "fuzz $name: FAILED (see $log and build/fuzz/crashes/)"
        grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -20 || true
        [ -z "${KB_TEST_COUNTS:-}" ] || echo "0 1" >>"$KB_TEST_COUNTS"
        rc=1
    fi
done
exit $rc
