-- metered.lua - GET /markets/<BENCH_TICKER> rotating over BENCH_KEYS bench keys
-- ("kb-bench-" + 40-digit n, see bench.sh setup_bench_accounts); with
-- BENCH_DELAY_MS each connection waits a random time between requests whose
-- mean is that (exponential: the connections' requests arrive as a Poisson
-- stream, as independent clients' do; a fixed delay would keep all
-- connections in step and measure the bursts they send together).
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "100")
local ticker = os.getenv("BENCH_TICKER") or "KXBTCD-26JAN15-T94000"
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local i = 0
local threads = 0

-- Each wrk thread has its own Lua state: seed each differently, or they all
-- draw the same keys and delays.
setup = function(thread)
    threads = threads + 1
    thread:set("thread_no", threads)
end

init = function()
    math.randomseed(os.time() * 1000 + (thread_no or 0))
    i = math.random(0, nkeys - 1)
end

request = function()
    i = i % nkeys + 1
    return wrk.format("GET", "/markets/" .. ticker, {
        ["Authorization"] = "Bearer kb-bench-" .. string.format("%040d", i),
    })
end

if pause > 0 then
    delay = function()
        return math.floor(-pause * math.log(1 - math.random()) + 0.5)
    end
end
