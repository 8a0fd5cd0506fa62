# shellcheck shell=bash
# t/lib/stripe.sh - the Stripe stand-in (t/stripe/standin.py) for t/stack.sh.
#
# Sourced by t/stack.sh; uses its DIR, REPO, HTTPS_PORT, HTTP_PORT, PG_PORT,
# START_TIMEOUT_S and env_line.
#
# Started before the app, so the app's DIR/app.env can point STRIPE_API_BASE at
# it; it delivers signed webhooks to https://127.0.0.1:$HTTPS_PORT/billing/webhook.
# Keys and ports are generated once per DIR and remembered in DIR/stripe.env.
# The app.env lines live between the two marker lines below (other tooling
# may add its own lines to app.env).

STRIPE_MARK_BEGIN='# >>> stripe stand-in (stack.sh stripe_app_env)'
STRIPE_MARK_END='# <<< stripe stand-in'
STRIPE_PORT=
STRIPE_KEY=
STRIPE_WHSEC=
STRIPE_WHSEC_OLD=

stripe_pid() {
    local pid
    pid=$(read_pid "$DIR/stripe.pid")
    [[ -n $pid ]] && pid_is "$pid" standin.py && printf '%s\n' "$pid"
    return 0
}

stripe_config() {
    local f=$DIR/stripe.env
    STRIPE_PORT=${KB_STRIPE_PORT:-$(kv_get "$f" KB_STRIPE_PORT)}
    STRIPE_KEY=$(kv_get "$f" STRIPE_SECRET_KEY)
    STRIPE_WHSEC=$(kv_get "$f" STRIPE_WEBHOOK_SECRET)
    STRIPE_WHSEC_OLD=$(kv_get "$f" STRIPE_WEBHOOK_SECRET_OLD)
    [[ -n $STRIPE_PORT ]] || STRIPE_PORT=$(pick_port "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT")
    [[ -n $STRIPE_KEY ]] || STRIPE_KEY=sk_test_standin_$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
    [[ -n $STRIPE_WHSEC ]] || STRIPE_WHSEC=whsec_$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
    # A second, "previous" secret is accepted too, as during a rotation.
    [[ -n $STRIPE_WHSEC_OLD ]] || STRIPE_WHSEC_OLD=whsec_$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
    printf 'KB_STRIPE_PORT=%s\nSTRIPE_SECRET_KEY=%s\nSTRIPE_WEBHOOK_SECRET=%s\nSTRIPE_WEBHOOK_SECRET_OLD=%s\n' \
        "$STRIPE_PORT" "$STRIPE_KEY" "$STRIPE_WHSEC" "$STRIPE_WHSEC_OLD" >"$f.tmp"
    mv -f "$f.tmp" "$f"
}

# stripe_app_env REPORTER: (re)write the stand-in block of DIR/app.env.
stripe_app_env() {
    local f=$DIR/app.env
    (umask 077 && touch "$f")
    sed -i "/^$STRIPE_MARK_BEGIN\$/,/^$STRIPE_MARK_END\$/d" "$f"
    {
        printf '%s\n' "$STRIPE_MARK_BEGIN"
        env_line STRIPE_API_BASE "http://127.0.0.1:$STRIPE_PORT"
        env_line STRIPE_SECRET_KEY "$STRIPE_KEY"
        env_line STRIPE_WEBHOOK_SECRETS "$STRIPE_WHSEC,$STRIPE_WHSEC_OLD"
        env_line STRIPE_PROJECT_PRICE_ID price_standin_project
        env_line STRIPE_PAYG_PRICE_ID price_standin_payg
        env_line KB_APP_URL "https://127.0.0.1:$HTTPS_PORT"
        # The reporter child is on for `run`; tests run it explicitly
        # (kbctl report-usage) and may start the app with KB_USAGE_REPORTER=1.
        # shellcheck disable=SC2016  # expanded when app.env is sourced
        printf 'KB_USAGE_REPORTER=${KB_USAGE_REPORTER:-%s}\n' "$1"
        printf '%s\n' "$STRIPE_MARK_END"
    } >>"$f"
}

# standin_settled PID: the stand-in answers, or PID died (stop waiting).
standin_settled() {
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$STRIPE_PORT/_control/events" ||
        pid_gone "$1"
}

stripe_start() {
    local reporter=${1:-0} pid py
    stripe_config
    stripe_app_env "$reporter"
    pid=$(stripe_pid)
    if [[ -n $pid ]]; then
        log "stripe stand-in already running (pid $pid)"
        return
    fi
    py=$(command -v python3) || die "python3 not found (make deps)"
    setsid "$py" "$REPO/t/stripe/standin.py" --port "$STRIPE_PORT" --api-key "$STRIPE_KEY" \
        --webhook-secret "$STRIPE_WHSEC" \
        --webhook-url "https://127.0.0.1:$HTTPS_PORT/billing/webhook" \
        --cafile "$DIR/tls/cert.pem" </dev/null >>"$DIR/stripe.log" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$DIR/stripe.pid"
    wait_until "$START_TIMEOUT_S" standin_settled "$pid" ||
        fail_with_log "$DIR/stripe.log" "stripe stand-in did not answer"
    pid_alive "$pid" || fail_with_log "$DIR/stripe.log" "stripe stand-in exited during start"
    log "stripe stand-in pid $pid on http://127.0.0.1:$STRIPE_PORT"
}

stripe_stop() {
    local pid
    pid=$(stripe_pid)
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/stripe.pid"
}

stripe_run_env() {
    {
        env_line KB_STRIPE_URL "http://127.0.0.1:$STRIPE_PORT"
        env_line STRIPE_API_BASE "http://127.0.0.1:$STRIPE_PORT"
        env_line STRIPE_SECRET_KEY "$STRIPE_KEY"
        env_line STRIPE_WEBHOOK_SECRET "$STRIPE_WHSEC"
        env_line STRIPE_WEBHOOK_SECRET_OLD "$STRIPE_WHSEC_OLD"
        env_line STRIPE_WEBHOOK_SECRETS "$STRIPE_WHSEC,$STRIPE_WHSEC_OLD"
        env_line STRIPE_PROJECT_PRICE_ID price_standin_project
        env_line STRIPE_PAYG_PRICE_ID price_standin_payg
        # Programs tests start themselves (kbctl, a master) inherit this.
        env_line KB_USAGE_REPORTER "${STRIPE_REPORTER:-0}"
    } >>"$DIR/run.env"
}
