-- 0007_stripe: Stripe webhooks, subscription state and the usage reporter's
-- batches (DESIGN.md money rules 5-11, API.md §5.13 and §7 items 4-7).
--
-- Invariants:
--   * A webhook event id is inserted into stripe_events in the same
--     transaction that applies it (kb_stripe_apply_event), so a redelivery is
--     a no-op and a crash leaves neither the effect nor the id.
--   * stripe_subscriptions keeps, per subscription, the newest state seen and
--     the `created` of the event that set it; an older event never overwrites
--     it ("status is the truth", money rule 8).
--   * billing_accounts is always recomputed from the user's known
--     subscriptions (kb_stripe_recompute), never patched field by field, so
--     events, their order and stripe-sync converge on the same row.
--   * usage_outbox rows get a batch_identifier once, in the transaction that
--     claims them (FOR UPDATE SKIP LOCKED); a batch's rows never change after
--     that, so a resend after a crash carries the same identifier and value,
--     and Stripe's identifier dedupe makes the meter count it once.
--
-- Columns added to 0003's billing_accounts (0003 cannot be edited):
--   payg_requested  what the user asked for with POST /billing/payg; the
--                   effective payg_enabled is requested AND a metered item is
--                   on a live subscription AND the account is not past due.
--   past_due        a payment failed and is not yet recovered (see README).

ALTER TABLE billing_accounts
    ADD COLUMN payg_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN past_due boolean NOT NULL DEFAULT false;

-- Accounts whose PAYG was switched on before this migration keep it.
UPDATE billing_accounts SET payg_requested = payg_enabled;

CREATE TABLE stripe_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    created      timestamptz NOT NULL,
    customer     text,
    -- applied | duplicate-free outcomes: applied, stale, ignored, unknown_customer
    outcome      text NOT NULL,
    -- Kept only for events not applied for want of a customer (stripe-sync).
    payload      jsonb,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_events_unapplied ON stripe_events (customer)
    WHERE outcome = 'unknown_customer';

