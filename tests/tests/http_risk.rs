//! Issue 15, risk and card lifecycle over HTTP. Limits are checked in the same commit as the
//! debit, so no number of concurrent orders slips past one: hundreds of orders at once, from one
//! wallet, over many connections, complete exactly as many as the limit allows, the rest are
//! `422 limit_exceeded` naming the limit, and the wallet is charged for the completed ones only.
//! KYC is an admin's word, with who and when. A frozen card redeems nothing until unfrozen. A
//! card's delivery is sent again only while it is active and was sold with a delivery, as a new
//! round that reports on the round before cannot settle.

mod http_common;

use giftcard_core::limits::{LimitSet, RiskPolicy, Velocity};
use giftcard_core::Currency;
use http_common::*;
use serde_json::json;
use std::sync::Arc;

const ORDERS: usize = 200;

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

/// Sends `bodies` all at once, one thread (and so one connection) each; the answers in order.
fn at_once(api: &Api, bodies: Vec<serde_json::Value>) -> Vec<Res> {
    let barrier = std::sync::Barrier::new(bodies.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .into_iter()
            .map(|b| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    api.post("/v1/orders", CHECKOUT, &b)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn tally(results: &[Res], limit: &str) -> usize {
    let mut completed = 0;
    for r in results {
        match r.status {
            201 => completed += 1,
            _ => {
                r.problem(422, "limit_exceeded");
                assert_eq!(r.body["limit"], limit, "{r:?}");
            }
        }
    }
    completed
}

#[test]
fn two_hundred_concurrent_orders_against_ten_an_hour_complete_exactly_ten() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = giftcard_shard::EngineConfig::new(dir.path(), 2);
    engine.risk = Arc::new(RiskPolicy {
        limits: LimitSet {
            velocity: vec![Velocity {
                currency: usd(),
                window_ms: 3_600_000,
                max_orders: Some(10),
                max_amount_minor: None,
            }],
            ..LimitSet::default()
        },
        kyc_threshold_minor: vec![],
        kyc_review: false,
        review_ttl_ms: 0,
    });
    let api = Api::start_engine(config(), engine);
    api.sku("gc-10", "supplier_code", 1_000, None);
    api.codes("gc-10", "L", 500);
    api.wallet(CHECKOUT, "w", 1_000_000);
    let bodies = (0..ORDERS)
        .map(|i| order_body(&format!("o-{i}"), "w", "gc-10", 1))
        .collect();
    let results = at_once(&api, bodies);
    assert_eq!(tally(&results, "velocity_orders"), 10);
    assert_eq!(api.balance("w"), (1_000_000 - 10 * 1_000, 0));
    assert_eq!(api.stock("gc-10"), (490, 10));
    // The defaults are what the wallet has; an admin reads them.
    let l = api.get("/v1/wallets/checkout-1~w/limits", Some(ADMIN));
    assert_eq!(l.status, 200, "{l:?}");
    assert_eq!(l.body["source"], "defaults");
    assert_eq!(l.body["limits"]["velocity"][0]["max_orders"], 10);
    api.reconciled();
}

#[test]
fn an_amount_limit_in_each_of_two_currencies_holds_under_two_hundred_concurrent_orders() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    api.sku("gc-25", "supplier_code", 2_500, None);
    api.codes("gc-25", "U", 300);
    let eur_sku = json!({
        "sku_id": "gc-eur-20", "brand": "Acme", "category": "retail", "kind": "supplier_code",
        "face_value": {"fixed": {"amount_minor": 2_000, "currency": "EUR"}},
        "wholesale_discount": "0.15", "supplier_id": "supplier-1", "regions": ["US"],
    });
    assert_eq!(api.post("/v1/skus", ADMIN, &eur_sku).status, 201);
    api.codes("gc-eur-20", "E", 300);
    api.wallet(CHECKOUT, "w", 1_000_000);
    let eur_deposit = json!({
        "deposit_id": "eur", "amount": {"amount_minor": 1_000_000, "currency": "EUR"},
        "reference": "psp-ref",
    });
    let r = api.post("/v1/wallets/w/deposits", FUNDING, &eur_deposit);
    assert_eq!(r.status, 201, "{r:?}");
    // The wallet's own limits: $250.00 and €200.00 an hour, so ten orders of each.
    let limits = json!({"velocity": [
        {"currency": "USD", "window_ms": 3_600_000, "max_amount_minor": 25_000},
        {"currency": "EUR", "window_ms": 3_600_000, "max_amount_minor": 20_000},
    ]});
    let put = api.call(
        "PUT",
        "/v1/wallets/checkout-1~w/limits",
        Some(ADMIN),
        Some(&limits.to_string()),
        &[],
    );
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(put.body["source"], "wallet");
    // A client may not set its own limits.
    let own = api.call(
        "PUT",
        "/v1/wallets/w/limits",
        Some(CHECKOUT),
        Some(&limits.to_string()),
        &[],
    );
    own.problem(403, "forbidden");
    let bodies = (0..ORDERS)
        .map(|i| {
            let sku = if i % 2 == 0 { "gc-25" } else { "gc-eur-20" };
            order_body(&format!("o-{i}"), "w", sku, 1)
        })
        .collect();
    let results = at_once(&api, bodies);
    let (usd_orders, eur_orders): (Vec<_>, Vec<_>) = results
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let strip = |v: Vec<(usize, Res)>| v.into_iter().map(|(_, r)| r).collect::<Vec<_>>();
    assert_eq!(tally(&strip(usd_orders), "velocity_amount"), 10);
    assert_eq!(tally(&strip(eur_orders), "velocity_amount"), 10);
    assert_eq!(api.balance("w"), (1_000_000 - 25_000, 0));
    let w = api.get("/v1/wallets/checkout-1~w", Some(ADMIN));
    let eur = w.body["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency"] == "EUR")
        .cloned()
        .unwrap();
    assert_eq!(eur["available"]["amount_minor"], 1_000_000 - 20_000);
    // Reset: the wallet follows the defaults (none here) and the next order goes through.
    let reset = api.call(
        "POST",
        "/v1/wallets/checkout-1~w/limits/reset",
        Some(ADMIN),
        None,
        &[],
    );
    assert_eq!(reset.body["source"], "defaults", "{reset:?}");
    let more = api.order(CHECKOUT, "after-reset", "w", "gc-25", 1);
    assert_eq!(more.status, 201, "{more:?}");
    api.reconciled();
}

