//! Review holds across SIGKILL on the real binary (issue 15). `giftcard serve` sends every order
//! over a small KYC threshold from an unverified wallet to review, for a short time. Each round
//! places a few such orders, approves one, and kills the server a little before, at, or after
//! the reviews' deadline; the server restarts at once or after the deadline has passed while it
//! was down. After each restart, every review ends exactly once: the approved order is
//! completed and charged once, every other expires by itself (`review_expired`) and gives back
//! exactly what it held and the codes it kept; the wallet's balance and the stock come out
//! exact; `giftcard verify` passes on the directory.

mod served;

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use served::{verify, Client, Res, Served, ADMIN, CHECKOUT, FUNDING, SUPPLIER};
use std::time::{Duration, Instant};

const ROUNDS: u64 = 8;
const TTL_MS: u64 = 1_500;
const HELD_PER_ROUND: usize = 3;
const FACE: i64 = 2_500;
const CODES: u64 = 40;
const DEPOSIT: i64 = 1_000_000;

fn env() -> Vec<(&'static str, String)> {
    vec![
        ("GIFTCARD_RISK_KYC_ACTION", "review".into()),
        (
            "GIFTCARD_RISK_KYC_THRESHOLD",
            r#"[{ amount_minor = 1000, currency = "USD" }]"#.into(),
        ),
        ("GIFTCARD_RISK_REVIEW_TTL_MS", TTL_MS.to_string()),
    ]
}

fn start(dir: &std::path::Path) -> Served {
    let env = env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut s = Served::spawn_with(dir, &env);
    if let Err(status) = s.wait_ready() {
        panic!("giftcard serve exited with {status}:\n{}", s.log_tail());
    }
    s
}

