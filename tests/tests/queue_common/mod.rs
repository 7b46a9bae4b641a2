//! Shared set-up of the queue adapter tests: a real `nats-server` (spawned on a free port with
//! its own store; a missing binary fails the test naming it), an engine with the outbox on and
//! a small data set, and the JSON of orders as checkout clients send them.
#![allow(dead_code)]

use async_nats::jetstream::{self, Context};
use giftcard_core::SkuKind;
use giftcard_queue::testkit::NatsServer;
use giftcard_queue::{QueueAdapter, QueueConfig};
use giftcard_shard::scenario::{self, DataSet};
use giftcard_shard::{Engine, EngineConfig};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

pub const CLIENT: &str = "checkout-1";

/// An engine as `giftcard serve` runs it with NATS enabled (outbox on), 2 shards.
pub fn open_engine(dir: &Path, mailbox_len_max: usize) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(dir, 2);
    cfg.outbox = true;
    cfg.mailbox_len_max = mailbox_len_max;
    Arc::new(Engine::open(cfg).expect("engine opens"))
}

/// Wallets w-0..w-3 of checkout-1 with $10,000 each; SKUs sku-0, sku-1 ($25, supplier codes).
pub fn load(engine: &Engine, codes_per_sku: u64) {
    scenario::load(
        engine,
        &DataSet {
            wallets: 4,
            skus: 2,
            codes_per_sku,
            deposit_minor: 1_000_000,
            kind: SkuKind::SupplierCode,
            face_minor: 2500,
            code_prefix: String::new(),
            hot_skus: 0,
            hot_codes_per_sku: 0,
        },
    )
    .expect("data set loads");
}

/// Adapter settings for tests: quick retries, a low-stock threshold the tests can cross.
pub fn queue_config(url: &str) -> QueueConfig {
    let mut c = QueueConfig::new(url);
    c.delivery_public_key = giftcard_queue::testkit::delivery_keys().0;
    c.delivery_backoff_ms = 50;
    c.delivery_backoff_max_ms = 200;
    c.delivery_attempts_max = 3;
    c.low_stock_threshold = 5;
    c.ack_wait_s = 5;
    c
}

pub fn start_adapter(nats: &NatsServer, engine: &Arc<Engine>) -> QueueAdapter {
    QueueAdapter::start(queue_config(&nats.url()), engine.clone()).expect("adapter starts")
}

/// A JetStream context of a test client.
pub async fn client(nats: &NatsServer) -> Context {
    let c = async_nats::connect(nats.url())
        .await
        .expect("test client connects");
    jetstream::new(c)
}

/// The body of `POST /v1/orders`.
pub fn order_json(order_id: &str, wallet: &str, sku: &str, qty: u32, channel: &str) -> Vec<u8> {
    let recipient = if channel == "none" {
        ""
    } else {
        "buyer@example.com"
    };
    serde_json::to_vec(&json!({
        "order_id": order_id,
        "wallet_id": wallet,
        "items": [{"sku_id": sku, "quantity": qty}],
        "region": "US",
        "delivery": {"channel": channel, "recipient": recipient},
    }))
    .expect("json")
}

/// Publishes an order on `giftcard.orders.{client}` with `msg_id` as `Nats-Msg-Id` and waits
/// for the stream's ack; true when the stream stored it (false: dropped as a duplicate).
pub async fn publish(js: &Context, client: &str, msg_id: &str, body: Vec<u8>) -> bool {
    let ack = js
        .send_publish(
            format!("giftcard.orders.{client}"),
            async_nats::jetstream::message::PublishMessage::build()
                .payload(body.into())
                .message_id(msg_id),
        )
        .await
        .expect("publish")
        .await
        .expect("stream ack");
    !ack.duplicate
}

/// Waits until the engine's streams exist (the adapter creates them once connected).
pub async fn wait_streams(js: &Context) {
    let started = std::time::Instant::now();
    while js.get_stream("GIFTCARD_EVENTS").await.is_err()
        || js.get_stream("GIFTCARD_ORDERS").await.is_err()
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the adapter did not create its streams"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Available codes of a SKU.
pub fn stock(engine: &Engine, sku: &str) -> u64 {
    match engine
        .ask(giftcard_shard::Query::Stock {
            sku: giftcard_core::SkuId::new(sku),
        })
        .expect("stock")
    {
        giftcard_shard::QueryAnswer::Stock { available, .. } => available,
        other => panic!("{other:?}"),
    }
}

/// A wallet's available USD balance in minor units.
pub fn balance(engine: &Engine, wallet: &str) -> i64 {
    let q = giftcard_shard::Query::Wallet {
        caller: scenario::caller(),
        wallet: giftcard_core::WalletId::new(wallet),
    };
    match engine.ask(q).expect("wallet") {
        giftcard_shard::QueryAnswer::Wallet(w) => {
            w.balances.iter().map(|(_, b)| b.available_minor).sum()
        }
        other => panic!("{other:?}"),
    }
}

/// The code a delivery event carries, opened with the test consumer's secret key. The event
/// must carry it sealed, never in clear.
pub fn open_code(payload: &Value) -> String {
    assert!(payload.get("code").is_none(), "a code in clear: {payload}");
    let sealed = payload["sealed_code"].as_str().expect("a sealed code");
    giftcard_queue::seal::open(&giftcard_queue::testkit::delivery_keys().1, sealed)
        .expect("the sealed code opens with the consumer's key")
}
