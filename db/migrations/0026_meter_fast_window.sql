-- 0026_meter_fast_window: the fast path's clock checks as one stored window.
--
-- The workers' meter statement (lib/meter.c, kb_meter_stmt) charged only when
-- three conditions on the clock held, evaluated on every charge:
--   * the key was checked by kb_meter_slow() less than a minute ago
--     (usage_seen_at >= kb_now() - 1 minute);
--   * no cycle roll is due (project with a period end: kb_now() < billing_cycle_end;
--     otherwise billing_cycle_start >= the UTC month of kb_now(), kb_cycle_month());
--   * the carried usage counter is today's (usage_day = the UTC day of kb_now()).
-- The last two are time-zone arithmetic (AT TIME ZONE, date_trunc) on every
-- charge: about 7 % of the statement's cost (pgbench, docs/benchmarks.md). They
-- only change when kb_meter_slow() writes the row, so it now stores them as the
-- instants the fast path may charge in, [fast_from, fast_until):
--   fast_from  = the start (UTC) of usage_day;
--   fast_until = the earliest of usage_seen_at + 1 minute, the end (UTC) of
--                usage_day, and the cycle's end (billing_cycle_end for a project
--                with one, else the start of the UTC month after billing_cycle_start's:
--                billing_cycle_start >= kb_cycle_month(t) holds exactly for t before it).
-- The fast path tests kb_now() against both. A NULL window (rows before this
-- migration, or cleared below) never charges fast: kb_meter_slow() decides and
-- stores a window.
--
-- Any other write of tier, billing_cycle_start or billing_cycle_end (a cycle roll
-- in kb_meter_slow() itself, kb_stripe_recompute(), kbctl) clears the window, so
-- the next charge goes the slow way and sees the new cycle at once, as before.
-- usage_cycle = billing_cycle_start stays in the fast path's WHERE as well.

ALTER TABLE billing_accounts
    ADD COLUMN fast_from timestamptz,
    ADD COLUMN fast_until timestamptz;

CREATE FUNCTION kb_account_fast_reset() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE billing_accounts ba SET fast_from = NULL, fast_until = NULL
     WHERE ba.user_id = NEW.user_id AND ba.fast_until IS NOT NULL;
    RETURN NULL;
END
$$;
-- AFTER, with a column list: the fast path's UPDATE sets none of these columns, so
-- the trigger costs it nothing (a BEFORE row trigger would lock its row first).
CREATE TRIGGER billing_accounts_fast_reset
    AFTER UPDATE OF tier, billing_cycle_start, billing_cycle_end ON billing_accounts
    FOR EACH ROW
    WHEN (OLD.tier IS DISTINCT FROM NEW.tier
          OR OLD.billing_cycle_start IS DISTINCT FROM NEW.billing_cycle_start
          OR OLD.billing_cycle_end IS DISTINCT FROM NEW.billing_cycle_end)
    EXECUTE FUNCTION kb_account_fast_reset();

-- 0016's kb_meter_slow(), its decisions unchanged, storing the window with each
-- charge it makes.
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
           -- ...and within the instants it may charge without a roll (below).
           fast_from = (a.usage_day::timestamp AT TIME ZONE 'UTC'),
           fast_until = least(k.last_used_at + interval '1 minute',
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
