-- 0028_meter_one_trip: a charge and its commit in one round trip.
--
-- Until now a charge took two round trips: the meter statement, which returned
-- the charge's transaction id, and then the commit, sent only once the worker's
-- journal held that id (kb_journal.h). The commit's round trip is a sleep and a
-- wakeup in the worker and in the backend, and halves how many commits share a
-- WAL flush.
--
-- Now the worker begins the next charge's transaction ahead, in the commit
-- round trip of the one before (lib/db.c, kb_db_commit_chain()), and learns its id
-- there. The next charge is journaled whole under that id before anything is
-- sent, and its statement, the lookup riding with it and the commit then go in one
-- round trip (lib/meter.c, kb_meter_chain_stmt). Two things that made the old
-- order necessary are handled here:
--
--   * A transaction whose id is journaled must commit only if it charged, since
--     settling refunds what committed. The one-trip statement's conditions are
--     a CASE whose other branch calls kb_meter_fast_miss(), which raises
--     SQLSTATE KB001 and so aborts the transaction; its WHERE keeps only the
--     account. The worker then decides the usual way (kb_meter_slow()).
--
--   * The account's charge count (seq) the statement makes is not known before
--     its reply. kb_meter_settle() (0016) needs it only after a crash of Postgres,
--     when the id may have been handed out again. Instead each one-trip charge
--     keeps in the account row the highest transaction id of a charge
--     (charge_xid, never lowered), and a crash receipt records it too. A charge
--     journaled without its count (p_seq = 0) whose server crashed since is then
--     decided from the account's footprint as that life ended:
--       - its own request is the last charge: it committed;
--       - charge_xid below its id (or none): it did not, since its own commit
--         would have raised charge_xid to its id at least;
--       - charge_xid at or above its id: a charge of that life with that id
--         committed and reached the WAL on disk (recovery restored it), so the
--         server's counter restarted above it and above this id: this id was
--         never handed out again, and pg_xact_status() is right about it.
--     A charge whose reply came back is journaled with its count as before.
--
-- Also: a charge journaled without its count whose transaction committed with no
-- account row (the statement updated nothing: the account was deleted in between)
-- is not refunded. That is exact because an account row now goes only with its user
-- (kb_account_kept below): a user's keys go with the user, so no charge can make
-- the row again (kb_meter_slow() makes a missing row only for a live key), and a
-- row that exists at settling time existed when the charge ran.

ALTER TABLE billing_accounts ADD COLUMN charge_xid xid8;
ALTER TABLE meter_crash_receipts ADD COLUMN xid xid8;

-- An account row (its credits, cycle and usage) is deleted only with its user
-- (ON DELETE CASCADE from users): deleting it alone would also hand the user a fresh
-- account on its next charge, which is a reset of its usage nobody asked for.
CREATE FUNCTION kb_account_kept() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM users u WHERE u.id = OLD.user_id) THEN
        RAISE EXCEPTION 'billing account of user % is deleted only with the user', OLD.user_id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER billing_accounts_kept BEFORE DELETE ON billing_accounts
    FOR EACH ROW EXECUTE FUNCTION kb_account_kept();

-- Raised by the one-trip statement when the fast path does not apply.
CREATE FUNCTION kb_meter_fast_miss() RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'KB001',
        MESSAGE = 'meter fast path does not apply; the worker decides with kb_meter_slow()';
END
$$;

-- A crash receipt records the account's charge_xid as that life ended: kb_meter_slow()
-- writes the receipt before it changes the row, and no charge of the new life can
-- set charge_xid before that (the one-trip statement takes only rows of its own
-- life). A trigger keeps kb_meter_slow() as 0027 left it.
CREATE FUNCTION kb_meter_receipt_xid() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    SELECT ba.charge_xid INTO NEW.xid FROM billing_accounts ba WHERE ba.user_id = NEW.user_id;
    RETURN NEW;
END
$$;
CREATE TRIGGER meter_crash_receipts_xid BEFORE INSERT ON meter_crash_receipts
    FOR EACH ROW EXECUTE FUNCTION kb_meter_receipt_xid();

-- 0016's kb_meter_settle() with charges journaled without their count (p_seq = 0).
CREATE OR REPLACE FUNCTION kb_meter_settle(p_xid xid8, p_token uuid, p_seq bigint,
                                           p_request_id text, p_user_id uuid, p_key_id uuid,
                                           p_cost integer, p_endpoint text,
                                           p_cycle_start timestamptz, p_day date,
                                           p_outbox_id bigint)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    st      text;
    f_token uuid;
    f_seq   bigint;
    f_req   text;
    f_xid   xid8;
BEGIN
    IF p_token = kb_incarnation() THEN
        -- No crash since the charge: its transaction id is its own.
        st := pg_xact_status(p_xid);
        IF st = 'committed' AND p_seq = 0
           AND NOT EXISTS (SELECT 1 FROM billing_accounts ba WHERE ba.user_id = p_user_id) THEN
            RETURN 'not_charged';
        END IF;
    ELSE
        -- The server crashed since: the id may belong to another transaction now.
        -- The account's footprint as that life ended decides (0016's and 0028's headers).
        SELECT ba.charge_token, ba.charge_seq, ba.charge_request, ba.charge_xid
          INTO f_token, f_seq, f_req, f_xid
          FROM billing_accounts ba WHERE ba.user_id = p_user_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN 'not_charged';
        END IF;
        IF f_token IS DISTINCT FROM p_token THEN
            SELECT r.seq, r.request_id, r.xid INTO f_seq, f_req, f_xid
              FROM meter_crash_receipts r
             WHERE r.user_id = p_user_id AND r.token = p_token;
            IF NOT FOUND THEN
                -- No charge of the account committed in that life.
                RETURN 'not_charged';
            END IF;
        END IF;
        IF p_seq = 0 THEN
            IF f_req = p_request_id THEN
                st := 'committed';
            ELSIF f_xid IS NULL OR f_xid < p_xid THEN
                st := 'aborted';
            ELSE
                -- A charge with an id at or above this one reached the disk.
                st := pg_xact_status(p_xid);
            END IF;
        ELSIF f_seq = p_seq AND f_req = p_request_id THEN
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