/// Retries a call until the server answers it (the server is up here: a failure is a blip).
fn answered(what: &str, mut call: impl FnMut() -> Result<Res, String>) -> Res {
    let started = Instant::now();
    loop {
        match call() {
            Ok(r) => return r,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("{what}: {e}; again");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn order(c: &Client, id: &str) -> Res {
    let body = json!({
        "order_id": id, "wallet_id": "w", "items": [{"sku_id": "gc-25", "quantity": 1}],
        "region": "US", "delivery": {"channel": "none", "recipient": ""},
    });
    answered(id, || c.post("/v1/orders", CHECKOUT, &body))
}

fn balance(c: &Client) -> (i64, i64) {
    let r = answered("wallet", || c.get("/v1/wallets/checkout-1~w", Some(ADMIN)));
    let usd = r.body["balances"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["currency"] == "USD"))
        .cloned()
        .unwrap_or(Value::Null);
    (
        usd["available"]["amount_minor"].as_i64().unwrap_or(-1),
        usd["held"]["amount_minor"].as_i64().unwrap_or(-1),
    )
}

fn stock(c: &Client) -> (u64, u64) {
    let r = answered("stock", || c.get("/v1/skus/gc-25/stock", Some(ADMIN)));
    (
        r.body["available"].as_u64().unwrap_or(u64::MAX),
        r.body["sold"].as_u64().unwrap_or(u64::MAX),
    )
}

#[test]
fn every_review_ends_exactly_once_across_sigkill_around_its_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(15);
    let server = start(dir.path());
    let c = server.client.clone();
    let sku = json!({
        "sku_id": "gc-25", "brand": "Acme", "category": "retail", "kind": "supplier_code",
        "face_value": {"fixed": {"amount_minor": FACE, "currency": "USD"}},
        "wholesale_discount": "0.10", "supplier_id": "supplier-1", "regions": ["US"],
    });
    assert_eq!(
        answered("sku", || c.post("/v1/skus", ADMIN, &sku)).status,
        201
    );
    let codes: Vec<String> = (0..CODES).map(|i| format!("REVIEW-KILL-{i:04}")).collect();
    let up = answered("codes", || {
        c.post("/v1/skus/gc-25/codes", SUPPLIER, &json!({ "codes": codes }))
    });
    assert_eq!(up.status, 201, "{up:?}");
    let w = answered("wallet", || {
        c.post("/v1/wallets", CHECKOUT, &json!({"wallet_id": "w"}))
    });
    assert_eq!(w.status, 201, "{w:?}");
    let dep = json!({"deposit_id": "d", "amount": {"amount_minor": DEPOSIT, "currency": "USD"}, "reference": "psp"});
    let d = answered("deposit", || {
        c.post("/v1/wallets/w/deposits", FUNDING, &dep)
    });
    assert_eq!(d.status, 201, "{d:?}");

    let mut server = Some(server);
    let mut approved = 0i64;
    let mut expired = 0u64;
    for round in 0..ROUNDS {
        let s = server.take().expect("a running server");
        let c = s.client.clone();
        let ids: Vec<String> = (0..HELD_PER_ROUND)
            .map(|i| format!("r{round}-o{i}"))
            .collect();
        let placed = Instant::now();
        for id in &ids {
            let r = order(&c, id);
            assert_eq!(
                (r.status, &r.body["status"]),
                (202, &json!("pending_review")),
                "{r:?}"
            );
        }
        // The first is approved before the kill: it completes, once.
        let ok = answered("approve", || {
            c.call(
                "POST",
                &format!("/v1/admin/reviews/{}/approve?client_id=checkout-1", ids[0]),
                Some(ADMIN),
                None,
                &[],
            )
        });
        assert_eq!(ok.status, 200, "{ok:?}");
        approved += 1;
        // Killed a little before, around or after the deadline of the others.
        let kill_at = match round % 3 {
            0 => TTL_MS - rng.gen_range(100..400),
            1 => TTL_MS + rng.gen_range(0..60) - 30,
            _ => TTL_MS + rng.gen_range(100..400),
        };
        let wait = Duration::from_millis(kill_at).saturating_sub(placed.elapsed());
        std::thread::sleep(wait);
        s.kill();
        // Down across the deadline in some rounds, back at once in others.
        if round % 2 == 1 {
            std::thread::sleep(Duration::from_millis(TTL_MS));
        }
        let s = start(dir.path());
        let c = s.client.clone();
        // Every other review expires by itself, also when its deadline passed while down.
        for id in &ids[1..] {
            let started = Instant::now();
            loop {
                let r = answered(id, || c.get(&format!("/v1/orders/{id}"), Some(CHECKOUT)));
                if r.body["status"] == "rejected" {
                    assert_eq!(r.body["reason"], "review_expired", "{r:?}");
                    expired += 1;
                    break;
                }
                assert_eq!(r.body["status"], "pending_review", "{r:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "round {round}: {id} never expired: {r:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let first = answered("approved", || {
            c.get(&format!("/v1/orders/{}", ids[0]), Some(CHECKOUT))
        });
        assert_eq!(
            first.body["status"], "completed",
            "round {round}: {first:?}"
        );
        // Nothing still waits, nothing is held, and the books are exact: only the approved
        // orders were charged, each once, and only their codes left the pool.
        let list = answered("reviews", || c.get("/v1/admin/reviews", Some(ADMIN)));
        assert_eq!(list.body["reviews"], json!([]), "round {round}: {list:?}");
        assert_eq!(balance(&c), (DEPOSIT - approved * FACE, 0), "round {round}");
        let n = approved as u64;
        assert_eq!(stock(&c), (CODES - n, n), "round {round}");
        // Settling an ended review changes nothing.
        let again = answered("approve again", || {
            c.call(
                "POST",
                &format!("/v1/admin/reviews/{}/approve?client_id=checkout-1", ids[1]),
                Some(ADMIN),
                None,
                &[],
            )
        });
        assert_eq!(
            (again.status, again.code()),
            (409, "not_in_review"),
            "{again:?}"
        );
        server = Some(s);
    }
    assert_eq!(expired, ROUNDS * (HELD_PER_ROUND as u64 - 1));
    let s = server.take().expect("server");
    s.kill();
    let report = verify(dir.path());
    eprintln!("{report}");
}
