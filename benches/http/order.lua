-- wrk: one single-card order per request, unique order ids per thread, wallets round-robin.
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer dev-checkout-key"
end
function request()
  counter = counter + 1
  local body = string.format(
    '{"order_id":"wrk-%d-%d","wallet_id":"bw-%d","items":[{"sku_id":"bench-25","quantity":1}],"region":"US","delivery":{"channel":"none"}}',
    tid, counter, counter % 100)
  return wrk.format(nil, "/v1/orders", nil, body)
end
