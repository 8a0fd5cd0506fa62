-- 0015_meter_fast_path: the meter as one plain UPDATE of the account row in the
-- common case, usage counters by UTC day, and charges settled by transaction id
-- instead of a slot row.
--
-- Measured with pgbench on 2 cores (README "Benchmarks"): 0009's kb_meter_slot()
-- cost about twice the CPU of a bare durable UPDATE of one account row: PL/pgSQL
-- and executor set-up for its six inner statements, the slot row, the usage
-- upsert, the key and tier lookups, each a row version, a WAL record or a plan
-- node of its own. Now:
--
--   * The workers' meter statement (lib/meter.c, kb_meter_stmt) is one UPDATE of
--     the account row by user id, with no join, taken only when nothing but a
--     charge is due: the request's key is the one the account carries (below)
--     and was checked against api_keys less than a minute ago, no cycle roll,
--     room in the rate window and in the credits (no overage), and the
--     request's usage counter is the one the account carries. Its WHERE is
--     re-checked on the newest row version under concurrency (READ COMMITTED),
--     so no overdraft and the rate window stay exact. The worker learns a key's
--     user and id from an earlier answer; it authenticates nothing by itself:
--     only the account row says the key is live.
--   * Everything else (a key the worker has not seen, unknown or revoked keys,
--     lazy account, last_used_at, a cycle roll, a new allowance, rate limit,
--     exhaustion, PAYG overage, another counter) goes to kb_meter_slow() below,
--     in the same transaction, which locks the row and decides exactly as
--     0003/0009 did, and re-reads the key, the tier and the overrides.
--   * Per-key usage is counted by (key, cycle, UTC day, route). The counter of
--     the account's current (key, cycle, day, route) lives in the account row
--     itself (usage_* columns), so a charge in the common case writes one row
--     version; when a request of another key, day or route comes, kb_meter_slow()
--     adds that counter to api_key_usage_day (one upsert) and starts the new one.
--     The view api_key_usage is the sum of both; every reader uses it.
--   * What the fast path trusts is kept true by the writers: usage_key is set
--     only by kb_meter_slow() after it checked the key, and revoking or deleting
--     a key clears it (triggers on api_keys); rl_limit, the requests per minute
--     in force, follows tier, rpm_override and the tiers table (triggers); the
--     allowance credits_total is kept by every writer (kb_meter_slow(),
--     kb_stripe_recompute(), kbctl, and a trigger for edits of a tier).
--   * api_keys.last_used_at: kb_meter_slow() writes it (at most once a second),
--     and a key's charges go to the slow path at least once a minute, so a key
--     in use shows a last_used_at less than a minute old.
--   * meter_slots is gone. The worker leaves the meter's transaction open until
--     it has journaled the transaction id (pg_current_xact_id()) and the charge's
--     details, then commits with the protocol's Sync; a charge whose commit it
--     did not see is settled by kb_meter_settle() from pg_xact_status().

-- ---- usage by day --------------------------------------------------------------------

ALTER TABLE api_key_usage RENAME TO api_key_usage_day;
ALTER INDEX api_key_usage_pkey RENAME TO api_key_usage_day_old_pkey;
ALTER TABLE api_key_usage_day ADD COLUMN day date;
-- Counters from before this migration have no day: they are shown on their cycle's
-- first day.
UPDATE api_key_usage_day SET day = (cycle_start AT TIME ZONE 'UTC')::date;
ALTER TABLE api_key_usage_day
    ALTER COLUMN day SET NOT NULL,
    DROP CONSTRAINT api_key_usage_day_old_pkey,
    ADD CONSTRAINT api_key_usage_day_pkey PRIMARY KEY (api_key_id, cycle_start, day, endpoint);
-- Counters are updated in place: leave room on each page for HOT updates.
ALTER TABLE api_key_usage_day SET (fillfactor = 70);
ALTER TABLE billing_accounts SET (fillfactor = 70);

