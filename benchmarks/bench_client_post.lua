-- wrk script for bench_client.sh: POST /payouts/{unique id} with a fixed valid body.
-- Each wrk thread gets its own number in setup(), so no two requests share an id.
local next_thread = 0

function setup(thread)
  thread:set("thread_no", next_thread)
  next_thread = next_thread + 1
end

local counter = 0
local prefix = os.getenv("BENCH_PREFIX") or "WRK"
local body = '{"paymentRequested":{"money":{"amount":42.05,"currencyCode":"USD"}},' ..
  '"paymentMethod":{"paymentMethodCode":"BANK_TRANSFER","account":{"accountName":"Bench Account",' ..
  '"accountNumber":"DE89370400440532013000"},"paymentOperatorCode":"BNK_000"}}'
local headers = {["Content-Type"] = "application/json", ["Accept"] = "application/json",
                 ["X-API-Version"] = "2", ["Authorization"] = "Bearer bench-static-token"}

request = function()
  counter = counter + 1
  return wrk.format("POST", "/payouts/" .. prefix .. "-" .. thread_no .. "-" .. counter, headers, body)
end
