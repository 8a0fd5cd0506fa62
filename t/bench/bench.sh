#!/usr/bin/env bash
# t/bench/bench.sh: requests/s and latency of the real stack next to its baselines (make bench).
#
# Usage: t/bench/bench.sh [REPO_ROOT]
#
# Starts a private stack in a temp dir with t/stack.sh (Postgres with fsync
# on, as in production), using the release binaries in REPO/app, plus
# t/bench/hello-fcgi (a trivial FastCGI pool as big as the app's) behind the
# same nginx at /__hello. Each row is one wrk run over HTTPS; the table and
# REPO/var/bench/latest.json list name, rps, p50_ms, p99_ms, baseline, ratio
# (rps / the baseline row's rps). Rows:
#   static      nginx serving /llms.txt: the ceiling of this box
#   hello-fcgi  nginx + FastCGI doing nothing: the ceiling for any app
#   health      GET /health: the pool, one DB round trip; target >= 0.8 x hello-fcgi
#   floor       pgbench: a bare durable UPDATE ... SET credits_used = credits_used + 1 WHERE
#               user_id = $1 AND credits_used + 1 <= credits_total RETURNING ..., on a copy
#               of billing_accounts (same columns, checks, indexes, keys, fillfactor) over the
#               same BENCH_ACCOUNTS accounts (default 100): what one charge cannot beat
#   meter-sql   pgbench: the workers' meter statements (t/bench/meter-sql.c prints their exact
#               text) over the same accounts, as a worker of a host alone runs them (the
#               default KB_HOST_ROWS=auto writes no meter_inflight row); target >= 0.8 x floor
#   meter-sql-chain  the charge in one round trip with its commit (migration 0028) as a worker's
#               session runs it: begin ahead (pg_current_xact_id()), kb_meter_chain_stmt, commit,
#               in one pgbench pipeline; the accounts' fast windows held open for the row
#   meter-sql-hosts  the same with the charge's row in meter_inflight and its answered mark
#               (migration 0024), as they run while several hosts share the database
#   floor-hot, meter-sql-hot  the same on one account (row lock and commit latency bound it)
#   markets-metered      GET /markets/{ticker} through the stack, 100 rotating keys (vs floor:
#                        target >= 0.3)
#   markets-metered-hot  the same with one key (vs meter-sql-hot)
#   markets-half-load    the 100-key mix paced at half the measured rate: its p99
#   keys        GET /keys with a user token: JWT check (HMAC) + one indexed query
#   login       POST /auth/login over ONE connection: argon2id-bound (slow by design;
#               more connections would mostly measure the 503s of the hash cap)
#   orderbook-100k  POST /orderbook over ~100k deltas since the snapshot; target p50 <= 25 ms
#   orderbook-100k-fp  the same on a tapered_deci_cent market ($0.001 ticks, Kalshi's 2026
#                   fixed-point lines): more price levels per side; target p50 <= 25 ms
#   deltas-1000     POST /deltas, a page of 1000 rows (ratio to health)
#   markets-100k-page   GET /markets?limit=100 over 100,000 markets (t/bench/catalog.sql),
#                   two clients (service time); target p50 <= 10 ms
#   markets-100k-whole  GET /markets without a parameter: the whole list (~20 MB) streamed,
#                   BENCH_WHOLE_RUNS (default 5) runs one after another (rps = 1 / p50);
#                   with the serving worker's peak RSS over its RSS just before (VmHWM
#                   after clear_refs; target <= 8 MiB) and gzip on the wire checked
#   import          kbctl import of a generated ~1M-delta file (legacy integer lines);
#                   rps = deltas/s, target >= 200k
#   import-fp       the same volume in Kalshi's 2026 form (price_dollars, delta_fp, ts +
#                   ts_ms; half the markets subpenny, half fractional); target >= 200k
#   import-again    the legacy file imported again (nothing new); rps = deltas/s
#   collector-*     the live collector fed by the Kalshi stand-in (t/bench/collector.sh says
#                   how): collector-visible (exchange time -> visible through the API at
#                   5,000 msgs/s: p50/p99, target p99 <= 1 s), collector-subscribe (5,000
#                   markets: p99_ms = until all have a snapshot), collector-ingest (records
#                   stored/s at 60,000 msgs/s offered, target >= 50,000), collector-resnapshot
#                   (a connection reset: per-market p50/p99 to its new snapshot, target <= 2 s +
#                   1 s per 1,000 markets); its RSS over BENCH_COLLECTOR_RSS_SECONDS in
#                   var/bench/collector.json. BENCH_COLLECTOR=0 leaves them out.
# The floor, meter-sql and markets-metered rows also report cpu_us: CPU microseconds per
# request (per transaction for pgbench) of every process involved, summed from /proc:
# Postgres (all backends, reaped ones included), and for HTTP rows nginx and the
# kalshibook-fcgi pool, plus the load generator itself (pgbench or wrk).
# BENCH_WORKERS_SWEEP="2 3 4 6" adds markets-metered-wN rows: the same request with the
# pool restarted with N workers (how the default pool size, app/fcgi/master.c, was chosen).
# Everything started here is stopped on exit, failure or Ctrl-C.
#
# Environment: BENCH_SECONDS (per row, default 10), BENCH_WARMUP_SECONDS
# (default 2), BENCH_THREADS (wrk -t, default 2), BENCH_CONNECTIONS (wrk -c,
# default 32), BENCH_BIN_DIR (default REPO/app), BENCH_QUICK=1 (static, hello-fcgi
# and health only; BENCH_QUICK=metered adds meter-sql, markets-metered and the
# half-load row; BENCH_QUICK=collector adds the collector's rows, BENCH_QUICK=catalog the
# two markets-100k rows), BENCH_ENFORCE=1 (exit 1 when
# health misses its target), BENCH_KEEP=1 (keep the temp dir and its logs),
# BENCH_ROUNDS (default 3: floor, meter-sql, meter-sql-hosts and markets-metered run that
# many times, interleaved, each reported as its median round; meter_rounds says why).
# KB_WORKERS (default: the app's, eight per core, see below) and other KB_* settings
# reach the app through t/stack.sh.

set -euo pipefail

REPO=$(cd "${1:-$(dirname "${BASH_SOURCE[0]}")/../..}" && pwd -P)
DURATION=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP_SECONDS:-2}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
HEALTH_TARGET=0.8
# The app's default pool unless KB_WORKERS says otherwise: eight workers per core,
# at most 64 (app/fcgi/master.c, docs/ops.md step 4: a metered request holds its
# worker while Postgres flushes the charge's commit, and BENCH_WORKERS_SWEEP
# measured this best). hello-fcgi runs the same number, so the health ratio
# stays like for like.
default_workers=$((8 * $(nproc)))
((default_workers > 64)) && default_workers=64
export KB_WORKERS=${KB_WORKERS:-$default_workers}
export KB_BIN_DIR=${BENCH_BIN_DIR:-$REPO/app}
STACK=$REPO/t/stack.sh
OUT_DIR=$REPO/var/bench

