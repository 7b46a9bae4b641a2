//! Delivery lifecycle over NATS: the delivery service reports per card on
//! `giftcard.deliveries.report`; a failure re-sends the card's delivery event after a backoff
//! (`{card}-retry-{attempt}`), and after the last allowed attempt the card is given up and
//! listed for operators.

mod queue_common;

use giftcard_queue::testkit::{read_stream, wait_for, NatsServer};
use queue_common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Reports on the attempt a delivery event announced, with the token it carried.
async fn report(nc: &async_nats::Client, event: &Value, status: &str) -> Value {
    report_raw(
        nc,
        json!({"card_id": event["card_id"], "status": status, "attempt": event["attempt"], "token": event["report_token"]}),
    )
    .await
}

async fn report_raw(nc: &async_nats::Client, msg: Value) -> Value {
    let body = serde_json::to_vec(&msg).unwrap();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        nc.request("giftcard.deliveries.report", body.into()),
    )
    .await
    .expect("report answered in time")
    .expect("report answered");
    serde_json::from_slice(&reply.payload).unwrap()
}

/// Places a one-line order of `qty` cards delivered over `channel` through the queue, and waits
/// for its first `qty` delivery events.
async fn order_and_deliveries(
    js: &async_nats::jetstream::Context,
    id: &str,
    qty: u32,
    channel: &str,
) -> Vec<giftcard_queue::testkit::Stored> {
    wait_streams(js).await;
    assert!(publish(js, CLIENT, id, order_json(id, "w-0", "sku-0", qty, channel)).await);
    wait_for(
        js,
        "GIFTCARD_EVENTS",
        &format!("giftcard.delivery.{channel}"),
        Duration::from_secs(15),
        |e| e.len() >= qty as usize,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_with_backoff_then_given_up() {
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start(store.path());
    let engine = open_engine(data.path(), 4096);
    load(&engine, 20);
    let adapter = start_adapter(&nats, &engine);
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(nc.clone());
    let first = order_and_deliveries(&js, "d-1", 2, "email").await;
    let (ok_card, bad_card) = (
        first[0].payload["card_id"].as_str().unwrap(),
        first[1].payload["card_id"].as_str().unwrap(),
    );

    // A bare card id (they are sequential) or a made-up token settles nothing.
    let forged = report_raw(
        &nc,
        json!({"card_id": ok_card, "status": "delivered", "attempt": 1, "token": "ab".repeat(32)}),
    )
    .await;
    assert_eq!(forged["problem"]["code"], "forbidden", "{forged}");
    let bare = report_raw(&nc, json!({"card_id": ok_card, "status": "delivered"})).await;
    assert_eq!(bare["problem"]["status"], 400, "{bare}");
    assert_eq!(
        report(&nc, &first[0].payload, "delivered").await["delivery"],
        "delivered"
    );
    let r = report(&nc, &first[1].payload, "failed").await;
    assert_eq!(
        (r["delivery"].as_str(), r["attempt"].as_u64()),
        (Some("retrying"), Some(1))
    );
    let events = wait_for(
        &js,
        "GIFTCARD_EVENTS",
        "giftcard.delivery.email",
        Duration::from_secs(10),
        |e| e.len() >= 3,
    )
    .await;
    // A keyed hash of the event id, so no one can compute it and pre-publish it to have the
    // broker drop the real event; the event id itself is in the payload.
    assert_eq!(events[2].payload["event_id"], format!("{bad_card}-retry-1"));
    assert_eq!(
        events[2].msg_id.as_deref(),
        Some(
            engine
                .vault()
                .message_id(&format!("{bad_card}-retry-1"))
                .as_str()
        )
    );
    assert!(!events[2].msg_id.as_deref().unwrap().contains("retry"));
    assert_eq!(events[2].payload["card_id"], bad_card);
    assert_eq!(events[2].payload["attempt"], 2);
    assert_eq!(open_code(&events[2].payload), open_code(&first[1].payload));

    // The first event's token is of an attempt that is over: it changes nothing.
    assert_eq!(
        report(&nc, &first[1].payload, "delivered").await["delivery"],
        "unchanged"
    );
    assert_eq!(
        report(&nc, &events[2].payload, "failed").await["delivery"],
        "retrying"
    );
    let events = wait_for(
        &js,
        "GIFTCARD_EVENTS",
        "giftcard.delivery.email",
        Duration::from_secs(10),
        |e| e.len() >= 4,
    )
    .await;
    // The third failure is the last allowed (attempts_max = 3): given up, not re-sent.
    assert_eq!(events[3].payload["attempt"], 3);
    let r = report(&nc, &events[3].payload, "failed").await;
    assert_eq!(
        (r["delivery"].as_str(), r["attempt"].as_u64()),
        (Some("gave_up"), Some(3))
    );
    assert_eq!(
        report(&nc, &events[3].payload, "delivered").await["delivery"],
        "unchanged"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        read_stream(&js, "GIFTCARD_EVENTS", "giftcard.delivery.email")
            .await
            .len(),
        4
    );
    let giftcard_shard::QueryAnswer::CardList(failed) = engine
        .ask(giftcard_shard::Query::FailedDeliveries { limit: 10 })
        .unwrap()
    else {
        panic!("card list")
    };
    assert_eq!(
        failed
            .iter()
            .map(|(id, _)| id.0.to_string())
            .collect::<Vec<_>>(),
        vec![bad_card.to_owned()]
    );

    let bad = report_raw(
        &nc,
        json!({"card_id": "not-a-card", "status": "failed", "attempt": 1, "token": ""}),
    )
    .await;
    assert_eq!(bad["problem"]["code"], "invalid_id");
    adapter.stop();
}

/// Scheduled retries live in the outbox's memory; after a restart the outbox schedules them again
/// from the engine's state (cards whose delivery failed and is not given up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_schedules_the_pending_retries_again() {
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start(store.path());
    let engine = open_engine(data.path(), 4096);
    load(&engine, 20);
    // A backoff far beyond the test: the first process never sends the retry itself.
    let mut slow = queue_config(&nats.url());
    slow.delivery_backoff_ms = 600_000;
    slow.delivery_backoff_max_ms = 600_000;
    let adapter = giftcard_queue::QueueAdapter::start(slow, engine.clone()).unwrap();
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(nc.clone());
    let first = order_and_deliveries(&js, "r-1", 1, "sms").await;
    let card = first[0].payload["card_id"].as_str().unwrap().to_owned();
    let r = report(&nc, &first[0].payload, "failed").await;
    assert_eq!(r["delivery"], "retrying");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        read_stream(&js, "GIFTCARD_EVENTS", "giftcard.delivery.sms")
            .await
            .len(),
        1,
        "no retry before the restart"
    );

    // Restart: adapter and engine (recovered from the journal), with a short backoff.
    adapter.stop();
    drop(engine);
    let engine = open_engine(data.path(), 4096);
    let adapter = start_adapter(&nats, &engine);
    let events = wait_for(
        &js,
        "GIFTCARD_EVENTS",
        "giftcard.delivery.sms",
        Duration::from_secs(15),
        |e| e.len() >= 2,
    )
    .await;
    assert_eq!(
        events[1].msg_id.as_deref(),
        Some(
            engine
                .vault()
                .message_id(&format!("{card}-retry-1"))
                .as_str()
        )
    );
    assert_eq!(events[1].payload["card_id"], card.as_str());
    assert_eq!(events[1].payload["attempt"], 2);
    adapter.stop();
}

