-- kb_us() was declared IMMUTABLE, but extract(epoch FROM timestamptz) is only
-- STABLE, so the planner refused to inline it and ran it as a separate SQL
-- function call for every value: ~30 µs each, three per GET /markets/{ticker}
-- and one per row of every /deltas and /trades page. Declared with the
-- volatility of its body, it is inlined into the query. Same results.
ALTER FUNCTION kb_us(timestamptz) STABLE;
