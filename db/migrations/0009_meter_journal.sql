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

-- The slot's transaction-scoped advisory lock: held by a meter statement from
-- its start and taken by kb_meter_settle(), so a settle waits for a meter
-- statement that is still running on a connection its worker lost (a backend
-- finishes and commits a statement it already read even after its client died).
CREATE FUNCTION kb_meter_slot_lock(p_slot text) RETURNS void
    LANGUAGE sql
    AS $$ SELECT pg_advisory_xact_lock(hashtextextended('kb_meter_slot:' || p_slot, 0)) $$;

-- The row kb_meter() returns, as a type a wrapper can hold.
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

-- kb_meter() plus the slot record; still one statement per metered request.
CREATE FUNCTION kb_meter_slot(p_key_hash text, p_cost integer, p_endpoint text, p_slot text,
                              p_request_id text)
RETURNS SETOF kb_meter_result
LANGUAGE plpgsql
AS $$
DECLARE
    r kb_meter_result;
BEGIN
    PERFORM kb_meter_slot_lock(p_slot);
    SELECT * INTO r FROM kb_meter(p_key_hash, p_cost, p_endpoint);
    IF r.outcome = 'ok' THEN
        INSERT INTO meter_slots AS s (slot, request_id, user_id, key_id, cost, endpoint,
                                      cycle_start, outbox_id, charged_at)
        VALUES (p_slot, p_request_id, r.user_id, r.key_id, r.cost, p_endpoint, r.cycle_start,
                r.outbox_id, kb_now())
        ON CONFLICT (slot) DO UPDATE
            SET request_id = excluded.request_id, user_id = excluded.user_id,
                key_id = excluded.key_id, cost = excluded.cost, endpoint = excluded.endpoint,
                cycle_start = excluded.cycle_start, outbox_id = excluded.outbox_id,
                charged_at = excluded.charged_at;
    END IF;
    RETURN NEXT r;
END
$$;

-- Settle the slot's charge for p_request_id: refund it (kb_meter_refund, which
-- is idempotent per request id) when the meter committed it; nothing when that
-- request was never charged or a newer charge replaced it. True when it refunded.
CREATE FUNCTION kb_meter_settle(p_slot text, p_request_id text) RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    s meter_slots;
    n integer;
BEGIN
    PERFORM kb_meter_slot_lock(p_slot);
    SELECT * INTO s FROM meter_slots ms WHERE ms.slot = p_slot AND ms.request_id = p_request_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT count(*) INTO n FROM meter_refunds mr WHERE mr.request_id = p_request_id;
    IF n > 0 THEN
        RETURN false;
    END IF;
    PERFORM kb_meter_refund(s.request_id, s.user_id, s.key_id, s.cost, s.endpoint,
                            s.cycle_start, s.outbox_id);
    RETURN true;
END
$$;
