-- Settling charges whose request never got a 2xx answer (money rule 3 when
-- the worker, its connection or the database fails after the charge).
--
-- Each worker journals its charge in memory the pool shares (lib/kb_journal.h)
-- under a slot key ("host:index"). The meter records the slot's latest charge
-- here in the same transaction as the charge, so whoever settles the slot later
-- can tell whether a meter statement whose reply was lost committed, and refund
-- it with the details the worker never received.

CREATE TABLE meter_slots (
    slot        text PRIMARY KEY,
    request_id  text NOT NULL,
    user_id     uuid NOT NULL,
    key_id      uuid NOT NULL,
    cost        integer NOT NULL,
    endpoint    text NOT NULL,
    cycle_start timestamptz NOT NULL,
    outbox_id   bigint,
    charged_at  timestamptz NOT NULL
);

-- The row the meter returns.
CREATE TYPE kb_meter_result AS (
    outcome        text,
    user_id        uuid,
    key_id         uuid,
    key_prefix     text,
    credits_total  integer,
    credits_used   integer,
    cost           integer,
    rl_limit       integer,
    rl_remaining   integer,
    rl_reset       timestamptz,
    retry_after    integer,
    cycle_start    timestamptz,
    outbox_id      bigint
);

-- The meter statement the workers run: 0003's kb_meter() decisions plus the
-- slot record, in one PL/pgSQL body (one statement per metered request). Each
-- slot's meter statement takes the slot's transaction-scoped advisory lock
-- first, and kb_meter_settle() takes it too, so a settle waits for a meter
-- statement still running on a connection its worker lost (a backend finishes
-- and commits a statement it already read even after its client died).
-- Cheaper than 0003's body, same decisions and rows:
--   - the key is found with a SELECT; api_keys.last_used_at is written only when
--     it is more than a second old (API.md: a successful key check sets it; a key
--     used many times a second no longer rewrites its row, and re-checks its four
--     CHECK constraints, on every request);
--   - kb_roll_cycle() is called only when a roll condition may hold;
--   - the result row is assembled in variables (no extra query per request).
-- kb_meter() keeps its signature as this function without a slot, for tools
-- and tests.

CREATE FUNCTION kb_meter_slot(p_key_hash text, p_cost integer, p_endpoint text,
                                         p_slot text, p_request_id text)
RETURNS SETOF kb_meter_result
LANGUAGE plpgsql
AS $$
DECLARE
    t         timestamptz := kb_now();
    k         record;
    a         billing_accounts;
    r         kb_meter_result;
    rpm       integer;
    tier_cr   integer;
    win       timestamptz := date_trunc('minute', t);
    new_used  integer;
    over      integer := 0;
