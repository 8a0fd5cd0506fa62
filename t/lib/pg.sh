# shellcheck shell=bash
# t/lib/pg.sh - the stack's Postgres: a private cluster in DIR/pg on its own port and
# socket directory, its database, and a streaming replica in DIR/pgr.
#
# Sourced by t/stack.sh; uses its DIR, PGDATA_DIR, PGSOCK_DIR, REPLICA_DIR, REPLICA_SOCK,
# PG_BIN, PG_PORT, DB_NAME, DB_USER, START_TIMEOUT_S. Invariants: never the system
# cluster; the server programs run as the postgres user when we are root (Postgres
# refuses root); durability settings are production's (fsync, synchronous_commit on).

find_pg_bin() {
    if [[ -n ${KB_PG_BIN:-} ]]; then
        printf '%s\n' "$KB_PG_BIN"
        return
    fi
    # The newest /usr/lib/postgresql/N/bin (numerically: 16 beats 9).
    local d v best='' best_v=-1 initdb
    for d in /usr/lib/postgresql/*/bin; do
        v=${d#/usr/lib/postgresql/}
        v=${v%%/*}
        if [[ -x $d/postgres && $v =~ ^[0-9]+$ ]] && ((v > best_v)); then
            best=$d
            best_v=$v
        fi
    done
    if [[ -z $best ]]; then
        initdb=$(command -v initdb) || die "no Postgres found: install postgresql or set KB_PG_BIN"
        best=$(dirname "$initdb")
    fi
    printf '%s\n' "$best"
}

# as_pg CMD...: run a Postgres server program (initdb, pg_ctl) as the
# postgres user when we are root (Postgres refuses to run as root), from a
# directory that user can enter.
as_pg() {
    if is_root; then
        (cd "$DIR" && runuser -u postgres -- "$@")
    else
        (cd "$DIR" && "$@")
    fi
}

database_url() {
    printf 'host=%s port=%s user=%s dbname=%s\n' "$PGSOCK_DIR" "$PG_PORT" "$DB_USER" "$DB_NAME"
}

pg_running() {
    [[ -f $PGDATA_DIR/PG_VERSION ]] || return 1
    as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1
}

pg_init() {
    if is_root; then
        runuser -u postgres -- test -x "$DIR" ||
            die "the postgres user cannot enter '$DIR'; use a dir whose parents are world-traversable (e.g. under /tmp)"
    fi
    mkdir -p "$PGSOCK_DIR"
    touch "$DIR/pg.log"
    if is_root; then
        chown postgres: "$PGSOCK_DIR" "$DIR/pg.log"
    fi
    chmod 755 "$PGSOCK_DIR"
    [[ -f $PGDATA_DIR/PG_VERSION ]] && return
    # A cluster dir without PG_VERSION is a half-finished initdb: start over.
    rm -rf -- "$PGDATA_DIR"
    mkdir -m 700 "$PGDATA_DIR"
    is_root && chown postgres: "$PGDATA_DIR"
    log "initdb $PGDATA_DIR"
    # trust: the cluster only listens on 127.0.0.1 and a private socket dir,
    # and initdb's pg_hba.conf only has loopback host lines.
    as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U "$DB_USER" -E UTF8 --locale=C \
        --auth-local=trust --auth-host=trust --no-instructions >"$DIR/pg-init.log" 2>&1 ||
        fail_with_log "$DIR/pg-init.log" "initdb failed"
    printf "\ninclude_if_exists = 'kalshibook-stack.conf'\n" >>"$PGDATA_DIR/postgresql.conf"
}

# Settings rewritten on every start, so a changed port takes effect.
pg_write_conf() {
    cat >"$PGDATA_DIR/kalshibook-stack.conf" <<EOF
# Written by t/stack.sh on every start.
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGSOCK_DIR'
fsync = on
synchronous_commit = on
full_page_writes = on
# SSD/NVMe: an index probe costs about what a sequential page read does. At
# the default 4.0 the planner scans small, hot tables (billing_accounts,
# api_keys with a few hundred rows) sequentially, visibility-checking every
# row version, on every metered request (docs/ops.md, step 3).
random_page_cost = 1.1
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    chmod 644 "$PGDATA_DIR/kalshibook-stack.conf"
}

pg_wait_ready() {
    wait_until "$START_TIMEOUT_S" \
        "$PG_BIN/pg_isready" -q -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" -d postgres ||
        fail_with_log "$DIR/pg.log" "Postgres not ready after ${START_TIMEOUT_S}s"
}

pg_start() {
    if pg_running; then
        log "postgres already running"
    else
        if port_in_use "$PG_PORT"; then
            die "Postgres port $PG_PORT is already in use (set KB_PG_PORT or remove $DIR/ports.env)"
        fi
        pg_write_conf
        as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA_DIR" -l "$DIR/pg.log" -w -t "$START_TIMEOUT_S" -s ||
            fail_with_log "$DIR/pg.log" "Postgres did not start"
        log "postgres on 127.0.0.1:$PG_PORT and $PGSOCK_DIR"
    fi
    pg_wait_ready
}

pg_stop() {
    local mode=${1:-fast}
    pg_running || return 0
    as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m "$mode" -w -t 60 -s ||
        as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m immediate -w -t 30 -s ||
        log "could not stop Postgres in $PGDATA_DIR"
    return 0
}

pg_create_db() {
    local found
    found=$("$PG_BIN/psql" -X -q -t -A -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" 2>>"$DIR/pg.log") ||
        fail_with_log "$DIR/pg.log" "cannot query Postgres"
    if [[ $found != 1 ]]; then
        "$PG_BIN/createdb" -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" "$DB_NAME" 2>>"$DIR/pg.log" ||
            fail_with_log "$DIR/pg.log" "createdb $DB_NAME failed"
        log "created database $DB_NAME"
    fi
}

replica_url() {
    printf 'host=%s port=%s user=%s dbname=%s\n' "$REPLICA_SOCK" "$(kv_get "$DIR/ports.env" KB_PG_REPLICA_PORT)" \
        "$DB_USER" "$DB_NAME"
}

replica_running() {
    [[ -f $REPLICA_DIR/PG_VERSION ]] || return 1
    as_pg "$PG_BIN/pg_ctl" status -D "$REPLICA_DIR" >/dev/null 2>&1
}

replica_stop() {
    replica_running || return 0
    as_pg "$PG_BIN/pg_ctl" stop -D "$REPLICA_DIR" -m fast -w -t 60 -s ||
        as_pg "$PG_BIN/pg_ctl" stop -D "$REPLICA_DIR" -m immediate -w -t 30 -s || true
}

# replica_in_recovery PORT: the replica on PORT answers as a standby.
replica_in_recovery() {
    [[ $("$PG_BIN/psql" -X -q -t -A -h "$REPLICA_SOCK" -p "$1" -U "$DB_USER" -d "$DB_NAME" \
        -c 'SELECT pg_is_in_recovery()' 2>/dev/null) == t ]]
}

# replica_start: a hot standby of the running primary (pg_basebackup -R, streaming) on a
# port remembered in DIR/ports.env as KB_PG_REPLICA_PORT; returns once it answers as a
# standby. t/stack.sh replica-start then points the app at it.
replica_start() {
    local port
    port=$(kv_get "$DIR/ports.env" KB_PG_REPLICA_PORT)
    if [[ -z $port ]]; then
        port=$(pick_port "$HTTPS_PORT" "$HTTP_PORT" "$PG_PORT")
        printf 'KB_PG_REPLICA_PORT=%s\n' "$port" >>"$DIR/ports.env"
    fi
    if ! replica_running; then
        rm -rf -- "$REPLICA_DIR"
        mkdir -m 700 "$REPLICA_DIR"
        mkdir -p "$REPLICA_SOCK"
        chmod 755 "$REPLICA_SOCK"
        touch "$DIR/pg-replica.log"
        if is_root; then
            chown postgres: "$REPLICA_DIR" "$REPLICA_SOCK" "$DIR/pg-replica.log"
        fi
        # A physical slot (-C -S, named in the replica's primary_slot_name by -R): the
        # primary keeps the WAL the replica has not received yet, so a replica that fell
        # behind while the primary was stopped and restarted (test_collector, test_db)
        # catches up instead of asking forever for a segment already recycled.
        "$PG_BIN/psql" -X -q -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" \
            -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                 WHERE slot_name = 'kb_replica'" >>"$DIR/pg-replica.log" 2>&1 || true
        as_pg "$PG_BIN/pg_basebackup" -h "$PGSOCK_DIR" -p "$PG_PORT" -U "$DB_USER" \
            -D "$REPLICA_DIR" -R -C -S kb_replica -X stream -c fast >>"$DIR/pg-replica.log" 2>&1 ||
            fail_with_log "$DIR/pg-replica.log" "pg_basebackup failed"
        cat >"$REPLICA_DIR/kalshibook-stack.conf" <<EOF
# Written by t/stack.sh replica-start: a hot standby of $PGDATA_DIR.
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$REPLICA_SOCK'
hot_standby = on
logging_collector = off
log_line_prefix = '%m [%p] replica %q%u@%d '
EOF
        chmod 644 "$REPLICA_DIR/kalshibook-stack.conf"
        as_pg "$PG_BIN/pg_ctl" start -D "$REPLICA_DIR" -l "$DIR/pg-replica.log" -w \
            -t "$START_TIMEOUT_S" -s || fail_with_log "$DIR/pg-replica.log" "the replica did not start"
        log "replica on 127.0.0.1:$port and $REPLICA_SOCK"
    fi
    wait_until "$START_TIMEOUT_S" replica_in_recovery "$port" ||
        fail_with_log "$DIR/pg-replica.log" "the replica is not answering"
}
