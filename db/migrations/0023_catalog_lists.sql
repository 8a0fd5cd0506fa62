-- 0023_catalog_lists: indexes for the filtered, paged catalogue lists (issue 23;
-- API.md 5.10-5.11, lib/catalog.c).
--
-- GET /markets lists in (discovered_at DESC, ticker) order and GET /events in
-- event_ticker order, whatever the filters, so that keyset pages of one query
-- concatenate to the whole list. Each filter gets an index that yields its rows
-- already in that order, so a page is a short index range scan from the cursor
-- on, never a sort of every match:
--   * status, series_ticker, category: (column, order keys); these replace the
--     single-column indexes of 0004, which they cover. event_ticker keeps
--     markets_event (event_ticker, ticker): an event has few markets, and
--     GET /events/{e} reads them in ticker order.
--   * ticker prefix (starts_with): text_pattern_ops, which serves a prefix
--     range under any database collation (the primary key's default operator
--     class serves it only under "C").
--   * updated_since: the instant a row last changed, as an expression index.
--     A market changed when it was discovered or its metadata was last written
--     (markets.last_updated, set by every upsert that changes a value), and it
--     has data at or after an instant when its market_stats first/last data
--     time is (maintained by the ingest statements that insert the rows, in the
--     same transaction: kbctl import and the collector share them). An event
--     changed when its row did or when one of its markets did.
-- Nothing here adds a write path: the expressions are of columns the ingest
-- already maintains, so they are exact whoever writes.

DROP INDEX markets_status;
DROP INDEX markets_series;
CREATE INDEX markets_status_order ON markets (status, discovered_at DESC, ticker);
CREATE INDEX markets_series_order ON markets (series_ticker, discovered_at DESC, ticker);
CREATE INDEX markets_category_order ON markets (category, discovered_at DESC, ticker);
CREATE INDEX markets_ticker_prefix ON markets (ticker text_pattern_ops);
CREATE INDEX markets_changed ON markets ((greatest(discovered_at, last_updated)));
CREATE INDEX market_stats_data_at ON market_stats ((greatest(first_data_at, last_data_at)));

DROP INDEX events_series;
DROP INDEX events_status;
DROP INDEX events_category;
CREATE INDEX events_series_order ON events (series_ticker, event_ticker);
CREATE INDEX events_status_order ON events (status, event_ticker);
CREATE INDEX events_category_order ON events (category, event_ticker);
CREATE INDEX events_ticker_prefix ON events (event_ticker text_pattern_ops);
CREATE INDEX events_changed ON events ((greatest(discovered_at, last_updated)));

-- The expression indexes have no statistics until their tables are analyzed, and
-- without them every updated_since estimate is a default guess.
ANALYZE markets;
ANALYZE market_stats;
ANALYZE events;
