#!/usr/bin/env bash
# HTTP benchmark of issue 3, one server, one run: GET /healthz (the framework's ceiling here),
# POST /v1/orders (one single-card order per request), POST /v1/orders/batch (1,000 orders per
# request), all over keep-alive connections with wrk. Prints wrk's reports. Healthz and single
# orders run at each connection count in CONNS (default "64 256 1024"), one after the other, so
# each ratio compares the same connection count in the same run.
#   benches/http.sh [SECONDS] [CODES]     (defaults 10 s, 2,000,000 codes)
# GIFTCARD_BIN=path runs that binary instead of building this checkout (an A/B of two builds).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"; codes="${2:-2000000}"
bin="${GIFTCARD_BIN:-}"
if [ -z "$bin" ]; then cargo build --release -q -p giftcard; bin=./target/release/giftcard; fi
data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
api="http://127.0.0.1:$port"
GIFTCARD_DATA_DIR="$data" GIFTCARD_HTTP_ADDR="127.0.0.1:$port" "$bin" serve > "$data.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$data"' EXIT
until curl -fsS "$api/readyz" >/dev/null 2>&1; do sleep 0.2; done
admin='Authorization: Bearer dev-admin-key'; shop='Authorization: Bearer dev-checkout-key'; json='Content-Type: application/json'
curl -fsS -X POST "$api/v1/skus" -H "$admin" -H "$json" -d '{"sku_id": "bench-25", "brand": "Bench", "category": "retail",
  "kind": "supplier_code", "face_value": {"fixed": {"amount_minor": 2500, "currency": "USD"}},
  "wholesale_discount": "0.15", "supplier_id": "supplier-1"}' >/dev/null
python3 - "$api" "$codes" <<'PY'
import json, sys, urllib.request
api, codes = sys.argv[1], int(sys.argv[2])
def post(path, body, key):
    req = urllib.request.Request(api + path, json.dumps(body).encode(), {"Content-Type": "application/json", "Authorization": "Bearer " + key})
    urllib.request.urlopen(req).read()
for i in range(0, codes, 5000):
    post("/v1/skus/bench-25/codes", {"codes": [f"BENCH-{c:010d}" for c in range(i, min(codes, i + 5000))]}, "dev-supplier-key")
for w in range(100):
    post("/v1/wallets", {"wallet_id": f"bw-{w}", "kyc_verified": True}, "dev-checkout-key")
    post(f"/v1/wallets/checkout-1~bw-{w}/deposits", {"deposit_id": "fund", "amount": {"amount_minor": 10**12, "currency": "USD"}, "reference": "bench"}, "dev-admin-key")
PY
# The server's CPU time (user + system, all threads) in clock ticks, from /proc.
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
hz="$(getconf CLK_TCK)"
# Runs wrk (arguments as given), then prints the server's CPU time per request it answered (per
# order for batches): the cost that a ratio of request rates hides when the load generator shares
# the machine.
measure() {
    local before out
    before="$(ticks)"
    out="$(wrk "$@")"
    echo "$out"
    echo "$out" | python3 -c '
import re, sys
before, after, hz = map(int, sys.argv[1:4])
reqs = int(re.search(r"(\d+) requests in", sys.stdin.read()).group(1))
cpu = (after - before) / hz
per = int(sys.argv[4]) if len(sys.argv) > 4 else 1
print(f"server CPU: {cpu:.2f} s, {cpu * 1e6 / max(reqs * per, 1):.1f} µs per order or request")
' "$before" "$(ticks)" "$hz" ${BATCH:+"$BATCH"}
}
for c in ${CONNS:-64 256 1024}; do
    echo "== GET /healthz, $c connections"; measure -t2 -c"$c" -d"${secs}s" --latency "$api/healthz"
    echo "== POST /v1/orders (one order per request), $c connections"
    RUN="single-$c" measure -t2 -c"$c" -d"${secs}s" --latency -s benches/http/orders.lua "$api"
done
echo "== POST /v1/orders/batch (1,000 orders per request)"; RUN=batch BATCH=1000 measure -t2 -c8 -d"${secs}s" --latency -s benches/http/orders.lua "$api"
# Every order id is new, so codes sold must equal the orders answered 201 (wrk's requests, times
# 1,000 for batches, less any non-2xx) unless the pool ran dry.
echo "== stock after the run"; curl -fsS "$api/v1/skus/bench-25/stock" -H "$admin"; echo