/// Issue 15: a card's delivery sent again on request is a new round of attempts, published as
/// its own delivery event (`{card}-resend-{round}`), whose tokens alone settle it: a report on
/// the round before, genuine as it is, changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_card_is_a_new_round_that_only_its_own_tokens_settle() {
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start(store.path());
    let engine = open_engine(data.path(), 4096);
    load(&engine, 20);
    let adapter = start_adapter(&nats, &engine);
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(nc.clone());
    let first = order_and_deliveries(&js, "r-1", 1, "email").await;
    let card = first[0].payload["card_id"].as_str().unwrap().to_owned();
    assert_eq!(first[0].payload["round"], 0);
    assert_eq!(
        report(&nc, &first[0].payload, "delivered").await["delivery"],
        "delivered"
    );
    let resend = |admin: bool| {
        engine.call(giftcard_core::Command::ResendCard {
            caller: giftcard_core::Caller {
                client: giftcard_core::ClientId::new(CLIENT),
                admin,
            },
            card: giftcard_core::CardId(card.parse().unwrap()),
        })
    };
    assert!(matches!(
        resend(false),
        Ok(giftcard_shard::Outcome::Applied(_))
    ));
    // Still in flight: asking again sends nothing.
    assert!(matches!(
        resend(false),
        Ok(giftcard_shard::Outcome::Answered(_))
    ));
    let events = wait_for(
        &js,
        "GIFTCARD_EVENTS",
        "giftcard.delivery.email",
        Duration::from_secs(10),
        |e| e.len() >= 2,
    )
    .await;
    let again = &events[1].payload;
    assert_eq!(again["event_id"], format!("{card}-resend-1"), "{again}");
    assert_eq!((&again["round"], &again["attempt"]), (&json!(1), &json!(1)));
    assert_eq!(open_code(again), open_code(&first[0].payload));
    assert_ne!(again["report_token"], first[0].payload["report_token"]);
    // The first round's token is of a delivery that is over.
    assert_eq!(
        report(&nc, &first[0].payload, "delivered").await["delivery"],
        "unchanged"
    );
    let r = report(&nc, again, "failed").await;
    assert_eq!(
        (r["delivery"].as_str(), r["attempt"].as_u64()),
        (Some("retrying"), Some(1))
    );
    let events = wait_for(
        &js,
        "GIFTCARD_EVENTS",
        "giftcard.delivery.email",
        Duration::from_secs(10),
        |e| e.len() >= 3,
    )
    .await;
    let retry = &events[2].payload;
    assert_eq!(
        retry["event_id"],
        format!("{card}-resend-1-retry-1"),
        "{retry}"
    );
    assert_eq!((&retry["round"], &retry["attempt"]), (&json!(1), &json!(2)));
    assert_eq!(
        report(&nc, retry, "delivered").await["delivery"],
        "delivered"
    );
    // Once delivered, it may be sent again: round 2.
    assert!(matches!(
        resend(true),
        Ok(giftcard_shard::Outcome::Applied(_))
    ));
    let events = wait_for(
        &js,
        "GIFTCARD_EVENTS",
        "giftcard.delivery.email",
        Duration::from_secs(10),
        |e| e.len() >= 4,
    )
    .await;
    assert_eq!(events[3].payload["event_id"], format!("{card}-resend-2"));
    adapter.stop();
}
