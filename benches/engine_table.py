#!/usr/bin/env python3
"""Turns the JSON lines of benches/engine.sh into the Markdown table of BENCHMARKS.md."""
import json, sys

rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
print("| run | orders/s | cards/s | p50 µs | p99 µs | p99.9 µs | orders per fsync | RSS MiB | recovery |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for r in rows:
    name = r["scenario"] + (f" at {r['offered_rate']:,}/s offered" if r["offered_rate"] else " (closed loop)")
    rec = f"{r['recovery_records']:,} records in {r['recovery_seconds']:.2f} s" if r.get("recovery_seconds") is not None else ""
    print(f"| {name} | {r['orders_per_sec']:,.0f} | {r['cards_per_sec']:,.0f} | {r['p50_us']:,} | {r['p99_us']:,} | {r['p999_us']:,} | {r['orders_per_fsync']:,.0f} | {r['rss_mib']:,} | {rec} |")
uni = next((r for r in rows if r["scenario"] == "uniform" and not r["offered_rate"]), None)
hot = next((r for r in rows if r["scenario"] == "hot-sku"), None)
if uni and hot:
    print(f"\nhot-sku / uniform (same run): {hot['orders_per_sec'] / uni['orders_per_sec']:.2f}")