CREATE TABLE stripe_subscriptions (
    id                  text PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES billing_accounts (user_id) ON DELETE CASCADE,
    customer            text NOT NULL,
    status              text NOT NULL,
    has_project         boolean NOT NULL,
    payg_item_id        text,
    period_start        timestamptz,
    period_end          timestamptz,
    -- created of the newest event (or sync) that set this state
    state_at            timestamptz NOT NULL,
    last_failed_at      timestamptz,
    last_paid_at        timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_subscriptions_user ON stripe_subscriptions (user_id);

CREATE FUNCTION kb_stripe_live(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT status IN ('active', 'trialing', 'past_due') $$;

-- Rebuild an account's Stripe-derived fields from its subscriptions.
CREATE FUNCTION kb_stripe_recompute(p_user uuid) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    a        billing_accounts;
    proj     stripe_subscriptions;
    billable boolean;
    pastdue  boolean;
    new_tier text;
    t        timestamptz := kb_now();
BEGIN
    SELECT * INTO a FROM billing_accounts ba WHERE ba.user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO proj FROM stripe_subscriptions s
     WHERE s.user_id = p_user AND s.has_project AND kb_stripe_live(s.status)
     ORDER BY s.period_start DESC NULLS LAST, s.state_at DESC LIMIT 1;
    SELECT coalesce(bool_or(s.payg_item_id IS NOT NULL AND kb_stripe_live(s.status)), false),
           coalesce(bool_or(s.status IN ('past_due', 'unpaid')
                            OR (s.last_failed_at IS NOT NULL
                                AND s.last_failed_at > coalesce(s.last_paid_at, '-infinity')
                                AND kb_stripe_live(s.status))), false)
      INTO billable, pastdue
      FROM stripe_subscriptions s WHERE s.user_id = p_user;

    IF proj.id IS NOT NULL THEN
        new_tier := 'project';
    ELSIF billable AND a.payg_requested THEN
        new_tier := 'payg';
    ELSE
        new_tier := 'free';
    END IF;

    a.payg_enabled := a.payg_requested AND billable AND NOT pastdue;
    a.past_due := pastdue;
    IF new_tier = 'project' THEN
        a.stripe_subscription_id := proj.id;
        IF a.tier <> 'project' OR a.billing_cycle_end IS NULL
           OR proj.period_start > a.billing_cycle_start THEN
            -- Stripe started a new period (or the Project plan began): money rule 9.
            a.billing_cycle_start := coalesce(proj.period_start, t);
            a.billing_cycle_end := coalesce(proj.period_end, a.billing_cycle_start + interval '1 month');
            a.credits_used := 0;
        ELSIF proj.period_end IS NOT NULL THEN
            a.billing_cycle_end := proj.period_end;
        END IF;
    ELSE
        SELECT s.id INTO a.stripe_subscription_id FROM stripe_subscriptions s
         WHERE s.user_id = p_user AND kb_stripe_live(s.status)
         ORDER BY s.state_at DESC LIMIT 1;
        IF a.tier = 'project' OR a.billing_cycle_end IS NOT NULL THEN
            -- Back on the UTC calendar month.
            a.billing_cycle_start := kb_cycle_month(t);
            a.billing_cycle_end := NULL;
        END IF;
    END IF;
    a.tier := new_tier;
    SELECT coalesce(a.credits_override, tr.credits_per_cycle) INTO a.credits_total
      FROM tiers tr WHERE tr.name = new_tier;
    IF NOT a.payg_enabled AND a.credits_used > a.credits_total THEN
        a.credits_used := a.credits_total; -- downgraded mid-cycle: exhausted, not negative
    END IF;

    UPDATE billing_accounts ba
       SET tier = a.tier, credits_total = a.credits_total, credits_used = a.credits_used,
           payg_enabled = a.payg_enabled, past_due = a.past_due,
           billing_cycle_start = a.billing_cycle_start, billing_cycle_end = a.billing_cycle_end,
           stripe_subscription_id = a.stripe_subscription_id, updated_at = now()
     WHERE ba.user_id = p_user;
END
$$;

-- Store a subscription object's state if it is not older than what we have.
-- Returns 'applied', 'stale' or 'unknown_customer'.
CREATE FUNCTION kb_stripe_apply_subscription(p_sub jsonb, p_at timestamptz,
                                             p_project_price text, p_payg_price text,
                                             p_deleted boolean)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    cus     text := p_sub ->> 'customer';
    uid     uuid;
    cur     stripe_subscriptions;
    item    jsonb;
    proj    boolean := false;
    payg    text;
    pstart  timestamptz;
    pend    timestamptz;
    st      text := coalesce(p_sub ->> 'status', 'incomplete');
BEGIN
    SELECT ba.user_id INTO uid FROM billing_accounts ba WHERE ba.stripe_customer_id = cus;
    IF uid IS NULL AND (p_sub -> 'metadata' ->> 'kalshibook_user_id') ~ '^[0-9a-f-]{36}$' THEN
        UPDATE billing_accounts ba SET stripe_customer_id = cus
         WHERE ba.user_id = (p_sub -> 'metadata' ->> 'kalshibook_user_id')::uuid
           AND ba.stripe_customer_id IS NULL
        RETURNING ba.user_id INTO uid;
    END IF;
    IF uid IS NULL THEN
        RETURN 'unknown_customer';
    END IF;
    IF p_deleted THEN
        st := 'canceled';
    END IF;
    FOR item IN SELECT jsonb_array_elements(coalesce(p_sub -> 'items' -> 'data', '[]'))
    LOOP
        IF item -> 'price' ->> 'id' = p_project_price THEN
            proj := true;
            pstart := to_timestamp((item ->> 'current_period_start')::double precision);
            pend := to_timestamp((item ->> 'current_period_end')::double precision);
        ELSIF item -> 'price' ->> 'id' = p_payg_price THEN
            payg := item ->> 'id';
        END IF;
    END LOOP;

    -- First sight inserts; concurrent deliveries for one subscription then
    -- serialise on its row lock.
    INSERT INTO stripe_subscriptions (id, user_id, customer, status, has_project,
                                      payg_item_id, period_start, period_end, state_at)
    VALUES (p_sub ->> 'id', uid, cus, st, proj, payg, pstart, pend, p_at)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO cur FROM stripe_subscriptions s WHERE s.id = p_sub ->> 'id' FOR UPDATE;
        -- Older than the state we hold, or a same-second event trying to
        -- revive a canceled subscription (canceled is final in Stripe).
        IF p_at < cur.state_at OR (p_at = cur.state_at AND cur.status = 'canceled'
                                   AND st <> 'canceled') THEN
            RETURN 'stale';
        END IF;
        UPDATE stripe_subscriptions s
           SET status = st, has_project = proj, payg_item_id = payg,
               period_start = pstart, period_end = pend, state_at = p_at, updated_at = now()
         WHERE s.id = cur.id;
    END IF;
    PERFORM kb_stripe_recompute(uid);
    RETURN 'applied';
END
$$;

-- Apply one verified webhook event exactly once. Returns the outcome:
-- duplicate, applied, stale, ignored or unknown_customer.
CREATE FUNCTION kb_stripe_apply_event(p_event jsonb, p_project_price text, p_payg_price text)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    typ     text := p_event ->> 'type';
    obj     jsonb := p_event -> 'data' -> 'object';
    created timestamptz := to_timestamp((p_event ->> 'created')::double precision);
    cus     text := obj ->> 'customer';
    res     text := 'ignored';
    sub_id  text;
    uid     uuid;
    pstart  timestamptz;
    pend    timestamptz;
BEGIN
    IF (p_event ->> 'id') IS NULL OR typ IS NULL OR (p_event ->> 'created') IS NULL THEN
        RAISE EXCEPTION 'event without id, type or created' USING ERRCODE = '22023';
    END IF;
    INSERT INTO stripe_events (id, type, created, customer, outcome)
    VALUES (p_event ->> 'id', typ, created, cus, 'pending')
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'duplicate';
    END IF;

    IF typ IN ('customer.subscription.created', 'customer.subscription.updated',
               'customer.subscription.deleted') THEN
        res := kb_stripe_apply_subscription(obj, created, p_project_price, p_payg_price,
                                            typ = 'customer.subscription.deleted');
    ELSIF typ IN ('invoice.paid', 'invoice.payment_failed') THEN
        sub_id := coalesce(obj -> 'parent' -> 'subscription_details' ->> 'subscription',
                           obj ->> 'subscription');
        SELECT s.user_id INTO uid FROM stripe_subscriptions s WHERE s.id = sub_id;
        IF uid IS NULL THEN
            SELECT ba.user_id INTO uid FROM billing_accounts ba WHERE ba.stripe_customer_id = cus;
            res := CASE WHEN uid IS NULL THEN 'unknown_customer' ELSE 'ignored' END;
        ELSE
            IF typ = 'invoice.paid' THEN
                -- A paid renewal invoice may arrive before customer.subscription.updated:
                -- its Project line's period starts the new period just the same.
                SELECT max(to_timestamp((l -> 'period' ->> 'start')::double precision)),
                       max(to_timestamp((l -> 'period' ->> 'end')::double precision))
                  INTO pstart, pend
                  FROM jsonb_array_elements(coalesce(obj -> 'lines' -> 'data', '[]')) l
                 WHERE coalesce(l -> 'pricing' -> 'price_details' ->> 'price',
                                l -> 'price' ->> 'id') = p_project_price;
                UPDATE stripe_subscriptions s
                   SET last_paid_at = greatest(s.last_paid_at, created),
                       period_start = CASE WHEN s.has_project AND pstart > s.period_start
                                           THEN pstart ELSE s.period_start END,
                       period_end = CASE WHEN s.has_project AND pstart > s.period_start
                                         THEN pend ELSE s.period_end END
                 WHERE s.id = sub_id;
            ELSE
                UPDATE stripe_subscriptions s
                   SET last_failed_at = greatest(s.last_failed_at, created)
                 WHERE s.id = sub_id;
            END IF;
            PERFORM kb_stripe_recompute(uid);
            res := 'applied';
        END IF;
    ELSIF typ = 'checkout.session.completed' THEN
        -- Link customer and user when the customer was made by Checkout.
        IF cus IS NOT NULL AND (obj ->> 'client_reference_id') ~ '^[0-9a-f-]{36}$' THEN
            UPDATE billing_accounts ba SET stripe_customer_id = cus
             WHERE ba.user_id = (obj ->> 'client_reference_id')::uuid
               AND ba.stripe_customer_id IS NULL
               AND NOT EXISTS (SELECT 1 FROM billing_accounts o WHERE o.stripe_customer_id = cus);
            res := 'applied';
        END IF;
    END IF;

    UPDATE stripe_events e
       SET outcome = res,
           payload = CASE WHEN res = 'unknown_customer' THEN p_event END
     WHERE e.id = p_event ->> 'id';
    RETURN res;
END
$$;

-- Usage reporter, step 1: freeze unbatched outbox rows older than p_margin
-- into per-customer batches with a deterministic identifier, and flag rows
-- that fell out of Stripe's window. Returns the number of rows batched.
CREATE FUNCTION kb_usage_claim(p_margin interval, p_window interval, p_limit integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE usage_outbox o
       SET flagged_at = now(), flag_reason = 'older than the Stripe meter-event window'
     WHERE o.reported_at IS NULL AND o.flagged_at IS NULL AND o.batch_identifier IS NULL
       AND o.created_at < kb_now() - p_window;

    WITH c AS (
        SELECT o.id, coalesce(o.stripe_customer_id, ba.stripe_customer_id) AS cus
          FROM usage_outbox o JOIN billing_accounts ba USING (user_id)
         WHERE o.reported_at IS NULL AND o.batch_identifier IS NULL AND o.flagged_at IS NULL
           AND o.created_at < kb_now() - p_margin
           AND coalesce(o.stripe_customer_id, ba.stripe_customer_id) IS NOT NULL
         ORDER BY o.id
         LIMIT p_limit
           FOR UPDATE OF o SKIP LOCKED
    ), b AS (
        SELECT cus, 'kbo_' || min(id) || '_' || max(id) || '_' || count(*) AS ident
          FROM c GROUP BY cus
    )
    UPDATE usage_outbox o
       SET batch_identifier = b.ident, stripe_customer_id = b.cus
      FROM c JOIN b USING (cus)
     WHERE o.id = c.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Step 2: batches not yet reported (identifier, customer, credits, unix ts).
CREATE FUNCTION kb_usage_pending(p_limit integer)
RETURNS TABLE (batch_identifier text, stripe_customer_id text, credits bigint, ts bigint)
LANGUAGE sql STABLE
AS $$
    SELECT o.batch_identifier, min(o.stripe_customer_id), sum(o.credits),
           extract(epoch FROM max(o.created_at))::bigint
      FROM usage_outbox o
     WHERE o.reported_at IS NULL AND o.batch_identifier IS NOT NULL AND o.flagged_at IS NULL
     GROUP BY o.batch_identifier
     ORDER BY min(o.id)
     LIMIT p_limit
$$;

-- Rows waiting without a Stripe customer, and flagged rows: the reporter logs
-- both loudly on every run.
CREATE VIEW usage_outbox_problems AS
    SELECT count(*) FILTER (WHERE flagged_at IS NOT NULL) AS flagged,
           count(*) FILTER (WHERE flagged_at IS NULL AND batch_identifier IS NULL
                            AND stripe_customer_id IS NULL) AS no_customer
      FROM usage_outbox WHERE reported_at IS NULL;