-- The counter an account carries: key, cycle, day and route of its latest charges;
-- when kb_meter_slow() last checked that key (and wrote its last_used_at); the
-- requests per minute in force.
ALTER TABLE billing_accounts
    ADD COLUMN rl_limit integer,
    ADD COLUMN usage_seen_at timestamptz,
    ADD COLUMN usage_key uuid,
    ADD COLUMN usage_cycle timestamptz,
    ADD COLUMN usage_day date,
    ADD COLUMN usage_endpoint text,
    ADD COLUMN usage_credits bigint NOT NULL DEFAULT 0,
    ADD COLUMN usage_requests bigint NOT NULL DEFAULT 0;

UPDATE billing_accounts ba SET rl_limit = coalesce(ba.rpm_override, tr.requests_per_minute)
  FROM tiers tr WHERE tr.name = ba.tier;

-- rl_limit follows the tier and the override. AFTER triggers (a BEFORE row trigger
-- would lock every row the meter updates before it could tell it does not apply).
CREATE FUNCTION kb_account_rl_limit() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE billing_accounts ba
       SET rl_limit = coalesce(ba.rpm_override, tr.requests_per_minute)
      FROM tiers tr
     WHERE ba.user_id = NEW.user_id AND tr.name = ba.tier
       AND ba.rl_limit IS DISTINCT FROM coalesce(ba.rpm_override, tr.requests_per_minute);
    RETURN NULL;
END
$$;
CREATE TRIGGER billing_accounts_rl_limit AFTER INSERT OR UPDATE OF tier, rpm_override
    ON billing_accounts FOR EACH ROW EXECUTE FUNCTION kb_account_rl_limit();

-- An edit of a tier reaches its accounts at once: requests per minute, and the
-- allowance of those without an override (one downgraded below what it used is
-- exhausted, not overdrawn, as kb_stripe_recompute() does).
CREATE FUNCTION kb_tier_changed() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE billing_accounts ba
       SET rl_limit = coalesce(ba.rpm_override, NEW.requests_per_minute),
           credits_total = coalesce(ba.credits_override, NEW.credits_per_cycle),
           credits_used = CASE WHEN NOT ba.payg_enabled
                                    AND ba.credits_used > coalesce(ba.credits_override,
                                                                   NEW.credits_per_cycle)
                               THEN coalesce(ba.credits_override, NEW.credits_per_cycle)
                               ELSE ba.credits_used END
     WHERE ba.tier = NEW.name
       AND (ba.rl_limit IS DISTINCT FROM coalesce(ba.rpm_override, NEW.requests_per_minute)
            OR ba.credits_total <> coalesce(ba.credits_override, NEW.credits_per_cycle));
    RETURN NULL;
END
$$;
CREATE TRIGGER tiers_changed AFTER UPDATE OF requests_per_minute, credits_per_cycle ON tiers
    FOR EACH ROW EXECUTE FUNCTION kb_tier_changed();

-- A key revoked or deleted is no longer the one an account carries: the next
-- request with it goes to kb_meter_slow(), which refuses it. A revoked key's
-- carried counter is counted first (its usage happened); a deleted key's usage
-- goes with it.
CREATE FUNCTION kb_key_gone() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    a billing_accounts;
BEGIN
    SELECT * INTO a FROM billing_accounts ba WHERE ba.usage_key = OLD.id AND ba.user_id = OLD.user_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND (a.usage_requests > 0 OR a.usage_credits > 0) THEN
        INSERT INTO api_key_usage_day AS u (api_key_id, cycle_start, day, endpoint, credits_used,
                                            requests)
        VALUES (a.usage_key, a.usage_cycle, a.usage_day, a.usage_endpoint, a.usage_credits,
                a.usage_requests)
        ON CONFLICT ON CONSTRAINT api_key_usage_day_pkey
        DO UPDATE SET credits_used = u.credits_used + excluded.credits_used,
                      requests = u.requests + excluded.requests;
    END IF;
    UPDATE billing_accounts ba
       SET usage_key = NULL, usage_cycle = NULL, usage_day = NULL, usage_endpoint = NULL,
           usage_credits = 0, usage_requests = 0, usage_seen_at = NULL
     WHERE ba.user_id = a.user_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER api_keys_revoked AFTER UPDATE OF revoked_at ON api_keys
    FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
    EXECUTE FUNCTION kb_key_gone();
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION kb_key_gone();

