//! `giftcard rotate-seal-key` (issue 13): with a new seal key (and version) configured and the
//! old key listed as previous, it seals every code again and checkpoints; the server then runs
//! on the new key alone and still answers every card with its code.

mod served;

use serde_json::{json, Value};
use served::{Served, ADMIN, CHECKOUT, FUNDING};
use std::time::Duration;

const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn codes_of(served: &Served, order: &str) -> Vec<Value> {
    let r = served
        .client
        .get(&format!("/v1/orders/{order}"), Some(CHECKOUT))
        .expect("answer");
    assert_eq!(r.status, 200, "{r:?}");
    let cards = r.body["cards"].as_array().expect("cards").clone();
    cards.iter().map(|c| c["code"].clone()).collect()
}

#[test]
fn rotating_the_seal_key_keeps_every_code_and_retires_the_old_key() {
    let data = tempfile::tempdir().expect("tempdir");
    let old = [("GIFTCARD_ENGINE_SEAL_KEY", OLD)];
    let mut served = Served::spawn_with(data.path(), &old);
    served.wait_ready().expect("ready");
    let c = &served.client;
    let sku = json!({"sku_id": "store-50", "brand": "Our Store", "category": "store-credit",
        "kind": "issued", "face_value": {"fixed": {"amount_minor": 5000, "currency": "USD"}},
        "wholesale_discount": "0", "supplier_id": "platform", "issue_cap": 100});
    assert_eq!(c.post("/v1/skus", ADMIN, &sku).expect("answer").status, 201);
    assert_eq!(
        c.post("/v1/wallets", CHECKOUT, &json!({"wallet_id": "w"}))
            .expect("answer")
            .status,
        201
    );
    let dep = json!({"deposit_id": "d", "amount": {"amount_minor": 100000, "currency": "USD"}, "reference": "r"});
    assert_eq!(
        c.post("/v1/wallets/w/deposits", FUNDING, &dep)
            .expect("answer")
            .status,
        201
    );
    let order = json!({"order_id": "o-1", "wallet_id": "w", "items": [{"sku_id": "store-50", "quantity": 3}],
        "region": "US", "delivery": {"channel": "none"}});
    let r = c.post("/v1/orders", CHECKOUT, &order).expect("answer");
    assert_eq!(r.status, 201, "{r:?}");
    let before = codes_of(&served, "o-1");
    assert!(before.iter().all(Value::is_string), "{before:?}");
    assert!(served.terminate(Duration::from_secs(30)).success());

    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_giftcard"))
        .args(["rotate-seal-key", "--data"])
        .arg(data.path())
        .env("GIFTCARD_SHARDS", served::SHARDS.to_string())
        .env("GIFTCARD_ENGINE_SEAL_KEY", NEW)
        .env("GIFTCARD_ENGINE_SEAL_KEY_VERSION", "1")
        .env("GIFTCARD_ENGINE_PREVIOUS_SEAL_KEYS", format!("0:{OLD}"))
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(
        out.contains("re-sealed 0 supplier codes and 3 issued codes"),
        "{out}"
    );

    // The new key alone.
    let new = [
        ("GIFTCARD_ENGINE_SEAL_KEY", NEW),
        ("GIFTCARD_ENGINE_SEAL_KEY_VERSION", "1"),
    ];
    let mut served = Served::spawn_with(data.path(), &new);
    served.wait_ready().expect("ready");
    assert_eq!(codes_of(&served, "o-1"), before);
    assert!(served.terminate(Duration::from_secs(30)).success());
}
