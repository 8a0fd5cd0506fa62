#!/usr/bin/env bash
# t/chaos/collector.sh STACK_DIR - the collector's part of the two-host chaos run's verdict.
#
# t/chaos/run.sh starts the Kalshi stand-in (truth and fault logs in STACK_DIR/kalshi/) and
# one kalshibook-collector per app host: host 2's leads, the stack's own (host 1) stands by.
# A whole-host kill (t/lib/hosts.sh host-kill, faults 10-12 of t/chaos/faults.c) kills the
# host's collector with it and writes one line to STACK_DIR/collector-kills.log (did it
# lead, how long until the other one did); its restart starts it again as the standby.
# The chaos program runs this after its money invariants (CHAOS_COLLECTOR) and counts every
# "ok NAME ..." / "FAIL NAME ..." line among them:
#   takeover   after each kill of the leading collector's host another collector led within
#              5 s (docs/collector.md's target), and such a kill happened at least once;
#   live       after the faults every market of the stand-in is subscribed again, the
#              leader has a snapshot of each and no gap open (60 s at most);
#   caught-up  the feed stopped, the leader's writer stored all it received (60 s);
#   replica    the replica the data routes read replayed it all (the books are read there);
#   gaps, books, dups, spool: t/collector/check.c (collector-check, the collector chaos
#              run's checker) on the run's fault and truth logs and both hosts' spools.
# The collectors are stopped (SIGTERM) before the check. Exit 1 when a line says FAIL.
# Environment: the stack's run.env, CHAOS_COLLECTOR_CHECK (the collector-check binary),
# CHAOS_PAIRS ((market, instant) pairs of the books check; default 1000).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
S=${1:?stack dir}
CHECK=${CHAOS_COLLECTOR_CHECK:?the collector-check binary}
. "$ROOT/t/lib/wait.sh"

TAKEOVER_MS=5000
FAILS=0
line() {
    printf '%-4s %s %s\n' "$1" "$2" "$3"
    [[ $1 == ok ]] || FAILS=$((FAILS + 1))
}
kv() { sed -n "s/^$2=//p" "$1" 2>/dev/null | tail -n 1 | tr -d "'"; }
CTL=http://127.0.0.1:$(kv "$S/ports.env" KB_KALSHI_CONTROL_PORT)/_control
shopt -s nullglob
DIRS=("$S" "$S"/h[2-9])
metric() {
    curl -s --max-time 2 "http://127.0.0.1:$(kv "$1/ports.env" KB_COLLECTOR_METRICS_PORT)/metrics" |
        awk -v n="$2" '$1 == n { print $2 }'
}
# The directory of the one collector that leads (nothing while none or more say so).
leader() {
    local d l=()
    for d in "${DIRS[@]}"; do
        [[ -f $d/collector.on && $(metric "$d" kalshibook_collector_leader) == 1 ]] && l+=("$d")
    done
    [[ ${#l[@]} == 1 ]] && printf '%s\n' "${l[0]}"
}
has_leader() { [[ -n $(leader) ]]; }
# host N of the stack's directory or a host's
host_no() { if [[ $1 == "$S" ]]; then echo 1; else echo "${1##*/h}"; fi; }
# shellcheck source=t/lib/collector-live.sh
. "$ROOT/t/lib/collector-live.sh"

# takeover: one line per kill in collector-kills.log: host N leading 0|1|? takeover_ms MS.
read -r nlead worst bad nstandby < <(awk -v max="$TAKEOVER_MS" '
    $4 == "1" { n++; if ($6 > w) w = $6; if ($6 < 0 || $6 > max) b++ }
    $4 == "?" { b++ }
    $4 == "0" { s++ }
    END { printf "%d %d %d %d\n", n, w, b, s }' "$S/collector-kills.log" 2>/dev/null ||
    echo "0 0 0 0")
detail="kills of the leading collector's host: $nlead, another collector led within ${worst} ms at"
detail+=" worst (target $TAKEOVER_MS ms; over it, not taken over or no single leader before: $bad);"
detail+=" kills of the standby's host: $nstandby"
if ((nlead >= 1 && bad == 0)); then line ok takeover "$detail"; else line FAIL takeover "$detail"; fi
[[ -f $S/collector-kills.log ]] && sed 's/^/     /' "$S/collector-kills.log"

t0=$EPOCHSECONDS
if wait_until 60 all_subscribed; then
    line ok live "every market subscribed again with no gap open, $((EPOCHSECONDS - t0)) s after the faults"
else
    line FAIL live "not every market subscribed again (or a gap open) 60 s after the faults"
fi

curl -sf -XPOST "$CTL/feed?run=0" >/dev/null
lead=
wait_until 10 has_leader && lead=$(leader)
caught_up() {
    [[ $(metric "$lead" kalshibook_collector_writer_lag_bytes) == 0 &&
        $(metric "$lead" kalshibook_collector_queue_bytes) == 0 ]]
}
if [[ -n $lead ]] && wait_until 60 caught_up; then
    line ok caught-up "the feed stopped, the leader (host $(host_no "$lead")) stored all it received"
else
    line FAIL caught-up "no single leader, or its writer did not catch up within 60 s"
fi
curl -sf -XPOST "$CTL/flush" >/dev/null
# The standbys first: the leader's stop must not hand the lead on.
for d in "${DIRS[@]}"; do
    [[ $d == "$lead" ]] || "$ROOT/t/stack.sh" collector-stop "$S" "$(host_no "$d")" >/dev/null 2>&1
done
[[ -z $lead ]] || "$ROOT/t/stack.sh" collector-stop "$S" "$(host_no "$lead")" >/dev/null 2>&1

if [[ -n ${KB_DATABASE_READ_URL:-} ]]; then
    lsn=$(psql "$KB_DATABASE_URL" -XAtqc 'SELECT pg_current_wal_lsn()' 2>/dev/null)
    replayed() {
        [[ $(psql "$KB_DATABASE_READ_URL" -XAtqc \
            "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" 2>/dev/null) == t ]]
    }
    if [[ -n $lsn ]] && wait_until 30 replayed; then
        line ok replica "replayed the primary up to $lsn"
    else
        line FAIL replica "did not replay the primary up to ${lsn:-?} within 30 s"
    fi
fi

spools=()
for d in "${DIRS[@]}"; do
    [[ -d $d/kalshi/spool ]] && spools+=(--spool "$d/kalshi/spool")
done
out=$("$CHECK" --faults "$S/kalshi/faults.jsonl" --truth "$S/kalshi/truth.log" "${spools[@]}" \
    --pairs "${CHAOS_PAIRS:-1000}" --seed 22 2>&1)
rc=$?
# Its lines are "ok   NAME detail" / "FAIL NAME detail"; the last one its summary.
while IFS= read -r l; do
    case $l in
    ok\ * | FAIL\ *) line "${l%% *}" "$(awk '{ print $2 }' <<<"$l")" "$(sed -E 's/^[A-Za-z]+ +[a-z-]+ +//' <<<"$l")" ;;
    *) printf '     %s\n' "$l" ;;
    esac
done <<<"$out"
if ((rc != 0 && FAILS == 0)); then
    line FAIL check "collector-check exited $rc"
fi
((FAILS == 0))
