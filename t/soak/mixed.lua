-- t/soak/mixed.lua - wrk script for t/soak/run.sh: a fixed mix of health, metered data routes
-- (project key in SOAK_KEY) and key routes (user token in SOAK_TOKEN); counts every answer
-- that is not 200 and prints "soak-chunk requests N failures F errors E" at the end.
local key = os.getenv("SOAK_KEY")
local token = os.getenv("SOAK_TOKEN")
local ticker = os.getenv("SOAK_TICKER")
local reqs = {}
local threads = {}
local n = 0
fails = 0

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local kh = { ["Authorization"] = "Bearer " .. key }
   local th = { ["Authorization"] = "Bearer " .. token }
   local jh = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
   local ob = '{"market_ticker":"' .. ticker .. '","timestamp":"2026-01-14T18:00:00Z","depth":5}'
   reqs = {
      wrk.format("GET", "/health"),
      wrk.format("GET", "/markets?limit=5", kh),
      wrk.format("GET", "/markets/" .. ticker, kh),
      wrk.format("POST", "/orderbook", jh, ob),
      wrk.format("GET", "/keys", th),
      wrk.format("GET", "/health"),
      wrk.format("GET", "/markets/" .. ticker, kh),
      wrk.format("GET", "/keys/usage", th),
   }
end

function request()
   n = n + 1
   return reqs[(n % #reqs) + 1]
end

function response(status, headers, body)
   if status ~= 200 then
      fails = fails + 1
      if fails <= 3 then
         io.stderr:write("soak: status " .. status .. ": " .. string.sub(body, 1, 200) .. "\n")
      end
   end
end

function done(summary, latency, requests)
   local f = 0
   for _, t in ipairs(threads) do
      f = f + t:get("fails")
   end
   local e = summary.errors
   io.write(string.format("soak-chunk requests %d failures %d errors %d\n", summary.requests, f,
      e.connect + e.read + e.write + e.timeout))
end
