-- wrk script: POST of unique payout ids (auth off), for benchmarks/bench_sandbox.sh.
-- POST of unique ids: each wrk connection/thread numbers its own requests.
local counter = 0
local thread_id = tostring(math.random(1, 1e9))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Version"] = "2"
wrk.body = '{"paymentRequested":{"money":{"amount":42.05,"currencyCode":"USD"}},"paymentMethod":{"paymentMethodCode":"BANK_TRANSFER","account":{"accountName":"Test account","accountNumber":"11223344"},"paymentOperatorCode":"BNK_000","emailAddress":"customer@test.com"}}'
request = function()
  counter = counter + 1
  return wrk.format(nil, "/payouts/B" .. thread_id .. "-" .. counter)
end
