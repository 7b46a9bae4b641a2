-- wrk: single-card orders with unique ids per run and thread, wallets round-robin. BATCH=N (env)
-- sends N orders per request to /v1/orders/batch; unset, one order per request to /v1/orders.
-- RUN (env) names the run: ids must not repeat across wrk runs on one server, or the later run
-- measures idempotent replays instead of sales.
local batch = tonumber(os.getenv("BATCH") or "0")
local run = os.getenv("RUN") or tostring(os.time())
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
local function order()
  counter = counter + 1
  return string.format(
    '{"order_id":"wrk-%s-%d-%d","wallet_id":"bw-%d","items":[{"sku_id":"bench-25","quantity":1}],"region":"US","delivery":{"channel":"none"}}',
    run, tid, counter, counter % 100)
end
function request()
  if batch == 0 then
    return wrk.format(nil, "/v1/orders", nil, order())
  end
  local parts = {}
  for i = 1, batch do parts[i] = order() end
  return wrk.format(nil, "/v1/orders/batch", nil, '{"orders":[' .. table.concat(parts, ",") .. ']}')
end
