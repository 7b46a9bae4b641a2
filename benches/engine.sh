#!/usr/bin/env bash
# The engine benchmarks of BENCHMARKS.md, in one run on one machine: each line is the JSON
# report of one `giftcard bench`. Ratios in BENCHMARKS.md compare lines of the same run.
#   benches/engine.sh [ORDERS]            (default 1,000,000)
set -euo pipefail
cd "$(dirname "$0")/.."
orders="${1:-1000000}"
cargo build --release -q -p giftcard
b=./target/release/giftcard
run() { echo "# giftcard bench $*" >&2; "$b" bench --json "$@" 2>/dev/null; }
uniform=$(run --scenario uniform --orders "$orders")
echo "$uniform"
run --scenario hot-sku --orders "$orders"
peak=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["orders_per_sec"]))' "$uniform")
run --scenario uniform --orders "$orders" --rate $((peak / 2))
run --scenario bulk --orders $((orders / 500)) --skus 10
run --scenario redeem --orders "$orders" --skus 10
run --scenario uniform --orders 1000000 --recovery
