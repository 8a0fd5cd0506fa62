-- 0004_market_data: market data (API.md §5.6-5.12, §8; DESIGN.md "Data").
--
-- Invariants:
--   * Re-importing the same capture changes nothing: trades are unique by
--     (trade_id, ts), deltas by (market_ticker, ts, sid, seq), snapshots by
--     (market_ticker, sid, seq, captured_at). The partition key must be part
--     of every unique index of a partitioned table; a duplicate WebSocket
--     message repeats its ts, so the extra column costs nothing.
--   * market_stats holds, per ticker, the first snapshot time, the last delta
--     time and the row counts. kbctl import maintains it in the same
--     statement that inserts the rows (only rows actually inserted count),
--     so /markets never counts rows per request.
--   * Partitions (snapshots monthly, deltas and trades daily) are created by
--     kb_ensure_partitions(from, to): kbctl partitions runs it ahead of time
--     and kbctl import runs it for the span of every batch before inserting.
--     A plain SQL function instead of pg_partman: no extension to install on
--     the server (and no background worker), and import needs on-demand
--     creation anyway. There is no DEFAULT partition, so a row outside every
--     partition fails loudly instead of blocking later partition creation.

-- Microseconds since the epoch: every timestamp leaves SQL in this form and
-- the C side formats it (API.md §1.1), so no DateStyle can leak through.
CREATE FUNCTION kb_us(t timestamptz) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT (extract(epoch FROM t) * 1000000)::bigint $$;

CREATE TABLE series (
    ticker             text PRIMARY KEY,
    title              text,
    frequency          text,
    category           text,
    tags               text[],
    settlement_sources jsonb,
    metadata           jsonb,
    discovered_at      timestamptz NOT NULL DEFAULT now(),
    last_updated       timestamptz
);

CREATE TABLE events (
    event_ticker       text PRIMARY KEY,
    series_ticker      text,
    title              text,
    sub_title          text,
    category           text,
    mutually_exclusive boolean,
    status             text,
    strike_date        timestamptz,
    strike_period      text,
    metadata           jsonb,
    discovered_at      timestamptz NOT NULL DEFAULT now(),
    last_updated       timestamptz
);
CREATE INDEX events_series ON events (series_ticker);
CREATE INDEX events_status ON events (status);
CREATE INDEX events_category ON events (category);

CREATE TABLE markets (
    ticker        text PRIMARY KEY,
    market_id     text,
    title         text,
    event_ticker  text,
    status        text NOT NULL DEFAULT 'active',
    category      text,
    rules         text,
    strike_price  numeric,
    discovered_at timestamptz NOT NULL DEFAULT now(),
    last_updated  timestamptz,
    metadata      jsonb,
    series_ticker text,
    -- ts of the newest lifecycle message applied: older or replayed ones are
    -- ignored, so re-importing a capture never rewrites a row.
    status_at     timestamptz
);
CREATE INDEX markets_status ON markets (status);
CREATE INDEX markets_event ON markets (event_ticker, ticker);
CREATE INDEX markets_series ON markets (series_ticker);
CREATE INDEX markets_discovered ON markets (discovered_at DESC, ticker);

-- Per-ticker coverage and counts, maintained by kbctl import (see header).
-- Keyed by ticker without a foreign key: data may arrive before metadata.
CREATE TABLE market_stats (
    ticker         text PRIMARY KEY,
    first_data_at  timestamptz,          -- MIN(snapshots.captured_at)
    last_data_at   timestamptz,          -- MAX(deltas.ts)
    snapshot_count bigint NOT NULL DEFAULT 0 CHECK (snapshot_count >= 0),
    delta_count    bigint NOT NULL DEFAULT 0 CHECK (delta_count >= 0),
    trade_count    bigint NOT NULL DEFAULT 0 CHECK (trade_count >= 0)
);

