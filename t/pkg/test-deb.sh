#!/usr/bin/env bash
# t/pkg/test-deb.sh - the Debian package: its tree, its units, and its installed layout running.
#
# Builds the .deb with `make deb` (a no-op when build/deb/ already holds one
# newer than every packaged source), unpacks it with dpkg-deb -x into a temp
# dir and checks: files, modes and conffiles; that the packaged static files,
# nginx files and migrations are the repo's; that the example env file names
# every variable `kbctl check-config --list` knows; the maintainer scripts;
# `systemd-analyze verify` and `systemd-analyze security` (exposure <= 2.0)
# on the units; nginx -t on the production site. Then it runs the unpacked
# binaries against the test stack's database: `kbctl migrate` with the
# packaged migrations (must find everything applied, checksums equal), and
# kalshibook-fcgi started as kalshibook.socket starts it (systemd-socket-activate,
# a clean environment from an env file), answering GET /health over FastCGI;
# and the packaged production nginx site in a second nginx in front of it
# (TLS, redirects, ACME path, caching headers, JSON errors, the rate pre-filter).
#
# Needs KB_DATABASE_URL (the stack's, from t/run-tests.sh). Appends
# "passed failed" to $KB_TEST_COUNTS; exits non-zero when a check failed.
# shellcheck disable=SC2015,SC2016
# (SC2015: `a && b || { report; return 1; }` means "report when the chain
# fails", as intended. SC2016: single-quoted $VARS are literal text to find.)
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
cd "$ROOT" || exit 1
# shellcheck source=t/lib/wait.sh
. "$ROOT/t/lib/wait.sh"

PASS=0
FAIL=0
TMP=$(mktemp -d /tmp/kbdeb.XXXXXX)
MASTER=
NGINX_PID=

finish() {
    declare -F stop_nginx >/dev/null && stop_nginx
    if [[ -n $MASTER ]] && kill -0 "$MASTER" 2>/dev/null; then
        kill -KILL -- "-$MASTER" 2>/dev/null || kill -KILL "$MASTER" 2>/dev/null
    fi
    rm -rf -- "$TMP"
    echo "test-deb: $PASS passed, $FAIL failed"
    [[ -n ${KB_TEST_COUNTS:-} ]] && echo "$PASS $FAIL" >>"$KB_TEST_COUNTS"
}
trap finish EXIT

ok() {
    PASS=$((PASS + 1))
    echo "ok - $1"
}

not_ok() {
    FAIL=$((FAIL + 1))
    echo "not ok - $1"
    [[ -n ${2:-} ]] && printf '%s\n' "$2" | sed 's/^/    /' | head -n 40
    return 0
}

# check NAME CMD...: one check; CMD's output is shown when it fails.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$name"
    else
        not_ok "$name" "$out"
    fi
}

# mode_is PATH OCTAL
mode_is() {
    local m
    m=$(stat -c '%a' "$1") || return 1
    [[ $m == "$2" ]] || { echo "$1 has mode $m, want $2"; return 1; }
}

# ---- build and unpack ---------------------------------------------------------

VERSION=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
ARCH=$(dpkg --print-architecture)
DEB=build/deb/kalshibook_${VERSION}_${ARCH}.deb

if ! out=$(make --no-print-directory -s deb 2>&1) || [[ ! -f $DEB ]]; then
    not_ok "make deb builds $DEB" "$out"
    exit 1
fi
ok "make deb builds $DEB"

T=$TMP/root
mkdir -p "$T" "$TMP/control"
dpkg-deb -x "$DEB" "$T" && dpkg-deb -e "$DEB" "$TMP/control" || {
    not_ok "dpkg-deb unpacks the package"
    exit 1
}
ok "dpkg-deb unpacks the package"

# ---- the tree -----------------------------------------------------------------

