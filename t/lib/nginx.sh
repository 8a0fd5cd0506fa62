# shellcheck shell=bash
# t/lib/nginx.sh - the stack's nginx: nginx/kalshibook.conf.in instantiated into DIR/nginx,
# and `nginx -t` of the production site.
#
# Sourced by t/stack.sh; uses its DIR, REPO, NGINX, HTTPS_PORT, HTTP_PORT, START_TIMEOUT_S.

find_nginx() {
    command -v nginx 2>/dev/null && return
    [[ -x /usr/sbin/nginx ]] && { printf '/usr/sbin/nginx\n'; return; }
    die "nginx not found"
}

nginx_pid() {
    local pid
    pid=$(read_pid "$DIR/nginx.pid")
    [[ -n $pid ]] && pid_is "$pid" nginx && printf '%s\n' "$pid"
    return 0
}

# sed replacement text: escape \, & and the | delimiter.
sed_repl() {
    printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}

nginx_args() {
    printf '%s\n' -p "$DIR/nginx/" -c "$DIR/nginx/nginx.conf" -e "$DIR/nginx-error.log"
}

# Instantiate nginx/kalshibook.conf.in into DIR/nginx/nginx.conf, with the
# shared snippets copied next to it.
nginx_config() {
    local out=$DIR/nginx/nginx.conf user_line='' extra=''
    mkdir -p "$DIR/nginx/snippets" "$DIR/nginx/tmp"
    cp -f "$REPO"/nginx/kalshibook-*.conf "$DIR/nginx/snippets/"
    # Workers must reach the 0660 app socket, owned by whoever started the app:
    # as root that is root. Without root, nginx's workers run as the caller.
    is_root && user_line='user root;'
    if [[ -n ${KB_NGINX_EXTRA_CONF:-} ]]; then
        [[ -r $KB_NGINX_EXTRA_CONF ]] || die "KB_NGINX_EXTRA_CONF '$KB_NGINX_EXTRA_CONF' not readable"
        extra="include $KB_NGINX_EXTRA_CONF;"
    fi
    [[ $REPO =~ ^[A-Za-z0-9._/+,~-]+$ ]] || die "repo path '$REPO' has characters nginx configs cannot hold"
    sed -e "s|@USER_LINE@|$(sed_repl "$user_line")|g" \
        -e "s|@STACK_DIR@|$(sed_repl "$DIR")|g" \
        -e "s|@HTTPS_PORT@|$HTTPS_PORT|g" \
        -e "s|@HTTP_PORT@|$HTTP_PORT|g" \
        -e "s|@TLS_CERT@|$(sed_repl "$DIR/tls/cert.pem")|g" \
        -e "s|@TLS_KEY@|$(sed_repl "$DIR/tls/key.pem")|g" \
        -e "s|@SOCKET@|$(sed_repl "$DIR/fcgi.sock")|g" \
        -e "s|@STATIC_ROOT@|$(sed_repl "$REPO/static")|g" \
        -e "s|@EXTRA_LOCATIONS@|$(sed_repl "$extra")|g" \
        "$REPO/nginx/kalshibook.conf.in" >"$out.tmp"
    if grep -n '^[^#]*@[A-Z_]*@' "$out.tmp" >&2; then
        die "unreplaced placeholders in $out (above)"
    fi
    mv -f "$out.tmp" "$out"
    local -a args
    mapfile -t args < <(nginx_args)
    "$NGINX" -t -q "${args[@]}" >>"$DIR/nginx-error.log" 2>&1 ||
        fail_with_log "$DIR/nginx-error.log" "nginx -t failed for $out"
}

nginx_start() {
    local -a args
    mapfile -t args < <(nginx_args)
    nginx_config
    local pid
    pid=$(nginx_pid)
    if [[ -n $pid ]]; then
        log "nginx already running (pid $pid); reloading its config"
        local old_workers
        old_workers=$(pgrep -P "$pid" || true)
        kill -HUP "$pid" || fail_with_log "$DIR/nginx-error.log" "nginx reload failed"
        # Reload is asynchronous: wait (15 s at most) until the workers with the
        # old config are gone, so whatever follows sees the new one.
        # shellcheck disable=SC2086  # one argument per pid
        wait_until 15 pids_gone $old_workers || true
        return
    fi
    local p
    for p in "$HTTPS_PORT" "$HTTP_PORT"; do
        port_in_use "$p" && die "port $p is already in use (set KB_HTTPS_PORT/KB_HTTP_PORT or remove $DIR/ports.env)"
    done
    rm -f "$DIR/nginx.pid"
    # nginx daemonizes (own session); the master writes DIR/nginx.pid.
    "$NGINX" "${args[@]}" </dev/null 2>>"$DIR/nginx-error.log" ||
        fail_with_log "$DIR/nginx-error.log" "nginx did not start"
    wait_until "$START_TIMEOUT_S" nginx_pid_written ||
        fail_with_log "$DIR/nginx-error.log" "nginx wrote no pid file"
    pid=$(nginx_pid)
    log "nginx pid $pid on https://127.0.0.1:$HTTPS_PORT and http://127.0.0.1:$HTTP_PORT"
}

# nginx_pid_written: the nginx master has written its pid file.
nginx_pid_written() {
    local p
    p=$(nginx_pid) && [[ -n $p ]]
}

nginx_stop() {
    local pid
    pid=$(nginx_pid)
    [[ -n $pid ]] || return 0
    kill -QUIT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 15; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" 5; then
            kill_group_or_pid KILL "$pid"
            wait_gone "$pid" 5 || true
        fi
    fi
    rm -f "$DIR/nginx.pid"
}

# nginx -t on the production site: wrap it in an http{} with the shared
# snippets, a self-signed certificate for the letsencrypt paths and log paths
# in a temp dir.
nginx_test_prod() {
    NGINX=$(find_nginx)
    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $tmp now
    trap "rm -rf -- '$tmp'" EXIT
    mkdir -p "$tmp/snippets" "$tmp/tls" "$tmp/log" "$tmp/tmp"
    cp "$REPO"/nginx/kalshibook-*.conf "$tmp/snippets/"
    make_cert "$tmp/tls/fullchain.pem" "$tmp/tls/privkey.pem"
    cp "$tmp/tls/fullchain.pem" "$tmp/tls/chain.pem"
    sed -e "s|/etc/letsencrypt/live/api.kalshibook.io/|$tmp/tls/|g" \
        -e "s|/var/log/nginx/|$tmp/log/|g" \
        "$REPO/nginx/kalshibook.conf" >"$tmp/kalshibook.conf"
    if grep -nE '/etc/letsencrypt|/var/log/' "$tmp/kalshibook.conf" >&2; then
        die "nginx/kalshibook.conf has paths the test wrapper does not substitute (above)"
    fi
    cat >"$tmp/nginx.conf" <<EOF
pid $tmp/nginx.pid;
error_log $tmp/log/error.log;
events {}
http {
    access_log $tmp/log/access.log;
    client_body_temp_path $tmp/tmp/body;
    fastcgi_temp_path $tmp/tmp/fastcgi;
    proxy_temp_path $tmp/tmp/proxy;
    uwsgi_temp_path $tmp/tmp/uwsgi;
    scgi_temp_path $tmp/tmp/scgi;
    include $tmp/kalshibook.conf;
}
EOF
    "$NGINX" -t -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/log/error.log"
}
