//! The queue adapter against a real nats-server: an order in gives a result and events out, a
//! duplicated message has one effect, poison messages are answered once and terminated, and the
//! engine's overload makes the consumer back off without losing or repeating an order.

mod queue_common;

use giftcard_queue::testkit::{read_stream, wait_for, NatsServer};
use queue_common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn ids(stored: &[giftcard_queue::testkit::Stored]) -> Vec<String> {
    stored.iter().filter_map(|s| s.msg_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_in_gives_its_result_and_events_out() {
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start(store.path());
    let engine = open_engine(data.path(), 4096);
    load(&engine, 8);
    let adapter = start_adapter(&nats, &engine);
    let js = client(&nats).await;
    wait_streams(&js).await;

    assert!(
        publish(
            &js,
            CLIENT,
            "checkout-1.o-1",
            order_json("o-1", "w-0", "sku-0", 4, "email")
        )
        .await
    );
    let results = wait_for(
        &js,
        "GIFTCARD_RESULTS",
        "giftcard.results.checkout-1",
        WAIT,
        |r| !r.is_empty(),
    )
    .await;
    let r = &results[0].payload;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["order_id"], "o-1");
    assert_eq!(r["card_count"], 4);
    assert_eq!(r["charged"]["amount_minor"], 10000);
    // The wallet's balances right after the order, in the result itself.
    assert_eq!(
        r["balances"][0]["available"]["amount_minor"],
        1_000_000 - 10_000,
        "{r}"
    );
    let first_card: u64 = r["first_card_id"].as_str().unwrap().parse().unwrap();

    // One order event and one delivery event per card, with the codes the engine holds.
    let events = wait_for(&js, "GIFTCARD_EVENTS", ">", WAIT, |e| e.len() >= 5).await;
    let completed: Vec<_> = events
        .iter()
        .filter(|e| e.subject == "giftcard.order.completed")
        .collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].payload["order_id"], "o-1");
    let deliveries: Vec<_> = events
        .iter()
        .filter(|e| e.subject == "giftcard.delivery.email")
        .collect();
    assert_eq!(deliveries.len(), 4);
    let giftcard_shard::QueryAnswer::Cards(cards) = engine
        .ask(giftcard_shard::Query::Cards {
            first: giftcard_core::CardId(first_card),
            count: 4,
        })
        .unwrap()
    else {
        panic!("cards")
    };
    for (i, (d, card)) in deliveries.iter().zip(&cards).enumerate() {
        assert_eq!(d.payload["card_id"], (first_card + i as u64).to_string());
        assert_eq!(
            open_code(&d.payload),
            engine
                .reveal(giftcard_core::CardId(first_card + i as u64), card)
                .unwrap()
        );
        assert_eq!(d.payload["recipient"], "buyer@example.com");
        assert_eq!(d.payload["batch_count"], 4);
        // Stable event ids (`{shard}-{lsn}-{i}`), published under their keyed hashes.
        let event_id = format!("{}-{i}", completed[0].payload["event_id"].as_str().unwrap());
        assert_eq!(d.payload["event_id"], event_id.as_str());
        assert_eq!(
            d.msg_id.as_deref(),
            Some(engine.vault().message_id(&event_id).as_str())
        );
    }

    // A rejection is a result and an event; stock fell below 5 once (8 - 4): one low-stock event.
    assert!(
        publish(
            &js,
            CLIENT,
            "checkout-1.o-2",
            order_json("o-2", "w-1", "sku-0", 50, "none")
        )
        .await
    );
    let results = wait_for(&js, "GIFTCARD_RESULTS", ">", WAIT, |r| r.len() >= 2).await;
    assert_eq!(results[1].payload["status"], "rejected");
    assert_eq!(results[1].payload["reason"], "out_of_stock");
    let events = wait_for(
        &js,
        "GIFTCARD_EVENTS",
        "giftcard.order.rejected",
        WAIT,
        |e| !e.is_empty(),
    )
    .await;
    assert_eq!(events[0].payload["reason"], "out_of_stock");
    let low = read_stream(&js, "GIFTCARD_EVENTS", "giftcard.inventory.low_stock").await;
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!(low[0].payload["sku_id"], "sku-0");
    assert_eq!(low[0].payload["available"], 4);

    // Closing a settlement period (what POST /v1/admin/settlements does) emits one event per
    // supplier and shard that has dues; they sum to what is owed.
    let closed = engine
        .call(giftcard_core::Command::CloseSettlement {
            period_id: giftcard_core::RequestId::new("2026-11"),
        })
        .unwrap();
    assert!(matches!(closed, giftcard_shard::Outcome::Applied(_)));
    let settled = wait_for(&js, "GIFTCARD_EVENTS", "giftcard.settlement.>", WAIT, |e| {
        !e.is_empty()
    })
    .await;
    let cards: u64 = settled
        .iter()
        .map(|e| e.payload["cards"].as_u64().unwrap())
        .sum();
    assert_eq!(cards, 4);
    assert!(settled
        .iter()
        .all(|e| e.subject == "giftcard.settlement.supplier-0"
            && e.payload["period_id"] == "2026-11"));
    let owed: i64 = settled
        .iter()
        .map(|e| e.payload["owed"][0]["amount_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(owed, 4 * 2125, "face less the 15% wholesale discount");
    adapter.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_twice_has_one_effect() {
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start(store.path());
    let engine = open_engine(data.path(), 4096);
    load(&engine, 20);
    let adapter = start_adapter(&nats, &engine);
    let js = client(&nats).await;
    wait_streams(&js).await;
    let before = balance(&engine, "w-0");

    // The broker drops the copy with the same Nats-Msg-Id...
    let body = order_json("dup-1", "w-0", "sku-1", 2, "sms");
    assert!(publish(&js, CLIENT, "checkout-1.dup-1", body.clone()).await);
    assert!(
        !publish(&js, CLIENT, "checkout-1.dup-1", body.clone()).await,
        "stored twice"
    );
    // ...and a copy that slips past it (another message id) replays the recorded outcome.
    assert!(publish(&js, CLIENT, "checkout-1.dup-1.retry", body).await);

    let results = wait_for(&js, "GIFTCARD_RESULTS", ">", WAIT, |r| !r.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let consumer = js
        .get_stream("GIFTCARD_ORDERS")
        .await
        .unwrap()
        .consumer_info("giftcard-engine")
        .await
        .unwrap()
        .clone();
    assert_eq!(consumer.num_ack_pending, 0);
    assert_eq!(consumer.num_pending, 0);
    assert_eq!(
        consumer.delivered.stream_sequence, 2,
        "two messages stored, both handled"
    );
    // Both deliveries answer with the same result id, so the results stream keeps one.
    let results = read_stream(&js, "GIFTCARD_RESULTS", ">")
        .await
        .len()
        .max(results.len());
    assert_eq!(results, 1);
    assert_eq!(before - balance(&engine, "w-0"), 5000, "charged once");
    assert_eq!(stock(&engine, "sku-1"), 18);
    let events = wait_for(&js, "GIFTCARD_EVENTS", ">", WAIT, |e| e.len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = read_stream(&js, "GIFTCARD_EVENTS", ">")
        .await
        .len()
        .max(events.len());
    assert_eq!(events, 3, "one completed and two deliveries");
    adapter.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_gets_one_rejection_and_is_never_redelivered() {
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start(store.path());
    let engine = open_engine(data.path(), 4096);
    load(&engine, 20);
    let adapter = start_adapter(&nats, &engine);
    let js = client(&nats).await;
    wait_streams(&js).await;

    assert!(publish(&js, CLIENT, "p-1", b"{not json".to_vec()).await);
    let mut unknown: serde_json::Value =
        serde_json::from_slice(&order_json("p-2", "w-0", "sku-0", 1, "none")).unwrap();
    unknown["coupon"] = "FREE".into();
    assert!(publish(&js, CLIENT, "p-2", serde_json::to_vec(&unknown).unwrap()).await);
    assert!(
        publish(
            &js,
            CLIENT,
            "p-3",
            order_json("p-3", "w-0", "sku-0", 0, "none")
        )
        .await
    );
    // A valid order after the poison still goes through.
    assert!(
        publish(
            &js,
            CLIENT,
            "ok-1",
            order_json("ok-1", "w-0", "sku-0", 1, "none")
        )
        .await
    );

    let results = wait_for(&js, "GIFTCARD_RESULTS", ">", WAIT, |r| r.len() >= 4).await;
    let by_status = |s: &str| results.iter().filter(|r| r.payload["status"] == s).count();
    assert_eq!(by_status("invalid"), 3, "{results:?}");
    assert_eq!(by_status("completed"), 1);
    let codes: BTreeSet<_> = results
        .iter()
        .filter_map(|r| r.payload["problem"]["code"].as_str())
        .collect();
    assert_eq!(
        codes,
        BTreeSet::from(["malformed_json", "invalid_field", "quantity_out_of_range"])
    );
    // Messages are handled concurrently, so results need not come in publishing order.
    let unknown_field = results
        .iter()
        .find(|r| r.payload["problem"]["code"] == "invalid_field")
        .unwrap();
    assert_eq!(unknown_field.payload["problem"]["field"], "coupon");

    // Terminated: nothing pending, nothing redelivered, even after the ack wait has passed.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let info = js
        .get_stream("GIFTCARD_ORDERS")
        .await
        .unwrap()
        .consumer_info("giftcard-engine")
        .await
        .unwrap()
        .clone();
    assert_eq!(
        (info.num_ack_pending, info.num_redelivered, info.num_pending),
        (0, 0, 0)
    );
    assert_eq!(
        read_stream(&js, "GIFTCARD_RESULTS", ">").await.len(),
        4,
        "one result per message"
    );
    assert_eq!(stock(&engine, "sku-0"), 19);
    adapter.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_engine_slows_the_consumer_and_every_order_is_placed_once() {
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start(store.path());
    // A tiny mailbox: a burst of orders overflows it and the adapter must nak and come back.
    let engine = open_engine(data.path(), 2);
    load(&engine, 400);
    let adapter = start_adapter(&nats, &engine);
    let js = client(&nats).await;
    wait_streams(&js).await;
    const N: usize = 300;
    for i in 0..N {
        let id = format!("b-{i}");
        assert!(
            publish(
                &js,
                CLIENT,
                &id,
                order_json(&id, &format!("w-{}", i % 4), "sku-0", 1, "none")
            )
            .await
        );
    }
    let results = wait_for(&js, "GIFTCARD_RESULTS", ">", Duration::from_secs(25), |r| {
        r.len() >= N
    })
    .await;
    assert!(
        results.iter().all(|r| r.payload["status"] == "completed"),
        "every order completes"
    );
    let distinct: BTreeSet<_> = results
        .iter()
        .map(|r| r.payload["order_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(distinct.len(), N);
    assert_eq!(
        stock(&engine, "sku-0"),
        400 - N as u64,
        "each order took one code, once"
    );
    let events = wait_for(
        &js,
        "GIFTCARD_EVENTS",
        "giftcard.order.completed",
        WAIT,
        |e| e.len() >= N,
    )
    .await;
    assert_eq!(ids(&events).into_iter().collect::<BTreeSet<_>>().len(), N);
    adapter.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_order_gets_one_delivery_event_per_card() {
    // More cards than the client's 5000 outstanding publish acks: the outbox must not stall.
    const CARDS: u32 = 6_000;
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start(store.path());
    let engine = open_engine(data.path(), 4096);
    load(&engine, u64::from(CARDS));
    let top_up = giftcard_core::Command::Deposit {
        caller: giftcard_shard::scenario::caller(),
        wallet: giftcard_core::WalletId::new("w-2"),
        deposit_id: giftcard_core::RequestId::new("bulk-funds"),
        amount: giftcard_core::Money::new(20_000_000, giftcard_shard::scenario::usd()),
        reference: "bulk".into(),
        fingerprint: [7; 16],
    };
    engine.call(top_up).expect("deposit");
    let adapter = start_adapter(&nats, &engine);
    let js = client(&nats).await;
    wait_streams(&js).await;
    let body = order_json("bulk-1", "w-2", "sku-1", CARDS, "webhook");
    assert!(publish(&js, CLIENT, "checkout-1.bulk-1", body).await);
    let results = wait_for(&js, "GIFTCARD_RESULTS", ">", WAIT, |r| !r.is_empty()).await;
    assert_eq!(
        results[0].payload["card_count"], CARDS,
        "{:?}",
        results[0].payload
    );
    let started = std::time::Instant::now();
    let deliveries = loop {
        let info = js
            .get_stream("GIFTCARD_EVENTS")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages;
        if info > u64::from(CARDS) || started.elapsed() > Duration::from_secs(25) {
            break read_stream(&js, "GIFTCARD_EVENTS", "giftcard.delivery.webhook").await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(deliveries.len(), CARDS as usize);
    let distinct: BTreeSet<_> = deliveries
        .iter()
        .map(|d| d.payload["card_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(distinct.len(), CARDS as usize);
    assert!(deliveries
        .iter()
        .enumerate()
        .all(|(i, d)| d.payload["batch_index"] == i && d.payload["batch_count"] == CARDS));
    adapter.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_results_not_stored_a_subscriber_gets_each_result_on_core_nats() {
    use futures::StreamExt;
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start(store.path());
    let engine = open_engine(data.path(), 4096);
    load(&engine, 8);
    let js = client(&nats).await;
    let mut results = js
        .client()
        .subscribe("giftcard.results.checkout-1")
        .await
        .unwrap();
    let mut next_result = async || -> serde_json::Value {
        let got = tokio::time::timeout(WAIT, results.next())
            .await
            .expect("a result in time")
            .unwrap();
        serde_json::from_slice(&got.payload).unwrap()
    };
    let mut cfg = queue_config(&nats.url());
    cfg.store_results = false;
    let adapter = giftcard_queue::QueueAdapter::start(cfg, engine.clone()).unwrap();
    wait_streams(&js).await;

    let order = order_json("o-1", "w-0", "sku-0", 2, "none");
    assert!(publish(&js, CLIENT, "checkout-1.o-1", order.clone()).await);
    let r = next_result().await;
    assert_eq!(
        (&r["status"], &r["order_id"], &r["card_count"]),
        (&"completed".into(), &"o-1".into(), &2.into())
    );
    assert!(
        js.get_stream("GIFTCARD_RESULTS").await.is_err(),
        "no results stream is created when results are not stored"
    );
    // The stored record of the outcome is the order event.
    let events = wait_for(
        &js,
        "GIFTCARD_EVENTS",
        "giftcard.order.completed",
        WAIT,
        |e| !e.is_empty(),
    )
    .await;
    assert_eq!(events[0].payload["order_id"], "o-1");

    // The same order sent again under a new message id is answered again, as a replay, and
    // sells nothing more.
    assert!(publish(&js, CLIENT, "checkout-1.o-1-again", order).await);
    let r = next_result().await;
    assert_eq!(
        (&r["status"], &r["replayed"]),
        (&"completed".into(), &true.into())
    );
    assert_eq!(stock(&engine, "sku-0"), 6);
    adapter.stop();
}

/// Issue 15: an order's risk score is published right after its outcome, with its reasons, on
/// `giftcard.order.risk_scored`; an order refused for its score is a rejection `risk_rejected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risk_score_is_published_with_the_order_it_scored() {
    use giftcard_core::risk::{RiskRule, Scoring, WeightedRule};
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start(store.path());
    let mut cfg = giftcard_shard::EngineConfig::new(data.path(), 2);
    cfg.outbox = true;
    // Every order scores 30 (funded within the hour); two in the minute add 50: refused.
    cfg.scoring = std::sync::Arc::new(Scoring {
        rules: vec![
            WeightedRule {
                rule: RiskRule::FundedRecently { age_ms: 3_600_000 },
                weight: 30,
            },
            WeightedRule {
                rule: RiskRule::Velocity {
                    window_ms: 60_000,
                    orders: 1,
                },
                weight: 50,
            },
        ],
        reject_above: Some(60),
        review_above: None,
    });
    let engine = std::sync::Arc::new(giftcard_shard::Engine::open(cfg).unwrap());
    load(&engine, 8);
    let adapter = start_adapter(&nats, &engine);
    let js = client(&nats).await;
    wait_streams(&js).await;
    // One after the other, so the second is decided after the first completed.
    let mut results = Vec::new();
    for (n, id) in ["o-1", "o-2"].into_iter().enumerate() {
        let body = order_json(id, "w-0", "sku-0", 1, "none");
        assert!(publish(&js, CLIENT, &format!("{CLIENT}.{id}"), body).await);
        results = wait_for(&js, "GIFTCARD_RESULTS", ">", WAIT, |r| r.len() > n).await;
    }
    assert_eq!(results[0].payload["status"], "completed", "{results:?}");
    assert_eq!(results[1].payload["status"], "rejected");
    assert_eq!(results[1].payload["reason"], "risk_rejected");
    let scored = wait_for(
        &js,
        "GIFTCARD_EVENTS",
        "giftcard.order.risk_scored",
        WAIT,
        |e| e.len() >= 2,
    )
    .await;
    let (a, b) = (&scored[0].payload, &scored[1].payload);
    assert_eq!(
        (&a["order_id"], &a["score"]),
        (&json!("o-1"), &json!(30)),
        "{a}"
    );
    assert_eq!(a["reasons"], json!(["funded_recently"]));
    assert_eq!(a["wallet_id"], "w-0");
    assert_eq!(
        (&b["order_id"], &b["score"]),
        (&json!("o-2"), &json!(80)),
        "{b}"
    );
    assert_eq!(b["reasons"], json!(["funded_recently", "velocity"]));
    adapter.stop();
}
