# shellcheck shell=bash
# t/lib/demo.sh - `make run`'s demo data set and demo API key (t/stack.sh run, demo).
#
# Sourced by t/stack.sh; uses its DIR, PG_BIN, PGSOCK_DIR, PG_PORT, DB_NAME, DB_USER,
# KB_BIN_DIR, HTTPS_PORT, app_exec and kv_get. Sets DEMO_KEY.

DEMO_KEY=
DEMO_EMAIL=demo@kalshibook.local

demo_psql() {
    "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" \
        -d "$DB_NAME" "$@"
}

# The demo set DIR/demo.loaded says is complete: bump DEMO_SET when kbctl demo-data's
# default set changes (2: with its fixed-point markets), so a run loads it again.
DEMO_SET="2 ${KB_DEMO_ARGS:-}"

demo_psql() {
    "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" \
        -d "$DB_NAME" "$@"
}

# demo_setup: load `kbctl demo-data [$KB_DEMO_ARGS]` until it has finished once: only
# then is DIR/demo.loaded written, so a run stopped while it loads (leaving part of the
# set) loads it again next time, and the idempotent import completes it. Then keep one
# demo API key on a project account. The raw key lives only in DIR/demo.env (mode 600) so
# a second run prints the same key; the database holds its SHA-256.
demo_setup() {
    local key hash
    if [[ $(cat "$DIR/demo.loaded" 2>/dev/null) != "$DEMO_SET" ]]; then
        log "loading the demo data set (kbctl demo-data; a load that was stopped is completed)"
        # shellcheck disable=SC2086  # KB_DEMO_ARGS is a list of options
        (app_exec "$KB_BIN_DIR/kbctl" demo-data ${KB_DEMO_ARGS:-}) >>"$DIR/demo.log" 2>&1 ||
            fail_with_log "$DIR/demo.log" "kbctl demo-data failed"
        printf '%s\n' "$DEMO_SET" >"$DIR/demo.loaded"
    fi
    key=$(kv_get "$DIR/demo.env" KB_DEMO_API_KEY)
    if ! [[ $key =~ ^kb-[A-Za-z0-9_-]{43}$ ]]; then
        key="kb-$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
        (umask 077 && printf 'KB_DEMO_API_KEY=%s\n' "$key" >"$DIR/demo.env")
    fi
    hash=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
    demo_psql -v hash="$hash" -v prefix="${key:0:7}" -v email="$DEMO_EMAIL" \
        >>"$DIR/demo.log" 2>&1 <<'SQL' || fail_with_log "$DIR/demo.log" "cannot create the demo key"
INSERT INTO users (email, password_hash) VALUES (:'email', '!demo-no-login')
    ON CONFLICT (email) DO NOTHING;
INSERT INTO api_keys (user_id, key_hash, key_prefix, name)
    SELECT id, :'hash', :'prefix', 'demo' FROM users WHERE email = :'email'
    ON CONFLICT (key_hash) DO NOTHING;
INSERT INTO billing_accounts (user_id, tier, credits_total)
    SELECT id, 'project', 4000 FROM users WHERE email = :'email'
    ON CONFLICT (user_id) DO NOTHING;
SQL
    DEMO_KEY=$key
}

print_demo_examples() {
    local base="https://127.0.0.1:$HTTPS_PORT" ca="$DIR/tls/cert.pem"
    local auth="Authorization: Bearer $DEMO_KEY" json='Content-Type: application/json'
    cat <<EOF

Demo API key (project account, 4000 credits; also KB_DEMO_API_KEY in $DIR/run.env):
  $DEMO_KEY

Market data (demo set: 22 markets, 2026-01-08 .. 2026-01-15; KXRAINNYCM-26JAN-T2 ticks
in \$0.001 (tapered_deci_cent), KXRAINNYCM-26JAN-T3 trades fractional contracts):
  curl --cacert $ca -H '$auth' $base/markets
  curl --cacert $ca -H '$auth' -H '$json' \\
       -d '{"market_ticker":"KXBTCD-26JAN15-T94000","timestamp":"2026-01-12T15:32:30Z","depth":5}' \\
       $base/orderbook
  curl --cacert $ca -H '$auth' -H '$json' \\
       -d '{"market_ticker":"KXRAINNYCM-26JAN-T2","timestamp":"2026-01-12T15:32:30Z","depth":3}' \\
       $base/orderbook
  curl --cacert $ca -H '$auth' -H '$json' \\
       -d '{"market_ticker":"KXBTCD-26JAN15-T94000","start_time":"2026-01-12T15:00:00Z","end_time":"2026-01-12T15:05:00Z","limit":5}' \\
       $base/deltas
  curl --cacert $ca -H '$auth' -H '$json' \\
       -d '{"market_ticker":"KXRAINNYCM-26JAN-T3","start_time":"2026-01-12T00:00:00Z","end_time":"2026-01-13T00:00:00Z","limit":5}' \\
       $base/trades
  curl --cacert $ca -H '$auth' -H '$json' \\
       -d '{"market_ticker":"KXFED-26JAN-T300","start_time":"2026-01-12T00:00:00Z","end_time":"2026-01-13T00:00:00Z","limit":5}' \\
       $base/trades
  curl --cacert $ca -H '$auth' \\
       '$base/candles/KXBTCD-26JAN15-T94000?start_time=2026-01-12T00:00:00Z&end_time=2026-01-13T00:00:00Z&interval=1h'
  curl --cacert $ca -H '$auth' $base/events/KXFED-26JAN
  curl --cacert $ca -H '$auth' '$base/settlements?event_ticker=KXFED-26JAN'
EOF
}