tree_files() {
    local f
    for f in usr/sbin/kalshibook-fcgi:755 usr/bin/kbctl:755 usr/bin/kalshibook-collector:755 \
        lib/systemd/system/kalshibook.socket:644 lib/systemd/system/kalshibook.service:644 \
        lib/systemd/system/kalshibook-collector.service:644 \
        lib/systemd/system/kalshibook-partitions.service:644 \
        lib/systemd/system/kalshibook-partitions.timer:644 \
        etc/nginx/sites-available/kalshibook:644 \
        etc/nginx/snippets/kalshibook-http.conf:644 etc/nginx/snippets/kalshibook-server.conf:644 \
        etc/nginx/snippets/kalshibook-fastcgi.conf:644 etc/nginx/snippets/kalshibook-tls.conf:644 \
        etc/nginx/snippets/kalshibook-errors.conf:644 \
        usr/share/kalshibook/kalshibook.env.example:644 \
        usr/share/kalshibook/static/llms.txt:644 usr/share/kalshibook/static/openapi.json:644 \
        usr/share/doc/kalshibook/copyright:644 usr/share/doc/kalshibook/ops.md:644 \
        usr/share/man/man1/kbctl.1.gz:644 usr/share/man/man8/kalshibook-fcgi.8.gz:644 \
        usr/share/man/man8/kalshibook-collector.8.gz:644; do
        [[ -f $T/${f%:*} ]] || { echo "missing ${f%:*}"; return 1; }
        mode_is "$T/${f%:*}" "${f#*:}" || return 1
    done
    # Nothing setuid, nothing world-writable, everything root-owned in the archive.
    local bad
    bad=$(find "$T" \( -perm -4000 -o -perm -2000 -o -perm -0002 \) -print)
    [[ -z $bad ]] || { echo "bad modes: $bad"; return 1; }
    bad=$(dpkg-deb -c "$DEB" | awk '$2 != "root/root"')
    [[ -z $bad ]] || { echo "not root/root: $bad"; return 1; }
    # Nothing outside the expected top-level paths.
    bad=$(cd "$T" && find . -mindepth 1 -maxdepth 1 ! -name etc ! -name lib ! -name usr)
    [[ -z $bad ]] || { echo "unexpected top-level entries: $bad"; return 1; }
}
check "tree: binaries, units, nginx site and snippets, static, docs with their modes" tree_files

check "static files are the repo's static/" diff -r static "$T/usr/share/kalshibook/static"
check "migrations are the repo's db/migrations" diff -r db/migrations "$T/usr/share/kalshibook/migrations"

nginx_same() {
    diff nginx/kalshibook.conf "$T/etc/nginx/sites-available/kalshibook" || return 1
    local f
    for f in nginx/kalshibook-*.conf; do
        diff "$f" "$T/etc/nginx/snippets/${f#nginx/}" || return 1
    done
    [[ ! -e $T/etc/nginx/snippets/kalshibook.conf.in ]] || { echo "dev template packaged"; return 1; }
}
check "nginx site and snippets are the repo's (dev template left out)" nginx_same

conffiles_ok() {
    local c=$TMP/control/conffiles
    grep -qx /etc/nginx/sites-available/kalshibook "$c" &&
        grep -qx /etc/nginx/snippets/kalshibook-server.conf "$c" || { cat "$c"; return 1; }
    # The env file is never a conffile (and not shipped in /etc at all):
    # postinst creates it once, so upgrades can neither replace nor prompt.
    ! grep -q kalshibook.env "$c" && [[ ! -e $T/etc/kalshibook ]]
}
check "conffiles: nginx files yes, env file no" conffiles_ok

control_ok() {
    local c=$TMP/control/control
    grep -qx "Version: $VERSION" "$c" && grep -qx "Architecture: $ARCH" "$c" &&
        grep -E '^Depends:.*libpq5.*' "$c" | grep -q 'libfcgi0ldbl' &&
        grep -E '^Depends:' "$c" | grep -q adduser || { cat "$c"; return 1; }
}
check "control: version, arch, shlibs Depends (libpq5, libfcgi0ldbl) and adduser" control_ok