BEGIN
    IF p_cost < 0 THEN
        RAISE EXCEPTION 'negative cost %', p_cost;
    END IF;
    IF p_slot IS NOT NULL THEN
        -- Held to the end of the transaction; kb_meter_settle() waits on it.
        PERFORM pg_advisory_xact_lock(hashtextextended('kb_meter_slot:' || p_slot, 0));
    END IF;

    SELECT ak.id, ak.user_id, ak.key_prefix, ak.last_used_at INTO k
      FROM api_keys ak
     WHERE ak.key_hash = p_key_hash AND ak.revoked_at IS NULL;
    IF NOT FOUND THEN
        r.outcome := 'invalid_key';
        r.cost := 0;
        RETURN NEXT r;
        RETURN;
    END IF;
    IF k.last_used_at IS NULL OR k.last_used_at < t - interval '1 second' THEN
        UPDATE api_keys ak SET last_used_at = greatest(ak.last_used_at, t) WHERE ak.id = k.id;
    END IF;

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
    -- kb_roll_cycle() decides; this cheaper test (a superset of its two roll
    -- conditions) spares the call on the requests of a cycle that has not ended.
    IF t >= a.billing_cycle_end OR a.billing_cycle_start < kb_cycle_month(t) THEN
        a := kb_roll_cycle(a, t);
    END IF;
    a.credits_total := coalesce(a.credits_override, tier_cr);

    r.user_id := k.user_id;
    r.key_id := k.id;
    r.key_prefix := k.key_prefix;
    r.credits_total := a.credits_total;
    r.rl_limit := rpm;
    r.rl_reset := win + interval '1 minute';
    r.cycle_start := a.billing_cycle_start;

    -- 429 rate_limit_exceeded before 429 credits_exhausted; neither counts.
    IF a.rl_window_start = win AND a.rl_count >= rpm THEN
        r.outcome := 'rate_limited';
    ELSE
        new_used := a.credits_used + p_cost;
        IF new_used > a.credits_total THEN
            over := new_used - greatest(a.credits_used, a.credits_total);
            IF NOT a.payg_enabled
               OR (a.overage_cap IS NOT NULL
                   AND new_used - a.credits_total > a.overage_cap) THEN
                r.outcome := 'exhausted';
            END IF;
        END IF;
    END IF;

    IF r.outcome IS NOT NULL THEN
        -- Refused: persist only a cycle roll / allowance change, never a charge.
        UPDATE billing_accounts ba
           SET credits_used = a.credits_used, credits_total = a.credits_total,
               billing_cycle_start = a.billing_cycle_start,
               billing_cycle_end = a.billing_cycle_end
         WHERE ba.user_id = a.user_id
           AND (ba.credits_used, ba.credits_total, ba.billing_cycle_start)
               IS DISTINCT FROM (a.credits_used, a.credits_total, a.billing_cycle_start);
        r.credits_used := a.credits_used;
        r.cost := 0;
        r.rl_remaining := CASE WHEN a.rl_window_start = win
                               THEN greatest(0, rpm - a.rl_count) ELSE rpm END;
        r.retry_after := greatest(1, ceil(extract(epoch FROM win + interval '1 minute' - t)))::integer;
        RETURN NEXT r;
        RETURN;
    END IF;

    IF a.rl_window_start = win THEN
        a.rl_count := a.rl_count + 1;
    ELSE
        a.rl_window_start := win;
        a.rl_count := 1;
    END IF;

    UPDATE billing_accounts ba
       SET credits_used = new_used,
           credits_total = a.credits_total,
           billing_cycle_start = a.billing_cycle_start,
           billing_cycle_end = a.billing_cycle_end,
           rl_window_start = a.rl_window_start,
           rl_count = a.rl_count
     WHERE ba.user_id = a.user_id;

    INSERT INTO api_key_usage AS u (api_key_id, cycle_start, endpoint, credits_used, requests)
    VALUES (k.id, a.billing_cycle_start, p_endpoint, p_cost, 1)
    ON CONFLICT (api_key_id, cycle_start, endpoint)
    DO UPDATE SET credits_used = u.credits_used + excluded.credits_used,
                  requests = u.requests + 1;

    IF over > 0 THEN
        INSERT INTO usage_outbox (user_id, stripe_customer_id, credits, created_at)
        VALUES (a.user_id, a.stripe_customer_id, over, t)
        RETURNING id INTO r.outbox_id;
    END IF;

    IF p_slot IS NOT NULL THEN
        INSERT INTO meter_slots AS s (slot, request_id, user_id, key_id, cost, endpoint,
                                      cycle_start, outbox_id, charged_at)
        VALUES (p_slot, p_request_id, k.user_id, k.id, p_cost, p_endpoint,
                a.billing_cycle_start, r.outbox_id, t)
        ON CONFLICT (slot) DO UPDATE
            SET request_id = excluded.request_id, user_id = excluded.user_id,
                key_id = excluded.key_id, cost = excluded.cost, endpoint = excluded.endpoint,
                cycle_start = excluded.cycle_start, outbox_id = excluded.outbox_id,
                charged_at = excluded.charged_at;
    END IF;

    r.outcome := 'ok';
    r.credits_used := new_used;
    r.cost := p_cost;
    r.rl_remaining := greatest(0, rpm - a.rl_count);
    RETURN NEXT r;
END
$$;

-- 0003's entry point, now the same implementation without a slot.
CREATE OR REPLACE FUNCTION kb_meter(p_key_hash text, p_cost integer, p_endpoint text)
RETURNS TABLE (
    outcome        text,
    user_id        uuid,
    key_id         uuid,
    key_prefix     text,
    credits_total  integer,
    credits_used   integer,
    cost           integer,
    rl_limit       integer,
    rl_remaining   integer,
    rl_reset       timestamptz,
    retry_after    integer,
    cycle_start    timestamptz,
    outbox_id      bigint
)
LANGUAGE sql
AS $$ SELECT * FROM kb_meter_slot(p_key_hash, p_cost, p_endpoint, NULL, NULL) $$;

-- Settle the slot's charge for p_request_id: refund it (kb_meter_refund, which
-- is idempotent per request id) when the meter committed it; nothing when that
-- request was never charged or a newer charge replaced it. True when it refunded.
CREATE FUNCTION kb_meter_settle(p_slot text, p_request_id text) RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    s meter_slots;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('kb_meter_slot:' || p_slot, 0));
    SELECT * INTO s FROM meter_slots ms WHERE ms.slot = p_slot AND ms.request_id = p_request_id;
    IF NOT FOUND OR EXISTS (SELECT 1 FROM meter_refunds mr WHERE mr.request_id = p_request_id) THEN
        RETURN false;
    END IF;
    PERFORM kb_meter_refund(s.request_id, s.user_id, s.key_id, s.cost, s.endpoint,
                            s.cycle_start, s.outbox_id);
    RETURN true;
END
$$;
