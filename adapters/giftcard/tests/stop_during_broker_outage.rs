//! SIGTERM while the broker is away: `giftcard serve` with the queue adapter keeps serving HTTP
//! through a NATS outage (the outbox backs up in the journal), and a SIGTERM then must still
//! drain, flush the journal and exit promptly, not wait forever for a broker that is gone.
//! Afterwards `giftcard verify` passes and the orders placed during the outage are in the books.

mod served;

use giftcard_queue::testkit::NatsServer;
use serde_json::json;
use served::{verify, Served, ADMIN, CHECKOUT, FUNDING, SUPPLIER};
use std::time::{Duration, Instant};

fn usd(minor: i64) -> serde_json::Value {
    json!({"amount_minor": minor, "currency": "USD"})
}

#[test]
fn sigterm_during_a_broker_outage_exits_promptly_and_keeps_everything() {
    let store = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let mut nats = NatsServer::start(store.path());
    let url = nats.url();
    let public_key = giftcard_queue::testkit::delivery_keys().0;
    let mut server = Served::spawn_with(
        data.path(),
        &[
            ("GIFTCARD_NATS_ENABLED", "true"),
            ("GIFTCARD_NATS_DELIVERY_PUBLIC_KEY", &public_key),
            ("GIFTCARD_NATS_URL", &url),
            ("RUST_LOG", "info"),
        ],
    );
    server.wait_ready().expect("server ready");
    let started = Instant::now();
    while server.log_lines_with("queue adapter running").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the queue adapter never ran:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = &server.client;
    let created = |r: Result<served::Res, String>| {
        let r = r.expect("request");
        assert!(r.status == 201 || r.status == 200, "{r:?}");
    };
    created(c.post(
        "/v1/skus",
        ADMIN,
        &json!({"sku_id": "acme-25", "brand": "Acme", "category": "retail",
            "kind": "supplier_code", "face_value": {"fixed": usd(2_500)},
            "wholesale_discount": "0.15", "supplier_id": "supplier-1"}),
    ));
    let codes: Vec<String> = (0..20).map(|i| format!("OUTAGE-CODE-{i:04}")).collect();
    created(c.post(
        "/v1/skus/acme-25/codes",
        SUPPLIER,
        &json!({ "codes": codes }),
    ));
    created(c.post(
        "/v1/wallets",
        CHECKOUT,
        &json!({"wallet_id": "w-1", "kyc_verified": false}),
    ));
    created(c.post(
        "/v1/wallets/w-1/deposits",
        FUNDING,
        &json!({"deposit_id": "d-1", "amount": usd(100_000), "reference": "test"}),
    ));
    let order = |id: &str| {
        json!({"order_id": id, "wallet_id": "w-1", "items": [{"sku_id": "acme-25", "quantity": 1}],
            "region": "US", "delivery": {"channel": "email", "recipient": "buyer@example.com"}})
    };
    created(c.post("/v1/orders", CHECKOUT, &order("before-outage")));

    // The broker goes away; HTTP keeps taking orders, whose events wait in the journal.
    nats.kill();
    for i in 0..3 {
        created(c.post(
            "/v1/orders",
            CHECKOUT,
            &order(&format!("during-outage-{i}")),
        ));
    }
    let status = server.terminate(Duration::from_secs(30));
    assert!(status.success(), "giftcard serve exited with {status}");

    verify(data.path());
    // The orders are durable: a fresh server (without NATS) answers them.
    let server = Served::start(data.path());
    for id in [
        "before-outage",
        "during-outage-0",
        "during-outage-1",
        "during-outage-2",
    ] {
        let r = server
            .client
            .get(&format!("/v1/orders/{id}"), Some(CHECKOUT))
            .expect("read order");
        assert_eq!(r.status, 200, "{id}: {r:?}");
        assert_eq!(r.body["status"], "completed", "{id}: {r:?}");
    }
}
