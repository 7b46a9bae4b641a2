//! Payment gateway deposits (issue 13): a gateway's signed `payment.succeeded` webhook credits
//! the wallet it names exactly once. The messages are signed by an independent implementation,
//! the `standardwebhooks` package from PyPI (`.ci/run` installs it; the test fails by name when
//! it is missing, never skips), and every forged, stale, altered or misdirected one is refused
//! and changes nothing.

mod http_common;

use http_common::*;
use serde_json::json;
use std::process::Command;

const SIGN: &str = r#"
import sys, datetime
from standardwebhooks.webhooks import Webhook
secret, msg_id, ts, body = sys.argv[1:5]
when = datetime.datetime.fromtimestamp(int(ts), tz=datetime.timezone.utc)
print(Webhook(secret).sign(msg_id, when, body), end="")
"#;

/// `webhook-signature` for a message, made by the standardwebhooks package.
fn sign(secret: &str, id: &str, ts: i64, body: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", SIGN, secret, id, &ts.to_string(), body])
        .output()
        .expect("python3 runs (it signs gateway messages in this test)");
    assert!(
        out.status.success(),
        "python3 with standardwebhooks is needed (pip install standardwebhooks==1.1.0): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fn payment(kind: &str, wallet: &str, minor: i64) -> String {
    json!({"type": kind, "data": {"wallet_id": wallet, "amount": {"amount_minor": minor, "currency": "USD"}, "reference": "pi_3Nf"}})
        .to_string()
}

/// Posts `body` to `gateway` with the given headers (id, timestamp, signature).
fn post(api: &Api, gateway: &str, id: &str, ts: i64, sig: &str, body: &str) -> Res {
    let ts = ts.to_string();
    let headers = [
        ("webhook-id", id),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig),
    ];
    api.call(
        "POST",
        &format!("/v1/gateways/{gateway}/events"),
        None,
        Some(body),
        &headers,
    )
}

