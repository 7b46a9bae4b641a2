//! A broker outage mid-stream: nats-server is killed (SIGKILL) while orders flow and restarted
//! on the same port and store. The engine keeps serving (orders placed directly, as HTTP does),
//! the outbox backs up in the journal, and afterwards every order has its result, every event is
//! in the stream once, in order per shard, and every order took effect exactly once.

mod queue_common;

use giftcard_queue::testkit::{wait_for, NatsServer};
use queue_common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(25);

async fn publish_retrying(js: &async_nats::jetstream::Context, id: &str, body: Vec<u8>) {
    let started = std::time::Instant::now();
    loop {
        let sent = js
            .send_publish(
                format!("giftcard.orders.{CLIENT}"),
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(body.clone().into())
                    .message_id(id),
            )
            .await;
        if let Ok(ack) = sent {
            if ack.await.is_ok() {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "cannot publish {id} after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_mid_stream_loses_nothing_and_http_keeps_serving() {
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut nats = NatsServer::start(store.path());
    let port = nats.port;
    let engine = open_engine(data.path(), 4096);
    load(&engine, 500);
    let adapter = start_adapter(&nats, &engine);
    let js = client(&nats).await;
    wait_streams(&js).await;

    const N: usize = 100;
    for i in 0..N / 2 {
        let id = format!("q-{i}");
        publish_retrying(
            &js,
            &id,
            order_json(&id, &format!("w-{}", i % 4), "sku-0", 1, "email"),
        )
        .await;
    }
    wait_for(&js, "GIFTCARD_RESULTS", ">", WAIT, |r| r.len() >= 10).await;
    nats.kill();

    // The broker is gone: the engine still answers orders (the HTTP path), durably.
    for n in 0..20u64 {
        let mut order = giftcard_shard::scenario::order(1_000 + n, (n % 4) as u32, 0, 1);
        order.channel = giftcard_core::DeliveryChannel::Webhook;
        order.recipient = "https://example.com/hook".into();
        match engine.call(giftcard_core::Command::PlaceOrder(Box::new(order))) {
            Ok(giftcard_shard::Outcome::Order {
                outcome: giftcard_core::OrderOutcome::Completed { .. },
                ..
            }) => {}
            other => panic!("engine stopped serving during the outage: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _nats = NatsServer::start_on(port, store.path());
    for i in N / 2..N {
        let id = format!("q-{i}");
        publish_retrying(
            &js,
            &id,
            order_json(&id, &format!("w-{}", i % 4), "sku-0", 1, "email"),
        )
        .await;
    }

    let results = wait_for(&js, "GIFTCARD_RESULTS", ">", WAIT, |r| r.len() >= N).await;
    let answered: BTreeSet<_> = results
        .iter()
        .map(|r| r.payload["order_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(answered.len(), N, "every order has its result");
    assert_eq!(results.len(), N, "one result per order");
    assert!(results.iter().all(|r| r.payload["status"] == "completed"));

    let want = (N + 20) * 2; // an order event and a delivery event per order
    wait_for(&js, "GIFTCARD_EVENTS", ">", WAIT, |e| e.len() >= want).await;
    // Let anything republished after the restart arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = wait_for(&js, "GIFTCARD_EVENTS", ">", WAIT, |e| e.len() >= want).await;
    assert_eq!(events.len(), want, "every event once");
    let ids: BTreeSet<_> = events.iter().map(|e| e.msg_id.clone().unwrap()).collect();
    assert_eq!(ids.len(), want);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.subject == "giftcard.delivery.webhook")
            .count(),
        20
    );
    // In order per shard: a shard's order events appear in lsn order.
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.subject.starts_with("giftcard.order."))
    {
        let (shard, lsn) = (
            e.payload["shard"].as_u64().unwrap(),
            e.payload["lsn"].as_u64().unwrap(),
        );
        let prev = last.insert(shard, lsn).unwrap_or(0);
        assert!(lsn > prev, "shard {shard}: lsn {lsn} after {prev}");
    }
    // Exactly once: 120 codes sold, each wallet charged for its own orders.
    assert_eq!(stock(&engine, "sku-0"), 500 - (N as u64 + 20));
    let spent: i64 = (0..4)
        .map(|w| 1_000_000 - balance(&engine, &format!("w-{w}")))
        .sum();
    assert_eq!(spent, (N as i64 + 20) * 2500);
    adapter.stop();
}
