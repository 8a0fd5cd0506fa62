-- 0027_meter_rate_minute: the fast path's window ends with the rate window's minute.
--
-- The workers' meter statement (lib/meter.c, kb_meter_stmt) counted the rate
-- window itself on every charge: rl_window_start compared with, and set to,
-- date_trunc('minute', kb_now()), and a CASE restarting rl_count in a new minute.
-- Three time-zone truncations and a CASE per charge, for a value that changes
-- once a minute.
--
-- kb_meter_slow() now stores the window [fast_from, fast_until) inside the
-- minute it counted the request in (win):
--   fast_from  = win (the minute's start, never before the start of usage_day);
--   fast_until = the earliest of usage_seen_at + 1 minute, the end of win's
--                minute, the end (UTC) of usage_day and the cycle's end (0026).
-- Inside it rl_window_start is the current minute, so the fast path only adds one
-- to rl_count and charges while rl_count < rl_limit. The first charge of a new
-- minute takes the slow path, which restarts the count, as the key check
-- already sent each busy key there about once a minute (usage_seen_at + 1 minute).
-- fast_from = win also keeps a charge whose transaction began before the minute
-- the slow path counted in (an older kb_now()) off the fast path.
--
-- Windows stored by 0026 may span a minute's end: they are cleared, so the first
-- charge of each account after this migration goes the slow way. The previous
-- release's workers still count the minute in their own statement, which is right
-- inside either window.

UPDATE billing_accounts SET fast_from = NULL, fast_until = NULL WHERE fast_until IS NOT NULL;

CREATE OR REPLACE FUNCTION kb_meter_slow(p_key_hash text, p_cost integer, p_endpoint text,
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
           -- ...within this rate window's minute, and where no roll is due (0027).
           fast_from = win,
           fast_until = least(k.last_used_at + interval '1 minute',
                              win + interval '1 minute',
                              (a.usage_day + 1)::timestamp AT TIME ZONE 'UTC',
                              CASE WHEN a.tier = 'project' AND a.billing_cycle_end IS NOT NULL
                                   THEN a.billing_cycle_end
                                   ELSE (date_trunc('month', a.billing_cycle_start AT TIME ZONE 'UTC')
                                         + interval '1 month') AT TIME ZONE 'UTC' END),
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
