-- 0012_fixed_point: market data in exact integer units (issue 17; KALSHI.md "Fixed-point forms").
--
-- Kalshi publishes prices as dollar strings with up to 4 decimals and counts
-- as strings with 2 decimals. Every price and quantity column becomes an
-- integer count of the smallest unit, so nothing between the wire and the
-- database is ever rounded:
--   price    = 1/10,000 dollar   (0 .. 10000; old cents x 100)
--   quantity = 1/100 contract    (old whole contracts x 100)
--   deltas.price_cents      -> price_e4  integer 1..9999
--   deltas.delta_amount     -> delta_e2  bigint
--   trades.yes_price        -> yes_price_e4 integer 0..10000
--   trades.no_price         -> no_price_e4  integer 0..10000
--   trades.count            -> count_e2  bigint >= 0
--   settlements.settlement_value -> settlement_value_e4 integer
--   snapshots.yes_levels / no_levels    [[price_e4, quantity_e2], ...]
--   book_checkpoints.levels             [[side, price_e4, sum_e2], ...]
-- The renames make any query still written for cents fail loudly instead of
-- reading values 100 times too large.
--
-- Receive times: deltas.received_at and trades.received_at become nullable
-- with no default. NULL means "the capture did not record when the message
-- arrived"; the old importer wrote the exchange ts there in that case (and
-- the column default was now(), the time of the import), neither of which is
-- a receive time. Rows whose received_at equals ts are such placeholders and
-- become NULL; a capture that recorded a receive time equal to ts to the
-- microsecond loses it (its latency was zero anyway).
--
-- Each table is rewritten once: the column changes of one table are a single
-- ALTER TABLE, and the JSON levels are converted by the same rewrite (ALTER
-- .. TYPE .. USING an immutable function) rather than by UPDATE, so no dead
-- row versions are left behind.

-- [[p, q], ...] with both numbers x100 (cents -> 1/10,000 $, contracts -> 1/100).
CREATE FUNCTION kb_levels_x100(levels jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_array(((e->>0)::numeric * 100)::bigint,
                                                ((e->>1)::numeric * 100)::bigint) ORDER BY o),
                    '[]'::jsonb)
      FROM jsonb_array_elements(levels) WITH ORDINALITY AS x(e, o)
    $$;

-- [[side, p, sum], ...] with both numbers x100.
CREATE FUNCTION kb_checkpoint_levels_x100(levels jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_array(e->0, ((e->>1)::numeric * 100)::bigint,
                                                ((e->>2)::numeric * 100)::bigint) ORDER BY o),
                    '[]'::jsonb)
      FROM jsonb_array_elements(levels) WITH ORDINALITY AS x(e, o)
    $$;

ALTER TABLE deltas DROP CONSTRAINT deltas_price_cents_check;
ALTER TABLE deltas RENAME COLUMN price_cents TO price_e4;
ALTER TABLE deltas RENAME COLUMN delta_amount TO delta_e2;
ALTER TABLE deltas
    ALTER COLUMN price_e4 TYPE integer USING price_e4 * 100,
    ALTER COLUMN delta_e2 TYPE bigint USING delta_e2::bigint * 100,
    ALTER COLUMN received_at DROP DEFAULT,
    ALTER COLUMN received_at DROP NOT NULL,
    ALTER COLUMN received_at TYPE timestamptz USING nullif(received_at, ts);
ALTER TABLE deltas ADD CONSTRAINT deltas_price_e4_check CHECK (price_e4 BETWEEN 1 AND 9999);

ALTER TABLE trades RENAME COLUMN yes_price TO yes_price_e4;
ALTER TABLE trades RENAME COLUMN no_price TO no_price_e4;
ALTER TABLE trades RENAME COLUMN count TO count_e2;
ALTER TABLE trades
    ALTER COLUMN yes_price_e4 TYPE integer USING yes_price_e4 * 100,
    ALTER COLUMN no_price_e4 TYPE integer USING no_price_e4 * 100,
    ALTER COLUMN count_e2 TYPE bigint USING count_e2::bigint * 100,
    ALTER COLUMN received_at DROP DEFAULT,
    ALTER COLUMN received_at DROP NOT NULL,
    ALTER COLUMN received_at TYPE timestamptz USING nullif(received_at, ts);
ALTER TABLE trades
    ADD CONSTRAINT trades_yes_price_e4_check CHECK (yes_price_e4 BETWEEN 0 AND 10000),
    ADD CONSTRAINT trades_no_price_e4_check CHECK (no_price_e4 BETWEEN 0 AND 10000),
    ADD CONSTRAINT trades_count_e2_check CHECK (count_e2 >= 0);

ALTER TABLE snapshots
    ALTER COLUMN yes_levels TYPE jsonb USING kb_levels_x100(yes_levels),
    ALTER COLUMN no_levels TYPE jsonb USING kb_levels_x100(no_levels);

ALTER TABLE book_checkpoints
    ALTER COLUMN levels TYPE jsonb USING kb_checkpoint_levels_x100(levels);

ALTER TABLE settlements RENAME COLUMN settlement_value TO settlement_value_e4;
ALTER TABLE settlements
    ALTER COLUMN settlement_value_e4 TYPE integer USING settlement_value_e4 * 100;

DROP FUNCTION kb_levels_x100(jsonb);
DROP FUNCTION kb_checkpoint_levels_x100(jsonb);