#[test]
fn signed_payments_credit_once_and_forged_stale_or_misdirected_ones_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path());
    for (key, wallet) in [(CHECKOUT, "w1"), (CHECKOUT2, "w2")] {
        let r = api.post("/v1/wallets", key, &json!({ "wallet_id": wallet }));
        assert_eq!(r.status, 201, "{r:?}");
    }
    let now = now_s();
    let body = payment("payment.succeeded", "w1", 12_345);
    let sig = sign(GATEWAY_SECRET, "evt_1", now, &body);

    let first = post(&api, GATEWAY, "evt_1", now, &sig, &body);
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.body["status"], "credited");
    assert_eq!(first.body["deposit"]["deposit_id"], "psp-test:evt_1");
    assert_eq!(first.body["deposit"]["amount"]["amount_minor"], 12_345);
    assert!(!first.replayed);
    assert_eq!(api.balance("w1"), (12_345, 0));

    // The gateway retries the same message: the same answer, credited once.
    let again = post(&api, GATEWAY, "evt_1", now, &sig, &body);
    assert_eq!(
        (again.status, &again.body, again.replayed),
        (201, &first.body, true)
    );
    assert_eq!(api.balance("w1"), (12_345, 0));

    // The previous secret, while rotating, is still valid.
    let body2 = payment("payment.succeeded", "w1", 100);
    let sig2 = sign(GATEWAY_OLD_SECRET, "evt_2", now, &body2);
    assert_eq!(post(&api, GATEWAY, "evt_2", now, &sig2, &body2).status, 201);
    assert_eq!(api.balance("w1"), (12_445, 0));

    // Other event types are acknowledged and do nothing.
    let failed = payment("payment.failed", "w1", 5_000);
    let r = post(
        &api,
        GATEWAY,
        "evt_3",
        now,
        &sign(GATEWAY_SECRET, "evt_3", now, &failed),
        &failed,
    );
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("ignored")),
        "{r:?}"
    );

    let wrong_secret = "whsec_bm90LXRoZS1nYXRld2F5cy1zZWNyZXQtYXQtYWxs";
    let more = payment("payment.succeeded", "w1", 49_999);
    let stale = now - 600;
    let future = now + 600;
    let w2 = payment("payment.succeeded", "w2", 100);
    let over = payment("payment.succeeded", "w1", 50_001);
    let other_amount = payment("payment.succeeded", "w1", 12_346);
    let euros = payment("payment.succeeded", "w1", 100).replace("USD", "EUR");
    let cases: Vec<(&str, Res, u16, &str)> = vec![
        (
            "a body altered after signing",
            post(&api, GATEWAY, "evt_1", now, &sig, &more),
            401,
            "invalid_signature",
        ),
        (
            "another event id under the same signature",
            post(&api, GATEWAY, "evt_9", now, &sig, &body),
            401,
            "invalid_signature",
        ),
        (
            "another timestamp under the same signature",
            post(&api, GATEWAY, "evt_1", now + 1, &sig, &body),
            401,
            "invalid_signature",
        ),
        (
            "a secret the gateway does not have",
            post(
                &api,
                GATEWAY,
                "evt_4",
                now,
                &sign(wrong_secret, "evt_4", now, &more),
                &more,
            ),
            401,
            "invalid_signature",
        ),
        (
            "a stale message, correctly signed",
            post(
                &api,
                GATEWAY,
                "evt_5",
                stale,
                &sign(GATEWAY_SECRET, "evt_5", stale, &more),
                &more,
            ),
            401,
            "invalid_signature",
        ),
        (
            "a message from the future",
            post(
                &api,
                GATEWAY,
                "evt_6",
                future,
                &sign(GATEWAY_SECRET, "evt_6", future, &more),
                &more,
            ),
            401,
            "invalid_signature",
        ),
        (
            "no signature",
            post(&api, GATEWAY, "evt_7", now, "", &more),
            401,
            "invalid_signature",
        ),
        (
            "a signature of another scheme",
            post(&api, GATEWAY, "evt_7", now, "v1a,abc", &more),
            401,
            "invalid_signature",
        ),
        (
            "an unknown gateway",
            post(
                &api,
                "psp-other",
                "evt_8",
                now,
                &sign(GATEWAY_SECRET, "evt_8", now, &more),
                &more,
            ),
            404,
            "gateway_not_found",
        ),
        (
            "another tenant's wallet",
            post(
                &api,
                GATEWAY,
                "evt_10",
                now,
                &sign(GATEWAY_SECRET, "evt_10", now, &w2),
                &w2,
            ),
            404,
            "wallet_not_found",
        ),
        (
            "above the gateway's per-payment limit",
            post(
                &api,
                GATEWAY,
                "evt_11",
                now,
                &sign(GATEWAY_SECRET, "evt_11", now, &over),
                &over,
            ),
            422,
            "limit_exceeded",
        ),
        (
            "a currency the gateway may not credit",
            post(
                &api,
                GATEWAY,
                "evt_12",
                now,
                &sign(GATEWAY_SECRET, "evt_12", now, &euros),
                &euros,
            ),
            422,
            "limit_exceeded",
        ),
        (
            "an event id reused for another amount",
            post(
                &api,
                GATEWAY,
                "evt_1",
                now,
                &sign(GATEWAY_SECRET, "evt_1", now, &other_amount),
                &other_amount,
            ),
            409,
            "idempotency_conflict",
        ),
    ];
    for (what, res, status, code) in &cases {
        assert_eq!(
            (res.status, res.body["code"].as_str()),
            (*status, Some(*code)),
            "{what}: {res:?}"
        );
        res.problem(*status, code);
    }
    assert_eq!(
        api.balance("w1"),
        (12_445, 0),
        "a refused message changed a balance"
    );
    assert_eq!(api.balance("checkout-2~w2"), (0, 0));

    // An event id too long (or too odd) for a deposit id is used by its hash, once.
    let long_id = format!("evt/{}", "x".repeat(100));
    let small = payment("payment.succeeded", "w1", 1);
    let sig = sign(GATEWAY_SECRET, &long_id, now, &small);
    let r = post(&api, GATEWAY, &long_id, now, &sig, &small);
    assert_eq!(r.status, 201, "{r:?}");
    assert!(
        r.body["deposit"]["deposit_id"]
            .as_str()
            .is_some_and(|d| d.starts_with("psp-test:h") && d.len() <= 64),
        "{r:?}"
    );
    assert!(post(&api, GATEWAY, &long_id, now, &sig, &small).replayed);
    assert_eq!(api.balance("w1"), (12_446, 0));

    // The day's allowance (100,000): what was credited counts, refusals and replays do not.
    let big = payment("payment.succeeded", "w1", 49_000);
    let sig = sign(GATEWAY_SECRET, "evt_20", now, &big);
    assert_eq!(post(&api, GATEWAY, "evt_20", now, &sig, &big).status, 201);
    assert!(post(&api, GATEWAY, "evt_20", now, &sig, &big).replayed);
    let fits = payment("payment.succeeded", "w1", 100_000 - 12_446 - 49_000);
    let r = post(
        &api,
        GATEWAY,
        "evt_21",
        now,
        &sign(GATEWAY_SECRET, "evt_21", now, &fits),
        &fits,
    );
    assert_eq!(r.status, 201, "the replay was counted: {r:?}");
    let one_more = payment("payment.succeeded", "w1", 1);
    post(
        &api,
        GATEWAY,
        "evt_22",
        now,
        &sign(GATEWAY_SECRET, "evt_22", now, &one_more),
        &one_more,
    )
    .problem(422, "limit_exceeded");
    assert_eq!(api.balance("w1"), (100_000, 0));
    api.reconciled();
}
