-- 0013_fixed_point_checkpoints: kb_rebuild_checkpoints on the columns of 0012.
--
-- The same definition as 0011 (one pass per snapshot window, buckets by the
-- rank of ts), reading deltas.price_e4 and delta_e2: a checkpoint's levels are
-- [side, price in 1/10,000 $, sum in 1/100 contract]. Sums are numeric in
-- SQL and land in jsonb exactly.

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
            SELECT j, side, price_e4, sum(delta_e2) AS q, count(*) AS n, max(ts) AS hi
              FROM (SELECT (rank() OVER (ORDER BY ts) + p_every - 1) / p_every AS j,
                           ts, side, price_e4, delta_e2
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
            SELECT cp.at, cp.cnt, b.side, b.price_e4, sum(b.q) AS q
              FROM cp JOIN b ON b.j <= cp.j
             GROUP BY 1, 2, 3, 4)
        INSERT INTO book_checkpoints (market_ticker, basis, at, deltas, levels)
        SELECT p_ticker, w.basis, at, cnt, jsonb_agg(jsonb_build_array(side, price_e4, q))
          FROM lv GROUP BY at, cnt
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT;
        made := made + k;
    END LOOP;
    RETURN made;
END
$$;
