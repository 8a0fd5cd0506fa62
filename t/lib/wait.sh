# shellcheck shell=bash
# t/lib/wait.sh - wait_until: poll a real condition until it holds or a deadline passes.
#
# Sourced by t/stack.sh and the shell tests (t/pkg/test-deb.sh, t/bench/bench.sh,
# t/soak/run.sh) instead of open-coded
# `sleep 0.x` loops. Invariants: every wait is bounded by a deadline on the clock
# ($EPOCHREALTIME, not a count of tries); the condition is the real thing waited for
# (a socket exists, a pid is gone, an answer came), run at least once, and once more at
# the deadline; the pause between tries starts at 10 ms and doubles up to 200 ms, so a
# quick condition is seen at once and a slow one is not polled hot.

# Microseconds since the epoch.
wait_now_us() {
    local t=${EPOCHREALTIME/[.,]/}
    printf '%s\n' "$((10#$t))"
}

# wait_until SECONDS CMD [ARG...]: 0 as soon as CMD succeeds, 1 when SECONDS (whole or
# decimal, e.g. 0.5) pass first.
wait_until() {
    local limit_s=$1 whole frac
    shift
    whole=${limit_s%.*}
    frac=${limit_s#"$whole"}
    frac=${frac#.}000000
    local deadline=$(($(wait_now_us) + ${whole:-0} * 1000000 + 10#${frac:0:6}))
    local pause_ms=10
    while :; do
        "$@" && return 0
        (($(wait_now_us) < deadline)) || break
        sleep "$(printf '0.%03d' "$pause_ms")"
        ((pause_ms = pause_ms * 2 > 200 ? 200 : pause_ms * 2))
    done
    "$@"
}

# pid_gone PID: the process no longer exists, has exited and waits to be reaped
# (a zombie: our own children that died), or PID is not a pid.
pid_gone() {
    local stat state
    [[ ${1:-} =~ ^[0-9]+$ ]] || return 0
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    state=${stat##*) }
    state=${state%% *}
    [[ $state == Z || $state == X ]]
}
