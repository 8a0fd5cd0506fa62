-- metered.lua - GET /markets/<BENCH_TICKER> rotating over BENCH_KEYS bench keys
-- ("kb-bench-" + 40-digit n, see bench.sh setup_bench_accounts); with
-- BENCH_DELAY_MS each connection waits that long between requests (paced load).
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "100")
local ticker = os.getenv("BENCH_TICKER") or "KXBTCD-26JAN15-T94000"
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local i = math.random(0, nkeys - 1)

request = function()
    i = i % nkeys + 1
    return wrk.format("GET", "/markets/" .. ticker, {
        ["Authorization"] = "Bearer kb-bench-" .. string.format("%040d", i),
    })
end

if pause > 0 then
    delay = function()
        return pause
    end
end