CREATE TABLE settlements (
    market_ticker    text PRIMARY KEY,
    event_ticker     text,
    result           text CHECK (result IN ('yes', 'no', 'all_yes', 'all_no', 'void')),
    settlement_value integer,
    determined_at    timestamptz,
    settled_at       timestamptz,
    source           text NOT NULL DEFAULT 'lifecycle',
    metadata         jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settlements_event ON settlements (event_ticker);
CREATE INDEX settlements_result ON settlements (result);
CREATE INDEX settlements_determined ON settlements (determined_at DESC NULLS LAST, market_ticker);

-- Identity columns are not allowed on partitioned tables before Postgres 17:
-- plain sequences serve as the identity instead.
CREATE SEQUENCE snapshots_id_seq AS bigint;
CREATE SEQUENCE deltas_id_seq AS bigint CACHE 1000;
CREATE SEQUENCE trades_id_seq AS bigint CACHE 100;

CREATE TABLE snapshots (
    id            bigint NOT NULL DEFAULT nextval('snapshots_id_seq'),
    market_ticker text NOT NULL,
    captured_at   timestamptz NOT NULL,
    sid           bigint NOT NULL DEFAULT 0,
    seq           bigint NOT NULL,
    yes_levels    jsonb NOT NULL,        -- [[price_cents, qty], ...]
    no_levels     jsonb NOT NULL,
    source        text NOT NULL DEFAULT 'ws_subscribe',
    PRIMARY KEY (captured_at, id),
    UNIQUE (market_ticker, sid, seq, captured_at)
) PARTITION BY RANGE (captured_at);
CREATE INDEX snapshots_ticker_time ON snapshots (market_ticker, captured_at DESC, id DESC);

CREATE TABLE deltas (
    id            bigint NOT NULL DEFAULT nextval('deltas_id_seq'),
    market_ticker text NOT NULL,
    ts            timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    seq           bigint NOT NULL,
    sid           bigint NOT NULL DEFAULT 0,
    price_cents   integer NOT NULL CHECK (price_cents BETWEEN 1 AND 99),
    delta_amount  integer NOT NULL,
    side          text NOT NULL CHECK (side IN ('yes', 'no'))
) PARTITION BY RANGE (ts);
-- The one index of the biggest table (one index write per imported row):
-- uniqueness of a WebSocket message, reconstruction as an index-only range
-- scan (SUM per side and price), and pagination in (ts, id) order as a range
-- scan plus an incremental sort on id within equal ts.
CREATE UNIQUE INDEX deltas_ticker_ts_msg ON deltas (market_ticker, ts, sid, seq)
    INCLUDE (id, side, price_cents, delta_amount);

CREATE TABLE trades (
    id            bigint NOT NULL DEFAULT nextval('trades_id_seq'),
    trade_id      text NOT NULL,
    market_ticker text NOT NULL,
    yes_price     integer NOT NULL,
    no_price      integer NOT NULL,
    count         integer NOT NULL,
    taker_side    text NOT NULL CHECK (taker_side IN ('yes', 'no')),
    ts            timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ts, id),
    UNIQUE (trade_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX trades_ticker_ts ON trades (market_ticker, ts, id)
    INCLUDE (yes_price, count);

-- Create the missing partitions covering [p_from, p_to]: monthly for
-- snapshots, daily for deltas and trades. Idempotent; returns how many it
-- created. Serialised by an advisory lock so concurrent importers agree.
CREATE FUNCTION kb_ensure_partitions(p_from timestamptz, p_to timestamptz) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    d       date;
    made    integer := 0;
    tbl     text;
    lo      date;
    hi      date;
BEGIN
    IF p_to < p_from THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(7274810004);
    d := date_trunc('month', p_from AT TIME ZONE 'UTC')::date;
    WHILE d <= (p_to AT TIME ZONE 'UTC')::date LOOP
        tbl := 'snapshots_' || to_char(d, 'YYYY_MM');
        IF to_regclass(tbl) IS NULL THEN
            lo := d;
            hi := (d + interval '1 month')::date;
            EXECUTE format('CREATE TABLE %I PARTITION OF snapshots FOR VALUES FROM (%L) TO (%L)',
                           tbl, lo::text || ' 00:00:00+00', hi::text || ' 00:00:00+00');
            made := made + 1;
        END IF;
        d := (d + interval '1 month')::date;
    END LOOP;
    d := (p_from AT TIME ZONE 'UTC')::date;
    WHILE d <= (p_to AT TIME ZONE 'UTC')::date LOOP
        FOREACH tbl IN ARRAY ARRAY['deltas', 'trades'] LOOP
            IF to_regclass(tbl || '_' || to_char(d, 'YYYY_MM_DD')) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               tbl || '_' || to_char(d, 'YYYY_MM_DD'), tbl,
                               d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
                made := made + 1;
            END IF;
        END LOOP;
        d := d + 1;
    END LOOP;
    RETURN made;
END
$$;

-- A month back and a week ahead exist from the start.
SELECT kb_ensure_partitions(now() - interval '31 days', now() + interval '7 days');

-- Reconstruction checkpoints: the per side and price SUM of the deltas of one
-- snapshot window (basis = the snapshot's captured_at) up to and including
-- instant at, with deltas = the number of rows summed. Because the book is
-- snapshot + SUM(delta) (see lib/kb_book.h), a checkpoint composes exactly:
-- book(t) = snapshot + checkpoint(at <= t) + SUM(deltas in (at, t]), so a
-- request never aggregates more than one checkpoint interval of deltas.
-- levels holds every (side, price, sum) including sums <= 0 (they are dropped
-- only at the end). Maintained by kbctl import (kb_rebuild_checkpoints).
CREATE TABLE book_checkpoints (
    market_ticker text NOT NULL,
    basis         timestamptz NOT NULL,
    at            timestamptz NOT NULL,
    deltas        bigint NOT NULL,
    levels        jsonb NOT NULL,        -- [["yes"|"no", price, sum], ...]
    PRIMARY KEY (market_ticker, basis, at)
);

-- Rebuild the checkpoints of p_ticker's snapshot windows that overlap
-- [p_from, p_to] (the span of newly imported rows), one every p_every deltas
-- of a window (ties on ts included). Other windows are not touched.
CREATE FUNCTION kb_rebuild_checkpoints(p_ticker text, p_from timestamptz, p_to timestamptz,
                                       p_every integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    s0   timestamptz;
    made integer;
BEGIN
    -- The lock every import batch holds (kb_ensure_partitions) until it
    -- commits: a batch's invalidation and a rebuild never interleave, so a
    -- concurrent import can never leave a checkpoint that misses its rows.
    PERFORM pg_advisory_xact_lock(7274810004);
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
    WITH s AS (
        SELECT * FROM (
            SELECT captured_at AS basis,
                   lead(captured_at) OVER (ORDER BY captured_at) AS next_at
              FROM (SELECT DISTINCT captured_at FROM snapshots
                     WHERE market_ticker = p_ticker AND captured_at >= s0) x) y
         WHERE basis <= p_to),
    d AS (
        SELECT s.basis, x.ts, x.side, x.price_cents, x.delta_amount,
               row_number() OVER (PARTITION BY s.basis ORDER BY x.ts, x.id) AS rn
          FROM s JOIN deltas x
            ON x.market_ticker = p_ticker AND x.ts > s.basis
           AND (s.next_at IS NULL OR x.ts < s.next_at)),
    d2 AS (
        SELECT d.*, min(rn) OVER (PARTITION BY basis, ts) AS m,
               max(rn) OVER (PARTITION BY basis, ts) AS mx
          FROM d),
    cp AS (  -- one per distinct instant: ties may span several multiples of p_every
        SELECT basis, max(rn / p_every) AS j, ts AS at, max(mx) AS cnt
          FROM d2 WHERE rn % p_every = 0 GROUP BY basis, ts),
    seg AS (
        SELECT basis, (m + p_every - 1) / p_every AS j, side, price_cents,
               sum(delta_amount) AS q
          FROM d2 GROUP BY 1, 2, 3, 4),
    lv AS (
        SELECT cp.basis, cp.at, cp.cnt, sg.side, sg.price_cents, sum(sg.q) AS q
          FROM cp JOIN seg sg ON sg.basis = cp.basis AND sg.j <= cp.j
         GROUP BY 1, 2, 3, 4, 5)
    INSERT INTO book_checkpoints (market_ticker, basis, at, deltas, levels)
    SELECT p_ticker, basis, at, cnt, jsonb_agg(jsonb_build_array(side, price_cents, q))
      FROM lv GROUP BY basis, at, cnt
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS made = ROW_COUNT;
    RETURN made;
END
$$;

-- Refresh planner statistics of the partitions covering [p_from, p_to] after
-- an import: a freshly loaded partition has none until autovacuum gets to it,
-- and without them the planner misjudges every range query on it.
CREATE FUNCTION kb_analyze_partitions(p_from timestamptz, p_to timestamptz) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    d    date;
    n    integer := 0;
    tbl  text;
BEGIN
    d := date_trunc('month', p_from AT TIME ZONE 'UTC')::date;
    WHILE d <= (p_to AT TIME ZONE 'UTC')::date LOOP
        tbl := 'snapshots_' || to_char(d, 'YYYY_MM');
        IF to_regclass(tbl) IS NOT NULL THEN
            EXECUTE format('ANALYZE %I', tbl);
            n := n + 1;
        END IF;
        d := (d + interval '1 month')::date;
    END LOOP;
    d := (p_from AT TIME ZONE 'UTC')::date;
    WHILE d <= (p_to AT TIME ZONE 'UTC')::date LOOP
        FOREACH tbl IN ARRAY ARRAY['deltas_', 'trades_'] LOOP
            tbl := tbl || to_char(d, 'YYYY_MM_DD');
            IF to_regclass(tbl) IS NOT NULL THEN
                EXECUTE format('ANALYZE %I', tbl);
                n := n + 1;
            END IF;
        END LOOP;
        d := d + 1;
    END LOOP;
    RETURN n;
END
$$;
