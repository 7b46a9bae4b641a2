//! Graceful stop (what SIGTERM triggers in `giftcard serve`): requests in flight are answered,
//! and every answered deposit is in the journal when the data directory is opened again.

mod http_common;

use http_common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn stopping_drains_in_flight_requests_and_flushes_the_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path());
    api.post("/v1/wallets", CHECKOUT, &json!({"wallet_id": "w"}));
    let base = api.base.clone();
    let clients: Vec<_> = (0..8)
        .map(|t| {
            let base = base.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
                let mut acknowledged = 0i64;
                for i in 0..200 {
                    let body = json!({"deposit_id": format!("d-{t}-{i}"), "amount": {"amount_minor": 1, "currency": "USD"}, "reference": "r"});
                    let sent = agent
                        .post(&format!("{base}/v1/wallets/w/deposits"))
                        .set("Authorization", &format!("Bearer {FUNDING}"))
                        .send_string(&body.to_string());
                    match sent {
                        Ok(r) if r.status() == 201 => acknowledged += 1,
                        // Once stopping, new work is refused: the server is gone or says 503.
                        Ok(_) | Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    api.stop();
    let acknowledged: i64 = clients.into_iter().map(|c| c.join().expect("client")).sum();
    assert!(
        acknowledged > 0,
        "some deposits were answered before the stop"
    );

    let api = Api::start(dir.path());
    assert_eq!(
        api.balance("w").0,
        acknowledged,
        "every acknowledged deposit survived the stop"
    );
    api.reconciled();
}
