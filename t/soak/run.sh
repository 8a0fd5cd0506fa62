#!/usr/bin/env bash
# t/soak/run.sh BUILD_DIR REQUESTS - soak test: REQUESTS mixed requests (health, metered data
# routes, key routes; t/soak/mixed.lua) with wrk in 10 s chunks against an own stack with
# KB_MAX_REQUESTS=0 (workers never recycle), sampling every worker's RSS and open FDs (/proc)
# every 2 s. Fails on any non-200 answer or socket error, a worker that died, FD growth after
# warm-up, or RSS growth after warm-up above SOAK_RSS_TOL_KB (default 4096 KiB; not checked for
# the ASan build, whose quarantine grows by design). With BUILD_DIR=build/asan, sanitizer and
# LeakSanitizer reports in the stack's logs (written when the workers exit) fail too.
# Prints "soak: passed" or "soak: FAILED"; exit 0/1. Logs are kept in build/soak-logs/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:?build dir}
TOTAL=${2:-1000000}
TOL=${SOAK_RSS_TOL_KB:-4096}
CHUNK_S=${SOAK_CHUNK_S:-10}
cd "$ROOT"
BIN=$ROOT/$B/app
[ "$B" = build/release ] && BIN=$ROOT/app
STACK=$(mktemp -d /tmp/kbsoak.XXXXXX)
SAMPLER=
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
    "$ROOT/t/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
    rm -rf "$ROOT/build/soak-logs" && mkdir -p "$ROOT/build/soak-logs"
    cp "$STACK"/*.log "$STACK"/samples "$ROOT/build/soak-logs/" 2>/dev/null || true
    rm -rf "$STACK"
}
trap cleanup EXIT
unset KB_PG_PORT KB_HTTPS_PORT KB_HTTP_PORT KB_STRIPE_PORT KB_DATABASE_READ_URL
export KB_BIN_DIR=$BIN KB_REPO_ROOT=$ROOT
export KB_WORKERS=${SOAK_WORKERS:-4} KB_MAX_REQUESTS=0 KB_LOG_LEVEL=warn
"$ROOT/t/stack.sh" start "$STACK" >/dev/null 2>&1
set -a
# shellcheck disable=SC1091
. "$STACK/run.env"
set +a
"$BIN/kbctl" demo-data --markets 4 --days 1 --deltas-per-hour 20 --trades-per-hour 2 \
    >/dev/null 2>&1
PSQL=(psql -X -q -t -A "$KB_DATABASE_URL")
TICKER=$("${PSQL[@]}" -c "SELECT ticker FROM markets ORDER BY ticker LIMIT 1")
# A project account with room for every request (metered by the real meter).
KEY=kb-$(openssl rand -hex 32 | cut -c1-43)
HASH=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
# Values go in as psql variables, quoted by psql (:'name'), never pasted into the SQL text.
"${PSQL[@]}" -v ON_ERROR_STOP=1 -v email="soak-$(openssl rand -hex 6)@example.test" \
    -v hash="$HASH" -v prefix="${KEY:0:7}" >/dev/null <<'SQL'
WITH u AS (INSERT INTO users (email, password_hash) VALUES (:'email', 'x') RETURNING id),
    k AS (INSERT INTO api_keys (user_id, key_hash, key_prefix) SELECT id, :'hash', :'prefix' FROM u)
INSERT INTO billing_accounts (user_id, tier, credits_total, credits_override, rpm_override)
SELECT id, 'project', 2000000000, 2000000000, 1000000000 FROM u;
SQL
# A user token for the key routes.
EMAIL=soak-$(openssl rand -hex 6)@example.test
PASS=soak-$(openssl rand -hex 12)
TOKEN=$(curl -sS --cacert "$KB_CA_CERT" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASS\"}" "$KB_BASE_URL/auth/signup" |
    sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "soak: signup failed"; exit 1; }
export SOAK_KEY=$KEY SOAK_TOKEN=$TOKEN SOAK_TICKER=$TICKER

MASTER=$(cat "$STACK/fcgi.pid")
workers() {
    local p
    for p in $(cat "/proc/$MASTER/task/$MASTER/children" 2>/dev/null); do
        case $(cat "/proc/$p/comm" 2>/dev/null) in kb-reporter | kb-host) ;; *) echo "$p" ;; esac
    done
}
WORKERS=$(workers | sort -n | tr '\n' ' ')
# sample: one line per worker "seconds pid rss_kib fds"
sample_once() {
    local p rss fds
    for p in $WORKERS; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        fds=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
        echo "$SECONDS $p ${rss:-0} $fds"
    done
}
(while :; do sample_once >>"$STACK/samples"; sleep 2; done) &
SAMPLER=$!

snapshot() { # label -> prints per-worker rss/fds, sets global SNAP
    SNAP=$(sample_once)
    printf 'soak: %-8s' "$1"
    awk '{printf "  pid %s %.1f MiB %d fds", $2, $3/1024, $4}' <<<"$SNAP"
    echo
}

done_n=0 fails=0 errors=0 chunks=0 warm=
t0=$SECONDS
CONNS=${SOAK_CONNECTIONS:-32}
while [ "$done_n" -lt "$TOTAL" ] || [ "$chunks" -lt 2 ]; do  # warm-up chunk + at least one more
    out=$(wrk -t 2 -c "$CONNS" -d "${CHUNK_S}s" -s "$ROOT/t/soak/mixed.lua" "$KB_BASE_URL" 2>&1) ||
        { echo "$out"; echo "soak: wrk failed"; exit 1; }
    line=$(grep '^soak-chunk' <<<"$out") || { echo "$out"; exit 1; }
    read -r _ _ n _ f _ e <<<"$line"
    done_n=$((done_n + n)) fails=$((fails + f)) errors=$((errors + e)) chunks=$((chunks + 1))
    grep '^soak: status' <<<"$out" | head -3 || true
    if [ -z "$warm" ]; then
        snapshot warm-up
        warm=$SNAP
    fi
    printf 'soak: %d/%d requests (%d rps), failures %d, socket errors %d\n' "$done_n" "$TOTAL" \
        "$((done_n / (SECONDS - t0 > 0 ? SECONDS - t0 : 1)))" "$fails" "$errors"
done
# A worker still finishing the last request of the chunk holds its FastCGI connection
# (one more FD). Take the end snapshot once every worker is back to its warm-up FD count,
# or after 10 s: an FD that is really leaked is still there then and fails below.
fds_settled() {
    local _t pid fds fds0
    while read -r _t pid _ fds; do
        read -r _ _ _ fds0 <<<"$(grep " $pid " <<<"$warm" || echo "0 $pid 0 0")"
        [ "$fds" -le "$fds0" ] || return 1
    done <<<"$(sample_once)"
}
# shellcheck source=t/lib/wait.sh
. "$ROOT/t/lib/wait.sh"
wait_until 10 fds_settled || true
snapshot end
end=$SNAP
rc=0
now=$(workers | sort -n | tr '\n' ' ')
if [ "$now" != "$WORKERS" ]; then
    echo "soak: FAIL workers changed (a worker died): before [$WORKERS] after [$now]"
    rc=1
fi
if [ "$fails" -ne 0 ] || [ "$errors" -ne 0 ]; then
    echo "soak: FAIL $fails non-200 answers, $errors socket errors"
    rc=1
fi
while read -r _ pid rss fds; do
    read -r _ _ rss0 fds0 <<<"$(grep " $pid " <<<"$warm" || echo "0 $pid 0 0")"
    growth=$((rss - rss0))
    printf 'soak: worker %s RSS %.1f -> %.1f MiB (%+d KiB), fds %d -> %d\n' "$pid" \
        "$(bc -l <<<"$rss0/1024")" "$(bc -l <<<"$rss/1024")" "$growth" "$fds0" "$fds"
    if [ "$B" != build/asan ] && [ "$growth" -gt "$TOL" ]; then
        echo "soak: FAIL worker $pid RSS grew $growth KiB after warm-up (tolerance $TOL)"
        rc=1
    fi
    if [ "$fds" -gt "$fds0" ]; then
        echo "soak: FAIL worker $pid FDs grew $fds0 -> $fds"
        rc=1
    fi
done <<<"$end"
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=
"$ROOT/t/stack.sh" stop "$STACK" >/dev/null 2>&1 || true
if grep -lE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$STACK"/*.log 2>/dev/null; then
    echo "soak: FAIL sanitizer reports in the stack's logs (build/soak-logs)"
    grep -hE -A20 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$STACK"/*.log | head -60
    rc=1
fi
printf 'soak: %d requests in %d s, %s\n' "$done_n" "$((SECONDS - t0))" \
    "$([ $rc -eq 0 ] && echo passed || echo FAILED)"
exit "$rc"
