-- 0025_refund_keeps_claimed_outbox: a late refund leaves an outbox row a reporter
-- has claimed alone.
--
-- kb_meter_refund() (0015) removed the request's overage row unless it was
-- reported. The reporter claims rows (kb_usage_claim: batch_identifier set and
-- committed), sends the batch to Stripe, and only then marks them reported; a
-- refund in between deleted a row of a batch Stripe was receiving, so Stripe
-- billed overage the outbox no longer had (and a retried batch would no longer
-- match its identifier's rows). KB_USAGE_MARGIN_S keeps fresh rows from being
-- claimed while their request may still fail, but some refunds come later than
-- that: the charge journal settling after a long database outage, and the charges
-- a dead host left in flight, settled when its lease runs out (0024). The
-- two-host chaos run caught it: one customer with 5 credits more at the stand-in
-- than in the outbox after a host was left dead past its lease.
--
-- Now a claimed row stays, as a reported one always did: the credits go back to
-- the account, and the overage of that request is billed once, as the batch says.

CREATE OR REPLACE FUNCTION kb_meter_refund(p_request_id text, p_user_id uuid, p_key_id uuid,
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
        -- Only a row no reporter has claimed: a claimed batch goes to Stripe with
        -- the rows it was claimed with (lib/usage.c's invariant).
        DELETE FROM usage_outbox o
         WHERE o.id = p_outbox_id AND o.reported_at IS NULL AND o.batch_identifier IS NULL;
        removed := FOUND;
    END IF;
    RETURN QUERY SELECT a.credits_total, a.credits_used, removed;
END
$$;
