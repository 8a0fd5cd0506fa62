-- 0024_app_hosts: app hosts hold their id by a lease, and their unsettled charges are
-- visible in Postgres, so a host that dies whole (master and workers at once) has its
-- charges settled by whichever host sees it first, exactly once (issue 22).
--
-- The charge journal (lib/kb_journal.h) lives in the memory a pool shares: it
-- survives a worker's death, not the master's. Now:
--   * app_hosts: one row per host id (KB_HOST_ID, or derived from /etc/machine-id).
--     The pool that holds it ("life", a random uuid per start of the master) renews
--     expires_at every few seconds. A second pool with the same id finds the lease
--     held and refuses to start; a lease that expired is taken over.
--   * meter_inflight: one row per journal entry of a pool (host_id, life, slot), written in
--     the charge's own transaction (so it exists exactly when the charge committed)
--     with what kb_meter_settle() needs, and marked answered right after the 2xx
--     answer's last write (lib/meter.c). A row of a life that is not its host's
--     current one (the pool restarted, or its lease expired and was ended) and not
--     answered is an orphan: kb_host_settle() settles it through kb_meter_settle()
--     and deletes it. Rows are locked SKIP LOCKED one at a time and refunds are
--     idempotent per request id (meter_refunds), so two hosts settling at once
--     refund each charge once.
--   * The row's life column is NOT NULL and filled from app_hosts in the charge's
--     transaction: a pool whose lease was ended (taken for dead) cannot commit a
--     charge any more (its transaction fails on the NULL), so nothing it charges
--     can escape the settlement.
-- meter_inflight is UNLOGGED: the answered mark then commits without a WAL flush.
-- A crash of Postgres empties it; what a live host had in flight its own journal
-- still settles (0016); a host that died before the crash and was not settled yet
-- loses its in-doubt charges (at most one per worker; docs/ops.md).

CREATE TABLE app_hosts (
    host_id    text PRIMARY KEY CHECK (host_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    life       uuid,           -- the pool holding the id; NULL once its lease was ended
    hostname   text NOT NULL DEFAULT '',
    pid        integer NOT NULL DEFAULT 0,
    boot_id    text NOT NULL DEFAULT '', -- kernel boot id + pid namespace of the holder
    started_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL DEFAULT now(),
    lease_ms   integer NOT NULL DEFAULT 15000,
    ended_at   timestamptz     -- when a lease that expired was ended by another host
);

-- A lease is over only when its holder had a whole lease period of a running
-- server to renew it: after Postgres restarts (or recovers from a crash) every
-- host's lease may have run out while nobody could renew, and the first host back
-- must not take the others for dead.
CREATE FUNCTION kb_host_lease_over(h app_hosts) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT greatest(h.expires_at,
                    pg_postmaster_start_time() + h.lease_ms * interval '1 millisecond')
           <= clock_timestamp()
$$;

CREATE UNLOGGED TABLE meter_inflight (
    host_id     text NOT NULL,
    slot        integer NOT NULL,
    life        uuid NOT NULL,
    request_id  text NOT NULL,
    answered    boolean NOT NULL DEFAULT false,
    xid         xid8 NOT NULL,
    token       uuid NOT NULL,
    seq         bigint NOT NULL,
    user_id     uuid NOT NULL,
    key_id      uuid NOT NULL,
    cost        integer NOT NULL,
    endpoint    text NOT NULL,
    cycle_start timestamptz NOT NULL,
    day         date NOT NULL,
    outbox_id   bigint,
    charged_at  timestamptz NOT NULL DEFAULT now(),
    -- The life is part of the key: a restarted pool writes rows of its own and
    -- never overwrites what its dead predecessor left unsettled on the same slot.
    PRIMARY KEY (host_id, life, slot)
) WITH (fillfactor = 50);

-- Claim host p_host for the pool p_life. Takes a free id, a lease that expired, or the
-- lease of p_prev (a life the caller proved dead: the same machine, boot and pid
-- namespace, its pid gone). Returns 'claimed', or 'held' with the holder's details when
-- another live pool holds it.
CREATE FUNCTION kb_host_claim(p_host text, p_life uuid, p_prev uuid, p_ttl_ms integer,
                              p_hostname text, p_pid integer, p_boot text,
                              OUT outcome text, OUT holder uuid, OUT holder_hostname text,
                              OUT holder_pid integer, OUT holder_boot text,
                              OUT expires_in_ms bigint, OUT renewed_at timestamptz)
LANGUAGE plpgsql
AS $$
DECLARE
    h app_hosts;
BEGIN
    INSERT INTO app_hosts AS a (host_id, life, hostname, pid, boot_id, expires_at, lease_ms)
    VALUES (p_host, p_life, p_hostname, p_pid, p_boot,
            clock_timestamp() + p_ttl_ms * interval '1 millisecond', p_ttl_ms)
    ON CONFLICT (host_id) DO NOTHING;
    IF FOUND THEN
        outcome := 'claimed';
        RETURN;
    END IF;
    SELECT * INTO h FROM app_hosts a WHERE a.host_id = p_host FOR UPDATE;
    IF h.life IS NULL OR h.life = p_life OR h.life = p_prev OR kb_host_lease_over(h) THEN
        UPDATE app_hosts a
           SET life = p_life, hostname = p_hostname, pid = p_pid, boot_id = p_boot,
               started_at = now(), renewed_at = clock_timestamp(),
               expires_at = clock_timestamp() + p_ttl_ms * interval '1 millisecond',
               lease_ms = p_ttl_ms, ended_at = NULL
         WHERE a.host_id = p_host;
        outcome := 'claimed';
        RETURN;
    END IF;
    outcome := 'held';
    holder := h.life;
    holder_hostname := h.hostname;
    holder_pid := h.pid;
    holder_boot := h.boot_id;
    expires_in_ms := (extract(epoch FROM greatest(h.expires_at, pg_postmaster_start_time()
                          + h.lease_ms * interval '1 millisecond') - clock_timestamp()) * 1000)::bigint;
    renewed_at := h.renewed_at;
END
$$;

-- Renew p_life's lease of p_host; false when the pool no longer holds it (its lease
-- expired and another host ended it, or a pool took it over).
CREATE FUNCTION kb_host_renew(p_host text, p_life uuid, p_ttl_ms integer)
RETURNS boolean
LANGUAGE sql
AS $$
    UPDATE app_hosts a
       SET renewed_at = clock_timestamp(),
           expires_at = clock_timestamp() + p_ttl_ms * interval '1 millisecond', lease_ms = p_ttl_ms
     WHERE a.host_id = p_host AND a.life = p_life
    RETURNING true
