-- 0014_market_price_levels: a market's tick structure and fractional trading (issue 17).
--
-- Kalshi markets say how they tick (price_level_structure: linear_cent,
-- tapered_deci_cent, deci_cent; price_ranges: the exact intervals and their
-- steps) and whether contracts trade in fractions (fractional_trading_enabled).
-- They arrive in REST market objects and market_lifecycle_v2 messages
-- (price_level_structure_updated) and are served by GET /markets/{ticker}.
-- NULL = not known yet.
--
-- Message-envelope fields (ts, ts_ms, sid, seq, received_at) are not market
-- metadata: the importer no longer merges them, and they are removed from the
-- rows the old importer wrote (metadata.ts was an integer Unix time in an API
-- whose instants are all ISO strings).

ALTER TABLE markets
    ADD COLUMN price_level_structure text,
    ADD COLUMN price_ranges jsonb,
    ADD COLUMN fractional_trading_enabled boolean;

UPDATE markets SET
    price_level_structure = CASE WHEN jsonb_typeof(metadata->'price_level_structure') = 'string'
                                 THEN metadata->>'price_level_structure' END,
    price_ranges = CASE WHEN jsonb_typeof(metadata->'price_ranges') = 'array'
                        THEN metadata->'price_ranges' END,
    fractional_trading_enabled = CASE WHEN jsonb_typeof(metadata->'fractional_trading_enabled')
                                           = 'boolean'
                                      THEN (metadata->>'fractional_trading_enabled')::boolean END
 WHERE metadata ?| ARRAY['price_level_structure', 'price_ranges', 'fractional_trading_enabled'];

UPDATE markets SET metadata = metadata - ARRAY['ts', 'ts_ms', 'sid', 'seq', 'received_at']
 WHERE metadata ?| ARRAY['ts', 'ts_ms', 'sid', 'seq', 'received_at'];
UPDATE settlements SET metadata = metadata - ARRAY['ts', 'ts_ms', 'sid', 'seq', 'received_at']
 WHERE metadata ?| ARRAY['ts', 'ts_ms', 'sid', 'seq', 'received_at'];
