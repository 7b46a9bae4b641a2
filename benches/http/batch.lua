-- wrk: 1,000 independent single-card orders per request (POST /v1/orders/batch).
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
  local parts = {}
  for i = 1, 1000 do
    counter = counter + 1
    parts[i] = string.format(
      '{"order_id":"wrkb-%d-%d","wallet_id":"bw-%d","items":[{"sku_id":"bench-25","quantity":1}],"region":"US","delivery":{"channel":"none"}}',
      tid, counter, counter % 100)
  end
  return wrk.format(nil, "/v1/orders/batch", nil, '{"orders":[' .. table.concat(parts, ",") .. ']}')
end
