-- fixture.sql - the market data the llms-full.txt examples show (two markets of one event:
-- a whole-cent one and a tapered_deci_cent one with fractional contracts; per market a
-- snapshot, deltas, a trade; one settlement; three gaps), loaded by t/docs/live.js before it replays
-- the first metered example. Columns as migrations 0004 and 0012-0014 name them: prices in
-- 1/10,000 dollar, quantities in 1/100 contract. Idempotent.
-- The partitions for 2026-01-15 must exist first (kb_ensure_partitions below).
BEGIN;
SELECT kb_ensure_partitions('2026-01-15T00:00:00+00:00', '2026-01-15T23:59:59+00:00');
INSERT INTO events (event_ticker, series_ticker, title, sub_title, category, mutually_exclusive, status)
VALUES ('KXBTC-26JAN15', 'KXBTC', 'Bitcoin price on Jan 15, 2026', 'At 5pm ET', 'Crypto', false, 'active')
ON CONFLICT DO NOTHING;
INSERT INTO markets (ticker, title, event_ticker, status, category, rules, strike_price, discovered_at, metadata, series_ticker,
                     price_level_structure, price_ranges, fractional_trading_enabled)
VALUES ('KXBTC-26JAN15-B97500', 'Bitcoin above $97,500 on Jan 15, 2026?', 'KXBTC-26JAN15', 'active', 'Crypto',
        'Resolves Yes if the BRTI is above 97,500 at 5pm ET.', 97500, '2026-01-14T09:00:00+00:00',
        '{"strike_type":"greater"}', 'KXBTC', 'linear_cent',
        '[{"start":"0.0000","end":"1.0000","step":"0.0100"}]', false),
       ('KXBTC-26JAN15-B105000', 'Bitcoin above $105,000 on Jan 15, 2026?', 'KXBTC-26JAN15', 'active', 'Crypto',
        'Resolves Yes if the BRTI is above 105,000 at 5pm ET.', 105000, '2026-01-14T09:00:00+00:00',
        '{"strike_type":"greater"}', 'KXBTC', 'tapered_deci_cent',
        '[{"start":"0.0000","end":"0.1000","step":"0.0010"},{"start":"0.1000","end":"0.9000","step":"0.0100"},{"start":"0.9000","end":"1.0000","step":"0.0010"}]',
        true)
ON CONFLICT DO NOTHING;
INSERT INTO snapshots (market_ticker, captured_at, seq, yes_levels, no_levels)
SELECT * FROM (VALUES
    ('KXBTC-26JAN15-B97500', '2026-01-15T11:00:00+00:00'::timestamptz, 100,
     '[[4200,10000],[4100,30000],[4000,5000]]'::jsonb, '[[5700,15000],[5600,8000]]'::jsonb),
    ('KXBTC-26JAN15-B105000', '2026-01-15T11:00:00+00:00'::timestamptz, 200,
     '[[450,120050],[440,30000]]'::jsonb, '[[9540,50000],[9530,2525]]'::jsonb)) v
WHERE NOT EXISTS (SELECT 1 FROM snapshots WHERE market_ticker = v.column1);
INSERT INTO deltas (market_ticker, ts, seq, price_e4, delta_e2, side, received_at)
SELECT * FROM (VALUES
    ('KXBTC-26JAN15-B97500', '2026-01-15T11:10:00+00:00'::timestamptz, 101, 4200, 5000::bigint, 'yes', NULL::timestamptz),
    ('KXBTC-26JAN15-B97500', '2026-01-15T11:20:00+00:00'::timestamptz, 102, 5700, -3000::bigint, 'no', NULL::timestamptz),
    ('KXBTC-26JAN15-B97500', '2026-01-15T11:30:00+00:00'::timestamptz, 103, 4000, 1000::bigint, 'yes', NULL::timestamptz),
    ('KXBTC-26JAN15-B105000', '2026-01-15T11:10:00+00:00'::timestamptz, 201, 460, 1250::bigint, 'yes',
     '2026-01-15T11:10:00.012345+00:00'::timestamptz)) v
WHERE NOT EXISTS (SELECT 1 FROM deltas WHERE market_ticker = v.column1);
INSERT INTO trades (trade_id, market_ticker, yes_price_e4, no_price_e4, count_e2, taker_side, ts, received_at)
SELECT * FROM (VALUES
    ('d3b07384-d9a0-4c1e-8f2b-6a5c4e3d2b1a', 'KXBTC-26JAN15-B97500', 4200, 5800, 1000::bigint, 'yes',
     '2026-01-15T11:15:00+00:00'::timestamptz, NULL::timestamptz),
    ('5f0c8e2a-7b1d-4c3e-9a6f-2d8b4e1c7a90', 'KXBTC-26JAN15-B105000', 450, 9550, 250::bigint, 'no',
     '2026-01-15T11:15:00+00:00'::timestamptz, '2026-01-15T11:15:00.008211+00:00'::timestamptz)) v
WHERE NOT EXISTS (SELECT 1 FROM trades WHERE market_ticker = v.column2);
INSERT INTO settlements (market_ticker, event_ticker, result, settlement_value_e4, determined_at, settled_at)
VALUES ('KXBTC-26JAN15-B97500', 'KXBTC-26JAN15', 'yes', 10000, '2026-01-15T22:00:00+00:00', '2026-01-15T22:05:00+00:00')
ON CONFLICT DO NOTHING;
-- Gaps (0018_collector.sql) of the tapered market: the live collector lost its connection
-- for three seconds (both channels), then saw one sequence jump on the book.
INSERT INTO gaps (market_ticker, channel, start_at, end_at, reason, source)
VALUES ('KXBTC-26JAN15-B105000', 'orderbook', '2026-01-15T11:40:00+00:00', '2026-01-15T11:40:03.25+00:00', 'disconnect', 'docs/1/1'),
       ('KXBTC-26JAN15-B105000', 'trade', '2026-01-15T11:40:00+00:00', '2026-01-15T11:40:03.25+00:00', 'disconnect', 'docs/1/1'),
       ('KXBTC-26JAN15-B105000', 'orderbook', '2026-01-15T11:50:00+00:00', '2026-01-15T11:50:00.8+00:00', 'seq_jump', 'docs/1/2')
ON CONFLICT DO NOTHING;
COMMIT;
