-- 0003_billing: tiers, billing accounts, per-key usage counters, the usage
-- outbox, and the one-round-trip meter (DESIGN.md money rules 1-4 and 9).
--
-- Invariants:
--   * Without PAYG, credits_used <= credits_total after every statement,
--     whatever the concurrency: the account row is locked (FOR UPDATE) for
--     the whole decision, so N parallel requests with room for K succeed K
--     times.
--   * The outbox row for PAYG overage is written in the same transaction as
--     the deduction, and holds only the part of the cost beyond credits_total.
--   * A refused request (401, 429) changes no counter.
--   * Time comes from kb_now() (0001_clock) so tests can move the clock.

-- Start of the cycle an account is in at instant t (money rule 9).
CREATE FUNCTION kb_cycle_month(t timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT date_trunc('month', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' $$;

CREATE TABLE tiers (
    name                text PRIMARY KEY,
    credits_per_cycle   integer NOT NULL CHECK (credits_per_cycle >= 0),
    requests_per_minute integer NOT NULL CHECK (requests_per_minute > 0)
);

INSERT INTO tiers (name, credits_per_cycle, requests_per_minute) VALUES
    ('free', 1000, 30),
    ('payg', 1000, 60),
    ('project', 4000, 120);

CREATE TABLE billing_accounts (
    user_id                 uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    stripe_customer_id      text UNIQUE,
    tier                    text NOT NULL DEFAULT 'free' REFERENCES tiers (name),
    payg_enabled            boolean NOT NULL DEFAULT false,
    -- Allowance of the current cycle: the tier's, or credits_override.
    credits_total           integer NOT NULL DEFAULT 1000 CHECK (credits_total >= 0),
    credits_used            integer NOT NULL DEFAULT 0 CHECK (credits_used >= 0),
    billing_cycle_start     timestamptz NOT NULL DEFAULT kb_cycle_month(kb_now()),
    -- Project tiers: end of the Stripe billing period; NULL = UTC calendar month.
    billing_cycle_end       timestamptz,
    -- Optional cap on PAYG overage credits per cycle (NULL = no cap).
    overage_cap             integer CHECK (overage_cap >= 0),
    -- Custom deals (kbctl): override the tier's credits / requests per minute.
    credits_override        integer CHECK (credits_override >= 0),
    rpm_override            integer CHECK (rpm_override > 0),
    -- Fixed one-minute rate window, on the row the meter locks anyway.
    rl_window_start         timestamptz NOT NULL DEFAULT '-infinity',
    rl_count                integer NOT NULL DEFAULT 0,
    stripe_subscription_id  text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- Without PAYG nobody goes past the allowance (money rule 2).
    CONSTRAINT no_overdraft_without_payg CHECK (payg_enabled OR credits_used <= credits_total)
);

-- Credits charged per key, per cycle and per route: counters, not a row per request.
CREATE TABLE api_key_usage (
    api_key_id   uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    cycle_start  timestamptz NOT NULL,
    endpoint     text NOT NULL,
    credits_used bigint NOT NULL DEFAULT 0 CHECK (credits_used >= 0),
    requests     bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
    PRIMARY KEY (api_key_id, cycle_start, endpoint)
);

-- PAYG overage waiting to be reported to Stripe as meter events.
CREATE TABLE usage_outbox (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            uuid NOT NULL REFERENCES billing_accounts (user_id) ON DELETE CASCADE,
    stripe_customer_id text,
    credits            integer NOT NULL CHECK (credits > 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    reported_at        timestamptz,
    batch_identifier   text,
    flagged_at         timestamptz,
    flag_reason        text
);
CREATE INDEX usage_outbox_unreported ON usage_outbox (created_at) WHERE reported_at IS NULL;

-- Bring an account's cycle up to date: free and PAYG roll on the UTC calendar
-- month; project accounts at their stored period end (Stripe moves it with
-- the webhook; when the webhook is late the period advances by a month).
-- Works on the locked row passed in; returns it updated in memory.
CREATE FUNCTION kb_roll_cycle(a billing_accounts, t timestamptz) RETURNS billing_accounts
    LANGUAGE plpgsql IMMUTABLE
    AS $$
BEGIN
    IF a.tier = 'project' AND a.billing_cycle_end IS NOT NULL THEN
        IF t >= a.billing_cycle_end THEN
            a.billing_cycle_start := a.billing_cycle_end;
            a.billing_cycle_end := a.billing_cycle_end + interval '1 month';
            WHILE t >= a.billing_cycle_end LOOP
                a.billing_cycle_start := a.billing_cycle_end;
                a.billing_cycle_end := a.billing_cycle_end + interval '1 month';
            END LOOP;
            a.credits_used := 0;
        END IF;
    ELSIF a.billing_cycle_start < kb_cycle_month(t) THEN
        a.billing_cycle_start := kb_cycle_month(t);
        a.credits_used := 0;
    END IF;
    RETURN a;
END
$$;

-- The meter: one statement per metered request (money rule 1).
--
-- Authenticates the key hash, creates the free account lazily, rolls the
-- cycle, applies the requests-per-minute window, deducts, counts the usage
-- per key/cycle/endpoint, sets last_used_at, and enqueues PAYG overage.
-- outcome: 'ok' | 'invalid_key' | 'rate_limited' | 'exhausted'.
CREATE FUNCTION kb_meter(p_key_hash text, p_cost integer, p_endpoint text)
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
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    t         timestamptz := kb_now();
    k         record;
    a         billing_accounts;
    rpm       integer;
    tier_cr   integer;
    win       timestamptz := date_trunc('minute', t);
    new_used  integer;
    over      integer := 0;
    ob_id     bigint;
BEGIN
    IF p_cost < 0 THEN
        RAISE EXCEPTION 'negative cost %', p_cost;
    END IF;

    UPDATE api_keys AS ak SET last_used_at = t
     WHERE ak.key_hash = p_key_hash AND ak.revoked_at IS NULL
    RETURNING ak.id, ak.user_id, ak.key_prefix INTO k;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'invalid_key'::text, NULL::uuid, NULL::uuid, NULL::text, NULL::integer,
            NULL::integer, 0, NULL::integer, NULL::integer, NULL::timestamptz, NULL::integer,
            NULL::timestamptz, NULL::bigint;
        RETURN;
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
    a := kb_roll_cycle(a, t);
    a.credits_total := coalesce(a.credits_override, tier_cr);

    -- 429 rate_limit_exceeded before 429 credits_exhausted; neither counts.
    IF a.rl_window_start = win AND a.rl_count >= rpm THEN
        outcome := 'rate_limited';
    ELSE
        new_used := a.credits_used + p_cost;
        IF new_used > a.credits_total THEN
            over := new_used - greatest(a.credits_used, a.credits_total);
            IF NOT a.payg_enabled
               OR (a.overage_cap IS NOT NULL
                   AND new_used - a.credits_total > a.overage_cap) THEN
                outcome := 'exhausted';
            END IF;
        END IF;
    END IF;

    IF outcome IS NOT NULL THEN
        -- Refused: persist only a cycle roll / allowance change, never a charge.
        UPDATE billing_accounts ba
           SET credits_used = a.credits_used, credits_total = a.credits_total,
               billing_cycle_start = a.billing_cycle_start,
               billing_cycle_end = a.billing_cycle_end
         WHERE ba.user_id = a.user_id
           AND (ba.credits_used, ba.credits_total, ba.billing_cycle_start)
               IS DISTINCT FROM (a.credits_used, a.credits_total, a.billing_cycle_start);
        RETURN QUERY SELECT outcome, k.user_id, k.id, k.key_prefix, a.credits_total,
            a.credits_used, 0, rpm,
            CASE WHEN a.rl_window_start = win THEN greatest(0, rpm - a.rl_count) ELSE rpm END,
            win + interval '1 minute',
            greatest(1, ceil(extract(epoch FROM win + interval '1 minute' - t)))::integer,
            a.billing_cycle_start, NULL::bigint;
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
        RETURNING id INTO ob_id;
    END IF;

    RETURN QUERY SELECT 'ok'::text, k.user_id, k.id, k.key_prefix, a.credits_total, new_used,
        p_cost, rpm, greatest(0, rpm - a.rl_count), win + interval '1 minute', NULL::integer,
        a.billing_cycle_start, ob_id;
END
$$;

-- Refunds already given, by request id, so a refund can be re-sent safely
-- after a lost connection (a row only for failed requests, which are rare).
CREATE TABLE meter_refunds (
    request_id text PRIMARY KEY,
    user_id    uuid NOT NULL,
    credits    integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Give back a charge whose request failed after metering (money rule 3).
-- Idempotent per request id. Only within the same cycle (a cycle that rolled
-- in between already reset the counters). Removes the outbox row unless the
-- reporter already sent it. Returns the account figures after the refund for
-- the X-Credits-* headers.
CREATE FUNCTION kb_meter_refund(p_request_id text, p_user_id uuid, p_key_id uuid,
                                p_cost integer, p_endpoint text, p_cycle_start timestamptz,
                                p_outbox_id bigint)
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
        UPDATE billing_accounts ba
           SET credits_used = greatest(0, ba.credits_used - p_cost)
         WHERE ba.user_id = p_user_id
        RETURNING * INTO a;
        UPDATE api_key_usage u
           SET credits_used = greatest(0, u.credits_used - p_cost),
               requests = greatest(0, u.requests - 1)
         WHERE u.api_key_id = p_key_id AND u.cycle_start = p_cycle_start
           AND u.endpoint = p_endpoint;
    END IF;
    IF p_outbox_id IS NOT NULL THEN
        DELETE FROM usage_outbox o WHERE o.id = p_outbox_id AND o.reported_at IS NULL;
        removed := FOUND;
    END IF;
    RETURN QUERY SELECT a.credits_total, a.credits_used, removed;
END
$$;