scripts_ok() {
    local p=$TMP/control/postinst
    [[ -x $p && -x $TMP/control/prerm && -x $TMP/control/postrm ]] || return 1
    sh -n "$p" && sh -n "$TMP/control/prerm" && sh -n "$TMP/control/postrm" || return 1
    grep -q 'adduser --system --group' "$p" &&
        grep -q 'if \[ ! -e "$ENV_FILE" \]' "$p" &&
        grep -q 'install -m 0640 -o root -g kalshibook "$EXAMPLE" "$ENV_FILE"' "$p" &&
        grep -q 'ENV_FILE=/etc/kalshibook/kalshibook.env' "$p" &&
        grep -q 'EXAMPLE=/usr/share/kalshibook/kalshibook.env.example' "$p"
}
check "maintainer scripts: system user, env file 0640 root:kalshibook only when absent" scripts_ok

env_example_complete() {
    local v missing=''
    for v in $("$T/usr/bin/kbctl" check-config --list | awk '{print $1}'); do
        grep -Eq "^#?$v=" "$T/usr/share/kalshibook/kalshibook.env.example" || missing+=" $v"
    done
    [[ -z $missing ]] || { echo "not in packaging/kalshibook.env.example:$missing"; return 1; }
    # Secrets are empty in the example.
    grep -qx 'KB_DATABASE_URL=' "$T/usr/share/kalshibook/kalshibook.env.example"
}
check "env example names every variable of kbctl check-config --list" env_example_complete

migrations_default() {
    "$T/usr/bin/kbctl" check-config --list | grep -E '^KB_MIGRATIONS_DIR' |
        grep -q 'default=/usr/share/kalshibook/migrations'
}
check "packaged kbctl defaults to /usr/share/kalshibook/migrations" migrations_default

# ---- systemd units ------------------------------------------------------------

# verify checks that Exec paths exist on this host: point them into the tree.
U=$TMP/units
mkdir -p "$U"
for f in "$T"/lib/systemd/system/*; do
    sed -e "s|=/usr/sbin/|=$T/usr/sbin/|; s|=/usr/bin/kbctl|=$T/usr/bin/kbctl|" \
        -e "s|=/usr/bin/kalshibook-collector|=$T/usr/bin/kalshibook-collector|" "$f" >"$U/${f##*/}"
done
verify_units() {
    local out
    out=$(systemd-analyze verify "$U"/kalshibook.socket "$U"/kalshibook.service \
        "$U"/kalshibook-partitions.service "$U"/kalshibook-partitions.timer \
        "$U"/kalshibook-collector.service 2>&1) || {
        echo "$out"
        return 1
    }
    [[ -z $out ]] || { echo "$out"; return 1; }
}
check "systemd-analyze verify: no complaints about the five units" verify_units

exposure_ok() {
    local unit=$1 line level
    line=$(systemd-analyze security --offline=yes "$U/$unit" 2>&1 | grep 'Overall exposure level') ||
        return 1
    level=$(sed -E 's/.*: ([0-9.]+) .*/\1/' <<<"$line")
    echo "$line"
    awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'
}
check "systemd-analyze security: kalshibook.service exposure <= 2.0" exposure_ok kalshibook.service
check "systemd-analyze security: kalshibook-partitions.service exposure <= 2.0" \
    exposure_ok kalshibook-partitions.service
check "systemd-analyze security: kalshibook-collector.service exposure <= 2.0" \
    exposure_ok kalshibook-collector.service

