//! Parsing order bodies as `POST /v1/orders` and `POST /v1/orders/batch` do, with the byte-scan
//! fast path (`input::json`) and with the exact positional-struct check alone
//! (`input::json_exact`), in the same run.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use giftcard_http::input::{json, json_exact};
use giftcard_http::wire::{BatchRequest, OrderRequestDto};

fn order(i: usize) -> String {
    format!(
        r#"{{"order_id":"o-{i}","wallet_id":"w-{}","items":[{{"sku_id":"sku-{}","quantity":1}}],"region":"US","delivery":{{"channel":"email","recipient":"buyer@example.com"}}}}"#,
        i % 100,
        i % 1000
    )
}

fn bodies(c: &mut Criterion) {
    let one = order(7);
    let batch = format!(
        r#"{{"orders":[{}]}}"#,
        (0..1_000).map(order).collect::<Vec<_>>().join(",")
    );
    let mut g = c.benchmark_group("order_body");
    g.throughput(Throughput::Elements(1));
    g.bench_function("single/fast", |b| {
        b.iter(|| json::<OrderRequestDto>(black_box(one.as_bytes())))
    });
    g.bench_function("single/exact", |b| {
        b.iter(|| json_exact::<OrderRequestDto>(black_box(one.as_bytes())))
    });
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("batch_1000/fast", |b| {
        b.iter(|| json::<BatchRequest>(black_box(batch.as_bytes())))
    });
    g.bench_function("batch_1000/exact", |b| {
        b.iter(|| json_exact::<BatchRequest>(black_box(batch.as_bytes())))
    });
    g.finish();
}

criterion_group!(benches, bodies);
criterion_main!(benches);
