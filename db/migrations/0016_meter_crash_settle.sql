-- 0016_meter_crash_settle: a charge whose commit was cut off by a crash of Postgres is
-- settled exactly.
--
-- 0015 journals a charge's transaction id and, when the worker did not see its
-- commit, asks pg_xact_status() whether it committed. That answer is only about
-- the transaction holding that id in the server's current life. After a crash (an
-- immediate shutdown, a backend crash, power loss, a failover) Postgres restarts
-- its transaction counter from what reached the WAL on disk: the id of a charge
-- whose records were still in memory is handed out again, and pg_xact_status()
-- then answers 'committed' for someone else's transaction. chaos-short did exactly
-- that on 2026-12-04 (pg.log: "transaction ID 2085 is in the future" from
-- kb_meter_settle right after the restart, then 'refunded the charge of request
-- req_721b393597ee' 0.2 s later: 5 credits given back that were never taken).
--
-- Now:
--   * meter_incarnation, an UNLOGGED table, holds one random token. Postgres
--     empties unlogged tables after a crash and keeps them through a clean
--     shutdown, so the token changes exactly when transaction ids may have been
--     handed out twice. kb_incarnation() returns it, creating a new one when it
--     is gone.
--   * Each charge leaves its footprint in the account row it already writes (no
--     new row version): charge_token (the token it ran under), charge_seq (one
--     more than the previous charge's) and charge_request (its request id). The
--     meter statement's fast path takes only rows whose charge_token is the
--     current token (the worker passes the one a charge returned on the same
--     connection: a crash ends every connection, and triggers keep anything else
--     from changing the token); kb_meter_slow(), on the first charge of an account
--     after a crash, first copies the footprint the crash left into
--     meter_crash_receipts.
--   * kb_meter_settle() gets the token and seq the charge returned. Same token:
--     no crash since, pg_xact_status() is right as before. Another token: the
--     footprint of the account as that life ended (the row, or its receipt) says
--     what happened: the charge's own request at its seq -> it committed; a seq
--     below the charge's -> nothing after the one before it committed in that
--     life, so it did not; a later charge of that life committed after it ->
--     that commit flushed the WAL holding this transaction's records, so its id
--     was never handed out again and pg_xact_status() is right.
-- Receipts are a row per account charged across a crash; they are kept.

CREATE UNLOGGED TABLE meter_incarnation (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    token uuid NOT NULL
);

-- Only a crash may change it: the workers pass the token they learned on a
-- connection back to the meter statement, and a crash ends that connection, but
-- an edit would not. (Recovery resets the table's files; no trigger runs.)
CREATE FUNCTION kb_incarnation_fixed() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'meter_incarnation changes only when Postgres recovers from a crash';
END
$$;
CREATE TRIGGER meter_incarnation_fixed BEFORE UPDATE OR DELETE ON meter_incarnation
    FOR EACH ROW EXECUTE FUNCTION kb_incarnation_fixed();
CREATE TRIGGER meter_incarnation_kept BEFORE TRUNCATE ON meter_incarnation
    FOR EACH STATEMENT EXECUTE FUNCTION kb_incarnation_fixed();

-- The token of the server's current life (since its last crash); created by the
-- first caller after one. Concurrent first callers agree (the primary key).
CREATE FUNCTION kb_incarnation() RETURNS uuid
LANGUAGE plpgsql
AS $$
DECLARE
    t uuid;
BEGIN
    SELECT mi.token INTO t FROM meter_incarnation mi;
    IF FOUND THEN
        RETURN t;
    END IF;
    INSERT INTO meter_incarnation (token) VALUES (gen_random_uuid()) ON CONFLICT DO NOTHING;
    SELECT mi.token INTO t FROM meter_incarnation mi;
    RETURN t;
END
$$;

ALTER TABLE billing_accounts
    ADD COLUMN charge_token uuid,
    ADD COLUMN charge_seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN charge_request text;

-- An account's footprint as a life of the server ended in a crash.
CREATE TABLE meter_crash_receipts (
    user_id     uuid NOT NULL REFERENCES billing_accounts (user_id) ON DELETE CASCADE,
    token       uuid NOT NULL,
    seq         bigint NOT NULL,
    request_id  text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, token)
);

-- ---- the slow path, leaving the footprint --------------------------------------------

-- 0015's kb_meter() wrapper is left alone: 0022 drops it, and a database that
-- already ran 0022 (numbers are given out per branch) applies this file after it.

-- 0015's kb_meter_slow() with the request id (p_request_id, NULL for tools) and the
-- footprint; its decisions are unchanged. 0015's three-argument kb_meter_slow() and
-- nine-argument kb_meter_settle() stay for the previous release's workers while
-- hosts upgrade one at a time (docs/ops.md); their charges leave no footprint,
-- which kb_meter_settle() below does not need from them; drop both later.
CREATE FUNCTION kb_meter_slow(p_key_hash text, p_cost integer, p_endpoint text,
    p_request_id text,
    OUT outcome text, OUT user_id uuid, OUT key_id uuid, OUT key_prefix text,
    OUT credits_total integer, OUT credits_used integer, OUT cost integer,
    OUT rl_limit integer, OUT rl_remaining integer, OUT rl_reset bigint,
    OUT retry_after integer, OUT cycle_start timestamptz, OUT day date,
    OUT outbox_id bigint, OUT xid xid8, OUT token uuid, OUT seq bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    t        timestamptz := kb_now();
    win      timestamptz := date_trunc('minute', t);
    k        record;
    a        billing_accounts;
    rpm      integer;
    tier_cr  integer;
    new_used integer;
    over     integer := 0;
    life     uuid;
BEGIN
    IF p_cost < 0 THEN
        RAISE EXCEPTION 'negative cost %', p_cost;
    END IF;
    day := (t AT TIME ZONE 'UTC')::date;
    rl_reset := extract(epoch FROM win + interval '1 minute')::bigint;
    cost := 0;

    SELECT ak.id, ak.user_id, ak.key_prefix, ak.last_used_at INTO k
      FROM api_keys ak
     WHERE ak.key_hash = p_key_hash AND ak.revoked_at IS NULL;
    IF NOT FOUND THEN
        outcome := 'invalid_key';
        RETURN;
    END IF;
    -- API.md: a successful key check sets last_used_at; at most once a second.
    -- Never waits for the key's row (0015 says why).
    IF k.last_used_at IS NULL OR k.last_used_at < t - interval '1 second' THEN
        UPDATE api_keys ak SET last_used_at = greatest(ak.last_used_at, t)
         WHERE ak.id = (SELECT l.id FROM api_keys l WHERE l.id = k.id
                          FOR NO KEY UPDATE SKIP LOCKED);
        k.last_used_at := greatest(k.last_used_at, t);
    END IF;
    user_id := k.user_id;
    key_id := k.id;
    key_prefix := k.key_prefix;

    SELECT * INTO a FROM billing_accounts ba WHERE ba.user_id = k.user_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO billing_accounts AS ba (user_id, billing_cycle_start)
        VALUES (k.user_id, kb_cycle_month(t))
        ON CONFLICT DO NOTHING;
        SELECT * INTO a FROM billing_accounts ba WHERE ba.user_id = k.user_id FOR UPDATE;
    END IF;

    SELECT tr.requests_per_minute, tr.credits_per_cycle INTO rpm, tier_cr
      FROM tiers tr WHERE tr.name = a.tier;
    rpm := coalesce(a.rpm_override, rpm);
    IF t >= a.billing_cycle_end OR a.billing_cycle_start < kb_cycle_month(t) THEN
        a := kb_roll_cycle(a, t);
    END IF;
    a.credits_total := coalesce(a.credits_override, tier_cr);
    credits_total := a.credits_total;
    rl_limit := rpm;
    cycle_start := a.billing_cycle_start;

    -- 429 rate_limit_exceeded before 429 credits_exhausted; neither counts.
    IF a.rl_window_start = win AND a.rl_count >= rpm THEN
        outcome := 'rate_limited';
    ELSE
        new_used := a.credits_used + p_cost;
        IF new_used > a.credits_total THEN
            over := new_used - greatest(a.credits_used, a.credits_total);
            IF NOT a.payg_enabled
               OR (a.overage_cap IS NOT NULL AND new_used - a.credits_total > a.overage_cap) THEN
                outcome := 'exhausted';
            END IF;
        END IF;
    END IF;

    IF outcome IS NOT NULL THEN
        UPDATE billing_accounts ba
           SET credits_used = a.credits_used, credits_total = a.credits_total,
               billing_cycle_start = a.billing_cycle_start,
               billing_cycle_end = a.billing_cycle_end
         WHERE ba.user_id = a.user_id
           AND (ba.credits_used, ba.credits_total, ba.billing_cycle_start)
               IS DISTINCT FROM (a.credits_used, a.credits_total, a.billing_cycle_start);
        credits_used := a.credits_used;
        rl_remaining := CASE WHEN a.rl_window_start = win
                             THEN greatest(0, rpm - a.rl_count) ELSE rpm END;
        retry_after := greatest(1, ceil(extract(epoch FROM win + interval '1 minute' - t)))::integer;
        RETURN;
    END IF;

    -- The footprint of the last charge of an earlier life of the server is kept
    -- before this charge replaces it (kb_meter_settle() may need it).
    life := kb_incarnation();
    IF a.charge_token IS NOT NULL AND a.charge_token <> life THEN
        INSERT INTO meter_crash_receipts (user_id, token, seq, request_id)
        VALUES (a.user_id, a.charge_token, a.charge_seq, a.charge_request)
        ON CONFLICT DO NOTHING;
    END IF;

    IF a.rl_window_start = win THEN
        a.rl_count := a.rl_count + 1;
    ELSE
        a.rl_window_start := win;
        a.rl_count := 1;
    END IF;

    IF a.usage_key = k.id AND a.usage_cycle = a.billing_cycle_start AND a.usage_day = day
       AND a.usage_endpoint = p_endpoint THEN
        a.usage_credits := a.usage_credits + p_cost;
        a.usage_requests := a.usage_requests + 1;
    ELSE
        -- Count the carried counter (its key may have been deleted since: then
        -- its usage went with it), and carry this request's.
        IF a.usage_key IS NOT NULL AND (a.usage_requests > 0 OR a.usage_credits > 0) THEN
            INSERT INTO api_key_usage_day AS u (api_key_id, cycle_start, day, endpoint,
                                                credits_used, requests)
            SELECT a.usage_key, a.usage_cycle, a.usage_day, a.usage_endpoint,
                   a.usage_credits, a.usage_requests
             WHERE EXISTS (SELECT 1 FROM api_keys ak WHERE ak.id = a.usage_key)
            ON CONFLICT ON CONSTRAINT api_key_usage_day_pkey
            DO UPDATE SET credits_used = u.credits_used + excluded.credits_used,
                          requests = u.requests + excluded.requests;
        END IF;
        a.usage_key := k.id;
        a.usage_cycle := a.billing_cycle_start;
        a.usage_day := day;
        a.usage_endpoint := p_endpoint;
        a.usage_credits := p_cost;
        a.usage_requests := 1;
    END IF;

    UPDATE billing_accounts ba
       SET credits_used = new_used,
           credits_total = a.credits_total,
           billing_cycle_start = a.billing_cycle_start,
           billing_cycle_end = a.billing_cycle_end,
           rl_window_start = a.rl_window_start,
           rl_count = a.rl_count,
           rl_limit = rpm,
           -- The fast path takes this key for a minute after it was checked here.
           usage_seen_at = k.last_used_at,
           usage_key = a.usage_key,
           usage_cycle = a.usage_cycle,
           usage_day = a.usage_day,
           usage_endpoint = a.usage_endpoint,
           usage_credits = a.usage_credits,
           usage_requests = a.usage_requests,
           charge_token = life,
           charge_seq = a.charge_seq + 1,
           charge_request = p_request_id
     WHERE ba.user_id = a.user_id;

    IF over > 0 THEN
        INSERT INTO usage_outbox (user_id, stripe_customer_id, credits, created_at)
        VALUES (a.user_id, a.stripe_customer_id, over, t)
        RETURNING id INTO outbox_id;
    END IF;

    outcome := 'ok';
    credits_used := new_used;
    cost := p_cost;
    rl_remaining := greatest(0, rpm - a.rl_count);
    xid := pg_current_xact_id();
    token := life;
    seq := a.charge_seq + 1;
END
$$;

-- ---- settling -------------------------------------------------------------------------

-- Settle a charge whose commit its worker did not see (lib/kb_journal.h): p_xid,
-- p_token and p_seq as the meter statement returned them. 'refunded' when the
-- charge committed (it stood without a 2xx answer) and is refunded now; 'done'
-- when it committed and was refunded before; 'not_charged' when it never
-- committed; 'pending' while its transaction is still running (an orphaned
-- backend finishing it: ask again later); 'unknown' when the id is too old for
-- the commit log (nothing can be decided; never within minutes).
CREATE FUNCTION kb_meter_settle(p_xid xid8, p_token uuid, p_seq bigint, p_request_id text,
                                p_user_id uuid, p_key_id uuid, p_cost integer, p_endpoint text,
                                p_cycle_start timestamptz, p_day date, p_outbox_id bigint)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    st      text;
    f_token uuid;
    f_seq   bigint;
    f_req   text;
BEGIN
    IF p_token = kb_incarnation() THEN
        -- No crash since the charge: its transaction id is its own.
        st := pg_xact_status(p_xid);
    ELSE
        -- The server crashed since: the id may belong to another transaction now.
        -- The account's footprint as that life ended decides (0016's header).
        SELECT ba.charge_token, ba.charge_seq, ba.charge_request INTO f_token, f_seq, f_req
          FROM billing_accounts ba WHERE ba.user_id = p_user_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN 'not_charged';
        END IF;
        IF f_token IS DISTINCT FROM p_token THEN
            SELECT r.seq, r.request_id INTO f_seq, f_req
              FROM meter_crash_receipts r
             WHERE r.user_id = p_user_id AND r.token = p_token;
            IF NOT FOUND THEN
                -- No charge of the account committed in that life.
                RETURN 'not_charged';
            END IF;
        END IF;
        IF f_seq = p_seq AND f_req = p_request_id THEN
            st := 'committed';
        ELSIF f_seq < p_seq THEN
            st := 'aborted';
        ELSE
            -- A later charge of that life committed after this one ended: its
            -- flush made this transaction's id durable, so it was never reused.
            st := pg_xact_status(p_xid);
        END IF;
    END IF;
    IF st IS NULL THEN
        RETURN 'unknown';
    ELSIF st = 'in progress' THEN
        RETURN 'pending';
    ELSIF st = 'aborted' THEN
        RETURN 'not_charged';
    END IF;
    IF EXISTS (SELECT 1 FROM meter_refunds mr WHERE mr.request_id = p_request_id) THEN
        RETURN 'done';
    END IF;
    PERFORM kb_meter_refund(p_request_id, p_user_id, p_key_id, p_cost, p_endpoint,
                            p_cycle_start, p_day, p_outbox_id);
    RETURN 'refunded';
END
$$;
