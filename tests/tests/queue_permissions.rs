//! NATS identity comes from the broker, not the subject (issue 13). The documented deployment:
//! nats-server users whose permissions let each checkout client publish only on its own
//! `giftcard.orders.{client}` and read only its own results, and an engine user that consumes
//! them all. A client publishing on another's subject (or on `giftcard.orders.admin`) is refused
//! by the broker and nothing reaches the engine. On top of that the engine can require each
//! client's orders to carry its signature and a recent timestamp, and refuses unsigned, forged
//! or stale ones.

mod queue_common;

use async_nats::jetstream::{self, Context};
use giftcard_intake::signature::Secret;
use giftcard_queue::testkit::{read_stream, wait_for, NatsServer};
use queue_common::*;
use std::time::Duration;

/// The broker's users: the engine, and two checkout clients confined to their own subjects.
const AUTHORIZATION: &str = r#"
users = [
  {user: "engine", password: "engine-pw"}
  {user: "checkout-1", password: "pw-1", permissions: {
    publish: {allow: ["giftcard.orders.checkout-1"]},
    subscribe: {allow: ["_INBOX.>", "giftcard.results.checkout-1"]}}}
  {user: "checkout-2", password: "pw-2", permissions: {
    publish: {allow: ["giftcard.orders.checkout-2"]},
    subscribe: {allow: ["_INBOX.>", "giftcard.results.checkout-2"]}}}
]
"#;

const SIGNING_SECRET: &str = "whsec_Y2hlY2tvdXQtMS1vcmRlci1zaWduaW5nLXNlY3JldA==";

async fn connect(nats: &NatsServer, user: &str, password: &str) -> Context {
    let c = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(nats.url())
        .await
        .unwrap_or_else(|e| panic!("{user} connects: {e}"));
    jetstream::new(c)
}

