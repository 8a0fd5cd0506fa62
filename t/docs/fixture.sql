-- fixture.sql - the market data the llms-full.txt examples show (one market, event,
-- snapshot, three deltas, one trade, one settlement), loaded by t/docs/live.js before it
-- replays the first metered example. Columns as API.md 8 names them. Idempotent.
-- If the data tables are partitioned, the partitions for 2026-01-15 must exist first: the
-- data branch's importer/migrations are expected to provide a way (adjust here on merge).
BEGIN;
INSERT INTO events (event_ticker, series_ticker, title, sub_title, category, mutually_exclusive, status)
VALUES ('KXBTC-26JAN15', 'KXBTC', 'Bitcoin price on Jan 15, 2026', 'At 5pm ET', 'Crypto', false, 'active')
ON CONFLICT DO NOTHING;
INSERT INTO markets (ticker, title, event_ticker, status, category, rules, strike_price, discovered_at, metadata, series_ticker)
VALUES ('KXBTC-26JAN15-B97500', 'Bitcoin above $97,500 on Jan 15, 2026?', 'KXBTC-26JAN15', 'active', 'Crypto',
        'Resolves Yes if the BRTI is above 97,500 at 5pm ET.', 97500, '2026-01-14T09:00:00+00:00',
        '{"strike_type":"greater"}', 'KXBTC')
ON CONFLICT DO NOTHING;
INSERT INTO snapshots (market_ticker, captured_at, seq, yes_levels, no_levels)
SELECT 'KXBTC-26JAN15-B97500', '2026-01-15T11:00:00+00:00', 100, '[[42,100],[41,300],[40,50]]', '[[57,150],[56,80]]'
WHERE NOT EXISTS (SELECT 1 FROM snapshots WHERE market_ticker = 'KXBTC-26JAN15-B97500');
INSERT INTO deltas (market_ticker, ts, seq, price_cents, delta_amount, side)
SELECT * FROM (VALUES
    ('KXBTC-26JAN15-B97500', '2026-01-15T11:10:00+00:00'::timestamptz, 101, 42, 50, 'yes'),
    ('KXBTC-26JAN15-B97500', '2026-01-15T11:20:00+00:00'::timestamptz, 102, 57, -30, 'no'),
    ('KXBTC-26JAN15-B97500', '2026-01-15T11:30:00+00:00'::timestamptz, 103, 40, 10, 'yes')) v
WHERE NOT EXISTS (SELECT 1 FROM deltas WHERE market_ticker = 'KXBTC-26JAN15-B97500');
INSERT INTO trades (trade_id, market_ticker, yes_price, no_price, count, taker_side, ts)
SELECT 'd3b07384-d9a0-4c1e-8f2b-6a5c4e3d2b1a', 'KXBTC-26JAN15-B97500', 42, 58, 10, 'yes', '2026-01-15T11:15:00+00:00'
WHERE NOT EXISTS (SELECT 1 FROM trades WHERE market_ticker = 'KXBTC-26JAN15-B97500');
INSERT INTO settlements (market_ticker, event_ticker, result, settlement_value, determined_at, settled_at)
VALUES ('KXBTC-26JAN15-B97500', 'KXBTC-26JAN15', 'yes', 100, '2026-01-15T22:00:00+00:00', '2026-01-15T22:05:00+00:00')
ON CONFLICT DO NOTHING;
COMMIT;
