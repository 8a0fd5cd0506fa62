-- 0019_live_checkpoints: reconstruction checkpoints for markets that grow live.
--
-- The collector appends deltas to a market's latest snapshot window, which may stay
-- open for days (a healthy subscription gets no new snapshot). kb_rebuild_checkpoints
-- recomputes whole windows, so calling it as rows arrive would cost the window's size
-- every time. kb_extend_checkpoints adds checkpoints only after the window's last one:
-- one every p_every deltas of the rows beyond it, each = the last checkpoint (or the
-- snapshot, i.e. nothing) plus the per side and price sums of the rows since, counted
-- on from it. A checkpoint composes exactly as 0004 explains; any placement is as
-- correct as another. Rows arriving late (at or before an existing checkpoint) are no
-- concern here: the batch that stores them deletes the checkpoints from their instant
-- on (kb_ingest's stale-checkpoint step), and the next extension starts before them.

CREATE FUNCTION kb_extend_checkpoints(p_ticker text, p_every integer)
RETURNS integer
LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    s0    timestamptz;
    c_at  timestamptz;
    c_n   bigint;
    c_lv  jsonb;
    made  integer := 0;
BEGIN
    -- Shared with rebuilds; a batch holds it exclusively until it commits.
    PERFORM pg_advisory_xact_lock_shared(7274810004);
    SELECT max(captured_at) INTO s0 FROM snapshots WHERE market_ticker = p_ticker;
    IF s0 IS NULL THEN
        RETURN 0;
    END IF;
    SELECT at, deltas, levels INTO c_at, c_n, c_lv FROM book_checkpoints
     WHERE market_ticker = p_ticker AND basis = s0
     ORDER BY at DESC LIMIT 1;
    WITH b AS (
        SELECT j, side, price_e4, sum(delta_e2) AS q, count(*) AS n, max(ts) AS hi
          FROM (SELECT (rank() OVER (ORDER BY ts) + p_every - 1) / p_every AS j,
                       ts, side, price_e4, delta_e2
                  FROM deltas
                 WHERE market_ticker = p_ticker AND ts > coalesce(c_at, s0)) r
         GROUP BY 1, 2, 3),
    t AS (
        SELECT j, sum(sum(n)) OVER (ORDER BY j) AS cnt, max(max(hi)) OVER (ORDER BY j) AS at
          FROM b GROUP BY j),
    cp AS (
        SELECT DISTINCT ON (at) g.j, t.at, t.cnt
          FROM generate_series(1::bigint, (SELECT sum(n) FROM b)::bigint / p_every) AS g(j)
          JOIN LATERAL (SELECT * FROM t WHERE t.j <= g.j ORDER BY t.j DESC LIMIT 1) t ON true
         ORDER BY at, g.j),
    base AS (
        SELECT e->>0 AS side, (e->>1)::int AS price_e4, (e->>2)::numeric AS q
          FROM jsonb_array_elements(coalesce(c_lv, '[]'::jsonb)) AS e),
    lv AS (
        SELECT at, cnt, side, price_e4, sum(q) AS q FROM (
            SELECT cp.at, cp.cnt, b.side, b.price_e4, b.q FROM cp JOIN b ON b.j <= cp.j
            UNION ALL
            SELECT cp.at, cp.cnt, base.side, base.price_e4, base.q FROM cp, base) u
         GROUP BY 1, 2, 3, 4)
    INSERT INTO book_checkpoints (market_ticker, basis, at, deltas, levels)
    SELECT p_ticker, s0, at, coalesce(c_n, 0) + cnt, jsonb_agg(jsonb_build_array(side, price_e4, q))
      FROM lv GROUP BY at, cnt
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS made = ROW_COUNT;
    RETURN made;
END
$$;
