-- wrk script: POST of unique payout ids (auth off), for benchmarks/bench_sandbox.sh.
-- Ids are B<start time>-<wrk thread>-<n>, unique across threads and runs.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local counter = 0
local stamp = tostring(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Version"] = "2"
wrk.body = '{"paymentRequested":{"money":{"amount":42.05,"currencyCode":"USD"}},"paymentMethod":{"paymentMethodCode":"BANK_TRANSFER","account":{"accountName":"Test account","accountNumber":"11223344"},"paymentOperatorCode":"BNK_000","emailAddress":"customer@test.com"}}'

function request()
  counter = counter + 1
  return wrk.format(nil, "/payouts/B" .. stamp .. "-" .. tostring(tid) .. "-" .. counter)
end