collector_unit_ok() {
    local c=$T/lib/systemd/system/kalshibook-collector.service want
    [[ -x $T/usr/bin/kalshibook-collector ]] || { echo "no /usr/bin/kalshibook-collector"; return 1; }
    for want in 'ExecStart=/usr/bin/kalshibook-collector' 'ExecStartPre=/usr/bin/kbctl migrate' \
        'Restart=always' 'RestartPreventExitStatus=78' 'User=kalshibook' \
        'EnvironmentFile=/etc/kalshibook/kalshibook.env' 'StateDirectory=kalshibook kalshibook/spool' \
        'LoadCredential=kalshi.key:/etc/kalshibook/kalshi.key' \
        'Environment=KALSHI_PRIVATE_KEY_FILE=%d/kalshi.key'; do
        grep -qxF "$want" "$c" || { echo "kalshibook-collector.service lacks $want"; return 1; }
    done
    # Its default spool is the unit's state directory.
    "$T/usr/bin/kbctl" check-config --list | grep -E '^KB_COLLECTOR_SPOOL_DIR' |
        grep -q 'default=/var/lib/kalshibook/spool'
}
check "collector: binary, unit (credential key, state dir spool, restart), default spool dir" \
    collector_unit_ok

units_ok() {
    local s=$T/lib/systemd/system/kalshibook.service k=$T/lib/systemd/system/kalshibook.socket
    local want
    for want in 'Type=notify' 'ExecStart=/usr/sbin/kalshibook-fcgi' 'ExecStartPre=/usr/bin/kbctl migrate' \
        'ExecReload=/bin/kill -HUP $MAINPID' 'Restart=on-failure' \
        'EnvironmentFile=/etc/kalshibook/kalshibook.env' 'User=kalshibook' 'Requires=kalshibook.socket' \
        'RuntimeDirectory=kalshibook-journal' 'RuntimeDirectoryPreserve=yes'; do
        grep -qxF "$want" "$s" || { echo "kalshibook.service lacks $want"; return 1; }
    done
    for want in 'ListenStream=/run/kalshibook/fcgi.sock' 'SocketGroup=www-data' 'SocketMode=0660'; do
        grep -qxF "$want" "$k" || { echo "kalshibook.socket lacks $want"; return 1; }
    done
    grep -qxF 'OnCalendar=*-*-* 03:15:00' "$T/lib/systemd/system/kalshibook-partitions.timer" &&
        grep -qxF 'ExecStart=/usr/bin/kbctl partitions' "$T/lib/systemd/system/kalshibook-partitions.service"
}
check "units: notify service on the socket, reload by SIGHUP, migrate first, daily timer" units_ok

check "nginx -t on the production site" t/stack.sh nginx-test-prod

# ---- the installed layout runs ----------------------------------------------

if [[ -z ${KB_DATABASE_URL:-} ]]; then
    not_ok "KB_DATABASE_URL is set (run through t/run-tests.sh)"
    exit 1
fi

# An env file as the operator writes it, used the way systemd uses it: the
# processes get only these variables.
cat >"$TMP/kalshibook.env" <<EOF
KB_DATABASE_URL=$KB_DATABASE_URL
KB_JWT_SECRET=$(openssl rand -hex 32)
KB_MIGRATIONS_DIR=$T/usr/share/kalshibook/migrations
KB_WORKERS=2
KB_DRAIN_TIMEOUT_S=5
KB_SOCKET=$TMP/unused.sock
KB_HOST_ID=pkg-test
KB_JOURNAL_DIR=$TMP/journal
EOF
ENV_ARGS=()
while IFS= read -r line; do
    ENV_ARGS+=("$line")
done <"$TMP/kalshibook.env"

check "packaged kbctl check-config accepts the env file" env -i "${ENV_ARGS[@]}" "$T/usr/bin/kbctl" check-config
check "packaged kbctl migrate: packaged migrations already applied, checksums equal" \
    env -i "${ENV_ARGS[@]}" "$T/usr/bin/kbctl" migrate

SOCK=$TMP/fcgi.sock
SA_ARGS=()
for line in "${ENV_ARGS[@]}"; do
    SA_ARGS+=(-E "$line")
done
# systemd-socket-activate listens, and execs the master (same pid, so
# LISTEN_PID matches) on the first connection, like kalshibook.socket.
setsid env -i PATH=/usr/bin:/bin systemd-socket-activate -l "$SOCK" "${SA_ARGS[@]}" \
    "$T/usr/sbin/kalshibook-fcgi" </dev/null >"$TMP/master.log" 2>&1 &
