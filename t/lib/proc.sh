# shellcheck shell=bash
# t/lib/proc.sh - processes for t/stack.sh: who we are, pid files, liveness, signals.
#
# Sourced by t/stack.sh after t/lib/wait.sh (pid_gone, wait_until). Invariant: a pid
# read from a file is only signalled after its command line says it is ours (pid_is).

is_root() {
    [[ $(id -u) == 0 ]]
}

# pid_alive PID: the process exists and is not a zombie (pid_gone: t/lib/wait.sh).
pid_alive() {
    ! pid_gone "$1"
}

# pid_is PID WORD: PID is alive and WORD appears in its command line.
pid_is() {
    pid_alive "$1" || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

# read_pid FILE: print the pid stored in FILE, or nothing.
read_pid() {
    local pid=
    if [[ -r $1 ]]; then
        read -r pid <"$1" || true
    fi
    [[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
    return 0
}

# pids_gone PID...: every one of them is gone.
pids_gone() {
    local p
    for p in "$@"; do
        pid_gone "$p" || return 1
    done
}

# wait_gone PID SECONDS: poll until PID is gone; fail when the deadline passes.
wait_gone() {
    wait_until "$2" pid_gone "$1"
}

# kill_group_or_pid SIG PID: signal PID's process group when PID leads it
# (our daemons run in their own session), else just PID.
kill_group_or_pid() {
    local sig=$1 pid=$2 pgid
    pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') || true
    if [[ $pgid == "$pid" ]]; then
        kill "-$sig" -- "-$pid" 2>/dev/null || true
    else
        kill "-$sig" "$pid" 2>/dev/null || true
    fi
}