#[test]
fn kyc_is_set_by_an_admin_only_with_who_and_when_and_opens_orders_above_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = giftcard_shard::EngineConfig::new(dir.path(), 2);
    engine.risk = Arc::new(RiskPolicy {
        limits: LimitSet::default(),
        kyc_threshold_minor: vec![(usd(), 5_000)],
        kyc_review: false,
        review_ttl_ms: 0,
    });
    let api = Api::start_engine(config(), engine);
    api.sku("gc-25", "supplier_code", 2_500, None);
    api.codes("gc-25", "K", 10);
    api.wallet(CHECKOUT, "w", 100_000);
    api.order(CHECKOUT, "big", "w", "gc-25", 3)
        .problem(422, "kyc_required");
    assert_eq!(api.order(CHECKOUT, "small", "w", "gc-25", 2).status, 201);
    // The day's total with the next card would pass the threshold.
    api.order(CHECKOUT, "third", "w", "gc-25", 1)
        .problem(422, "kyc_required");
    let patch = |key: &str, body: serde_json::Value| {
        api.call(
            "PATCH",
            "/v1/wallets/checkout-1~w",
            Some(key),
            Some(&body.to_string()),
            &[],
        )
    };
    patch(CHECKOUT, json!({"kyc_verified": true})).problem(403, "forbidden");
    patch(ADMIN, json!({})).problem(400, "missing_field");
    let p = patch(ADMIN, json!({"kyc_verified": true}));
    assert_eq!(
        (p.status, &p.body["kyc_verified"]),
        (200, &json!(true)),
        "{p:?}"
    );
    let l = api.get("/v1/wallets/checkout-1~w/limits", Some(ADMIN));
    assert_eq!(l.body["kyc_changed_by"], "admin", "{l:?}");
    assert!(l.body["kyc_changed_at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(l.body["kyc_threshold"][0]["amount_minor"], 5_000);
    // The answer carries the wallet's balances right after the order.
    let after = api.order(CHECKOUT, "after", "w", "gc-25", 3);
    assert_eq!(after.status, 201, "{after:?}");
    let usd_after = |r: &Res| {
        let b = r.body["balances"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["currency"] == "USD").cloned())
            .unwrap_or_else(|| panic!("balances in {r:?}"));
        (
            b["available"]["amount_minor"].clone(),
            b["held"]["amount_minor"].clone(),
        )
    };
    assert_eq!(
        usd_after(&after),
        (json!(100_000 - 5_000 - 7_500), json!(0))
    );
    assert_eq!(api.deposit(CHECKOUT, "w", "top-up", 1_000).status, 201);
    // A replay carries the balances as they are when it is answered; a read carries none.
    let again = api.order(CHECKOUT, "after", "w", "gc-25", 3);
    assert!(again.replayed);
    assert_eq!(
        usd_after(&again),
        (json!(100_000 - 5_000 - 7_500 + 1_000), json!(0))
    );
    let read = api.get("/v1/orders/after", Some(CHECKOUT));
    assert!(read.body.get("balances").is_none(), "{read:?}");
    // Unknown wallets change nothing.
    patch(ADMIN, json!({"frozen": true}));
    let missing = api.call(
        "PATCH",
        "/v1/wallets/checkout-1~nobody",
        Some(ADMIN),
        Some(r#"{"kyc_verified": true}"#),
        &[],
    );
    missing.problem(404, "wallet_not_found");
    api.reconciled();
}

#[test]
fn a_frozen_card_redeems_nothing_until_unfrozen_and_only_active_cards_freeze() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    api.sku("store-50", "issued", 5_000, Some(10));
    api.wallet(CHECKOUT, "w", 100_000);
    let order = api.order(CHECKOUT, "o-1", "w", "store-50", 1);
    assert_eq!(order.status, 201, "{order:?}");
    let code = order.body["cards"][0]["code"].as_str().unwrap().to_owned();
    let card = order.body["cards"][0]["card_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let redeem = |id: &str, minor: i64| {
        api.post(
            "/v1/redemptions",
            MERCHANT,
            &json!({"redemption_id": id, "code": code, "amount": {"amount_minor": minor, "currency": "USD"}}),
        )
    };
    let act =
        |key: &str, what: &str| api.post(&format!("/v1/cards/{card}/{what}"), key, &json!({}));
    // Another client's card does not exist for it; a merchant may not freeze.
    act(CHECKOUT2, "freeze").problem(404, "card_not_found");
    act(MERCHANT, "freeze").problem(403, "forbidden");
    api.post("/v1/cards/99999/freeze", CHECKOUT, &json!({}))
        .problem(404, "card_not_found");
    let f = act(CHECKOUT, "freeze");
    assert_eq!(
        (f.status, &f.body["status"]),
        (200, &json!("frozen")),
        "{f:?}"
    );
    // Freezing again answers as it is.
    assert_eq!(act(CHECKOUT, "freeze").body["status"], "frozen");
    redeem("r-1", 1_000).problem(422, "card_frozen");
    // The refusal is recorded: the same redemption id retried gets it again, unfrozen or not.
    let u = act(ADMIN, "unfreeze");
    assert_eq!(
        (u.status, &u.body["status"]),
        (200, &json!("active")),
        "{u:?}"
    );
    redeem("r-1", 1_000).problem(422, "card_frozen");
    assert_eq!(redeem("r-2", 1_000).status, 201);
    assert_eq!(act(CHECKOUT, "unfreeze").body["status"], "active");
    // Emptied, the card is redeemed: it neither freezes nor unfreezes.
    assert_eq!(redeem("r-3", 4_000).status, 201);
    act(CHECKOUT, "freeze").problem(422, "card_not_active");
    act(CHECKOUT, "unfreeze").problem(422, "card_not_active");
    let read = api.get(&format!("/v1/cards/{card}"), Some(CHECKOUT));
    assert_eq!(read.body["status"], "redeemed", "{read:?}");
    api.reconciled();
}