# Rows, in order, and their figures by name; extra curl arguments for a row's check.
ROWS=()
BENCH_CURL_EXTRA=()
declare -A RPS P50 P99 BASE RATIO CPU TIERS

TMP=
HELLO_PID=

die() {
    printf 'bench.sh: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $HELLO_PID ]] && kill -0 "$HELLO_PID" 2>/dev/null; then
        kill -TERM "$HELLO_PID" 2>/dev/null || true
        wait "$HELLO_PID" 2>/dev/null || true
    fi
    if [[ -n $TMP ]]; then
        "$STACK" stop "$TMP" || true
        if [[ ${BENCH_KEEP:-0} == 1 || $rc != 0 ]]; then
            printf 'bench: logs kept in %s\n' "$TMP" >&2
        else
            rm -rf -- "$TMP"
        fi
    fi
    exit "$rc"
}

# to_ms VALUE: wrk's latency ("812.00us", "1.52ms", "2.01s", "1.10m") in ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
        if (f < 0) exit 1
        printf "%.3f", n * f
    }'
}

# stack_ticks [http]: CPU clock ticks used so far by Postgres (the postmaster, its live
# children and the children it reaped) and, with "http", nginx and the kalshibook-fcgi
# pool (the same for each master). Differences of two readings are what a row cost.
proc_ticks() {
    local pid=$1 own=${2:-0} t
    # utime stime (fields 14 15) of pid; with own=0 also cutime cstime (16 17).
    t=$(awk -v o="$own" '{ print (o ? $14 + $15 : $14 + $15 + $16 + $17) }' "/proc/$pid/stat" 2>/dev/null) || t=0
    echo "${t:-0}"
}
tree_ticks() {
    local master=$1 sum c
    [[ -n $master ]] || { echo 0; return; }
    sum=$(proc_ticks "$master")
    for c in $(pgrep -P "$master" 2>/dev/null); do
        sum=$((sum + $(proc_ticks "$c" 1)))
    done
    echo "$sum"
}
stack_ticks() {
    local sum
    sum=$(tree_ticks "$(head -n1 "$KB_PGDATA/postmaster.pid" 2>/dev/null)")
    if [[ ${1:-} == http ]]; then
        sum=$((sum + $(tree_ticks "$KB_NGINX_PID") + $(tree_ticks "$KB_FCGI_PID")))
    fi
    echo "$sum"
}
# tier_ticks: "nginx pool postgres" CPU ticks so far (docs/ops.md sizing table).
tier_ticks() {
    printf '%s %s %s\n' "$(tree_ticks "$KB_NGINX_PID")" "$(tree_ticks "$KB_FCGI_PID")" \
        "$(tree_ticks "$(head -n1 "$KB_PGDATA/postmaster.pid" 2>/dev/null)")"
}
# tier_us BEFORE AFTER REQUESTS: "nginx/pool/postgres" CPU us per request.
tier_us() {
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        if (n <= 0) { print "-"; exit }
        printf "%.0f/%.0f/%.0f", (y[1] - x[1]) / hz * 1e6 / n, (y[2] - x[2]) / hz * 1e6 / n,
            (y[3] - x[3]) / hz * 1e6 / n
    }'
}

# Wait until the postmaster has reaped the backends a load generator left (so their CPU
# is in its cutime), at most 5 s.
pg_settled() {
    local pm want
    pm=$(head -n1 "$KB_PGDATA/postmaster.pid")
    want=$1
    [[ $(pgrep -P "$pm" | wc -l) -le $want ]]
}
# cpu_us TICKS_BEFORE TICKS_AFTER LOADGEN_SECONDS REQUESTS: CPU us per request.
cpu_us() {
    awk -v a="$1" -v b="$2" -v g="$3" -v n="$4" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.1f", (n > 0) ? ((b - a) / hz + g) * 1e6 / n : 0 }'
}