MASTER=$!

# fcgi_get URI: the FastCGI response to GET URI on $SOCK (headers and body).
fcgi_get() {
    env -i REQUEST_METHOD=GET REQUEST_URI="$1" QUERY_STRING= SERVER_PROTOCOL=HTTP/1.1 \
        REMOTE_ADDR=127.0.0.1 KB_REQUEST_ID=req_00000000dead \
        cgi-fcgi -bind -connect "$SOCK" 2>&1
}

HEALTH_OUT=
health_ok() {
    HEALTH_OUT=$(fcgi_get /health) || true
    grep -q '^Status: 200' <<<"$HEALTH_OUT" && grep -qF '{"status":"ok"}' <<<"$HEALTH_OUT"
}

# Settled: healthy, or the master is gone (no point waiting on).
health_settled() {
    health_ok || pid_gone "$MASTER"
}

health_answers() {
    wait_until 30 test -S "$SOCK" || { echo "no socket"; return 1; }
    wait_until 30 health_settled && ! pid_gone "$MASTER" && return 0
    echo "last answer: $HEALTH_OUT"
    tail -n 20 "$TMP/master.log"
    return 1
}
check "installed kalshibook-fcgi (socket-activated) answers GET /health 200 over FastCGI" health_answers

inherited_and_json() {
    grep -q 'an inherited socket' "$TMP/master.log" || { cat "$TMP/master.log"; return 1; }
    [[ ! -e $TMP/unused.sock ]] || { echo "KB_SOCKET was bound"; return 1; }
    local out
    out=$(fcgi_get /no-such-path)
    grep -q '^Status: 404' <<<"$out" && grep -q '"code":"not_found"' <<<"$out" || {
        echo "$out"
        return 1
    }
}
check "it serves the inherited socket and answers unknown paths with the JSON 404" inherited_and_json

# ---- the packaged production nginx site, live --------------------------------
#
# A second nginx runs the packaged site file and snippets unchanged except for
# what must differ on a test host: listen addresses (loopback, free ports),
# certificate, log, webroot and static paths, and the socket (the installed
# pool above). Requests use the site's real host name via --resolve.

HOST=api.kalshibook.io
NG=$TMP/nginx

# free_port [EXCLUDED]: a port nobody listens on, below the ephemeral range
# (32768+), where outgoing connections could hold it.
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 12000))
        [[ $p == "${1:-}" ]] && continue
        [[ -z $(ss -Htln "sport = :$p" 2>/dev/null) ]] && { echo "$p"; return; }
    done
    return 1
}

stop_nginx() {
    [[ -n $NGINX_PID ]] && kill -QUIT "$NGINX_PID" 2>/dev/null
    wait_until 10 pid_gone "$NGINX_PID"
    [[ -n $NGINX_PID ]] && kill -KILL "$NGINX_PID" 2>/dev/null
    NGINX_PID=
}

start_prod_nginx() {
    local hp sp site=$NG/kalshibook.conf
    hp=$(free_port) && sp=$(free_port "$hp") || { echo "no free port"; return 1; }
    HTTP_PORT=$hp
    HTTPS_PORT=$sp
    mkdir -p "$NG/log" "$NG/tmp" "$NG/tls" "$TMP/acme/.well-known/acme-challenge"
    cp -R "$T/etc/nginx/snippets" "$NG/snippets"
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 2 -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
        -keyout "$NG/tls/privkey.pem" -out "$NG/tls/fullchain.pem" >/dev/null 2>&1) || return 1
    cp "$NG/tls/fullchain.pem" "$NG/tls/chain.pem"
    sed -e "s|listen 80;|listen 127.0.0.1:$hp;|; /listen \[::\]:80;/d" \
        -e "s|listen 443 ssl http2;|listen 127.0.0.1:$sp ssl http2;|; /listen \[::\]:443 ssl http2;/d" \
        -e "s|/etc/letsencrypt/live/$HOST/|$NG/tls/|g" \
        -e "s|/var/log/nginx/|$NG/log/|g" \
        -e "s|/var/www/letsencrypt|$TMP/acme|g" \
        -e "s|unix:/run/kalshibook/fcgi.sock|unix:$SOCK|" \
        -e "s|root /usr/share/kalshibook/static;|root $T/usr/share/kalshibook/static;|" \
        "$T/etc/nginx/sites-available/kalshibook" >"$site"
    if grep -nE '^[^#]*(/etc/letsencrypt|/var/log|/var/www|/run/kalshibook|[ :]80;|[ :]443 )' "$site" |
        grep -v "$TMP"; then
        echo "site paths not substituted (above)"
        return 1
    fi
    cat >"$NG/nginx.conf" <<EOF