#[test]
fn a_card_is_resent_as_a_new_round_only_while_active_and_deliverable() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    api.sku("gc-25", "supplier_code", 2_500, None);
    api.codes("gc-25", "R", 10);
    api.wallet(CHECKOUT, "w", 100_000);
    let r = api.order(CHECKOUT, "sent", "w", "gc-25", 1);
    assert_eq!(r.status, 201, "{r:?}");
    let card = r.body["cards"][0]["card_id"].as_str().unwrap().to_owned();
    let resend = |key: &str, card: &str| {
        api.call(
            "POST",
            &format!("/v1/cards/{card}/resend"),
            Some(key),
            None,
            &[],
        )
    };
    let report = |round: u8, attempt: u8, status: &str| {
        api.post(
            &format!("/v1/deliveries/{card}/report"),
            DELIVERY,
            &json!({"status": status, "attempt": attempt, "token": round_token(&card, round, attempt)}),
        )
    };
    // In flight (no report yet): nothing is sent again.
    let r = resend(CHECKOUT, &card);
    assert_eq!(
        (r.status, &r.body["round"], &r.body["resent"]),
        (200, &json!(0), &json!(false)),
        "{r:?}"
    );
    // A report in a round that has not begun changes nothing.
    assert_eq!(report(1, 1, "delivered").body["delivery"], "unchanged");
    assert_eq!(report(0, 1, "delivered").body["delivery"], "delivered");
    // Another client's key, and keys that may not, find no such card.
    resend(CHECKOUT2, &card).problem(404, "card_not_found");
    resend(MERCHANT, &card).problem(403, "forbidden");
    let r = resend(CHECKOUT, &card);
    assert_eq!(
        (r.status, &r.body["round"], &r.body["resent"]),
        (200, &json!(1), &json!(true)),
        "{r:?}"
    );
    // The first round's report, genuine as it is, is of a delivery that is over.
    assert_eq!(report(0, 1, "failed").body["delivery"], "unchanged");
    assert_eq!(report(1, 1, "delivered").body["delivery"], "delivered");
    // A frozen card is not sent anywhere; an order without a delivery has nothing to resend.
    let f = api.call(
        "POST",
        &format!("/v1/cards/{card}/freeze"),
        Some(CHECKOUT),
        None,
        &[],
    );
    assert_eq!(f.status, 200, "{f:?}");
    resend(CHECKOUT, &card).problem(422, "card_not_active");
    let f = api.call(
        "POST",
        &format!("/v1/cards/{card}/unfreeze"),
        Some(CHECKOUT),
        None,
        &[],
    );
    assert_eq!(f.status, 200, "{f:?}");
    let mut none = order_body("none", "w", "gc-25", 1);
    none["delivery"] = json!({"channel": "none"});
    let r = api.post("/v1/orders", CHECKOUT, &none);
    assert_eq!(r.status, 201, "{r:?}");
    let bare = r.body["cards"][0]["card_id"].as_str().unwrap().to_owned();
    resend(CHECKOUT, &bare).problem(422, "not_deliverable");
    resend(CHECKOUT, "999999").problem(404, "card_not_found");
    // At most ten resends of one card: each delivered, then sent again, until the bound.
    for round in 2..=10u8 {
        let r = resend(CHECKOUT, &card);
        assert_eq!(r.body["round"], round, "{r:?}");
        assert_eq!(report(round, 1, "delivered").body["delivery"], "delivered");
    }
    resend(ADMIN, &card).problem(422, "resend_limit");
    api.reconciled();
}

