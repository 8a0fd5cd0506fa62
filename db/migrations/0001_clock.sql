-- 0001_clock: the one clock every SQL money function reads.
--
-- Metering, cycle rolls and rate windows call kb_now() instead of now(), so
-- the integration tests can move time forward for the whole cluster (all
-- workers, all connections) by redefining this function in their own
-- throwaway database. In production it is exactly now(): the transaction's
-- start time, inlined by the planner.
CREATE OR REPLACE FUNCTION kb_now() RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT now() $$;