/// Publishes an order with `headers`; Ok(()) once the stream stored it, Err when the broker
/// refused it (no ack within a few seconds, or an error).
async fn send(
    js: &Context,
    subject: &str,
    msg_id: &str,
    body: Vec<u8>,
    signature: Option<(i64, String)>,
) -> Result<(), String> {
    let mut m = async_nats::jetstream::message::PublishMessage::build()
        .payload(body.into())
        .message_id(msg_id);
    if let Some((ts, sig)) = signature {
        m = m
            .header("Giftcard-Signature", sig.as_str())
            .header("Giftcard-Timestamp", ts.to_string().as_str());
    }
    let attempt = async {
        js.send_publish(subject.to_owned(), m)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(3), attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no ack".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_confines_each_client_to_its_subject_and_the_engine_checks_signatures() {
    let (store, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nats = NatsServer::start_with_authorization(store.path(), AUTHORIZATION);
    let engine = open_engine(data.path(), 4096);
    load(&engine, 20);
    let mut cfg = queue_config(&nats.url());
    cfg.user = "engine".into();
    cfg.password = "engine-pw".into();
    cfg.order_signers = vec![giftcard_queue::config::OrderSigner {
        client: "checkout-1".into(),
        secrets: vec![SIGNING_SECRET.into()],
    }];
    let adapter = giftcard_queue::QueueAdapter::start(cfg, engine.clone()).unwrap();
    let ops = connect(&nats, "engine", "engine-pw").await;
    wait_streams(&ops).await;
    // Without a user the broker lets no one in.
    assert!(
        async_nats::connect(nats.url()).await.is_err(),
        "an anonymous client connected"
    );

    let shop = connect(&nats, "checkout-1", "pw-1").await;
    let other = connect(&nats, "checkout-2", "pw-2").await;
    let secret = Secret::parse(SIGNING_SECRET).unwrap();
    let body = |id: &str| order_json(id, "w-0", "sku-0", 1, "none");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sign_at = |ts: i64, subject: &str, b: &[u8]| Some((ts, secret.sign(subject, ts, b)));
    let sign = |subject: &str, b: &[u8]| sign_at(now, subject, b);

    // checkout-2 tries to spend checkout-1's wallet through checkout-1's subject, and to act as
    // admin: the broker refuses both; so does checkout-1 publishing as checkout-2.
    let own = "giftcard.orders.checkout-1";
    for (js, subject, id) in [
        (&other, own, "x-1"),
        (&other, "giftcard.orders.admin", "x-2"),
        (&shop, "giftcard.orders.checkout-2", "x-3"),
    ] {
        let b = body(id);
        let sig = sign(subject, &b);
        let r = send(js, subject, id, b, sig).await;
        assert!(r.is_err(), "the broker took {id} on {subject}");
    }
    // checkout-2 on its own subject is taken by the broker (it has no signer configured and
    // signatures are not required for everyone, so the engine takes the broker's word).
    let b = order_json("o-2", "w-0", "sku-0", 1, "none");
    send(&other, "giftcard.orders.checkout-2", "o-2", b, None)
        .await
        .expect("checkout-2 publishes on its own subject");

    // checkout-1 has a signing secret: unsigned and forged orders are refused by the engine.
    let b = body("o-unsigned");
    send(&shop, own, "o-unsigned", b, None).await.unwrap();
    let b = body("o-forged");
    let forged = Secret::parse("whsec_bm90LXRoZS1jbGllbnRzLXNpZ25pbmctc2VjcmV0").unwrap();
    let sig = Some((now, forged.sign(own, now, &b)));
    send(&shop, own, "o-forged", b, sig).await.unwrap();
    // Correctly signed, an hour ago: a captured order replayed later is refused.
    let b = body("o-stale");
    let sig = sign_at(now - 3_600, own, &b);
    send(&shop, own, "o-stale", b, sig).await.unwrap();
    // Signed for another subject: the signature covers the subject too.
    let b = body("o-elsewhere");
    let sig = sign("giftcard.orders.checkout-2", &b);
    send(&shop, own, "o-elsewhere", b, sig).await.unwrap();
    let b = body("o-signed");
    let sig = sign(own, &b);
    send(&shop, own, "o-signed", b, sig).await.unwrap();

    let results = wait_for(
        &ops,
        "GIFTCARD_RESULTS",
        ">",
        Duration::from_secs(15),
        // Four refused, checkout-2's, and the signed one: waiting for fewer raced the last.
        |r| r.len() >= 6,
    )
    .await;
    let status = |subject: &str, order: Option<&str>| {
        results
            .iter()
            .filter(|r| r.subject == subject)
            .find(|r| r.payload["order_id"].as_str() == order)
            .map(|r| r.payload.clone())
    };
    let checkout1 = "giftcard.results.checkout-1";
    let invalid: Vec<_> = results
        .iter()
        .filter(|r| r.subject == checkout1 && r.payload["status"] == "invalid")
        .collect();
    assert_eq!(invalid.len(), 4, "{results:?}");
    for r in &invalid {
        assert_eq!(r.payload["problem"]["code"], "invalid_signature", "{r:?}");
    }
    let signed = status(checkout1, Some("o-signed")).expect("o-signed answered");
    assert_eq!(signed["status"], "completed", "{signed}");
    // checkout-2 named checkout-1's wallet from its own subject: the engine's owner check.
    let o2 = status("giftcard.results.checkout-2", Some("o-2")).expect("o-2 answered");
    assert_eq!(o2["problem"]["code"], "wallet_not_found", "{o2}");

    // Nothing the broker refused reached the stream.
    let orders = read_stream(&ops, "GIFTCARD_ORDERS", ">").await;
    assert_eq!(orders.len(), 6, "{orders:?}");
    assert!(orders
        .iter()
        .all(|m| m.msg_id.as_deref().is_some_and(|i| i.starts_with("o-"))));
    // One card left the stock: the signed order's.
    assert_eq!(stock(&engine, "sku-0"), 19);
    adapter.stop();
}