# bench_row NAME URL_PATH BASELINE_NAME [ARGS...] [-- WRK_ONLY_ARGS...]
#   Run wrk against URL_PATH and record a row. BASELINE_NAME is an earlier
#   row ("-" for none); ARGS go to wrk before the URL and to the curl that
#   checks the route first (e.g. -H 'Authorization: Bearer ...'); arguments
#   after "--" go to wrk only (e.g. -s t/bench/login.lua -t1 -c1).
bench_row() {
    local name=$1 path=$2 baseline=$3
    shift 3
    local url=$KB_BASE_URL$path out rps p50 p99 bad code
    local -a both=() wrk_only=()
    while (($# > 0)) && [[ $1 != -- ]]; do
        both+=("$1")
        shift
    done
    (($# > 0)) && shift
    wrk_only=("$@")
    set -- "${both[@]}" "${wrk_only[@]}"
    if [[ $baseline != - && -z ${RPS[$baseline]:-} ]]; then
        die "row '$name': baseline '$baseline' has not run yet"
    fi
    # curl gets the headers but not wrk's -s script; a POST row's body is
    # $BENCH_BODY (or in BENCH_CURL_EXTRA).
    local curl_args=() a skip=0
    for a in "${both[@]}"; do
        if ((skip)); then
            skip=0
        elif [[ $a == -s ]]; then
            skip=1
        else
            curl_args+=("$a")
        fi
    done
    if [[ -n ${BENCH_BODY:-} ]]; then
        curl_args+=(-H 'Content-Type: application/json' --data "$BENCH_BODY")
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$KB_CA_CERT" \
        "${BENCH_CURL_EXTRA[@]}" "${curl_args[@]}" "$url") || true
    [[ $code == 200 ]] || printf 'bench: warning: %s answers %s before the run\n' "$url" "$code" >&2
    if ((WARMUP > 0)); then
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "$@" "$url" >/dev/null
    fi
    printf 'bench: %-12s %s (%ss)\n' "$name" "$path" "$DURATION" >&2
    local t0 t1 gen tiers0 tiers1
    tiers0=$(tier_ticks)
    t0=$(stack_ticks http)
    # bash's time: the user + system seconds of wrk itself.
    gen=$( { TIMEFORMAT='%U %S'; time wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url" >"$TMP/wrk.out"; } 2>&1 | awk 'END { print $1 + $2 }')
    t1=$(stack_ticks http)
    tiers1=$(tier_ticks)
    out=$(cat "$TMP/wrk.out")
    rps=$(awk '$1 == "Requests/sec:" { print $2 }' <<<"$out")
    p50=$(awk '$1 == "50%" { print $2; exit }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2; exit }' <<<"$out")
    [[ -n $rps && -n $p50 && -n $p99 ]] || die "row '$name': cannot read wrk output:"$'\n'"$out"
    p50=$(to_ms "$p50") || die "row '$name': unknown latency unit in '$p50'"
    p99=$(to_ms "$p99") || die "row '$name': unknown latency unit in '$p99'"
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
    if [[ -n $bad ]]; then
        printf 'bench: warning: row %s had %s non-2xx/3xx responses\n' "$name" "$bad" >&2
    fi
    if grep -q 'Socket errors' <<<"$out"; then
        printf 'bench: warning: row %s: %s\n' "$name" "$(grep 'Socket errors' <<<"$out" | sed 's/^ *//')" >&2
    fi
    ROWS+=("$name")
    RPS[$name]=$(printf '%.1f' "$rps")
    P50[$name]=$p50
    P99[$name]=$p99
    BASE[$name]=$baseline
    CPU[$name]=$(cpu_us "$t0" "$t1" "$gen" "$(awk '/requests in/ { print $1; exit }' <<<"$out")")
    TIERS[$name]=$(tier_us "$tiers0" "$tiers1" "$(awk '/requests in/ { print $1; exit }' <<<"$out")")
    if [[ $baseline == - ]]; then
        RATIO[$name]=-
    else
        RATIO[$name]=$(awk -v a="$rps" -v b="${RPS[$baseline]}" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')
    fi
}

# record_row NAME RPS P50_MS P99_MS BASELINE_NAME [CPU_US]: a row measured by other means.
record_row() {
    local name=$1 rps=$2 baseline=$5
    ROWS+=("$name")
    RPS[$name]=$(printf '%.1f' "$rps")
    P50[$name]=$3
    P99[$name]=$4
    BASE[$name]=$baseline
    CPU[$name]=${6:--}
    if [[ $baseline == - ]]; then
        RATIO[$name]=-
    else
        RATIO[$name]=$(awk -v a="$rps" -v b="${RPS[$baseline]}" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')
    fi
}

# ---- metering: the meter statements (pgbench) and their floor, over the same accounts
# ---- as the HTTP rows. BENCH_ACCOUNTS accounts (default 100), each with one key
# ---- "kb-bench-<n, 40 digits>", project tier, limits lifted by overrides.

BENCH_ACCOUNTS=${BENCH_ACCOUNTS:-100}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
declare -A ROUNDS

bench_key() {
    printf 'kb-bench-%040d' "$1"
}

# The accounts, bench_keys (n -> key hash, user id, key id) and bench_floor: a copy of
# billing_accounts with its columns, defaults, checks, indexes, foreign keys and
# fillfactor, holding the same rows. Account n's user id and key id are made from n
# (bench_id), so a pgbench script passes them as a worker does, as values, without a
# lookup of its own in the statement it measures.
setup_bench_accounts() {
    # The ids as bench_id makes them, of g (the account's number) and of the number in
    # the user's email (psql puts the text of :user_id and :key_id in place).
    psql "$KB_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -v n="$BENCH_ACCOUNTS" \
        -v user_id="$(bench_id user g)" \
        -v key_id="$(bench_id key "split_part(split_part(u.email, '@', 1), '-', 2)::int")" <<'SQL' >/dev/null
SET client_min_messages = warning;
WITH u AS (
    INSERT INTO users (id, email, password_hash)
    SELECT :user_id, 'bench-' || g || '@example.test', 'x' FROM generate_series(1, :n) g
    ON CONFLICT (email) DO UPDATE SET email = excluded.email
    RETURNING id, email)
, k AS (
    INSERT INTO api_keys (id, user_id, key_hash, key_prefix, name)
    SELECT :key_id, u.id, encode(sha256(convert_to('kb-bench-' || lpad(split_part(split_part(u.email, '@', 1), '-', 2), 40, '0'), 'UTF8')), 'hex'),
           'kb-benc', 'bench'
    FROM u
    ON CONFLICT (key_hash) DO NOTHING)
INSERT INTO billing_accounts (user_id, tier, credits_total, credits_override, rpm_override)
SELECT id, 'project', 2000000000, 2000000000, 2000000000 FROM u
ON CONFLICT (user_id) DO UPDATE SET credits_used = 0, credits_total = 2000000000,
    credits_override = 2000000000, rpm_override = 2000000000;
DROP TABLE IF EXISTS bench_keys, bench_floor;
CREATE TABLE bench_keys AS
SELECT split_part(split_part(u.email, '@', 1), '-', 2)::int AS n, k.key_hash, k.user_id, k.id AS key_id
  FROM users u JOIN api_keys k ON k.user_id = u.id
 WHERE u.email LIKE 'bench-%@example.test' AND k.key_prefix = 'kb-benc';
ALTER TABLE bench_keys ADD PRIMARY KEY (n);
CREATE TABLE bench_floor (LIKE billing_accounts INCLUDING ALL);
ALTER TABLE bench_floor
    ADD FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    ADD FOREIGN KEY (tier) REFERENCES tiers (name);
INSERT INTO bench_floor SELECT ba.* FROM billing_accounts ba JOIN bench_keys b ON b.user_id = ba.user_id;
ANALYZE bench_keys;
ANALYZE bench_floor;
ANALYZE billing_accounts;
SQL
    local bad
    bad=$(psql "$KB_DATABASE_URL" -qAt -c "SELECT count(*) FROM bench_keys WHERE user_id <> $(bench_id user n) OR key_id <> $(bench_id key n)")
    [[ $bad == 0 ]] || die "bench accounts: $bad ids not made from their number (an older data set?)"
    # Same storage parameters (fillfactor) as the table it copies.
    local opts
    opts=$(psql "$KB_DATABASE_URL" -qAt -c "SELECT array_to_string(reloptions, ', ') FROM pg_class WHERE relname = 'billing_accounts'")
    if [[ -n $opts ]]; then
        psql "$KB_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -c "ALTER TABLE bench_floor SET ($opts)" >/dev/null
    fi
}

# pgbench_script NAME FILE N: the pgbench script of row NAME over keys 1..N.
#   floor: the bare UPDATE of one account row;
#   meter: the workers' meter statement (t/bench/meter-sql.c prints it; a worker runs it for
#          a key it has seen), then its slow path when it charged nothing, as a worker does.
# Each picks a key at random per transaction. The ids go in as the expression bench_id
# prints (a cast of text made from :n, as a worker's parameter is a cast of text), the
# same in both; the slow path, once a minute per key, reads the key's hash from bench_keys.
bench_id() {
    local part=8000
    [[ $1 == key ]] && part=9000
    printf "('00000000-0000-4000-%s-' || lpad(%s::text, 12, '0'))::uuid" "$part" "$2"
}
sub() {
    printf '(SELECT %s FROM bench_keys WHERE n = :n)' "$1"
}
pgbench_script() {
    local name=$1 file=$2 n=$3
    # The server's life, which a worker passes to the meter statement as a parameter.
    BENCH_LIFE=$(psql "$KB_DATABASE_URL" -qAt -c 'SELECT kb_incarnation()')
    # For -hosts: a host holding its lease (app_hosts), as the pool's is, for the rows in
    # meter_inflight. pgbench_row takes it away after the row: while it is there the pool
    # is not alone, and its charges write rows too (KB_HOST_ROWS=auto).
    [[ $name != *-hosts* ]] || BENCH_HOST_LIFE=$(psql "$KB_DATABASE_URL" -qAt -c "INSERT INTO app_hosts (host_id, life, expires_at) VALUES ('bench-host', gen_random_uuid(), now() + interval '1 day') ON CONFLICT (host_id) DO UPDATE SET expires_at = excluded.expires_at RETURNING life" | head -n1)
    {
        printf '\\set n random(1, %s)\n' "$n"
        case $name in
        floor*)
            printf 'UPDATE bench_floor SET credits_used = credits_used + 1 WHERE user_id = %s AND credits_used + 1 <= credits_total RETURNING credits_used, credits_total;\n' "$(bench_id user :n)"
            ;;
        meter-sql-chain*)
            # The one-round-trip charge as a worker's session runs it (migration 0028): the
            # transaction begun ahead learns its id, then the charge, then the commit, in
            # one pipeline (one round trip, one implicit transaction). Every account's fast
            # window is open for the row (chain_window), so the statement always charges:
            # pgbench cannot take the KB001 a closed window raises.
            printf '\\startpipeline\nSELECT pg_current_xact_id();\n'
            "$TMP/meter-sql" chain | tr '\n' ' ' | sed -e "s#\\\$1#$(bench_id user :n)#g; s#\\\$2#$(bench_id key :n)#g; s#\\\$3#1#g; s#\\\$4#'/markets/{ticker}'#g; s#\\\$5#'req_bench000000'#g; s#\\\$6#'$BENCH_LIFE'#g; s#\\\$7#'$BENCH_CYCLE'#g; s#\\\$8#'$BENCH_DAY'#g"
            printf ';\n\\endpipeline\n'
            ;;
        meter*)
            # For -hosts the fast statement writes the charge's meter_inflight row ($7..$9:
            # the host, the journal entry, the pool's life; NULL otherwise: no row, as a host
            # alone runs it). After the slow path the worker sends the row's statement in
            # the commit's round trip (here on its own), and before the answer's last write
            # the answered mark.
            local host=NULL slot=NULL life=NULL fast=fast
            if [[ $name == *-hosts* ]]; then
                host="'bench-host'" slot=:client_id life="'$BENCH_HOST_LIFE'" fast=fast-row
            fi
            printf '\\set xid 0\n'
            "$TMP/meter-sql" "$fast" | tr '\n' ' ' | sed -e "s#\\\$1#$(bench_id user :n)#g; s#\\\$2#$(bench_id key :n)#g; s#\\\$3#1#g; s#\\\$4#'/markets/{ticker}'#g; s#\\\$5#'req_bench000000'#g; s#\\\$6#'$BENCH_LIFE'#g; s#\\\$7#$host#g; s#\\\$8#$slot#g; s#\\\$9#$life#g"
            printf '\\aset\n\\if :xid = 0\n'
            "$TMP/meter-sql" slow | tr '\n' ' ' | sed -e "s|\\\$1|$(sub key_hash)|g; s|\\\$2|1|g; s|\\\$3|'/markets/{ticker}'|g; s|\\\$4|'req_bench000000'|g"
            printf '\n\\aset\n'
            if [[ $name == *-hosts* ]]; then
                "$TMP/meter-sql" inflight | tr '\n' ' ' | sed -e "s|\\\$10|:cost|g; s|\\\$11|'/markets/{ticker}'|g; s|\\\$12|:cycle_start|g; s|\\\$13|:day|g; s|\\\$14|NULL|g; s|\\\$1|'bench-host'|g; s|\\\$2|:client_id|g; s|\\\$3|'$BENCH_HOST_LIFE'|g; s|\\\$4|'req_bench000000'|g; s|\\\$5|:xid|g; s|\\\$6|:token|g; s|\\\$7|:seq|g; s|\\\$8|:user_id|g; s|\\\$9|:key_id|g"
                printf ';\n'
            fi
            printf '\\endif\n'
            if [[ $name == *-hosts* ]]; then
                "$TMP/meter-sql" answered | tr '\n' ' ' | sed -e "s|\\\$1|'bench-host'|g; s|\\\$2|'$BENCH_HOST_LIFE'|g; s|\\\$3|:client_id|g; s|\\\$4|'req_bench000000'|g"
                printf ';\n'
            fi
            ;;
        esac
    } >"$file"
}

# pgbench_row NAME BASELINE_NAME N: pgbench of NAME's script (pgbench_script) with the
# HTTP rows' clients and threads, prepared statements; cpu_us from Postgres and pgbench.
pgbench_row() {
    local name=$1 baseline=$2 n=$3 dir=$TMP/pgbench-$1 out tps p50 p99 t0 t1 gen nb pm count
    mkdir -p "$dir"
    pgbench_script "$name" "$dir/script.sql" "$n"
    printf 'bench: %-12s pgbench over %s keys (%ss)\n' "$name" "$n" "$DURATION" >&2
    pm=$(head -n1 "$KB_PGDATA/postmaster.pid")
    nb=$(pgrep -P "$pm" | wc -l)
    t0=$(stack_ticks)
    gen=$( { TIMEFORMAT='%U %S'; time (cd "$dir" && "$KB_PG_BIN/pgbench" -n -M prepared -c "$CONNECTIONS" -j "$THREADS" \
        -T "$DURATION" -l --log-prefix=tx -f script.sql "$KB_DATABASE_URL" >"$dir/out" 2>&1); } 2>&1 | awk 'END { print $1 + $2 }') ||
        die "row '$name': pgbench failed:"$'\n'"$(cat "$dir/out")"
    wait_until 5 pg_settled "$nb" || true
    t1=$(stack_ticks)
    out=$(cat "$dir/out")
    grep -q '^tps = ' <<<"$out" || die "row '$name': pgbench failed:"$'\n'"$out"
    tps=$(awk '/^tps = / { print $3; exit }' <<<"$out")
    count=$(awk '/number of transactions actually processed/ { split($NF, a, "/"); print a[1]; exit }' <<<"$out")
    read -r p50 p99 < <(cat "$dir"/tx.* | awk '{ print $3 }' | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.3f %.3f\n", v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000 }')
    record_row "$name" "$tps" "$p50" "$p99" "$baseline" "$(cpu_us "$t0" "$t1" "$gen" "$count")"
}

# median_of NAME BASELINE ROUND...: NAME recorded as the one of the ROUND rows (already run)
# with the median rps, against BASELINE; the rounds leave the table, their rps stay in
# ROUNDS[NAME] for the verdict lines.
median_of() {
    local name=$1 baseline=$2 pick r kept=()
    shift 2
    pick=$(for r in "$@"; do printf '%s %s\n' "${RPS[$r]}" "$r"; done | sort -n |
        awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }')
    record_row "$name" "${RPS[$pick]}" "${P50[$pick]}" "${P99[$pick]}" "$baseline" "${CPU[$pick]}"
    TIERS[$name]=${TIERS[$pick]:-}
    ROUNDS[$name]=$(for r in "$@"; do printf '%.0f ' "${RPS[$r]}"; done)
    for r in "${ROWS[@]}"; do
        [[ " $* " == *" $r "* ]] || kept+=("$r")
    done
    ROWS=("${kept[@]}")
}

# meter_rounds: the floor and the meter statements BENCH_ROUNDS times (default 3),
# interleaved (floor, meter-sql, meter-sql-hosts, floor, ...), each row's figure its
# median round. On a shared 2-core VM the machine's speed drifts by 10-20 % within a
# minute (the same pair back to back gave 0.73 and 0.85), so one round of each, a few
# seconds apart, mostly measures the drift; interleaving gives every row the same mix.
meter_rounds() {
    local r
    local -a f=() m=() c=() h=()
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        pgbench_row "floor~$r" - "$BENCH_ACCOUNTS"
        pgbench_row "meter-sql~$r" "floor~$r" "$BENCH_ACCOUNTS"
        chain_window open
        pgbench_row "meter-sql-chain~$r" "floor~$r" "$BENCH_ACCOUNTS"
        chain_window close
        pgbench_row "meter-sql-hosts~$r" "floor~$r" "$BENCH_ACCOUNTS"
        f+=("floor~$r") m+=("meter-sql~$r") c+=("meter-sql-chain~$r") h+=("meter-sql-hosts~$r")
    done
    median_of floor - "${f[@]}"
    median_of meter-sql floor "${m[@]}"
    median_of meter-sql-chain floor "${c[@]}"
    median_of meter-sql-hosts floor "${h[@]}"
    bench_host_gone
}

# chain_window open|close: every bench account's fast window opened for the next 10
# minutes (after meter-sql's charges set its cycle, day, key, route and the server's life),
# with BENCH_CYCLE and BENCH_DAY, the cycle and day they all share, for the
# meter-sql-chain row; or closed again, so the next rows start as the workers do.
chain_window() {
    local users="user_id IN (SELECT user_id FROM bench_keys)"
    if [[ $1 == close ]]; then
        psql "$KB_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 \
            -c "UPDATE billing_accounts SET fast_from = NULL, fast_until = NULL WHERE $users" >/dev/null
        return
    fi
    local shared
    shared=$(psql "$KB_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -F ' ' \
        -c "UPDATE billing_accounts SET fast_from = now() - interval '1 minute', fast_until = now() + interval '10 minutes' WHERE $users AND usage_key IS NOT NULL" \
        -c "SELECT DISTINCT billing_cycle_start, usage_day FROM billing_accounts WHERE $users")
    [[ $(wc -l <<<"$shared") == 1 ]] || die "bench accounts do not share one cycle and day: $shared"
    BENCH_CYCLE=$(cut -d' ' -f1-2 <<<"$shared")
    BENCH_DAY=$(cut -d' ' -f3 <<<"$shared")
}

# The pool's last word on other hosts (app/fcgi/keeper.c logs each change) is that it is
# alone, or it never saw one.
pool_alone() {
    local last
    last=$(grep -E 'another host shares the database|no other host holds a lease' "$TMP/app.log" | tail -n1)
    [[ -z $last || $last == *'no other host holds a lease'* ]]
}

# bench_host_gone: the -hosts rows' lease and rows removed, and the pool alone again, so the
# HTTP rows measure a host alone (the default) and not one writing meter_inflight rows.
bench_host_gone() {
    psql "$KB_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 \
        -c "DELETE FROM meter_inflight WHERE host_id = 'bench-host'" \
        -c "DELETE FROM app_hosts WHERE host_id = 'bench-host'" >/dev/null
    wait_until 30 pool_alone || die "the pool still counts the benchmark's host after 30 s"
}

# The metering targets, and CPU per request next to the floor's.
metered_verdicts() {
    printf '\nmeter-sql / floor = %s, in one round trip with its commit (meter-sql-chain) %s (target >= 0.8; several hosts, meter-sql-hosts: %s); markets-metered / floor = %s (target >= 0.3); markets-half-load p99 = %s ms (target <= 5)\n' \
        "${RATIO[meter-sql]}" "${RATIO[meter-sql-chain]}" "${RATIO[meter-sql-hosts]}" "${RATIO[markets-metered]}" "${P99[markets-half-load]}"
    printf 'CPU us per request, all processes: floor %s, meter-sql %s, meter-sql-chain %s, markets-metered %s (KB_WORKERS=%s)\n' \
        "${CPU[floor]}" "${CPU[meter-sql]}" "${CPU[meter-sql-chain]}" "${CPU[markets-metered]}" "$KB_WORKERS"
    printf 'rounds (rps, median taken): floor %s| meter-sql %s| meter-sql-chain %s| meter-sql-hosts %s| markets-metered %s\n' \
        "${ROUNDS[floor]:-}" "${ROUNDS[meter-sql]:-}" "${ROUNDS[meter-sql-chain]:-}" "${ROUNDS[meter-sql-hosts]:-}" \
        "${ROUNDS[markets-metered]:-}"
}

print_table() {
    local name
    printf '\n%-20s %10s %9s %9s  %-16s %6s %8s  %s\n' name rps p50_ms p99_ms baseline ratio cpu_us \
        'nginx/pool/pg_us'
    for name in "${ROWS[@]}"; do
        printf '%-20s %10s %9s %9s  %-16s %6s %8s  %s\n' "$name" "${RPS[$name]}" "${P50[$name]}" \
            "${P99[$name]}" "${BASE[$name]}" "${RATIO[$name]}" "${CPU[$name]:--}" "${TIERS[$name]:--}"
    done
}

write_json() {
    local name sep='' base ratio cpu file=$OUT_DIR/latest.json
    mkdir -p "$OUT_DIR"
    {
        printf '['
        for name in "${ROWS[@]}"; do
            base=null
            ratio=null
            if [[ ${BASE[$name]} != - ]]; then
                base="\"${BASE[$name]}\""
                ratio=${RATIO[$name]}
            fi
            cpu=${CPU[$name]:--}
            [[ $cpu == - ]] && cpu=null
            printf '%s\n  {"name":"%s","rps":%s,"p50_ms":%s,"p99_ms":%s,"baseline":%s,"ratio":%s,"cpu_us":%s}' \
                "$sep" "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" "$base" "$ratio" "$cpu"
            sep=,
        done
        printf '\n]\n'
    } >"$file.tmp"
    mv -f "$file.tmp" "$file"
    printf '\nwritten %s\n' "$file"
}

# ---- setup ----------------------------------------------------------------------

command -v wrk >/dev/null || die "wrk is not installed"
for b in kalshibook-fcgi kbctl; do
    [[ -x $KB_BIN_DIR/$b ]] || die "$KB_BIN_DIR/$b not found: build the release binaries first (make)"
done

TMP=$(mktemp -d /tmp/kb-bench.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck disable=SC2046  # pkg-config's flags are meant to split
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o "$TMP/hello-fcgi" \
    "$REPO/t/bench/hello-fcgi.c" $(pkg-config --cflags --libs fcgi) ||
    die "cannot build hello-fcgi"
# The workers' meter statements, printed from the library they are compiled into.
[[ -f $REPO/lib/libkb.a ]] || die "$REPO/lib/libkb.a not found: build the release library first (make)"
# shellcheck disable=SC2046  # pkg-config's flags are meant to split
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -I"$REPO/lib" -o "$TMP/meter-sql" \
    "$REPO/t/bench/meter-sql.c" "$REPO/lib/libkb.a" \
    $(pkg-config --cflags --libs libpq libcurl libcjson libsodium openssl) ||
    die "cannot build meter-sql"

cat >"$TMP/extra.conf" <<EOF
# Benchmark only: the hello-fcgi baseline behind the same nginx.
location = /__hello {
    fastcgi_pass unix:$TMP/hello.sock;
    include snippets/kalshibook-fastcgi.conf;
}
EOF

# Same shape as the app's pool: as many workers (KB_WORKERS). Own session, so a
# Ctrl-C reaches only this script, whose trap stops it.
setsid "$TMP/hello-fcgi" "$TMP/hello.sock" "$KB_WORKERS" </dev/null 2>>"$TMP/hello.log" &
HELLO_PID=$!

KB_NGINX_EXTRA_CONF=$TMP/extra.conf "$STACK" start "$TMP"
# shellcheck disable=SC1091  # written by t/stack.sh start
. "$TMP/run.env"

# shellcheck source=t/lib/wait.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/wait.sh"
hello_ok() {
    [[ $(curl -s -o /dev/null -w '%{http_code}' --cacert "$KB_CA_CERT" "$KB_BASE_URL/__hello") == 200 ]]
}
# Settled: answering, or hello-fcgi is gone (no point waiting on).
hello_settled() {
    hello_ok || pid_gone "$HELLO_PID"
}
wait_until 10 hello_settled || die "GET /__hello never answered 200"
pid_gone "$HELLO_PID" && die "hello-fcgi exited: $(tail -n 5 "$TMP/hello.log")"

printf 'bench: %s cores, wrk -t%s -c%s, %ss per row, binaries from %s, KB_WORKERS=%s\n' \
    "$(nproc)" "$THREADS" "$CONNECTIONS" "$DURATION" "$KB_BIN_DIR" "$KB_WORKERS" >&2

# import_market DELTAS_PER_HOUR NAME: one generated market, BENCH_TICKER, with a
# day of deltas at that rate since its only earlier snapshot (the next one is
# after the instants the rows ask for), imported into the stack.
# With a third argument "fp": the market is KXRAINNYCM-26JAN-T2 instead, tapered_deci_cent,
# written in Kalshi's 2026 fixed-point form.
export BENCH_TICKER=KXBTCD-26JAN15-T94000
import_market() {
    export KB_DATABASE_URL KB_JWT_SECRET # kbctl reads them
    local markets=(--markets 1 --fp-markets 0)
    [[ ${3:-} != fp ]] || markets=(--markets 0 --fp-markets 1)
    "$KB_BIN_DIR/kbctl" demo-data "${markets[@]}" --days 1 --snapshot-minutes 1440 \
        --deltas-per-hour "$1" --trades-per-hour 0 --end 2026-03-02T00:00:00Z \
        --out "$TMP/$2.jsonl" || die "demo-data for the $2 rows failed"
    "$KB_BIN_DIR/kbctl" import --quiet "$TMP/$2.jsonl" || die "$2 data import failed"
}

# metered_rows HOT: the whole metered request (nginx -> worker -> meter ->
# data query) over the same accounts as the floor (ratio to it: target >= 0.3),
# the hot account alone when HOT is "yes", and the same mix paced at half the
# measured rate (target p99 <= 5 ms).
metered_rows() {
    local auth half_delay r rounds=()
    auth="Authorization: Bearer $(bench_key 1)"
    for ((r = 1; r <= BENCH_ROUNDS; r++)); do
        BENCH_KEYS=$BENCH_ACCOUNTS bench_row "markets-metered~$r" "/markets/$BENCH_TICKER" floor \
            -H "$auth" -- -s "$REPO/t/bench/metered.lua"
        rounds+=("markets-metered~$r")
    done
    median_of markets-metered floor "${rounds[@]}"
    if [[ $1 == yes ]]; then
        BENCH_KEYS=1 bench_row markets-metered-hot "/markets/$BENCH_TICKER" meter-sql-hot \
            -H "$auth" -- -s "$REPO/t/bench/metered.lua"
    fi
    half_delay=$(awk -v r="${RPS[markets-metered]}" -v c="$CONNECTIONS" 'BEGIN { printf "%d", (r > 0) ? 2000 * c / r : 100 }')
    BENCH_KEYS=$BENCH_ACCOUNTS BENCH_DELAY_MS=$half_delay bench_row markets-half-load \
        "/markets/$BENCH_TICKER" markets-metered -H "$auth" -- -s "$REPO/t/bench/metered.lua"
}

# pool_ready N: /health answers and the pool has N workers.
pool_ready() {
    [[ $(curl -s -o /dev/null -w '%{http_code}' --cacert "$KB_CA_CERT" "$KB_BASE_URL/health") == 200 ]] &&
        (($(pgrep -P "$KB_FCGI_PID" | wc -l) >= $1))
}

# workers_sweep: markets-metered again with the pool restarted with each worker count of
# BENCH_WORKERS_SWEEP (ratio to the floor), then the pool as it was.
workers_sweep() {
    local n auth keep=$KB_WORKERS
    [[ -n ${BENCH_WORKERS_SWEEP:-} ]] || return 0
    auth="Authorization: Bearer $(bench_key 1)"
    for n in $BENCH_WORKERS_SWEEP; do
        pool_restart "$n"
        BENCH_KEYS=$BENCH_ACCOUNTS bench_row "markets-metered-w$n" "/markets/$BENCH_TICKER" floor \
            -H "$auth" -- -s "$REPO/t/bench/metered.lua"
    done
    pool_restart "$keep"
}

# pool_restart N: the kalshibook-fcgi pool again, with N workers.
pool_restart() {
    "$STACK" app-stop "$TMP" >/dev/null 2>&1
    KB_WORKERS=$1 "$STACK" app-start "$TMP" >/dev/null 2>&1 || die "pool with $1 workers did not start"
    KB_FCGI_PID=$(cat "$TMP/fcgi.pid")
    wait_until 30 pool_ready "$1" || die "pool with $1 workers not ready"
}

# collector_rows: the live collector's rows (t/bench/collector.sh) against this stack, with
# an API key of its own when the bench account does not exist yet.
collector_rows() {
    local key=${BENCH_KEY:-}
    if [[ -z $key ]]; then
        key="kb-$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
        "$KB_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$KB_DATABASE_URL" \
            -v hash="$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)" -v prefix="${key:0:7}" <<'SQL' ||
WITH u AS (INSERT INTO users (email, password_hash) VALUES ('bench-collector@kalshibook.local', 'x')
           RETURNING id),
     k AS (INSERT INTO api_keys (user_id, key_hash, key_prefix) SELECT id, :'hash', :'prefix' FROM u)
INSERT INTO billing_accounts (user_id, tier, credits_total, credits_override, rpm_override)
SELECT id, 'project', 2000000000, 2000000000, 1000000000 FROM u;
SQL
            die "cannot create the collector bench account"
    fi
    while read -r tag name rps p50 p99; do
        [[ $tag == ROW ]] && record_row "$name" "$rps" "$p50" "$p99" -
    done < <(KB_DATABASE_URL=$KB_DATABASE_URL KB_BASE_URL=$KB_BASE_URL KB_CA_CERT=$KB_CA_CERT \
        KB_PG_BIN=$KB_PG_BIN BENCH_KEY=$key BENCH_BIN_DIR=$KB_BIN_DIR \
        "$REPO/t/bench/collector.sh" "$REPO" || echo "FAILED")
    [[ -n ${RPS[collector-resnapshot]:-} ]] || die "the collector rows failed (above)"
}

collector_verdicts() {
    [[ -n ${RPS[collector-ingest]:-} ]] || return 0
    printf 'collector-ingest = %s messages/s stored (target >= 50000); collector-visible p99 = %s ms (target <= 1000); collector-resnapshot p99 = %s ms (target <= 2000 + 1 per market); RSS in var/bench/collector.json\n' \
        "${RPS[collector-ingest]}" "${P99[collector-visible]}" "${P99[collector-resnapshot]}"
}

# ---- the market catalogue at Kalshi's scale (issue 23) ----------------------------------

# worker_kb PID FIELD: a /proc/PID/status size field (VmRSS, VmHWM) in KiB, 0 if gone.
worker_kb() {
    awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# catalog_rows: 100,000 markets (t/bench/catalog.sql) and an account of their own, then the
# markets-100k-page and markets-100k-whole rows, the worker RSS and gzip checks.
CATALOG_RSS_TARGET_KB=8192
catalog_rows() {
    local key auth i t w grow size enc gz runs=${BENCH_WHOLE_RUNS:-5}
    local -a times=() workers=()
    local -A before=()
    "$KB_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -v n=100000 "$KB_DATABASE_URL" \
        -f "$REPO/t/bench/catalog.sql" || die "cannot make the 100,000 markets"
    key="kb-$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
    "$KB_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$KB_DATABASE_URL" \
        -v hash="$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)" -v prefix="${key:0:7}" <<'SQL' ||
WITH u AS (INSERT INTO users (email, password_hash) VALUES ('catalog@kalshibook.local', 'x')
           ON CONFLICT (email) DO UPDATE SET email = excluded.email RETURNING id),
     k AS (INSERT INTO api_keys (user_id, key_hash, key_prefix) SELECT id, :'hash', :'prefix' FROM u)
INSERT INTO billing_accounts (user_id, tier, credits_total, credits_override, rpm_override)
SELECT id, 'project', 2000000000, 2000000000, 1000000000 FROM u
ON CONFLICT (user_id) DO NOTHING;
SQL
        die "cannot create the catalogue account"
    auth="Authorization: Bearer $key"
    CONNECTIONS=2 bench_row markets-100k-page '/markets?limit=100' health -H "$auth"

    # The whole list, one request at a time: before each, every worker's RSS and its peak
    # reset (clear_refs 5); after it, the largest peak over the RSS before is the growth of
    # the worker that served it.
    printf 'bench: %-12s %s (%s runs)\n' markets-100k-whole /markets "$runs" >&2
    CATALOG_RSS_KB=0
    for ((i = 0; i < runs; i++)); do
        mapfile -t workers < <(pgrep -P "$KB_FCGI_PID")
        for w in "${workers[@]}"; do
            before[$w]=$(worker_kb "$w" VmRSS)
            echo 5 >"/proc/$w/clear_refs" 2>/dev/null || true
        done
        read -r t size < <(curl -s -o /dev/null -w '%{time_total} %{size_download}\n' \
            --cacert "$KB_CA_CERT" -H "$auth" "$KB_BASE_URL/markets") || die "whole list failed"
        times+=("$t")
        for w in "${workers[@]}"; do
            grow=$(($(worker_kb "$w" VmHWM) - ${before[$w]:-0}))
            ((grow > CATALOG_RSS_KB)) && CATALOG_RSS_KB=$grow
        done
    done
    CATALOG_WHOLE_BYTES=$size
    local p50 p99
    read -r p50 p99 < <(printf '%s\n' "${times[@]}" | sort -n |
        awk '{ v[NR] = $1 * 1000 } END { printf "%.3f %.3f\n", v[int((NR + 1) / 2)], v[NR] }')
    record_row markets-100k-whole "$(awk -v p="$p50" 'BEGIN { printf "%.2f", 1000 / p }')" \
        "$p50" "$p99" -
    # gzip on the wire: what a client asking for it gets.
    gz=$(curl -s -o /dev/null -D "$TMP/catalog-gz.headers" -w '%{size_download}' \
        --cacert "$KB_CA_CERT" -H "$auth" -H 'Accept-Encoding: gzip' "$KB_BASE_URL/markets") ||
        die "whole list with gzip failed"
    enc=$(awk 'tolower($1) == "content-encoding:" { print $2 }' "$TMP/catalog-gz.headers" | tr -d '\r')
    CATALOG_GZIP=${enc:-none}
    CATALOG_GZIP_BYTES=$gz
}

catalog_verdicts() {
    local rss_ok gzip_ok
    rss_ok=$( ((CATALOG_RSS_KB <= CATALOG_RSS_TARGET_KB)) && echo met || echo MISSED)
    gzip_ok=$([[ $CATALOG_GZIP == gzip ]] && echo met || echo MISSED)
    printf 'markets-100k-page p50 = %s ms (target <= 10); markets-100k-whole p50 = %s ms for %s bytes\n' \
        "${P50[markets-100k-page]}" "${P50[markets-100k-whole]}" "$CATALOG_WHOLE_BYTES"
    printf 'whole list: worker peak RSS %s KiB over its RSS before (target <= %s): %s; gzip on the wire: %s, %s -> %s bytes: %s\n' \
        "$CATALOG_RSS_KB" "$CATALOG_RSS_TARGET_KB" "$rss_ok" "$CATALOG_GZIP" \
        "$CATALOG_WHOLE_BYTES" "$CATALOG_GZIP_BYTES" "$gzip_ok"
}

# ---- rows (add new ones here) ------------------------------------------------------

bench_row static /llms.txt -
bench_row hello-fcgi /__hello static
bench_row health /health hello-fcgi

# BENCH_QUICK=collector: the three rows above and the collector's.
if [[ ${BENCH_QUICK:-0} == collector ]]; then
    collector_rows
    print_table
    collector_verdicts
    write_json
    exit 0
fi
# BENCH_QUICK=1: only the three rows above (the foundation's ratio).
if [[ ${BENCH_QUICK:-0} == 1 ]]; then
    print_table
    write_json
    exit 0
fi
# BENCH_QUICK=catalog: the rows above and the market catalogue rows.
if [[ ${BENCH_QUICK:-0} == catalog ]]; then
    catalog_rows
    print_table
    catalog_verdicts
    write_json
    exit 0
fi

setup_bench_accounts
# BENCH_QUICK=tiers: the sizing rows of docs/ops.md only (CPU per request per tier): health
# (above), a metered by-id request, /orderbook and /deltas on one market.
if [[ ${BENCH_QUICK:-0} == tiers ]]; then
    import_market 4200 orderbook
    BENCH_KEYS=$BENCH_ACCOUNTS bench_row markets-metered "/markets/$BENCH_TICKER" health \
        -H "Authorization: Bearer $(bench_key 1)" -- -s "$REPO/t/bench/metered.lua"
    AUTH="Authorization: Bearer $(bench_key 1)"
    BENCH_BODY='{"market_ticker":"KXBTCD-26JAN15-T94000","timestamp":"2026-03-01T23:59:00Z"}' \
        bench_row orderbook-100k /orderbook health -s "$REPO/t/bench/post.lua" -H "$AUTH"
    BENCH_BODY='{"market_ticker":"KXBTCD-26JAN15-T94000","start_time":"2026-03-01T06:00:00Z","end_time":"2026-03-01T23:00:00Z","limit":1000}' \
        bench_row deltas-1000 /deltas health -s "$REPO/t/bench/post.lua" -H "$AUTH"
    print_table
    write_json
    exit 0
fi
meter_rounds
# BENCH_QUICK=metered: the rows above, the floor, meter-sql, and the metered HTTP rows only.
if [[ ${BENCH_QUICK:-0} == metered ]]; then
    import_market 100 market
    metered_rows no
    workers_sweep
    print_table
    metered_verdicts
    write_json
    exit 0
fi
pgbench_row floor-hot - 1
pgbench_row meter-sql-hot floor-hot 1
# A user and a token for the auth rows (signup is one argon2 run).
# shellcheck disable=SC2089,SC2090  # JSON text for login.lua, never split into words
export BENCH_LOGIN_BODY='{"email":"bench@example.test","password":"bench password 1"}'
curl -s -o /dev/null --cacert "$KB_CA_CERT" -H 'Content-Type: application/json' \
    -d "$BENCH_LOGIN_BODY" "$KB_BASE_URL/auth/signup" || true
TOKEN=$(curl -s --cacert "$KB_CA_CERT" -H 'Content-Type: application/json' \
    -d "$BENCH_LOGIN_BODY" "$KB_BASE_URL/auth/login" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[[ -n $TOKEN ]] || die "cannot log the bench user in"
bench_row keys /keys health -H "Authorization: Bearer $TOKEN"
BENCH_CURL_EXTRA=(-H 'Content-Type: application/json' -d "$BENCH_LOGIN_BODY")
bench_row login /auth/login health -- -s "$REPO/t/bench/login.lua" -t1 -c1
BENCH_CURL_EXTRA=()
# Market data. One market with ~100k deltas since its only earlier snapshot
# (the next snapshot is after the instant asked for), and a metered account
# whose limits are lifted (credits_override / rpm_override).
BENCH_KEY="kb-$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
"$KB_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$KB_DATABASE_URL" \
    -v hash="$(printf '%s' "$BENCH_KEY" | sha256sum | cut -d' ' -f1)" -v prefix="${BENCH_KEY:0:7}" <<'SQL' ||
WITH u AS (INSERT INTO users (email, password_hash) VALUES ('bench@kalshibook.local', 'x')
           RETURNING id),
     k AS (INSERT INTO api_keys (user_id, key_hash, key_prefix) SELECT id, :'hash', :'prefix' FROM u)
INSERT INTO billing_accounts (user_id, tier, credits_total, credits_override, rpm_override)
SELECT id, 'project', 2000000000, 2000000000, 1000000000 FROM u;
SQL
    die "cannot create the bench account"
AUTH="Authorization: Bearer $BENCH_KEY"
import_market 4200 orderbook
# Latency row: two clients (one per core), so p50 is the service time, not queueing.
BENCH_BODY='{"market_ticker":"KXBTCD-26JAN15-T94000","timestamp":"2026-03-01T23:59:00Z"}' \
    CONNECTIONS=2 bench_row orderbook-100k /orderbook health -s "$REPO/t/bench/post.lua" -H "$AUTH"
import_market 4200 orderbook-fp fp
BENCH_BODY='{"market_ticker":"KXRAINNYCM-26JAN-T2","timestamp":"2026-03-01T23:59:00Z"}' \
    CONNECTIONS=2 bench_row orderbook-100k-fp /orderbook health -s "$REPO/t/bench/post.lua" -H "$AUTH"
BENCH_BODY='{"market_ticker":"KXBTCD-26JAN15-T94000","start_time":"2026-03-01T06:00:00Z","end_time":"2026-03-01T23:00:00Z","limit":1000}' \
    bench_row deltas-1000 /deltas health -s "$REPO/t/bench/post.lua" -H "$AUTH"

metered_rows yes
workers_sweep
catalog_rows

# kbctl import throughput from generated files (deltas/s in the rps column): Kalshi's legacy
# integer lines, the same volume in its 2026 fixed-point form, then the legacy file again.
"$KB_BIN_DIR/kbctl" demo-data --markets 4 --fp-markets 0 --days 1 --snapshot-minutes 1440 \
    --deltas-per-hour 10500 --trades-per-hour 0 --end 2026-03-10T00:00:00Z \
    --out "$TMP/import.jsonl" || die "demo-data for the import row failed"
"$KB_BIN_DIR/kbctl" demo-data --markets 0 --fp-markets 4 --days 1 --snapshot-minutes 1440 \
    --deltas-per-hour 10500 --trades-per-hour 0 --end 2026-03-12T00:00:00Z \
    --out "$TMP/import-fp.jsonl" || die "demo-data for the import-fp row failed"
# import_row NAME FILE: one kbctl import of FILE, deltas/s.
import_row() {
    local n t0 t1
    n=$(grep -c '"orderbook_delta"' "$2")
    printf 'bench: %-12s %s deltas from %s\n' "$1" "$n" "$(basename "$2")" >&2
    t0=$(date +%s.%N)
    "$KB_BIN_DIR/kbctl" import --quiet "$2" || die "$1 row failed"
    t1=$(date +%s.%N)
    ROWS+=("$1")
    RPS[$1]=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
    P50[$1]=null
    P99[$1]=null
    BASE[$1]=-
    RATIO[$1]=-
}
import_row import "$TMP/import.jsonl"
import_row import-fp "$TMP/import-fp.jsonl"
# The same file again: every message is stored already, nothing may change.
import_row import-again "$TMP/import.jsonl"

[[ ${BENCH_COLLECTOR:-1} == 1 ]] && collector_rows

# ---- report -------------------------------------------------------------------------

print_table
health_ratio=${RATIO[health]}
verdict=$(awk -v r="$health_ratio" -v t="$HEALTH_TARGET" 'BEGIN { print (r >= t) ? "met" : "MISSED" }')
printf '\nhealth / hello-fcgi = %s (target >= %s): %s\n' "$health_ratio" "$HEALTH_TARGET" "$verdict"
metered_verdicts
printf 'orderbook-100k p50 = %s ms, orderbook-100k-fp p50 = %s ms (target <= 25); deltas-1000 / health = %s\n' \
    "${P50[orderbook-100k]}" "${P50[orderbook-100k-fp]}" "${RATIO[deltas-1000]}"
printf 'import = %s deltas/s, import-fp = %s deltas/s (target >= 200000)\n' \
    "${RPS[import]}" "${RPS[import-fp]}"
collector_verdicts
catalog_verdicts
write_json
if [[ $verdict != met && ${BENCH_ENFORCE:-0} == 1 ]]; then
    exit 1
fi