$$;

-- A clean stop: the lease ends now, so any charge the pool could not settle (the
-- database was down while it drained) is settled by another host at once.
CREATE FUNCTION kb_host_release(p_host text, p_life uuid)
RETURNS boolean
LANGUAGE sql
AS $$
    UPDATE app_hosts a SET life = NULL, expires_at = clock_timestamp(), ended_at = now()
     WHERE a.host_id = p_host AND a.life = p_life
    RETURNING true
$$;

-- Settle what dead pools left in flight: first end every lease that is over
-- (kb_host_lease_over(); its pool can commit no charge after that), then settle up to
-- p_max orphaned rows, one lock each (SKIP LOCKED: hosts running this at once share the work). Returns the counts:
-- ended leases, rows settled as refunded, rows settled otherwise (not charged,
-- refunded before, too old), rows still pending (their transaction is running).
CREATE FUNCTION kb_host_settle(p_max integer,
                               OUT ended integer, OUT refunded integer, OUT cleared integer,
                               OUT pending integer)
LANGUAGE plpgsql
AS $$
DECLARE
    r    meter_inflight;
    st   text;
    skip text[] := '{}';
BEGIN
    ended := 0; refunded := 0; cleared := 0; pending := 0;
    WITH e AS (
        UPDATE app_hosts a SET life = NULL, ended_at = now()
         WHERE a.life IS NOT NULL AND kb_host_lease_over(a)
        RETURNING 1)
    SELECT count(*) INTO ended FROM e;
    FOR i IN 1 .. p_max LOOP
        SELECT m.* INTO r
          FROM meter_inflight m LEFT JOIN app_hosts a ON a.host_id = m.host_id
         WHERE NOT m.answered AND a.life IS DISTINCT FROM m.life
           AND NOT (m.host_id || ':' || m.life || ':' || m.slot) = ANY (skip)
         ORDER BY m.charged_at
         LIMIT 1
           FOR UPDATE OF m SKIP LOCKED;
        EXIT WHEN NOT FOUND;
        BEGIN
            st := kb_meter_settle(r.xid, r.token, r.seq, r.request_id, r.user_id, r.key_id,
                                  r.cost, r.endpoint, r.cycle_start, r.day, r.outbox_id);
        EXCEPTION WHEN OTHERS THEN
            -- e.g. an id "in the future" right after a crash: ask again next round.
            RAISE WARNING 'unable to settle the charge of request %: %', r.request_id, SQLERRM;
            st := 'pending';
        END;
        IF st = 'pending' THEN
            -- Its transaction is still running: leave the row for a later round.
            pending := pending + 1;
            skip := skip || (r.host_id || ':' || r.life || ':' || r.slot);
            CONTINUE;
        END IF;
        IF st = 'refunded' THEN
            refunded := refunded + 1;
        ELSE
            cleared := cleared + 1;
        END IF;
        DELETE FROM meter_inflight m
         WHERE m.host_id = r.host_id AND m.life = r.life AND m.slot = r.slot;
    END LOOP;
    -- The answered rows of lives that are over need no settling.
    DELETE FROM meter_inflight m
     WHERE m.answered
       AND m.life IS DISTINCT FROM (SELECT a.life FROM app_hosts a WHERE a.host_id = m.host_id);
END
$$;
