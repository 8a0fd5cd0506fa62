# shellcheck shell=bash
# t/lib/ports.sh - the stack's TCP ports: free ones picked once, remembered in DIR/ports.env.
#
# Sourced by t/stack.sh; uses its DIR and die. Sets HTTPS_PORT, HTTP_PORT, PG_PORT.
# Invariant: a port the environment or DIR/ports.env names wins over a new pick, so a
# second start of the same DIR reuses its ports.

# TCP ports in LISTEN state on this host (IPv4 and IPv6).
listening_ports() {
    local f sl addr rem st rest
    for f in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $f ]] || continue
        # shellcheck disable=SC2034  # sl, rem and rest are fields we skip
        while read -r sl addr rem st rest; do
            [[ $st == 0A ]] && printf '%d\n' "$((16#${addr##*:}))"
        done < <(tail -n +2 "$f")
    done
}

port_in_use() {
    listening_ports | grep -qx -- "$1"
}

# pick_port EXCLUDED...: a free port in 20000..32199 not in EXCLUDED. The
# range stays below Linux's ephemeral ports (32768..60999), which outgoing
# connections take without listening, so a port that looks free there can
# still be taken by the time Postgres or nginx binds it.
pick_port() {
    local used p i
    used=$(listening_ports | sort -u)
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12200))
        grep -qx -- "$p" <<<"$used" && continue
        [[ " $* " == *" $p "* ]] && continue
        printf '%s\n' "$p"
        return
    done
    die "no free port found"
}

# kv_get FILE NAME: value of NAME=value in FILE (no sourcing).
kv_get() {
    [[ -r $1 ]] || return 0
    sed -n "s/^$2=//p" "$1" | tail -n 1 | tr -d "'"
}

# Sets HTTPS_PORT, HTTP_PORT, PG_PORT: the environment first, then the ports
# remembered in DIR/ports.env, then free ones; remembers the result.
choose_ports() {
    local f=$DIR/ports.env
    HTTPS_PORT=${KB_HTTPS_PORT:-$(kv_get "$f" KB_HTTPS_PORT)}
    HTTP_PORT=${KB_HTTP_PORT:-$(kv_get "$f" KB_HTTP_PORT)}
    PG_PORT=${KB_PG_PORT:-$(kv_get "$f" KB_PG_PORT)}
    [[ -n $HTTPS_PORT ]] || HTTPS_PORT=$(pick_port "$HTTP_PORT" "$PG_PORT")
    [[ -n $HTTP_PORT ]] || HTTP_PORT=$(pick_port "$HTTPS_PORT" "$PG_PORT")
    [[ -n $PG_PORT ]] || PG_PORT=$(pick_port "$HTTPS_PORT" "$HTTP_PORT")
    local p
    for p in "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT"; do
        if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then
            die "bad port '$p'"
        fi
    done
    printf 'KB_HTTPS_PORT=%s\nKB_HTTP_PORT=%s\nKB_PG_PORT=%s\n' \
        "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT" >"$f.tmp"
    mv -f "$f.tmp" "$f"
}

# Ports only, for the commands that must not pick new ones.
load_ports() {
    local f=$DIR/ports.env
    HTTPS_PORT=$(kv_get "$f" KB_HTTPS_PORT)
    HTTP_PORT=$(kv_get "$f" KB_HTTP_PORT)
    PG_PORT=$(kv_get "$f" KB_PG_PORT)
}
