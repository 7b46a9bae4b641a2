//! The nats:// target end to end: a real nats-server (spawned on a free port with its own
//! store), the engine with its HTTP API and queue adapter in this process, and a short open-loop
//! run whose orders travel through JetStream. The run's books check must pass: every order the
//! tool saw completed is in the engine, and nothing else is.

use giftcard_http::{hash_api_key, ApiKeyConfig, HttpConfig, Role};
use giftcard_queue::testkit::NatsServer;
use giftcard_queue::{QueueAdapter, QueueConfig};
use loadtest::plan::{Mix, Scale, Shape};
use loadtest::report::{self, Plan};
use loadtest::targets::{Target, TargetOpts};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_through_jetstream_reconcile_with_the_books() {
    let store = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(store.path());
    let data = tempfile::tempdir().unwrap();
    let key = |k: &str, client: &str, role| ApiKeyConfig::new(hash_api_key(k), client, role);
    let keys = vec![
        key("dev-admin-key", "admin", Role::Admin),
        key("dev-checkout-key", "checkout-1", Role::Checkout),
    ];
    let mut engine_cfg = giftcard_shard::EngineConfig::new(data.path(), 2);
    engine_cfg.outbox = true;
    let server = giftcard_http::start(HttpConfig::new("127.0.0.1:0", keys), engine_cfg).unwrap();
    let started = Instant::now();
    let engine = loop {
        if let Some(e) = server.engine() {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "engine never got ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut cfg = QueueConfig::new(&nats.url());
    cfg.delivery_public_key = giftcard_queue::testkit::delivery_keys().0;
    let adapter = QueueAdapter::start(cfg, engine).unwrap();

    let opts = TargetOpts {
        connections: 8,
        shards: 0,
        pg_schema: String::new(),
        run_id: "nt".into(),
        http: format!("http://{}", server.addr),
    };
    let target = Target::open(&nats.url(), &opts).await.unwrap();
    assert_eq!(target.kind(), "nats");
    let ops = 400;
    let mix = Mix::uniform();
    let plan = Plan {
        profile: "nats-test".into(),
        scale: Scale::for_plan(&mix, ops, 20, 10),
        mix,
        shape: Some(Shape::steady(400.0, 1.0)),
        workers: 16,
        ops_max: ops,
        secs_max: 20.0,
        inflight_max: 1_000,
        seed: 5,
    };
    let r = report::run(Arc::new(target), &plan, 16, false)
        .await
        .unwrap();
    assert!(r.books.ok(), "{:?}", r.books);
    assert_eq!(r.summary.orders.completed, ops, "{:?}", r.summary);
    drop(adapter);
    server.stop().unwrap();
}