#[test]
fn a_risk_score_above_the_threshold_refuses_the_order_and_the_admin_reads_its_reasons() {
    use giftcard_core::risk::{RiskRule, Scoring, WeightedRule};
    let dir = tempfile::tempdir().unwrap();
    let mut engine = giftcard_shard::EngineConfig::new(dir.path(), 2);
    // A first order to a recipient scores 40 at $50.00 or more; three orders in the hour 50.
    engine.scoring = Arc::new(Scoring {
        rules: vec![
            WeightedRule {
                rule: RiskRule::NewRecipient {
                    currency: usd(),
                    min_amount_minor: 5_000,
                },
                weight: 40,
            },
            WeightedRule {
                rule: RiskRule::Velocity {
                    window_ms: 3_600_000,
                    orders: 2,
                },
                weight: 50,
            },
        ],
        reject_above: Some(60),
        review_above: None,
    });
    let api = Api::start_engine(config(), engine);
    api.sku("gc-25", "supplier_code", 2_500, None);
    api.codes("gc-25", "S", 20);
    api.wallet(CHECKOUT, "w", 100_000);
    let risk =
        |id: &str, key: &str| api.get(&format!("/v1/admin/orders/checkout-1/{id}/risk"), Some(key));
    // $50.00 to a new recipient: 40, recorded, the order completes.
    assert_eq!(api.order(CHECKOUT, "r-1", "w", "gc-25", 2).status, 201);
    let r = risk("r-1", ADMIN);
    assert_eq!(
        (r.status, &r.body["score"], &r.body["reasons"]),
        (200, &json!(40), &json!(["new_recipient"])),
        "{r:?}"
    );
    // The same recipient, $25.00: nothing holds, nothing is recorded.
    assert_eq!(api.order(CHECKOUT, "r-2", "w", "gc-25", 1).status, 201);
    risk("r-2", ADMIN).problem(404, "risk_not_found");
    // A third order in the hour, to a new recipient: 90, refused; a retry replays the refusal.
    let mut third = order_body("r-3", "w", "gc-25", 2);
    third["delivery"]["recipient"] = json!("someone-else@example.com");
    let refused = api.post("/v1/orders", CHECKOUT, &third);
    refused.problem(422, "risk_rejected");
    api.post("/v1/orders", CHECKOUT, &third)
        .problem(422, "risk_rejected");
    let r = risk("r-3", ADMIN);
    assert_eq!(
        (&r.body["score"], &r.body["reasons"]),
        (&json!(90), &json!(["new_recipient", "velocity"])),
        "{r:?}"
    );
    // Only an admin reads scores; ids are checked like any other.
    risk("r-1", CHECKOUT).problem(403, "forbidden");
    api.get("/v1/admin/orders/checkout-1/r%201/risk", Some(ADMIN))
        .problem(400, "invalid_id");
    // Nothing was charged for the refused order.
    assert_eq!(api.balance("w"), (100_000 - 7_500, 0));
    api.reconciled();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A SKU's expiry policy gives each card issued after it an expiry; at that instant the card's
/// remaining balance, exactly, moves to breakage, by a deadline the engine fires by itself. The
/// liability report at any instant before, between and after equals what the cards held then,
/// and an expired card neither redeems nor takes a reversal back.
#[test]
fn an_expired_card_moves_exactly_its_balance_to_breakage_and_the_liability_report_follows() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    api.sku("store-50", "issued", 5_000, Some(10));
    api.sku("gc-25", "supplier_code", 2_500, None);
    api.wallet(CHECKOUT, "w", 100_000);
    let put = |sku: &str, body: serde_json::Value| {
        api.call(
            "PUT",
            &format!("/v1/skus/{sku}/expiry"),
            Some(ADMIN),
            Some(&body.to_string()),
            &[],
        )
    };
    // Refusals change nothing.
    put("gc-25", json!({"policy": "days_after_issue", "days": 30})).problem(422, "invalid_expiry");
    put("store-50", json!({"policy": "fixed_date", "at_ms": 1_000})).problem(422, "invalid_expiry");
    put("store-50", json!({"policy": "days_after_issue", "days": 0}))
        .problem(400, "invalid_expiry");
    put("store-50", json!({"policy": "never", "days": 3})).problem(400, "invalid_field");
    put("nope", json!({"policy": "never"})).problem(404, "sku_not_found");
    let read = api.get("/v1/skus/store-50/expiry", Some(ADMIN));
    assert_eq!(read.body["policy"], "never", "{read:?}");
    api.get("/v1/skus/store-50/expiry", Some(CHECKOUT))
        .problem(403, "forbidden");

    // A card issued before the policy keeps no expiry.
    let before = api.order(CHECKOUT, "o-0", "w", "store-50", 1);
    assert_eq!(before.status, 201, "{before:?}");
    let expires = now_ms() + 1_500;
    let set = put(
        "store-50",
        json!({"policy": "fixed_date", "at_ms": expires}),
    );
    assert_eq!(
        (set.status, &set.body["policy"], &set.body["at_ms"]),
        (200, &json!("fixed_date"), &json!(expires)),
        "{set:?}"
    );
    let order = api.order(CHECKOUT, "o-1", "w", "store-50", 2);
    assert_eq!(order.status, 201, "{order:?}");
    let issued_at = now_ms();
    let code = order.body["cards"][0]["code"].as_str().unwrap().to_owned();
    let card = order.body["cards"][0]["card_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = order.body["cards"][1]["card_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let redeem = |id: &str, minor: i64| {
        api.post(
            "/v1/redemptions",
            MERCHANT,
            &json!({"redemption_id": id, "code": code, "amount": {"amount_minor": minor, "currency": "USD"}}),
        )
    };
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(redeem("r-1", 1_250).status, 201);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let after_redeem = now_ms();
    let liability = |at: Option<u64>| {
        let path = match at {
            Some(t) => format!("/v1/admin/reports/liability?at_ms={t}"),
            None => "/v1/admin/reports/liability".to_owned(),
        };
        let r = api.get(&path, Some(ADMIN));
        assert_eq!(r.status, 200, "{r:?}");
        let t = &r.body["totals"][0];
        (
            t["owed_minor"].as_i64().unwrap_or(0),
            t["breakage_minor"].as_i64().unwrap_or(0),
        )
    };
    assert_eq!(liability(Some(issued_at)), (15_000, 0));
    assert_eq!(liability(Some(after_redeem)), (13_750, 0));

    // The deadline fires by itself.
    let status = |id: &str| api.get(&format!("/v1/cards/{id}"), Some(CHECKOUT)).body;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while status(&card)["status"] != "expired" {
        assert!(std::time::Instant::now() < deadline, "{:?}", status(&card));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(status(&other)["status"], "expired");
    let first = before.body["cards"][0]["card_id"].as_str().unwrap();
    assert_eq!(status(first)["status"], "active");
    let expired_seen = now_ms();
    // 37.50 was left on the first card and 50.00 on the second: exactly that is breakage.
    assert_eq!(liability(None), (5_000, 8_750));
    assert_eq!(
        liability(Some(after_redeem)),
        (13_750, 0),
        "the past is unchanged"
    );
    // The expiry is journaled when its deadline fires: at its instant or just after.
    assert_eq!(liability(Some(expires - 1)), (13_750, 0));
    assert_eq!(liability(Some(expired_seen)), (5_000, 8_750));
    redeem("r-2", 100).problem(422, "card_expired");
    api.call(
        "POST",
        "/v1/redemptions/r-1/reversal",
        Some(MERCHANT),
        None,
        &[],
    )
    .problem(422, "card_expired");
    assert_eq!(liability(None), (5_000, 8_750), "refusals move nothing");
    api.get("/v1/admin/reports/liability?at_ms=x", Some(ADMIN))
        .problem(400, "invalid_id");
    api.get("/v1/admin/reports/liability", Some(CHECKOUT))
        .problem(403, "forbidden");
    api.reconciled();
    api.stop();
    let verified = giftcard_shard::verify::verify_dir(dir.path(), None).unwrap();
    assert!(verified.violations.is_empty(), "{:?}", verified.violations);
}

/// An order whose score is above `review_above` answers `202 pending_review` with its charge
/// held and its codes kept from every other order; an admin approves it (it completes as it
/// was decided) or rejects it (everything goes back), once; one nobody settles expires by
/// itself at its deadline. A retry gets the order's state at each step.
#[test]
fn an_order_held_for_review_is_approved_rejected_or_expires_by_itself() {
    use giftcard_core::risk::{RiskRule, Scoring, WeightedRule};
    let dir = tempfile::tempdir().unwrap();
    let mut engine = giftcard_shard::EngineConfig::new(dir.path(), 2);
    engine.scoring = Arc::new(Scoring {
        rules: vec![WeightedRule {
            rule: RiskRule::NewRecipient {
                currency: usd(),
                min_amount_minor: 5_000,
            },
            weight: 40,
        }],
        reject_above: Some(90),
        review_above: Some(30),
    });
    engine.risk = Arc::new(RiskPolicy {
        review_ttl_ms: 2_000,
        ..RiskPolicy::default()
    });
    let api = Api::start_engine(config(), engine);
    api.sku("gc-25", "supplier_code", 2_500, None);
    api.codes("gc-25", "R", 20);
    api.wallet(CHECKOUT, "w", 100_000);
    let to = |id: &str, recipient: &str| {
        let mut b = order_body(id, "w", "gc-25", 2);
        b["delivery"]["recipient"] = json!(recipient);
        b
    };
    let settle = |id: &str, what: &str, client: &str, key: &str| {
        api.call(
            "POST",
            &format!("/v1/admin/reviews/{id}/{what}?client_id={client}"),
            Some(key),
            None,
            &[],
        )
    };

    // Held: 202, the charge held, the two codes out of stock, nothing sold.
    let held = api.post("/v1/orders", CHECKOUT, &to("v-1", "a@example.com"));
    assert_eq!(
        (
            held.status,
            &held.body["status"],
            &held.body["review"]["held"]["amount_minor"]
        ),
        (202, &json!("pending_review"), &json!(5_000)),
        "{held:?}"
    );
    assert_eq!(held.body["cards"], json!([]));
    assert_eq!(api.balance("w"), (95_000, 5_000));
    assert_eq!(api.stock("gc-25"), (18, 0));
    // A retry, and a read, get the same state.
    let again = api.post("/v1/orders", CHECKOUT, &to("v-1", "a@example.com"));
    assert_eq!(
        (again.status, &again.body["status"]),
        (202, &json!("pending_review")),
        "{again:?}"
    );
    let read = api.get("/v1/orders/v-1", Some(CHECKOUT));
    assert_eq!(read.body["status"], "pending_review", "{read:?}");
    // The queue, for admins only.
    let list = api.get("/v1/admin/reviews", Some(ADMIN));
    let row = &list.body["reviews"][0];
    assert_eq!(
        (
            &row["order_id"],
            &row["cause"],
            &row["score"],
            &row["reasons"],
            &row["cards"]
        ),
        (
            &json!("v-1"),
            &json!("risk"),
            &json!(40),
            &json!(["new_recipient"]),
            &json!(2)
        ),
        "{list:?}"
    );
    api.get("/v1/admin/reviews", Some(CHECKOUT))
        .problem(403, "forbidden");
    api.get("/v1/admin/reviews?limit=0", Some(ADMIN))
        .problem(400, "invalid_limit");
    // Hostile settlements change nothing.
    settle("v-1", "approve", "checkout-1", CHECKOUT).problem(403, "forbidden");
    settle("nope", "approve", "checkout-1", ADMIN).problem(409, "not_in_review");
    settle("v-1", "approve", "checkout-2", ADMIN).problem(409, "not_in_review");
    settle("v%201", "approve", "checkout-1", ADMIN).problem(400, "invalid_id");
    assert_eq!(api.balance("w"), (95_000, 5_000));

    // Approved: it completes as decided, once.
    let ok = settle("v-1", "approve", "checkout-1", ADMIN);
    assert_eq!(
        (ok.status, &ok.body["status"], &ok.body["verdict"]),
        (200, &json!("completed"), &json!("approved")),
        "{ok:?}"
    );
    settle("v-1", "approve", "checkout-1", ADMIN).problem(409, "not_in_review");
    settle("v-1", "reject", "checkout-1", ADMIN).problem(409, "not_in_review");
    assert_eq!(api.balance("w"), (95_000, 0));
    assert_eq!(api.stock("gc-25"), (18, 2));
    let done = api.post("/v1/orders", CHECKOUT, &to("v-1", "a@example.com"));
    assert_eq!(
        (done.status, done.body["cards"].as_array().map(Vec::len)),
        (201, Some(2)),
        "{done:?}"
    );

    // Rejected: the charge and the codes come back; a retry gets the refusal.
    assert_eq!(
        api.post("/v1/orders", CHECKOUT, &to("v-2", "b@example.com"))
            .status,
        202
    );
    assert_eq!(api.balance("w"), (90_000, 5_000));
    let no = settle("v-2", "reject", "checkout-1", ADMIN);
    assert_eq!(
        (no.status, &no.body["verdict"]),
        (200, &json!("review_rejected")),
        "{no:?}"
    );
    api.post("/v1/orders", CHECKOUT, &to("v-2", "b@example.com"))
        .problem(422, "review_rejected");
    assert_eq!(api.balance("w"), (95_000, 0));
    assert_eq!(api.stock("gc-25"), (18, 2));

    // Nobody settles it: at its deadline it is released by itself.
    assert_eq!(
        api.post("/v1/orders", CHECKOUT, &to("v-3", "c@example.com"))
            .status,
        202
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = api.get("/v1/orders/v-3", Some(CHECKOUT));
        if r.body["status"] == "rejected" {
            assert_eq!(r.body["reason"], "review_expired", "{r:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the review never expired: {r:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    settle("v-3", "approve", "checkout-1", ADMIN).problem(409, "not_in_review");
    assert_eq!(api.balance("w"), (95_000, 0));
    assert_eq!(api.stock("gc-25"), (18, 2));
    let list = api.get("/v1/admin/reviews", Some(ADMIN));
    assert_eq!(list.body["reviews"], json!([]), "{list:?}");
    api.reconciled();
}

/// With `kyc_review`, an unverified wallet's order over the KYC threshold waits for review
/// instead of being refused; below it the order completes as before.
#[test]
fn an_order_over_the_kyc_threshold_goes_to_review_when_the_policy_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = giftcard_shard::EngineConfig::new(dir.path(), 2);
    engine.risk = Arc::new(RiskPolicy {
        kyc_threshold_minor: vec![(usd(), 6_000)],
        kyc_review: true,
        ..RiskPolicy::default()
    });
    let api = Api::start_engine(config(), engine);
    api.sku("gc-25", "supplier_code", 2_500, None);
    api.codes("gc-25", "K", 20);
    api.wallet(CHECKOUT, "w", 100_000);
    assert_eq!(api.order(CHECKOUT, "k-1", "w", "gc-25", 2).status, 201);
    let held = api.order(CHECKOUT, "k-2", "w", "gc-25", 1);
    assert_eq!(
        (held.status, &held.body["status"]),
        (202, &json!("pending_review")),
        "{held:?}"
    );
    let list = api.get("/v1/admin/reviews", Some(ADMIN));
    assert_eq!(list.body["reviews"][0]["cause"], "kyc", "{list:?}");
    assert_eq!(list.body["reviews"][0]["score"], json!(null), "{list:?}");
    let ok = api.call(
        "POST",
        "/v1/admin/reviews/k-2/approve?client_id=checkout-1",
        Some(ADMIN),
        None,
        &[],
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(api.balance("w"), (100_000 - 7_500, 0));
    api.reconciled();
}

/// Card cancellation and the illegal transitions around it: an issued card nothing was
/// redeemed from is cancelled for its buyer (its price back on the wallet, exactly), and from
/// then on it redeems nothing, resends nothing, freezes nothing, and a reversal of a
/// redemption made on it before does not revive it. A supplier's code is cancelled only when it
/// was never delivered, and its code goes back in stock. A card something was redeemed from, a
/// delivered code, and another client's card are refused and change nothing; the books
/// (ledger, revenue report, liability, stock) stay exact.
#[test]
fn a_cancelled_card_refunds_its_price_once_and_no_transition_revives_it() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path());
    api.sku("store-50", "issued", 5_000, Some(10));
    api.sku("gc-25", "supplier_code", 2_500, None);
    api.codes("gc-25", "C", 5);
    api.wallet(CHECKOUT, "w", 100_000);
    let mut body = order_body("o-1", "w", "store-50", 3);
    body["delivery"] = json!({"channel": "email", "recipient": "x@example.com"});
    let order = api.post("/v1/orders", CHECKOUT, &body);
    assert_eq!(order.status, 201, "{order:?}");
    let charged = order.body["charged"]["amount_minor"].as_i64().unwrap();
    let price = charged / 3;
    let card = |i: usize| {
        order.body["cards"][i]["card_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let code = |i: usize| order.body["cards"][i]["code"].as_str().unwrap().to_owned();
    let (a, b, c) = (card(0), card(1), card(2));
    let act = |key: &str, card: &str, what: &str| {
        api.post(&format!("/v1/cards/{card}/{what}"), key, &json!({}))
    };
    let redeem = |id: &str, code: &str, minor: i64| {
        api.post(
            "/v1/redemptions",
            MERCHANT,
            &json!({"redemption_id": id, "code": code, "amount": {"amount_minor": minor, "currency": "USD"}}),
        )
    };
    let liability = || {
        let r = api.get("/v1/admin/reports/liability", Some(ADMIN));
        r.body["totals"][0]["owed_minor"].as_i64().unwrap_or(0)
    };
    let margin = || {
        let r = api.get("/v1/admin/reports/revenue?group_by=currency", Some(ADMIN));
        r.body["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|x| x["currency"] == "USD"))
            .map(|x| x["margin_minor"].as_i64().unwrap_or(0))
            .unwrap_or(0)
    };
    let after_order = api.balance("w");
    assert_eq!(liability(), 15_000);
    let margin_before = margin();

    // Cancel an untouched card: its price back, exactly once.
    act(CHECKOUT2, &a, "cancel").problem(404, "card_not_found");
    act(MERCHANT, &a, "cancel").problem(403, "forbidden");
    let x = act(CHECKOUT, &a, "cancel");
    assert_eq!(
        (x.status, &x.body["status"]),
        (200, &json!("cancelled")),
        "{x:?}"
    );
    assert_eq!(api.balance("w"), (after_order.0 + price, 0));
    let again = act(CHECKOUT, &a, "cancel");
    assert_eq!(again.body["status"], "cancelled", "{again:?}");
    assert_eq!(
        api.balance("w"),
        (after_order.0 + price, 0),
        "a second cancel refunds nothing"
    );
    assert_eq!(liability(), 10_000);
    assert_eq!(margin(), margin_before - (price - 5_000));
    // A cancelled card: no redemption, no resend, no freeze.
    redeem("r-a", &code(0), 100).problem(422, "card_cancelled");
    act(CHECKOUT, &a, "resend").problem(422, "card_cancelled");
    act(CHECKOUT, &a, "freeze").problem(422, "card_not_active");

    // Redeemed from: not cancellable, even after a reversal gave it all back? No: a card whose
    // redemptions were all reversed holds its face again and may be cancelled; a reversal
    // afterwards revives nothing.
    assert_eq!(redeem("r-b", &code(1), 1_000).status, 201);
    act(CHECKOUT, &b, "cancel").problem(422, "card_not_cancellable");
    assert_eq!(
        api.post("/v1/redemptions/r-b/reversal", MERCHANT, &json!({}))
            .status,
        201
    );
    assert_eq!(act(ADMIN, &b, "cancel").body["status"], "cancelled");
    let revive = api.post("/v1/redemptions/r-b/reversal", MERCHANT, &json!({}));
    assert!(
        revive.status == 201 && revive.replayed || revive.status == 409,
        "a repeated reversal replays or is refused: {revive:?}"
    );
    let read = api.get(&format!("/v1/cards/{b}"), Some(CHECKOUT));
    assert_eq!(read.body["status"], "cancelled", "{read:?}");
    assert_eq!(read.body["balance"]["amount_minor"], 0, "{read:?}");
    // Fully redeemed: not cancellable.
    assert_eq!(redeem("r-c", &code(2), 5_000).status, 201);
    act(CHECKOUT, &c, "cancel").problem(422, "card_not_cancellable");
    // A supplier's code that reached its buyer (shown in the answer, or delivered) may have
    // been redeemed at the brand: not cancellable.
    let sup = api.order(CHECKOUT, "o-2", "w", "gc-25", 1);
    let sup_card = sup.body["cards"][0]["card_id"].as_str().unwrap().to_owned();
    act(CHECKOUT, &sup_card, "cancel").problem(422, "card_not_cancellable");
    // One whose every delivery attempt failed never reached anyone: cancelled, its price back
    // and its code back in stock, the supplier owed nothing for it.
    let mut mail = order_body("o-3", "w", "gc-25", 1);
    mail["delivery"] = json!({"channel": "email", "recipient": "y@example.com"});
    let lost = api.post("/v1/orders", CHECKOUT, &mail);
    assert_eq!(lost.status, 201, "{lost:?}");
    let lost_card = lost.body["cards"][0]["card_id"]
        .as_str()
        .unwrap()
        .to_owned();
    act(CHECKOUT, &lost_card, "cancel").problem(422, "card_not_cancellable");
    let mut attempt = 1;
    loop {
        let r = api.post(
            &format!("/v1/deliveries/{lost_card}/report"),
            DELIVERY,
            &json!({"status": "failed", "attempt": attempt, "token": report_token(&lost_card, attempt)}),
        );
        assert_eq!(r.status, 200, "{r:?}");
        if r.body["delivery"] == "gave_up" {
            break;
        }
        attempt += 1;
        assert!(attempt <= 10, "delivery never given up: {r:?}");
    }
    let stock_before = api.stock("gc-25");
    let before = api.balance("w");
    let x = act(CHECKOUT, &lost_card, "cancel");
    assert_eq!(x.body["status"], "cancelled", "{x:?}");
    assert_eq!(api.balance("w"), (before.0 + 2_500, 0));
    assert_eq!(api.stock("gc-25"), (stock_before.0 + 1, stock_before.1 - 1));
    act(CHECKOUT, &lost_card, "resend").problem(422, "card_cancelled");
    // Its code sells again, to the next order.
    assert_eq!(api.order(CHECKOUT, "o-4", "w", "gc-25", 4).status, 201);
    assert_eq!(api.stock("gc-25").0, 0);
    api.post("/v1/cards/99999/cancel", CHECKOUT, &json!({}))
        .problem(404, "card_not_found");
    assert_eq!(api.balance("w"), (after_order.0 + 2 * price - 5 * 2_500, 0));
    assert_eq!(liability(), 0);
    let history = api.get("/v1/wallets/w/transactions", Some(CHECKOUT));
    let refunds = history.body["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "refund")
        .count();
    assert_eq!(refunds, 3, "{history:?}");
    api.reconciled();
}
