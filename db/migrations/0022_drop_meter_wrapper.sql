-- 0022_drop_meter_wrapper.sql: no function the product never calls.
--
-- kb_meter(key_hash, cost, endpoint) began in 0003 as the one meter statement;
-- 0009 and then 0015 replaced it, and 0015 kept only a wrapper around
-- kb_meter_slow() "for tools and tests". No code of the product calls it: the
-- workers run kb_meter_stmt (lib/meter.c) and its slow path kb_meter_slow(),
-- and the tests now call kb_meter_slow() too. The live body of every function
-- is listed in docs/migrations.md, so 0003's text is not mistaken for it.
DROP FUNCTION kb_meter(text, integer, text);