-- Usage per key, cycle, UTC day and route. A (key, cycle, day, route) may appear
-- twice (counted rows and the account's carried counter): readers sum.
CREATE VIEW api_key_usage AS
SELECT u.api_key_id, u.cycle_start, u.day, u.endpoint, u.credits_used, u.requests
  FROM api_key_usage_day u
UNION ALL
SELECT ba.usage_key, ba.usage_cycle, ba.usage_day, ba.usage_endpoint, ba.usage_credits,
       ba.usage_requests
  FROM billing_accounts ba
 WHERE ba.usage_key IS NOT NULL;

-- Tools and fixtures that add counters write through the view: a row without a
-- day counts on its cycle's first day.
CREATE FUNCTION kb_api_key_usage_insert() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO api_key_usage_day (api_key_id, cycle_start, day, endpoint, credits_used, requests)
    VALUES (NEW.api_key_id, NEW.cycle_start,
            coalesce(NEW.day, (NEW.cycle_start AT TIME ZONE 'UTC')::date), NEW.endpoint,
            coalesce(NEW.credits_used, 0), coalesce(NEW.requests, 0));
    RETURN NEW;
END
$$;
CREATE TRIGGER api_key_usage_insert INSTEAD OF INSERT ON api_key_usage
    FOR EACH ROW EXECUTE FUNCTION kb_api_key_usage_insert();

-- ---- what 0003 and 0009 had, replaced -------------------------------------------------

DROP FUNCTION kb_meter_settle(text, text);
DROP FUNCTION kb_meter(text, integer, text);
DROP FUNCTION kb_meter_slot(text, integer, text, text, text);
DROP TYPE kb_meter_result;
DROP TABLE meter_slots;
DROP FUNCTION kb_meter_refund(text, uuid, uuid, integer, text, timestamptz, bigint);

-- ---- the slow path -------------------------------------------------------------------

-- One charge's decision with the account row locked, for every request the fast
-- path does not take. Returns one row with the columns of the meter statement;
-- outcome: 'ok' | 'invalid_key' | 'rate_limited' | 'exhausted'. A refused
-- request changes no counter; it persists only a cycle roll or a new allowance.
CREATE FUNCTION kb_meter_slow(p_key_hash text, p_cost integer, p_endpoint text,
    OUT outcome text, OUT user_id uuid, OUT key_id uuid, OUT key_prefix text,
    OUT credits_total integer, OUT credits_used integer, OUT cost integer,
    OUT rl_limit integer, OUT rl_remaining integer, OUT rl_reset bigint,
    OUT retry_after integer, OUT cycle_start timestamptz, OUT day date,
    OUT outbox_id bigint, OUT xid xid8)
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
    -- Never waits for the key's row: this transaction may hold its account row
    -- already (the fast path's UPDATE locks the row it re-checks), and revoking
    -- a key locks the key, then the account. A row another transaction is
    -- updating is skipped; that one writes last_used_at.
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
           -- The fast path takes this key for a second after it was checked here.
           usage_seen_at = k.last_used_at,
           usage_key = a.usage_key,
           usage_cycle = a.usage_cycle,
           usage_day = a.usage_day,
           usage_endpoint = a.usage_endpoint,
           usage_credits = a.usage_credits,
           usage_requests = a.usage_requests
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
END
$$;

-- 0003's entry point, kept for tools and tests: the meter's decisions in one
-- call, always through the locked path (the workers run kb_meter_stmt).
CREATE FUNCTION kb_meter(p_key_hash text, p_cost integer, p_endpoint text)
RETURNS TABLE (outcome text, user_id uuid, key_id uuid, key_prefix text, credits_total integer,
               credits_used integer, cost integer, rl_limit integer, rl_remaining integer,
               rl_reset bigint, retry_after integer, cycle_start timestamptz, day date,
               outbox_id bigint, xid xid8)
LANGUAGE sql
AS $$ SELECT * FROM kb_meter_slow(p_key_hash, p_cost, p_endpoint) $$;

-- ---- refunds and settling --------------------------------------------------------------

-- Give back a charge whose request failed after metering (money rule 3).
-- Idempotent per request id. Only within the same cycle (a cycle that rolled in
-- between already reset the counters). Takes the request back from its day's
-- counter (the carried one when it is that counter, else the counted row: the
-- sum is the same either way). Removes the outbox row unless the reporter
-- already sent it. Returns the account figures after the refund.
CREATE FUNCTION kb_meter_refund(p_request_id text, p_user_id uuid, p_key_id uuid,
                                p_cost integer, p_endpoint text, p_cycle_start timestamptz,
                                p_day date, p_outbox_id bigint)
RETURNS TABLE (credits_total integer, credits_used integer, outbox_removed boolean)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    a       billing_accounts;
    removed boolean := false;
BEGIN
    SELECT * INTO a FROM billing_accounts ba WHERE ba.user_id = p_user_id FOR UPDATE;
    INSERT INTO meter_refunds (request_id, user_id, credits)
    VALUES (p_request_id, p_user_id, p_cost)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        -- Already refunded (a retry after a lost reply): report, change nothing.
        RETURN QUERY SELECT a.credits_total, a.credits_used, false;
        RETURN;
    END IF;
    IF a.billing_cycle_start = p_cycle_start THEN
        IF a.usage_key = p_key_id AND a.usage_cycle = p_cycle_start AND a.usage_day = p_day
           AND a.usage_endpoint = p_endpoint AND a.usage_requests > 0 THEN
            UPDATE billing_accounts ba
               SET credits_used = greatest(0, ba.credits_used - p_cost),
                   usage_credits = greatest(0, ba.usage_credits - p_cost),
                   usage_requests = ba.usage_requests - 1
             WHERE ba.user_id = p_user_id
            RETURNING * INTO a;
        ELSE
            UPDATE billing_accounts ba
               SET credits_used = greatest(0, ba.credits_used - p_cost)
             WHERE ba.user_id = p_user_id
            RETURNING * INTO a;
            UPDATE api_key_usage_day u
               SET credits_used = greatest(0, u.credits_used - p_cost),
                   requests = greatest(0, u.requests - 1)
             WHERE u.api_key_id = p_key_id AND u.cycle_start = p_cycle_start
               AND u.day = p_day AND u.endpoint = p_endpoint;
        END IF;
    END IF;
    IF p_outbox_id IS NOT NULL THEN
        DELETE FROM usage_outbox o WHERE o.id = p_outbox_id AND o.reported_at IS NULL;
        removed := FOUND;
    END IF;
    RETURN QUERY SELECT a.credits_total, a.credits_used, removed;
END
$$;

-- Settle a charge whose commit its worker did not see (lib/kb_journal.h): the
-- worker journaled the meter transaction's id and the charge before it sent the
-- commit. 'refunded' when that transaction committed (the charge stood without a
-- 2xx answer) and is refunded now; 'done' when it committed and was refunded
-- before; 'not_charged' when it aborted; 'pending' while it is still running (an
-- orphaned backend finishing it: ask again later); 'unknown' when the id is too
-- old for the commit log (nothing can be decided; never within minutes).
CREATE FUNCTION kb_meter_settle(p_xid xid8, p_request_id text, p_user_id uuid, p_key_id uuid,
                                p_cost integer, p_endpoint text, p_cycle_start timestamptz,
                                p_day date, p_outbox_id bigint)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    st text := pg_xact_status(p_xid);
BEGIN
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
