//! Crash test of the queue path on the real binary: `giftcard serve` with NATS enabled takes
//! orders from JetStream while a client publishes them; we SIGKILL the server twice mid-stream
//! and restart it on the same data directory. Afterwards every order has exactly one effect in
//! the engine, one result, and every event is in the stream once (the broker deduplicates the
//! republished ones by their stable ids).

use giftcard_core::{ClientId, OrderId, OrderKey, OrderOutcome, SkuKind};
use giftcard_queue::testkit::{read_stream, NatsServer};
use giftcard_shard::scenario::{self, DataSet};
use giftcard_shard::{Engine, EngineConfig, Query, QueryAnswer};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ORDERS: usize = 400;
const CODES: u64 = 1_000;

fn engine_config(dir: &Path) -> EngineConfig {
    let mut cfg = EngineConfig::new(dir, 2);
    cfg.outbox = true;
    cfg
}

fn serve(data: &Path, nats_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_giftcard"))
        .arg("serve")
        .env("GIFTCARD_DATA_DIR", data)
        .env("GIFTCARD_SHARDS", "2")
        .env("GIFTCARD_HTTP_ADDR", "127.0.0.1:0")
        .env("GIFTCARD_NATS_ENABLED", "true")
        .env(
            "GIFTCARD_NATS_DELIVERY_PUBLIC_KEY",
            giftcard_queue::testkit::delivery_keys().0,
        )
        .env("GIFTCARD_NATS_URL", nats_url)
        // Redeliver quickly what the killed process took but never acked.
        .env("GIFTCARD_NATS_ACK_WAIT_S", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn giftcard serve")
}

fn order_body(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "order_id": format!("k-{i}"),
        "wallet_id": format!("w-{}", i % 4),
        "items": [{"sku_id": "sku-0", "quantity": 1}],
        "region": "US",
        "delivery": {"channel": "email", "recipient": "buyer@example.com"},
    }))
    .expect("json")
}

async fn results_count(js: &async_nats::jetstream::Context) -> usize {
    match js.get_stream("GIFTCARD_RESULTS").await {
        Ok(mut s) => s
            .info()
            .await
            .map(|i| i.state.messages as usize)
            .unwrap_or(0),
        Err(_) => 0,
    }
}

async fn wait_results(js: &async_nats::jetstream::Context, at_least: usize, timeout: Duration) {
    let started = Instant::now();
    while results_count(js).await < at_least {
        assert!(
            started.elapsed() < timeout,
            "only {} of {at_least} results after {timeout:?}",
            results_count(js).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_gives_every_order_one_effect_and_every_event_once() {
    let (store, data) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    {
        let engine = Engine::open(engine_config(data.path())).expect("engine");
        let ds = DataSet {
            wallets: 4,
            skus: 1,
            codes_per_sku: CODES,
            deposit_minor: 10_000_000,
            kind: SkuKind::SupplierCode,
            face_minor: 2500,
            code_prefix: String::new(),
            hot_skus: 0,
            hot_codes_per_sku: 0,
        };
        scenario::load(&engine, &ds).expect("data set");
    }
    let nats = NatsServer::start(store.path());
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    // The orders stream as the adapter makes it, so the client can publish before it starts.
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "GIFTCARD_ORDERS".into(),
        subjects: vec!["giftcard.orders.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("orders stream");

    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for i in 0..ORDERS {
                let id = format!("checkout-1.k-{i}");
                let msg = async_nats::jetstream::message::PublishMessage::build()
                    .payload(order_body(i).into())
                    .message_id(&id);
                js.send_publish("giftcard.orders.checkout-1", msg)
                    .await
                    .expect("publish")
                    .await
                    .expect("stored");
                // Paced, so both kills land while orders are still flowing.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut child = serve(data.path(), &nats.url());
    for round in 0..2 {
        // Kill once the (re)started server has answered 60 more orders.
        let kill_at = results_count(&js).await + 60;
        wait_results(&js, kill_at, Duration::from_secs(20)).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        eprintln!(
            "round {round}: killed after {} results",
            results_count(&js).await
        );
        child = serve(data.path(), &nats.url());
    }
    publisher.await.expect("publisher");
    wait_results(&js, ORDERS, Duration::from_secs(25)).await;

    // Results: one per order (a replay after the kill carries the same id), all completed.
    let results = read_stream(&js, "GIFTCARD_RESULTS", ">").await;
    let answered: BTreeSet<_> = results
        .iter()
        .map(|r| r.payload["order_id"].as_str().expect("order id").to_owned())
        .collect();
    assert_eq!((results.len(), answered.len()), (ORDERS, ORDERS));
    assert!(
        results.iter().all(|r| r.payload["status"] == "completed"),
        "every order completes"
    );

    // Events: each order's completion and delivery exactly once in the stream.
    let want = ORDERS * 2;
    let started = Instant::now();
    let events = loop {
        let events = read_stream(&js, "GIFTCARD_EVENTS", ">").await;
        if events.len() >= want || started.elapsed() > Duration::from_secs(20) {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ids: BTreeSet<_> = events
        .iter()
        .map(|e| e.msg_id.clone().expect("event id"))
        .collect();
    assert_eq!(ids.len(), events.len(), "no event twice");
    assert_eq!(events.len(), want, "every event in the stream");

    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // Every order's effect exactly once in the recovered engine.
    let engine = Engine::open(engine_config(data.path())).expect("recovery");
    let mut charged = 0;
    for i in 0..ORDERS {
        let key = OrderKey {
            client: ClientId::new("checkout-1"),
            order_id: OrderId::new(&format!("k-{i}")),
        };
        match engine.ask(Query::Order { key }).expect("order query") {
            QueryAnswer::Order(rec) => match rec.outcome {
                OrderOutcome::Completed {
                    charged: c, cards, ..
                } => {
                    assert_eq!(cards, 1);
                    charged += c.minor();
                }
                other => panic!("order k-{i}: {other:?}"),
            },
            other => panic!("order k-{i} missing: {other:?}"),
        }
    }
    assert_eq!(charged, ORDERS as i64 * 2500);
    let QueryAnswer::Stock { available, sold } = engine
        .ask(Query::Stock {
            sku: scenario::sku_id(0),
        })
        .expect("stock")
    else {
        panic!("stock")
    };
    assert_eq!(
        (available, sold),
        (CODES - ORDERS as u64, ORDERS as u64),
        "one code per order, once"
    );
    let report = engine.reconcile().expect("reconcile");
    assert!(report.ok(), "invariants: {:?}", report.violations);
}