$( [[ $(id -u) == 0 ]] && echo 'user root;')
pid $NG/nginx.pid;
error_log $NG/log/error.log warn;
events { worker_connections 256; }
http {
    client_body_temp_path $NG/tmp/body;
    fastcgi_temp_path $NG/tmp/fastcgi;
    proxy_temp_path $NG/tmp/proxy;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    include $site;
}
EOF
    nginx -q -p "$NG/" -c "$NG/nginx.conf" -e "$NG/log/error.log" </dev/null || {
        cat "$NG/log/error.log"
        return 1
    }
    wait_until 10 test -s "$NG/nginx.pid" || { echo "nginx wrote no pid"; return 1; }
    NGINX_PID=$(cat "$NG/nginx.pid")
}

# Another program may take a port between the probe and nginx's bind: retry.
started=no
for _ in 1 2 3; do
    if start_prod_nginx >"$TMP/nginx-start.out" 2>&1; then
        started=yes
        break
    fi
    grep -q 'Address already in use' "$TMP/nginx-start.out" || break
    rm -rf "$NG"
done
if [[ $started == yes ]]; then
    ok "packaged production site runs in nginx (loopback ports, test certificate)"
else
    not_ok "packaged production site runs in nginx (loopback ports, test certificate)" \
        "$(cat "$TMP/nginx-start.out")"
fi

# https_get PATH [curl args...]: headers and body, CR stripped.
https_get() {
    local path=$1
    shift
    curl -s -D - --max-time 10 --cacert "$NG/tls/fullchain.pem" \
        --resolve "$HOST:$HTTPS_PORT:127.0.0.1" "$@" "https://$HOST:$HTTPS_PORT$path" | tr -d '\r'
}

prod_health() {
    local out
    out=$(https_get /health)
    grep -q '^HTTP/2 200' <<<"$out" && grep -qF '{"status":"ok"}' <<<"$out" &&
        grep -qi '^strict-transport-security: max-age=63072000' <<<"$out" &&
        grep -qiE '^x-request-id: req_[0-9a-f]{12}$' <<<"$out" &&
        ! grep -qi '^server: nginx/' <<<"$out" || { echo "$out"; return 1; }
}
check "production site: /health through nginx -> socket -> installed pool, HSTS, no version" prod_health

prod_redirect_and_acme() {
    local out
    out=$(curl -s -D - -o /dev/null --max-time 10 --resolve "$HOST:$HTTP_PORT:127.0.0.1" \
        "http://$HOST:$HTTP_PORT/markets?x=1" | tr -d '\r')
    grep -q '^HTTP/1.1 301' <<<"$out" &&
        grep -qx "Location: https://$HOST/markets?x=1" <<<"$out" || { echo "$out"; return 1; }
    echo token-body >"$TMP/acme/.well-known/acme-challenge/tok123"
    out=$(curl -s --max-time 10 --resolve "$HOST:$HTTP_PORT:127.0.0.1" \
        "http://$HOST:$HTTP_PORT/.well-known/acme-challenge/tok123")
    [[ $out == token-body ]] || { echo "acme: $out"; return 1; }
}
check "production site: HTTP redirects to HTTPS except certbot's /.well-known/acme-challenge/" \
    prod_redirect_and_acme

