-- catalog.sql: a market catalogue at Kalshi's scale for t/bench/bench.sh (issue 23):
-- :n markets (psql -v n=100000) in n/10 events of 100 series, discovered over a year
-- (five minutes apart), statuses and categories mixed, every 7th with its metadata
-- written later, data (market_stats) on three in five. Tickers KXBN*; idempotent.
DELETE FROM market_stats WHERE ticker LIKE 'KXBN%';
DELETE FROM markets WHERE ticker LIKE 'KXBN%';
DELETE FROM events WHERE event_ticker LIKE 'KXBN%';
INSERT INTO events (event_ticker, series_ticker, title, category, status, mutually_exclusive,
                    discovered_at)
SELECT format('KXBN%s-E%s', e % 100, e), format('KXBN%s', e % 100), format('Bench event %s', e),
       (ARRAY['Economics','Politics','Crypto','Sports','Weather'])[1 + e % 5],
       (ARRAY['open','closed','settled'])[1 + e % 3], e % 2 = 0,
       timestamptz '2025-01-01' + make_interval(mins => e * 50)
  FROM generate_series(0, :n / 10 - 1) e;
INSERT INTO markets (ticker, title, event_ticker, series_ticker, status, category, discovered_at,
                     last_updated)
SELECT format('KXBN%s-E%s-M%s', (i / 10) % 100, i / 10, i % 10), format('Bench market %s', i),
       format('KXBN%s-E%s', (i / 10) % 100, i / 10), format('KXBN%s', (i / 10) % 100),
       (ARRAY['active','active','active','closed','settled','determined'])[1 + i % 6],
       (ARRAY['Economics','Politics','Crypto','Sports','Weather'])[1 + (i / 10) % 5],
       timestamptz '2025-01-01' + make_interval(mins => i * 5),
       CASE WHEN i % 7 = 0 THEN timestamptz '2025-01-01' + make_interval(mins => i * 5 + 600) END
  FROM generate_series(0, :n - 1) i;
INSERT INTO market_stats (ticker, first_data_at, last_data_at, snapshot_count, delta_count)
SELECT format('KXBN%s-E%s-M%s', (i / 10) % 100, i / 10, i % 10),
       timestamptz '2025-01-01' + make_interval(mins => i * 5 + 1),
       timestamptz '2025-01-01' + make_interval(mins => i * 5 + 1 + (i % 97) * 60), 1, 100
  FROM generate_series(0, :n - 1) i WHERE i % 5 < 3;
ANALYZE events;
ANALYZE markets;
ANALYZE market_stats;
