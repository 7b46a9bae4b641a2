//! Throughput of the queue path, measured in one run against a bare JetStream pipeline:
//!
//! - `bare`: publish N order messages to a stream (pipelined, each with `Nats-Msg-Id`), consume
//!   them with a durable pull consumer and double-ack each: JetStream alone, no engine.
//! - `bare + 1 write`, `bare + 2 writes`: the same, each message also storing one or two messages
//!   (PubAck awaited) before its ack: the JetStream writes of the engine path without the engine.
//! - `engine`: publish the same N orders to `GIFTCARD_ORDERS`; the adapter consumes them, places
//!   each in the engine (durable, fsynced), publishes its result on `giftcard.results.{client}`
//!   (stored in `GIFTCARD_RESULTS`, or on core NATS with `store_results = false`; both are run)
//!   and double-acks; the outbox publishes the order events meanwhile. Timed until N results.
//!
//! Both use the same nats-server (spawned here with its own store) and the same client
//! settings. The machine is shared, so the two alternate for ROUNDS rounds (fresh streams and a
//! fresh engine each round) and the medians and their ratio are printed.
//!
//! `cargo run --release -p giftcard-queue --example queue_bench -- [ORDERS] [CHANNEL] [ROUNDS]`

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, Context};
use futures::StreamExt;
use giftcard_core::SkuKind;
use giftcard_queue::testkit::NatsServer;
use giftcard_queue::{QueueAdapter, QueueConfig};
use giftcard_shard::scenario::{self, DataSet};
use giftcard_shard::{Engine, EngineConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WALLETS: u32 = 1_000;

fn order(i: usize, channel: &str) -> Vec<u8> {
    let recipient = if channel == "none" {
        ""
    } else {
        "buyer@example.com"
    };
    serde_json::to_vec(&serde_json::json!({
        "order_id": format!("b-{i}"),
        "wallet_id": format!("w-{}", i as u32 % WALLETS),
        "items": [{"sku_id": format!("sku-{}", i % 4), "quantity": 1}],
        "region": "US",
        "delivery": {"channel": channel, "recipient": recipient},
    }))
    .unwrap_or_default()
}

/// Publishes every order, keeping at most `window` acks outstanding.
async fn publish_all(js: &Context, subject: &str, n: usize, channel: &str) {
    let mut acks = std::collections::VecDeque::new();
    for i in 0..n {
        let msg = PublishMessage::build()
            .payload(order(i, channel).into())
            .message_id(format!("b-{i}"));
        acks.push_back(
            js.send_publish(subject.to_owned(), msg)
                .await
                .expect("publish"),
        );
        if acks.len() >= 4_096 {
            if let Some(a) = acks.pop_front() {
                a.await.expect("stored");
            }
        }
    }
    for a in acks {
        a.await.expect("stored");
    }
}

/// `writes_per_message`: 0 for the bare pipeline; 2 to also store a result and an event per
/// message (the JetStream writes the engine path makes, without the engine).
async fn bare(js: &Context, n: usize, channel: &str, writes_per_message: usize) -> Duration {
    let _ = js.delete_stream("BENCH_BARE").await;
    let _ = js.delete_stream("BENCH_BARE_OUT").await;
    js.get_or_create_stream(jetstream::stream::Config {
        name: "BENCH_BARE_OUT".into(),
        subjects: vec!["bench.out.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("stream");
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: "BENCH_BARE".into(),
            subjects: vec!["bench.bare.>".into()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .expect("stream");
    let consumer = stream
        .get_or_create_consumer(
            "bare",
            pull::Config {
                durable_name: Some("bare".into()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: 4_096 + 256,
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let started = Instant::now();
    let publisher = {
        let js = js.clone();
        let channel = channel.to_owned();
        tokio::spawn(async move { publish_all(&js, "bench.bare.checkout-1", n, &channel).await })
    };
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(256)
        .messages()
        .await
        .expect("messages");
    // The same shape as the adapter: up to 4096 messages in flight, each acked by its own task.
    let inflight = Arc::new(tokio::sync::Semaphore::new(4_096));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = inflight.clone().acquire_owned().await.expect("permit");
        let m = messages.next().await.expect("message").expect("message");
        let js = js.clone();
        tasks.push(tokio::spawn(async move {
            for w in 0..writes_per_message {
                let id = format!("{}-{w}", m.info().map(|i| i.stream_sequence).unwrap_or(0));
                let out = PublishMessage::build()
                    .payload(m.payload.clone())
                    .message_id(id);
                if let Ok(ack) = js.send_publish(format!("bench.out.{w}"), out).await {
                    let _ = ack.await;
                }
            }
            let _ = m.double_ack().await;
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    publisher.await.expect("publisher");
    elapsed
}

async fn results(js: &Context) -> u64 {
    match js.get_stream("GIFTCARD_RESULTS").await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// The engine path; `store_results` as in the adapter's configuration (stored in
/// `GIFTCARD_RESULTS`, or on core NATS). Timed until N results are stored or received.
async fn with_engine(
    js: &Context,
    url: &str,
    n: usize,
    channel: &str,
    store_results: bool,
) -> Duration {
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = EngineConfig::new(data.path(), 2);
    cfg.outbox = true;
    let engine = Arc::new(Engine::open(cfg).expect("engine"));
    let ds = DataSet {
        wallets: WALLETS,
        skus: 4,
        codes_per_sku: (n as u64 / 4) + 1_000,
        deposit_minor: 1_000_000_000,
        kind: SkuKind::SupplierCode,
        face_minor: 2500,
        code_prefix: String::new(),
        hot_skus: 0,
        hot_codes_per_sku: 0,
    };
    scenario::load(&engine, &ds).expect("data set");
    // Only the core NATS mode needs a subscriber; in the stored mode one would add a delivery
    // per result to what is measured.
    let mut subscriber = if store_results {
        None
    } else {
        let s = js.client().subscribe("giftcard.results.checkout-1").await;
        Some(s.expect("subscribe"))
    };
    let mut qcfg = QueueConfig::new(url);
    qcfg.store_results = store_results;
    qcfg.delivery_public_key = giftcard_queue::testkit::delivery_keys().0;
    let adapter = QueueAdapter::start(qcfg, engine.clone()).expect("adapter");
    while js.get_stream("GIFTCARD_EVENTS").await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let publisher = {
        let js = js.clone();
        let channel = channel.to_owned();
        tokio::spawn(
            async move { publish_all(&js, "giftcard.orders.checkout-1", n, &channel).await },
        )
    };
    match subscriber.as_mut() {
        Some(sub) => {
            for _ in 0..n {
                sub.next().await.expect("result");
            }
        }
        None => {
            while results(js).await < n as u64 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let elapsed = started.elapsed();
    publisher.await.expect("publisher");
    adapter.stop();
    engine.shutdown();
    for s in ["GIFTCARD_ORDERS", "GIFTCARD_RESULTS", "GIFTCARD_EVENTS"] {
        let _ = js.delete_stream(s).await;
    }
    elapsed
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let channel = args.next().unwrap_or_else(|| "none".into());
    let store = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(store.path());
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3).max(1);
    let rate = |t: Duration| n as f64 / t.as_secs_f64();
    // Per round: bare, bare + 1 write, bare + 2 writes, engine (results stored), engine (core).
    let mut runs: [Vec<f64>; 5] = Default::default();
    println!("orders: {n}, delivery channel: {channel}, rounds: {rounds}");
    for round in 0..rounds {
        let r = [
            rate(bare(&js, n, &channel, 0).await),
            rate(bare(&js, n, &channel, 1).await),
            rate(bare(&js, n, &channel, 2).await),
            rate(with_engine(&js, &nats.url(), n, &channel, true).await),
            rate(with_engine(&js, &nats.url(), n, &channel, false).await),
        ];
        println!(
            "round {round}: bare {:>6.0}/s, +1 write {:>6.0}/s, +2 writes {:>6.0}/s | engine, results stored {:>6.0}/s ({:.0}% of bare), results on core NATS {:>6.0}/s ({:.0}%)",
            r[0], r[1], r[2], r[3], 100.0 * r[3] / r[0], r[4], 100.0 * r[4] / r[0]
        );
        for (v, x) in runs.iter_mut().zip(r) {
            v.push(x);
        }
    }
    let m: Vec<f64> = runs.into_iter().map(median).collect();
    let pct = |x: f64| 100.0 * x / m[0];
    println!("medians over {rounds} rounds:");
    println!(
        "  bare JetStream publish -> consume -> double ack:  {:>8.0} msgs/s",
        m[0]
    );
    println!(
        "  bare + one stored write per message (no engine):  {:>8.0} msgs/s ({:.0}% of bare)",
        m[1],
        pct(m[1])
    );
    println!(
        "  bare + two stored writes per message (no engine): {:>8.0} msgs/s ({:.0}% of bare)",
        m[2],
        pct(m[2])
    );
    println!(
        "  engine path, results stored (default):            {:>8.0} orders/s ({:.0}% of bare)",
        m[3],
        pct(m[3])
    );
    println!(
        "  engine path, results on core NATS:                {:>8.0} orders/s ({:.0}% of bare)",
        m[4],
        pct(m[4])
    );
}