prod_tls() {
    # (Debian's OpenSSL client refuses TLS 1.1 by itself too; the 1.2 and 1.3
    # halves are the informative ones.)
    https_get /health --tls-max 1.1 >/dev/null && { echo "TLS 1.1 accepted"; return 1; }
    https_get /health --tlsv1.2 --tls-max 1.2 | grep -q '^HTTP/2 200' &&
        https_get /health --tlsv1.3 | grep -q '^HTTP/2 200'
}
check "production site: TLS 1.2 and 1.3 only" prod_tls

prod_static_and_errors() {
    local out
    out=$(https_get /llms.txt)
    grep -q '^HTTP/2 200' <<<"$out" && grep -qi '^cache-control: max-age=3600' <<<"$out" ||
        { echo "$out"; return 1; }
    out=$(https_get /docs/missing.html)
    grep -q '^HTTP/2 404' <<<"$out" && grep -qi '^content-type: application/json' <<<"$out" &&
        grep -qF '"code":"not_found"' <<<"$out" && ! grep -qi '^cache-control' <<<"$out" ||
        { echo "$out"; return 1; }
    out=$(https_get /no-such-route -H 'Accept-Encoding: gzip' --compressed)
    grep -q '^HTTP/2 404' <<<"$out" && grep -qF '"code":"not_found"' <<<"$out" ||
        { echo "$out"; return 1; }
}
check "production site: static caching headers, JSON errors from nginx and the app" \
    prod_static_and_errors

prod_rate_prefilter() {
    # 600 requests, 20 at a time, multiplexed on HTTP/2: far more than the
    # burst of 200 plus 20/s, so the coarse per-address filter must answer 429s
    # even on a slow machine.
    local urls=() i codes n429
    for ((i = 0; i < 600; i++)); do
        urls+=(-o /dev/null "https://$HOST:$HTTPS_PORT/llms.txt")
    done
    codes=$(curl -s -Z --parallel-max 20 --max-time 30 --cacert "$NG/tls/fullchain.pem" \
        --resolve "$HOST:$HTTPS_PORT:127.0.0.1" -w '%{http_code}\n' "${urls[@]}")
    n429=$(grep -c '^429$' <<<"$codes")
    ((n429 > 0)) || { echo "no 429 in $(sort <<<"$codes" | uniq -c)"; return 1; }
    # While the bucket is still full: more, whose answers must include the
    # 429 envelope. Sent at once on one HTTP/2 connection: one by one, a
    # loaded machine can take the 50 ms a slot needs to free between each.
    local out more=()
    for ((i = 0; i < 19; i++)); do
        more+=("https://$HOST:$HTTPS_PORT/health")
    done
    out=$(https_get /health -Z --parallel-max 20 "${more[@]}")
    grep -q 'HTTP/2 429' <<<"$out" && grep -qi '^retry-after: 1$' <<<"$out" &&
        grep -qF '"code":"rate_limit_exceeded"' <<<"$out" || { echo "$out"; return 1; }
}
check "production site: limit_req pre-filter answers 429 rate_limit_exceeded with Retry-After" \
    prod_rate_prefilter

stop_nginx

stops_cleanly() {
    kill -TERM "$MASTER" || return 1
    wait_until 20 pid_gone "$MASTER" || { echo "still running"; return 1; }
    local rc=0
    wait "$MASTER" || rc=$?
    MASTER=
    [[ $rc == 0 ]] || { echo "exit status $rc"; tail -n 20 "$TMP/master.log"; return 1; }
    grep -q '"msg":"stopped"' "$TMP/master.log"
}
# Not through check: wait needs the master to be this shell's own child.
if stops_cleanly >"$TMP/stop.out" 2>&1; then
    ok "SIGTERM stops it with exit status 0"
else
    not_ok "SIGTERM stops it with exit status 0" "$(cat "$TMP/stop.out")"
fi

[[ $FAIL == 0 ]]
