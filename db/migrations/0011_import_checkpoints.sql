-- 0011_import_checkpoints: faster reconstruction checkpoint rebuild for kbctl import (issue 6).
--
-- Same result as 0004's kb_rebuild_checkpoints (checked by test_data against
-- a copy of that definition), in one pass per snapshot window instead of
-- three window sorts: a checkpoint j (every p_every deltas, ties on ts
-- included) depends only on which deltas have ts <= its instant, not on
-- their ids, so it is enough to number each delta by the rank of its ts
-- (rank() over the index order, no sort), group the window into buckets
-- j = ceil(rank / p_every) per side and price, and add buckets 1..j:
--   at(j)  = the newest ts in buckets <= j,
--   cnt(j) = the number of deltas in buckets <= j,
--   levels = per side and price, the sum over buckets <= j.
-- A tie group spanning several multiples of p_every leaves buckets empty:
-- those checkpoints repeat an instant and are kept once (DISTINCT ON at).
-- Rebuilds hold the import lock in shared mode so kbctl import can rebuild
-- several markets at once; batches still exclude them (exclusive holders).
-- jit is off: the row estimates of the bucket joins are wild and JIT
-- compilation cost more than the whole query.

CREATE OR REPLACE FUNCTION kb_rebuild_checkpoints(p_ticker text, p_from timestamptz, p_to timestamptz,
                                       p_every integer)
RETURNS integer
LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    s0   timestamptz;
    w    record;
    k    integer;
    made integer := 0;
BEGIN
    -- Shared: rebuilds (of other markets, by other connections) run side by
    -- side; import batches take this lock exclusively (kb_ensure_partitions)
    -- until they commit, so a batch's invalidation and a rebuild never
    -- interleave and no checkpoint can miss a batch's rows.
    PERFORM pg_advisory_xact_lock_shared(7274810004);
    SELECT max(captured_at) INTO s0 FROM snapshots
     WHERE market_ticker = p_ticker AND captured_at <= p_from;
    IF s0 IS NULL THEN
        SELECT min(captured_at) INTO s0 FROM snapshots WHERE market_ticker = p_ticker;
    END IF;
    IF s0 IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM book_checkpoints
     WHERE market_ticker = p_ticker AND basis >= s0 AND basis <= p_to;
    FOR w IN
        SELECT basis, coalesce(next_at, 'infinity') AS next_at FROM (
            SELECT captured_at AS basis,
                   lead(captured_at) OVER (ORDER BY captured_at) AS next_at
              FROM (SELECT DISTINCT captured_at FROM snapshots
                     WHERE market_ticker = p_ticker AND captured_at >= s0) x) y
         WHERE basis <= p_to
    LOOP
        WITH b AS (
            SELECT j, side, price_cents, sum(delta_amount) AS q, count(*) AS n, max(ts) AS hi
              FROM (SELECT (rank() OVER (ORDER BY ts) + p_every - 1) / p_every AS j,
                           ts, side, price_cents, delta_amount
                      FROM deltas
                     WHERE market_ticker = p_ticker AND ts > w.basis AND ts < w.next_at) r
             GROUP BY 1, 2, 3),
        t AS (
            SELECT j, sum(sum(n)) OVER (ORDER BY j) AS cnt, max(max(hi)) OVER (ORDER BY j) AS at
              FROM b GROUP BY j),
        cp AS (
            SELECT DISTINCT ON (at) g.j, t.at, t.cnt
              FROM generate_series(1::bigint, (SELECT sum(n) FROM b)::bigint / p_every) AS g(j)
              JOIN LATERAL (SELECT * FROM t WHERE t.j <= g.j ORDER BY t.j DESC LIMIT 1) t ON true
             ORDER BY at, g.j),
        lv AS (
            SELECT cp.at, cp.cnt, b.side, b.price_cents, sum(b.q) AS q
              FROM cp JOIN b ON b.j <= cp.j
             GROUP BY 1, 2, 3, 4)
        INSERT INTO book_checkpoints (market_ticker, basis, at, deltas, levels)
        SELECT p_ticker, w.basis, at, cnt, jsonb_agg(jsonb_build_array(side, price_cents, q))
          FROM lv GROUP BY at, cnt
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT;
        made := made + k;
    END LOOP;
    RETURN made;
END
$$;
