//! Black-box tests of the HTTP API over a real socket: every endpoint's success and error
//! paths, tenancy, idempotency (also across a restart and under concurrent duplicates), input
//! discipline, rate limits and load shedding, the OpenAPI document and the metrics.

mod http_common;

use http_common::*;
use serde_json::{json, Value};
use std::sync::Arc;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn not_ready_until_recovery_is_done() {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let dir = tmp();
    let path = dir.path().to_owned();
    let opener: giftcard_http::Opener = Box::new(move || {
        let _ = release_rx.recv();
        giftcard_shard::Engine::open(giftcard_shard::EngineConfig::new(path, 2))
            .map_err(|e| e.to_string())
    });
    let api = Api::connect(giftcard_http::start_with(config(), opener).expect("starts"));
    assert_eq!(api.get("/healthz", None).status, 200);
    api.get("/readyz", None).problem(503, "not_ready");
    let r = api.get("/v1/skus", Some(ADMIN));
    r.problem(503, "not_ready");
    assert!(r.retry_after.is_some());
    release_tx.send(()).expect("release");
    api.wait_ready();
    assert_eq!(api.get("/v1/skus", Some(ADMIN)).status, 200);
}

#[test]
fn catalog_wallet_deposit_order_flow_with_replays() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-25", "supplier_code", 2500, None);
    assert_eq!(
        api.get("/v1/skus", Some(CHECKOUT)).body["skus"][0]["sku_id"],
        "gc-25"
    );
    assert_eq!(
        api.get("/v1/skus/gc-25", Some(CHECKOUT)).body["face_value"]["fixed"]["amount_minor"],
        2500
    );
    api.get("/v1/skus/nope", Some(CHECKOUT))
        .problem(404, "sku_not_found");
    // Cost fields (what we pay, and to whom) are for admins and the SKU's own supplier only.
    for (key, sees) in [
        (ADMIN, true),
        (SUPPLIER, true),
        (SUPPLIER2, false),
        (CHECKOUT, false),
    ] {
        let one = api.get("/v1/skus/gc-25", Some(key));
        let all = api.get("/v1/skus", Some(key));
        let listed = &all.body["skus"][0];
        for view in [&one.body, listed] {
            assert_eq!(view["sku_id"], "gc-25", "{view}");
            assert_eq!(
                view.get("wholesale_discount").is_some(),
                sees,
                "{key}: {view}"
            );
            assert_eq!(view.get("supplier_id").is_some(), sees, "{key}: {view}");
        }
    }
    api.codes("gc-25", "CODE", 5);
    let dup = api.post(
        "/v1/skus/gc-25/codes",
        SUPPLIER,
        &json!({"codes": ["NEW-000001", "CODE-000001"]}),
    );
    dup.problem(409, "duplicate_codes");
    // How many, never which (positions would say which codes exist).
    assert_eq!(dup.body["duplicates"], 1, "{dup:?}");
    assert!(dup.body.get("positions").is_none(), "{dup:?}");
    assert_eq!(api.stock("gc-25"), (5, 0));

    // Only an admin vouches for KYC: a client declaring its new wallet verified is refused.
    api.post(
        "/v1/wallets",
        CHECKOUT,
        &json!({"wallet_id": "w-kyc", "kyc_verified": true}),
    )
    .problem(403, "forbidden");
    let created = api.post("/v1/wallets", CHECKOUT, &json!({"wallet_id": "w1"}));
    assert_eq!((created.status, created.replayed), (201, false));
    // A retried creation replays; the same id with another body, or by another client, conflicts.
    let again = api.post("/v1/wallets", CHECKOUT, &json!({"wallet_id": "w1"}));
    assert_eq!(
        (again.status, &again.body, again.replayed),
        (201, &created.body, true)
    );
    api.post(
        "/v1/wallets",
        CHECKOUT,
        &json!({"wallet_id": "w1", "kyc_verified": true}),
    )
    .problem(409, "wallet_exists");
    // Deposit by header key; the replay answers the same, a different body conflicts.
    let dep = |minor: i64| {
        let body =
            json!({"amount": {"amount_minor": minor, "currency": "USD"}, "reference": "psp-1"})
                .to_string();
        api.call(
            "POST",
            "/v1/wallets/w1/deposits",
            Some(FUNDING),
            Some(&body),
            &[("Idempotency-Key", "dep-1")],
        )
    };
    let first = dep(10_000);
    assert_eq!(first.status, 201, "{first:?}");
    let again = dep(10_000);
    assert_eq!(
        (again.status, &again.body, again.replayed),
        (201, &first.body, true)
    );
    dep(20_000).problem(409, "idempotency_conflict");
    assert_eq!(api.balance("w1"), (10_000, 0));

    let order = api.order(CHECKOUT, "o-1", "w1", "gc-25", 2);
    assert_eq!(order.status, 201, "{order:?}");
    assert_eq!(order.body["charged"]["amount_minor"], 5000);
    let cards = order.body["cards"].as_array().expect("cards").clone();
    assert_eq!(cards.len(), 2);
    assert!(cards
        .iter()
        .all(|c| c["code"].as_str().is_some_and(|s| s.starts_with("CODE-"))));
    let replay = api.order(CHECKOUT, "o-1", "w1", "gc-25", 2);
    assert_eq!(
        (replay.status, &replay.body, replay.replayed),
        (201, &order.body, true)
    );
    api.order(CHECKOUT, "o-1", "w1", "gc-25", 1)
        .problem(409, "idempotency_conflict");
    // A read is the answer without the balances, which only answers to placing carry.
    let read = api.get("/v1/orders/o-1", Some(CHECKOUT));
    let mut placed = order.body.clone();
    let balances = placed
        .as_object_mut()
        .and_then(|o| o.remove("balances"))
        .expect("the answer carries the wallet's balances");
    assert_eq!(balances[0]["available"]["amount_minor"], 5_000);
    assert_eq!((read.status, &read.body), (200, &placed));
    api.get("/v1/orders/o-404", Some(CHECKOUT))
        .problem(404, "order_not_found");
    assert_eq!(api.balance("w1"), (5_000, 0));
    assert_eq!(api.stock("gc-25"), (3, 2));

    // A recorded rejection replays as the same 422 and moves no money.
    let big = api.order(CHECKOUT, "o-2", "w1", "gc-25", 3);
    big.problem(422, "insufficient_funds");
    assert_eq!(big.body["order_id"], "o-2");
    assert_eq!(api.order(CHECKOUT, "o-2", "w1", "gc-25", 3).body, big.body);
    assert_eq!(
        api.get("/v1/orders/o-2", Some(CHECKOUT)).body["status"],
        "rejected"
    );
    assert_eq!(api.balance("w1"), (5_000, 0));
    assert_eq!(api.stock("gc-25"), (3, 2));

    // The card, masked.
    let card_id = cards[0]["card_id"].as_str().expect("id");
    let card = api.get(&format!("/v1/cards/{card_id}"), Some(CHECKOUT));
    assert_eq!(card.status, 200, "{card:?}");
    assert!(card.body["masked_code"]
        .as_str()
        .is_some_and(|m| m.starts_with("*******") && !m.contains("CODE")));
    assert!(
        card.body["balance"].is_null(),
        "supplier codes carry no stored value"
    );
    // Another client cannot read the card, not even its masked code.
    api.get(&format!("/v1/cards/{card_id}"), Some(CHECKOUT2))
        .problem(404, "card_not_found");
    api.get("/v1/cards/12345", Some(CHECKOUT))
        .problem(404, "card_not_found");
    api.get("/v1/cards/not-a-number", Some(CHECKOUT))
        .problem(400, "invalid_id");

    // History, paginated.
    let page = api.get("/v1/wallets/w1/transactions?limit=2", Some(CHECKOUT));
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.body["transactions"][0]["kind"], "deposit");
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let next = api.get(
        &format!("/v1/wallets/w1/transactions?limit=100&cursor={cursor}"),
        Some(CHECKOUT),
    );
    assert!(next.body["next_cursor"].is_null());
    let all = api.get("/v1/wallets/w1/transactions", Some(CHECKOUT)).body["transactions"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(
        2 + next.body["transactions"].as_array().map_or(0, Vec::len),
        all
    );
    api.get("/v1/wallets/w1/transactions?limit=0", Some(CHECKOUT))
        .problem(400, "invalid_limit");
    api.get("/v1/wallets/w1/transactions?bogus=1", Some(CHECKOUT))
        .problem(400, "invalid_query");
    api.reconciled();
}

#[test]
fn cross_tenant_attempts_are_refused_and_change_nothing() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-10", "supplier_code", 1000, None);
    api.codes("gc-10", "TEN", 4);
    api.wallet(CHECKOUT, "mine", 50_000);
    api.wallet(CHECKOUT2, "theirs", 50_000);
    assert_eq!(
        api.order(CHECKOUT, "o-mine", "mine", "gc-10", 1).status,
        201
    );

    // Checkout-2 cannot read, fund, list or spend checkout-1's wallet, nor read its order.
    api.get("/v1/wallets/mine", Some(CHECKOUT2))
        .problem(404, "wallet_not_found");
    api.get("/v1/wallets/mine/transactions", Some(CHECKOUT2))
        .problem(404, "wallet_not_found");
    api.deposit(CHECKOUT2, "mine", "steal", 1)
        .problem(404, "wallet_not_found");
    api.order(CHECKOUT2, "o-steal", "mine", "gc-10", 1)
        .problem(404, "wallet_not_found");
    api.get("/v1/orders/o-mine", Some(CHECKOUT2))
        .problem(404, "order_not_found");
    // Wallet ids are each client's own (issue 13): checkout-2 creating `mine` gets an empty
    // wallet of its own (before, a 409 told it the id was taken, and took it from it), and
    // checkout-1's stored id is not a name checkout-2 may use.
    let created = api.post("/v1/wallets", CHECKOUT2, &json!({ "wallet_id": "mine" }));
    assert_eq!(
        (created.status, &created.body["owner"]),
        (201, &json!("checkout-2")),
        "{created:?}"
    );
    let own = api.get("/v1/wallets/mine", Some(CHECKOUT2));
    assert_eq!(
        (own.status, &own.body["balances"]),
        (200, &json!([])),
        "{own:?}"
    );
    api.order(CHECKOUT2, "o-own", "mine", "gc-10", 1)
        .problem(422, "insufficient_funds");
    api.get("/v1/wallets/checkout-1~mine", Some(CHECKOUT2))
        .problem(400, "invalid_id");
    assert_eq!(api.balance("checkout-2~mine"), (0, 0));
    // Suppliers touch only their own SKUs' pools; other roles none.
    let upload = json!({"codes": ["EVIL-0001"]});
    api.post("/v1/skus/gc-10/codes", SUPPLIER2, &upload)
        .problem(403, "forbidden");
    api.post("/v1/skus/gc-10/codes", CHECKOUT, &upload)
        .problem(403, "forbidden");
    api.get("/v1/skus/gc-10/stock", Some(SUPPLIER2))
        .problem(403, "forbidden");
    assert_eq!(api.get("/v1/skus/gc-10/stock", Some(SUPPLIER)).status, 200);
    // Roles: checkout and supplier keys are not admins; suppliers do not buy.
    for (method, path, body) in [
        ("POST", "/v1/skus", Some(json!({}))),
        ("PATCH", "/v1/skus/gc-10", Some(json!({"status": "paused"}))),
        (
            "PUT",
            "/v1/fx/rates",
            Some(json!({"rates": [], "spread": "0"})),
        ),
        ("PATCH", "/v1/wallets/mine", Some(json!({"frozen": true}))),
        ("GET", "/v1/admin/stats", None),
        ("GET", "/v1/admin/reconciliation", None),
        (
            "POST",
            "/v1/admin/settlements",
            Some(json!({"period_id": "p1"})),
        ),
    ] {
        let body = body.map(|b| b.to_string());
        api.call(method, path, Some(CHECKOUT), body.as_deref(), &[])
            .problem(403, "forbidden");
    }
    api.order(SUPPLIER, "o-sup", "mine", "gc-10", 1)
        .problem(403, "forbidden");
    // No key, or an unknown one.
    api.get("/v1/wallets/mine", None)
        .problem(401, "unauthenticated");
    api.get("/v1/wallets/mine", Some("not-a-key"))
        .problem(401, "unauthenticated");

    assert_eq!(api.balance("mine"), (49_000, 0));
    assert_eq!(api.balance("checkout-2~theirs"), (50_000, 0));
    assert_eq!(api.stock("gc-10"), (3, 1));
    assert_eq!(
        api.get("/v1/skus/gc-10", Some(ADMIN)).body["status"],
        "active"
    );
    api.reconciled();
}

#[test]
fn bad_input_gets_a_problem_naming_the_field_and_changes_nothing() {
    let dir = tmp();
    let mut cfg = config();
    cfg.body_bytes_max = 64 * 1024;
    let api = Api::start_with(dir.path(), cfg);
    api.sku("gc-5", "supplier_code", 500, None);
    api.codes("gc-5", "FIVE", 3);
    api.wallet(CHECKOUT, "w", 10_000);
    let field = |r: &Res, f: &str| assert_eq!(r.body["field"], f, "{r:?}");

    let r = api.post_raw("/v1/orders", CHECKOUT, "{\"order_id\": ");
    r.problem(400, "malformed_json");
    api.post_raw("/v1/orders", CHECKOUT, "")
        .problem(400, "malformed_json");
    let mut o = order_body("o-x", "w", "gc-5", 1);
    o["surprise"] = json!(1);
    field(
        api.post("/v1/orders", CHECKOUT, &o)
            .problem(400, "invalid_field"),
        "surprise",
    );
    let r = api.post(
        "/v1/orders",
        CHECKOUT,
        &order_body("o-x", "w", "gc-5", 10_001),
    );
    field(r.problem(400, "quantity_out_of_range"), "items[0].quantity");
    let r = api.post("/v1/orders", CHECKOUT, &order_body("o-x", "w", "gc-5", 0));
    field(r.problem(400, "quantity_out_of_range"), "items[0].quantity");
    let mut two = order_body("o-x", "w", "gc-5", 6_000);
    two["items"] =
        json!([{"sku_id": "gc-5", "quantity": 6000}, {"sku_id": "gc-5", "quantity": 5000}]);
    field(
        api.post("/v1/orders", CHECKOUT, &two)
            .problem(400, "quantity_out_of_range"),
        "items[1].quantity",
    );
    let r = api.post(
        "/v1/orders",
        CHECKOUT,
        &order_body(&"x".repeat(65), "w", "gc-5", 1),
    );
    field(r.problem(400, "invalid_id"), "order_id");
    let r = api.post(
        "/v1/orders",
        CHECKOUT,
        &order_body("bad id!", "w", "gc-5", 1),
    );
    field(r.problem(400, "invalid_id"), "order_id");
    let mut neg = order_body("o-x", "w", "gc-5", 1);
    neg["items"][0]["quantity"] = json!(-1);
    field(
        api.post("/v1/orders", CHECKOUT, &neg)
            .problem(400, "invalid_field"),
        "items[0].quantity",
    );
    let mut recipient = order_body("o-x", "w", "gc-5", 1);
    recipient["delivery"]["recipient"] = json!("r".repeat(300));
    field(
        api.post("/v1/orders", CHECKOUT, &recipient)
            .problem(400, "invalid_text"),
        "delivery.recipient",
    );

    let dep = |amount: Value| {
        api.post(
            "/v1/wallets/w/deposits",
            FUNDING,
            &json!({"deposit_id": "d-x", "amount": amount, "reference": "r"}),
        )
    };
    field(
        dep(json!({"amount_minor": 10.5, "currency": "USD"})).problem(400, "invalid_field"),
        "amount.amount_minor",
    );
    field(
        dep(json!({"amount_minor": 1000.0, "currency": "USD"})).problem(400, "invalid_field"),
        "amount.amount_minor",
    );
    field(
        dep(json!({"amount_minor": "1000", "currency": "USD"})).problem(400, "invalid_field"),
        "amount.amount_minor",
    );
    field(
        dep(json!({"amount_minor": 0, "currency": "USD"})).problem(400, "invalid_amount"),
        "amount.amount_minor",
    );
    field(
        dep(json!({"amount_minor": -5, "currency": "USD"})).problem(400, "invalid_amount"),
        "amount.amount_minor",
    );
    field(
        dep(json!({"amount_minor": 1_000_000_000_001_i64, "currency": "USD"}))
            .problem(400, "invalid_amount"),
        "amount.amount_minor",
    );
    field(
        dep(json!({"amount_minor": 100, "currency": "XYZ"})).problem(400, "invalid_currency"),
        "amount.currency",
    );
    field(
        dep(json!({"amount_minor": 100, "currency": "usd"})).problem(400, "invalid_currency"),
        "amount.currency",
    );
    let no_key = api.post(
        "/v1/wallets/w/deposits",
        FUNDING,
        &json!({"amount": {"amount_minor": 1, "currency": "USD"}, "reference": "r"}),
    );
    no_key.problem(400, "missing_idempotency_key");

    // Too large: 413 problem+json, before anything is parsed.
    let huge = json!({"codes": vec!["A".repeat(100); 1000]});
    let r = api.post("/v1/skus/gc-5/codes", SUPPLIER, &huge);
    r.problem(413, "payload_too_large");
    let r = api.post(
        "/v1/skus/gc-5/codes",
        SUPPLIER,
        &json!({"codes": ["ok-code-1", "has space"]}),
    );
    field(r.problem(400, "invalid_code"), "codes[1]");
    // Unknown routes and methods.
    api.get("/v1/nothing-here", Some(ADMIN))
        .problem(404, "not_found");
    api.call("DELETE", "/v1/wallets/w", Some(ADMIN), None, &[])
        .problem(405, "method_not_allowed");

    assert_eq!(
        api.balance("w"),
        (10_000, 0),
        "nothing a rejected request sent changed the balance"
    );
    assert_eq!(api.stock("gc-5"), (3, 0));
    assert_eq!(
        api.get("/v1/wallets/w/transactions", Some(CHECKOUT)).body["transactions"]
            .as_array()
            .map_or(0, Vec::len),
        1
    );
}

#[test]
fn two_hundred_clients_race_for_one_hundred_codes() {
    let dir = tmp();
    let api = Arc::new(Api::start(dir.path()));
    api.sku("hot", "supplier_code", 1000, None);
    api.codes("hot", "HOT", 100);
    for i in 0..200 {
        api.wallet(CHECKOUT, &format!("racer-{i}"), 5_000);
    }
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let api = api.clone();
            std::thread::spawn(move || {
                api.order(
                    CHECKOUT,
                    &format!("race-{i}"),
                    &format!("racer-{i}"),
                    "hot",
                    1,
                )
            })
        })
        .collect();
    let results: Vec<Res> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    let completed: Vec<&Res> = results.iter().filter(|r| r.status == 201).collect();
    let out_of_stock = results
        .iter()
        .filter(|r| r.status == 422 && r.body["code"] == "out_of_stock")
        .count();
    assert_eq!(
        (completed.len(), out_of_stock),
        (100, 100),
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let mut codes: Vec<&str> = completed
        .iter()
        .filter_map(|r| r.body["cards"][0]["code"].as_str())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), 100, "every code sold exactly once");
    assert_eq!(api.stock("hot"), (0, 100));
    let spent: i64 = (0..200)
        .map(|i| 5_000 - api.balance(&format!("racer-{i}")).0)
        .sum();
    assert_eq!(spent, 100 * 1000, "only completed orders were charged");
    api.reconciled();
}

#[test]
fn a_restart_between_an_order_and_its_retry_replays_the_original_answer() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-1", "supplier_code", 100, None);
    api.codes("gc-1", "RST", 2);
    api.wallet(CHECKOUT, "w", 1_000);
    let done = api.order(CHECKOUT, "o-done", "w", "gc-1", 2);
    assert_eq!(done.status, 201);
    let rejected = api.order(CHECKOUT, "o-rej", "w", "gc-1", 1);
    rejected.problem(422, "out_of_stock");
    api.stop();

    let api = Api::start(dir.path());
    let again = api.order(CHECKOUT, "o-done", "w", "gc-1", 2);
    assert_eq!(
        (again.status, &again.body, again.replayed),
        (201, &done.body, true)
    );
    let again = api.order(CHECKOUT, "o-rej", "w", "gc-1", 1);
    assert_eq!((again.status, &again.body), (422, &rejected.body));
    api.order(CHECKOUT, "o-done", "w", "gc-1", 1)
        .problem(409, "idempotency_conflict");
    assert_eq!(
        api.deposit(CHECKOUT, "w", "initial", 1_000).status,
        201,
        "deposit replays after restart"
    );
    assert_eq!(api.balance("w"), (800, 0));
    api.reconciled();
}

#[test]
fn concurrent_duplicates_have_exactly_one_effect() {
    let dir = tmp();
    let api = Arc::new(Api::start(dir.path()));
    api.sku("gc-2", "supplier_code", 200, None);
    api.codes("gc-2", "DUP", 10);
    api.post("/v1/wallets", CHECKOUT, &json!({"wallet_id": "w"}));
    let deposits: Vec<_> = (0..16)
        .map(|_| {
            let api = api.clone();
            std::thread::spawn(move || api.deposit(CHECKOUT, "w", "same-deposit", 7_000))
        })
        .collect();
    let deposits: Vec<Res> = deposits
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert!(
        deposits
            .iter()
            .all(|r| r.status == 201 && r.body == deposits[0].body),
        "{deposits:?}"
    );
    assert_eq!(deposits.iter().filter(|r| !r.replayed).count(), 1);
    assert_eq!(api.balance("w"), (7_000, 0));
    assert_eq!(
        deposits[0].body["balances"][0]["available"]["amount_minor"], 7_000,
        "the answer carries the balance the deposit left: {:?}",
        deposits[0]
    );

    let orders: Vec<_> = (0..16)
        .map(|_| {
            let api = api.clone();
            std::thread::spawn(move || api.order(CHECKOUT, "same-order", "w", "gc-2", 3))
        })
        .collect();
    let orders: Vec<Res> = orders
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert!(
        orders
            .iter()
            .all(|r| r.status == 201 && r.body == orders[0].body),
        "{orders:?}"
    );
    assert_eq!(api.balance("w"), (6_400, 0));
    assert_eq!(api.stock("gc-2"), (7, 3));
    api.reconciled();
}

#[test]
fn issued_cards_balance_redeem_reverse_and_lookups_are_rate_limited() {
    let dir = tmp();
    let mut cfg = config();
    cfg.lookup_per_code_prefix_burst = 12;
    cfg.lookup_per_code_prefix_per_s = 1;
    let api = Api::start_with(dir.path(), cfg);
    api.sku("store-50", "issued", 5_000, Some(10));
    api.wallet(CHECKOUT, "w", 20_000);
    let order = api.order(CHECKOUT, "o-issued", "w", "store-50", 1);
    assert_eq!(order.status, 201, "{order:?}");
    let code = order.body["cards"][0]["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let card_id = order.body["cards"][0]["card_id"]
        .as_str()
        .expect("id")
        .to_owned();

    let bal = api.post("/v1/cards/balance", CHECKOUT, &json!({"code": code}));
    assert_eq!(
        (bal.status, bal.body["balance"]["amount_minor"].as_i64()),
        (200, Some(5_000)),
        "{bal:?}"
    );
    let redeem = |id: &str, minor: i64| {
        api.post("/v1/redemptions", MERCHANT, &json!({"redemption_id": id, "code": code, "amount": {"amount_minor": minor, "currency": "USD"}}))
    };
    let r1 = redeem("r-1", 1_500);
    assert_eq!(
        (r1.status, r1.body["card_id"].as_str()),
        (201, Some(card_id.as_str())),
        "{r1:?}"
    );
    // The answer carries the card as the redemption left it.
    assert_eq!(
        (
            &r1.body["card_balance"]["amount_minor"],
            &r1.body["card_status"]
        ),
        (&json!(3_500), &json!("active")),
        "{r1:?}"
    );
    let replay = redeem("r-1", 1_500);
    assert_eq!(
        (replay.status, &replay.body, replay.replayed),
        (201, &r1.body, true)
    );
    redeem("r-1", 1_600).problem(409, "idempotency_conflict");
    let over = redeem("r-2", 4_000);
    over.problem(422, "insufficient_balance");
    assert_eq!(
        redeem("r-2", 4_000).body,
        over.body,
        "a recorded rejection replays"
    );
    let card = api.get(&format!("/v1/cards/{card_id}"), Some(CHECKOUT));
    assert_eq!(card.body["balance"]["amount_minor"], 3_500);

    let rev = api.post("/v1/redemptions/r-1/reversal", MERCHANT, &json!({}));
    assert_eq!(
        (rev.status, rev.body["status"].as_str()),
        (201, Some("reversed")),
        "{rev:?}"
    );
    assert_eq!(rev.body["card_balance"]["amount_minor"], 5_000, "{rev:?}");
    let rev2 = api.post("/v1/redemptions/r-1/reversal", MERCHANT, &json!({}));
    assert_eq!(
        (rev2.status, &rev2.body, rev2.replayed),
        (201, &rev.body, true)
    );
    api.post("/v1/redemptions/r-404/reversal", MERCHANT, &json!({}))
        .problem(404, "redemption_not_found");
    api.post("/v1/redemptions/r-1/reversal", MERCHANT_OTHER, &json!({}))
        .problem(404, "redemption_not_found");
    assert_eq!(
        api.get(&format!("/v1/cards/{card_id}"), Some(CHECKOUT))
            .body["balance"]["amount_minor"],
        5_000
    );

    // Guessing codes: unknown codes are 404, and a prefix runs out of attempts quickly.
    let mut statuses = Vec::new();
    for i in 0..20 {
        let guess = format!("{}{i:04}", &code[..4]);
        let r = api.post("/v1/cards/balance", CHECKOUT, &json!({"code": guess}));
        if r.status == 429 {
            assert!(
                r.retry_after
                    .as_deref()
                    .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)),
                "{r:?}"
            );
            r.problem(429, "rate_limited");
        } else {
            r.problem(404, "card_not_found");
        }
        statuses.push(r.status);
    }
    assert!(
        statuses.contains(&404) && statuses.contains(&429),
        "{statuses:?}"
    );
    api.reconciled();
}

#[test]
fn admin_fx_patch_freeze_batch_stats_and_settlement() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-eur", "supplier_code", 1_000, None);
    let eur = json!({"sku_id": "eur-10", "brand": "Euro", "category": "travel", "kind": "supplier_code",
        "face_value": {"fixed": {"amount_minor": 1000, "currency": "EUR"}}, "wholesale_discount": "0.10", "supplier_id": "supplier-1"});
    assert_eq!(api.post("/v1/skus", ADMIN, &eur).status, 201);
    assert!(
        api.post("/v1/skus", ADMIN, &eur).replayed,
        "an identical definition replays"
    );
    let mut other = eur.clone();
    other["brand"] = json!("Changed");
    api.post("/v1/skus", ADMIN, &other)
        .problem(409, "sku_exists");
    api.codes("gc-eur", "GCE", 5);
    api.codes("eur-10", "EUR", 5);

    let fx = json!({"rates": [{"base": "EUR", "quote": "USD", "mid": "1.10"}], "spread": "0.02"});
    let put = api.call(
        "PUT",
        "/v1/fx/rates",
        Some(ADMIN),
        Some(&fx.to_string()),
        &[],
    );
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(
        api.get("/v1/fx/rates", Some(CHECKOUT)).body["rates"][0]["mid"],
        "1.10"
    );
    let bad_fx = json!({"rates": [{"base": "EUR", "quote": "USD", "mid": 1.1}], "spread": "0.02"});
    api.call(
        "PUT",
        "/v1/fx/rates",
        Some(ADMIN),
        Some(&bad_fx.to_string()),
        &[],
    )
    .problem(400, "invalid_field");

    api.wallet(CHECKOUT, "w", 100_000);
    let mut eur_order = order_body("o-eur", "w", "eur-10", 1);
    eur_order["pay_currency"] = json!("USD");
    let r = api.post("/v1/orders", CHECKOUT, &eur_order);
    assert_eq!(
        (r.status, r.body["charged"]["amount_minor"].as_i64()),
        (201, Some(1_122)),
        "{r:?}"
    );

    // PATCH: pause, then orders are refused; immutable fields are unknown to PATCH.
    let patch = |b: Value| {
        api.call(
            "PATCH",
            "/v1/skus/gc-eur",
            Some(ADMIN),
            Some(&b.to_string()),
            &[],
        )
    };
    assert_eq!(patch(json!({"status": "paused"})).body["status"], "paused");
    api.order(CHECKOUT, "o-paused", "w", "gc-eur", 1)
        .problem(422, "sku_unavailable");
    patch(json!({"kind": "issued"})).problem(400, "invalid_field");
    assert_eq!(
        patch(json!({"status": "active", "markup": "0.05"})).body["markup"],
        "0.05"
    );

    // Batch: independent results.
    let batch = json!({"orders": [order_body("b-1", "w", "gc-eur", 1), order_body("b-2", "w", "gc-eur", 50), order_body("b-3", "nope", "gc-eur", 1)]});
    let r = api.post("/v1/orders/batch", CHECKOUT, &batch);
    assert_eq!(r.status, 200, "{r:?}");
    let statuses: Vec<u64> = r.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|x| x["status"].as_u64())
        .collect();
    assert_eq!(statuses, vec![201, 422, 404]);
    assert_eq!(r.body["results"][1]["problem"]["code"], "out_of_stock");
    assert_eq!(
        r.body["results"][0]["order"]["charged"]["amount_minor"],
        1_050
    );

    // A malformed order makes the whole batch a 400, and none of it reaches the engine.
    let bad = json!({"orders": [order_body("b-4", "w", "gc-eur", 1), order_body("b 5", "w", "gc-eur", 1)]});
    let r = api.post("/v1/orders/batch", CHECKOUT, &bad);
    assert_eq!(
        r.problem(400, "invalid_id").body["field"],
        "orders[1].order_id"
    );
    api.get("/v1/orders/b-4", Some(CHECKOUT))
        .problem(404, "order_not_found");

    // Freeze: deposits and orders refused.
    let freeze = api.call(
        "PATCH",
        "/v1/wallets/checkout-1~w",
        Some(ADMIN),
        Some(r#"{"frozen": true}"#),
        &[],
    );
    assert_eq!(freeze.body["frozen"], true);
    api.deposit(CHECKOUT, "w", "d-frozen", 100)
        .problem(422, "wallet_frozen");
    api.order(CHECKOUT, "o-frozen", "w", "gc-eur", 1)
        .problem(422, "wallet_frozen");

    let stats = api.get("/v1/admin/stats", Some(ADMIN));
    assert_eq!(stats.status, 200, "{stats:?}");
    assert_eq!(stats.body["by_sku"].as_array().map_or(0, Vec::len), 2);
    assert!(
        stats.body["fx_revenue"][0]["amount_minor"]
            .as_i64()
            .is_some_and(|v| v > 0),
        "{stats:?}"
    );
    let s = api.post(
        "/v1/admin/settlements",
        ADMIN,
        &json!({"period_id": "2026-11"}),
    );
    assert_eq!(s.status, 201, "{s:?}");
    assert_eq!(s.body["suppliers"][0]["supplier_id"], "supplier-1");
    assert_eq!(s.body["suppliers"][0]["cards"], 2);
    assert_eq!(
        s.body["suppliers"][0]["orders"]
            .as_array()
            .map_or(0, Vec::len),
        2
    );
    // Closing the same period again (an admin's retry) answers what it closed and closes nothing
    // new; the next period holds only what was sold after.
    let close = |period: &str| {
        api.post(
            "/v1/admin/settlements",
            ADMIN,
            &json!({ "period_id": period }),
        )
    };
    let again = close("2026-11");
    assert_eq!(
        (again.status, &again.body, again.replayed),
        (201, &s.body, true)
    );
    api.wallet(CHECKOUT, "w2", 100_000);
    assert_eq!(
        api.order(CHECKOUT, "o-after", "w2", "gc-eur", 1).status,
        201
    );
    let next = close("2026-12");
    assert_eq!(next.status, 201, "{next:?}");
    assert_eq!(next.body["suppliers"][0]["cards"], 1);
    assert_eq!(
        next.body["suppliers"][0]["orders"][0]["order_id"],
        "o-after"
    );
    let again = close("2026-11");
    assert_eq!(
        (again.status, &again.body, again.replayed),
        (201, &s.body, true)
    );
    api.reconciled();
}

#[test]
fn overload_sheds_with_429_and_retry_after() {
    let dir = tmp();
    let mut cfg = config();
    cfg.inflight_requests_max = 1;
    let api = Arc::new(Api::start_with(dir.path(), cfg));
    api.post("/v1/wallets", CHECKOUT, &json!({"wallet_id": "w"}));
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let api = api.clone();
            std::thread::spawn(move || api.deposit(CHECKOUT, "w", &format!("d-{i}"), 1))
        })
        .collect();
    let results: Vec<Res> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let shed: Vec<&Res> = results.iter().filter(|r| r.status == 429).collect();
    assert!(!shed.is_empty(), "a spike beyond the bound is shed");
    for r in &shed {
        r.problem(429, "overloaded");
        assert_eq!(r.retry_after.as_deref(), Some("1"));
    }
    let ok = results.iter().filter(|r| r.status == 201).count();
    assert_eq!(ok + shed.len(), 64);
    assert_eq!(
        api.balance("w").0,
        ok as i64,
        "shed requests changed nothing"
    );
}

#[test]
fn bodies_beyond_the_buffer_budget_are_shed_not_buffered() {
    let dir = tmp();
    let mut cfg = config();
    cfg.body_bytes_max = 64 * 1024;
    cfg.body_buffer_bytes_max = 16 * 1024;
    let api = Api::start_with(dir.path(), cfg);
    api.sku("gc-b", "supplier_code", 100, None);
    // 20 KiB of codes: within the per-request limit, beyond what the server buffers at once.
    let codes: Vec<String> = (0..1000).map(|i| format!("BUDGET-{i:08}")).collect();
    let r = api.post("/v1/skus/gc-b/codes", SUPPLIER, &json!({ "codes": codes }));
    r.problem(429, "overloaded");
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert_eq!(api.stock("gc-b"), (0, 0));
    api.codes("gc-b", "SMALL", 10);
    assert_eq!(api.stock("gc-b"), (10, 0));
}

/// Sends headers declaring a body of `declared` bytes and `sent` bytes of it, and keeps the
/// connection open (issue 13: the slow-body finding).
fn trickle(api: &Api, key: &str, declared: usize, sent: usize) -> std::net::TcpStream {
    trickle_to(api, "/v1/skus/gc-t/codes", key, declared, sent)
}

fn trickle_to(
    api: &Api,
    path: &str,
    key: &str,
    declared: usize,
    sent: usize,
) -> std::net::TcpStream {
    use std::io::Write;
    let addr = api.base.trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&addr).expect("connects");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("sends");
    s.write_all(&b"{".repeat(sent)).expect("sends");
    s
}

fn answer(mut s: std::net::TcpStream) -> String {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

#[test]
fn slow_bodies_time_out_and_one_client_cannot_spend_everyones_budget() {
    let dir = tmp();
    let mut cfg = config();
    cfg.body_read_timeout_ms = 1_000;
    cfg.body_buffer_per_client_bytes_max = 64 * 1024;
    let api = Api::start_with(dir.path(), cfg);
    api.sku("gc-t", "supplier_code", 100, None);
    api.wallet(CHECKOUT, "w", 1_000);
    // The supplier declares two 32 KiB bodies and sends a byte of each: its share is spent,
    // so its next body is shed at once ...
    let slow: Vec<_> = (0..2)
        .map(|_| trickle(&api, SUPPLIER, 32 * 1024, 1))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let r = api.post(
        "/v1/skus/gc-t/codes",
        SUPPLIER,
        &json!({"codes": ["SHARE-0001"]}),
    );
    r.problem(429, "overloaded");
    // ... while other clients are served as usual.
    let d = api.deposit(CHECKOUT, "w", "during-slow", 100);
    assert_eq!(d.status, 201, "{d:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(800),
        "others waited"
    );
    // Each trickling body gets 408 when its second is up, and its budget comes back.
    for s in slow {
        let text = answer(s);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("request_timeout"), "{text}");
    }
    api.codes("gc-t", "AFTER", 3);
    assert_eq!(api.stock("gc-t"), (3, 0));
    // Unauthenticated bodies go to payment gateways only: to an unknown one the answer comes
    // before a byte of the body is read, so it cannot hold anyone's budget.
    let started = std::time::Instant::now();
    let mut s = trickle_to(&api, "/v1/gateways/nope/events", "x", 32 * 1024, 0);
    let mut head = [0u8; 512];
    let n = std::io::Read::read(&mut s, &mut head).expect("an answer");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "it waited for the body"
    );
    let text = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    drop(s);
    api.stop();

    // Requests open at once are counted per client too.
    let dir = tmp();
    let mut cfg = config();
    cfg.body_read_timeout_ms = 1_000;
    cfg.inflight_per_client_max = 2;
    let api = Api::start_with(dir.path(), cfg);
    api.sku("gc-t", "supplier_code", 100, None);
    let slow: Vec<_> = (0..2).map(|_| trickle(&api, SUPPLIER, 100, 1)).collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    api.get("/v1/skus/gc-t/stock", Some(SUPPLIER))
        .problem(429, "overloaded");
    assert_eq!(api.get("/v1/skus/gc-t", Some(CHECKOUT)).status, 200);
    slow.into_iter().for_each(|s| drop(answer(s)));
    assert_eq!(api.get("/v1/skus/gc-t/stock", Some(SUPPLIER)).status, 200);
}

#[test]
fn openapi_document_and_metrics() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-m", "supplier_code", 500, None);
    api.codes("gc-m", "MET", 2);
    api.wallet(CHECKOUT, "w", 10_000);
    assert_eq!(api.order(CHECKOUT, "o-m", "w", "gc-m", 1).status, 201);
    api.order(CHECKOUT, "o-m2", "w", "gc-m", 5)
        .problem(422, "out_of_stock");
    // An issued card draws a code: a metric only some orders emit.
    api.sku("gc-i", "issued", 500, Some(10));
    assert_eq!(api.order(CHECKOUT, "o-i", "w", "gc-i", 1).status, 201);

    let doc = api.get("/openapi.json", None);
    assert_eq!(doc.status, 200);
    assert!(
        doc.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc.body["openapi"]
    );
    let paths = doc.body["paths"].as_object().expect("paths");
    for p in [
        "/v1/wallets",
        "/v1/wallets/{wallet_id}",
        "/v1/wallets/{wallet_id}/deposits",
        "/v1/gateways/{gateway}/events",
        "/v1/wallets/{wallet_id}/transactions",
        "/v1/skus",
        "/v1/skus/{sku_id}",
        "/v1/skus/{sku_id}/codes",
        "/v1/skus/{sku_id}/stock",
        "/v1/orders",
        "/v1/orders/batch",
        "/v1/orders/{order_id}",
        "/v1/cards/{card_id}",
        "/v1/redemptions",
        "/v1/redemptions/{redemption_id}/reversal",
        "/v1/cards/balance",
        "/v1/fx/rates",
        "/v1/admin/stats",
        "/v1/admin/settlements",
        "/v1/admin/reconciliation",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let place = &doc.body["paths"]["/v1/orders"]["post"]["responses"];
    for s in [
        "201", "400", "401", "403", "409", "413", "422", "429", "503",
    ] {
        assert!(place.get(s).is_some(), "POST /v1/orders documents {s}");
    }
    assert!(doc.body["components"]["schemas"]["Problem"].is_object());

    let m = api.get("/metrics", Some(METRICS));
    assert_eq!(m.status, 200);
    assert!(m.content_type.starts_with("text/plain"));
    for needle in [
        "giftcard_http_requests_total{route=\"/v1/orders\",method=\"POST\",status=\"201\"}",
        "giftcard_http_request_duration_seconds_bucket{",
        "giftcard_orders_total{outcome=\"completed\"",
        "giftcard_orders_total{outcome=\"rejected\",reason=\"out_of_stock\"}",
        "giftcard_cards_sold_total{currency=\"USD\"}",
        "giftcard_revenue_minor_units_total{currency=\"USD\"}",
        "giftcard_shard_mailbox_depth{shard=\"0\"}",
        "giftcard_sku_stock_available{sku=\"gc-m\"}",
        "giftcard_wal_flush_seconds_bucket{",
        "giftcard_wal_group_records_bucket{",
        "giftcard_wal_written_bytes_total",
        "giftcard_recovery_duration_seconds",
        "giftcard_codes_drawn_total ",
    ] {
        assert!(
            m.text.contains(needle),
            "metrics lack {needle}:\n{}",
            m.text
        );
    }
    // promtool's lint (run by CI on a live scrape) fails a metric without HELP text: every
    // metric shown carries one.
    for name in m.text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = name.split(' ').next().unwrap_or_default();
        assert!(
            m.text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP text"
        );
    }
}

#[test]
fn delivery_reports_count_attempts_give_up_and_list_failed_cards() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-25", "supplier_code", 2500, None);
    api.codes("gc-25", "DLV", 5);
    api.wallet(CHECKOUT, "w", 100_000);
    let r = api.order(CHECKOUT, "o-d", "w", "gc-25", 2);
    assert_eq!(r.status, 201, "{r:?}");
    let ok_card = r.body["cards"][0]["card_id"].as_str().unwrap().to_owned();
    let bad_card = r.body["cards"][1]["card_id"].as_str().unwrap().to_owned();
    let report_on = |card: &str, status: &str, attempt: u8, token: &str| {
        api.post(
            &format!("/v1/deliveries/{card}/report"),
            DELIVERY,
            &json!({ "status": status, "attempt": attempt, "token": token }),
        )
    };
    let report = |card: &str, status: &str, attempt: u8| {
        let token = card
            .parse::<u64>()
            .map_or_else(|_| "0".repeat(64), |_| report_token(card, attempt));
        report_on(card, status, attempt, &token)
    };

    // Only the delivery service reports, and only with the token of the attempt.
    api.post(
        &format!("/v1/deliveries/{ok_card}/report"),
        CHECKOUT,
        &json!({"status": "delivered", "attempt": 1, "token": report_token(&ok_card, 1)}),
    )
    .problem(403, "forbidden");
    // A bare card id (they are sequential) or another card's token settles nothing.
    report_on(&ok_card, "delivered", 1, &"0".repeat(64)).problem(403, "forbidden");
    report_on(&ok_card, "failed", 1, &report_token(&bad_card, 1)).problem(403, "forbidden");
    report_on(&ok_card, "failed", 1, "not-hex").problem(403, "forbidden");
    let r = report(&ok_card, "delivered", 1);
    assert_eq!(
        (r.status, r.body["delivery"].as_str()),
        (200, Some("delivered"))
    );
    assert_eq!(report(&ok_card, "failed", 1).body["delivery"], "unchanged");

    // The default allows 5 attempts: four failures retry, the fifth gives up. A report on an
    // attempt other than the one in flight (a late one, or one made up) changes nothing.
    for attempt in 1..=4 {
        let r = report(&bad_card, "failed", attempt);
        assert_eq!(
            (r.body["delivery"].as_str(), r.body["attempt"].as_u64()),
            (Some("retrying"), Some(u64::from(attempt))),
            "{r:?}"
        );
        assert_eq!(
            report(&bad_card, "failed", attempt).body["delivery"],
            "unchanged"
        );
        assert_eq!(
            report(&bad_card, "delivered", attempt + 2).body["delivery"],
            "unchanged"
        );
    }
    let r = report(&bad_card, "failed", 5);
    assert_eq!(
        (r.body["delivery"].as_str(), r.body["attempt"].as_u64()),
        (Some("gave_up"), Some(5))
    );
    let failed = api.get("/v1/admin/deliveries/failed", Some(ADMIN));
    assert_eq!(failed.status, 200, "{failed:?}");
    assert_eq!(failed.body["cards"].as_array().unwrap().len(), 1);
    assert_eq!(failed.body["cards"][0]["card_id"], bad_card.as_str());
    assert_eq!(failed.body["cards"][0]["order_id"], "o-d");
    assert_eq!(failed.body["cards"][0]["failures"], 5);
    api.get("/v1/admin/deliveries/failed", Some(CHECKOUT))
        .problem(403, "forbidden");
    api.get("/v1/admin/deliveries/failed?limit=0", Some(ADMIN))
        .problem(400, "invalid_limit");

    // Bad input changes nothing.
    report("nope", "failed", 1).problem(400, "invalid_id");
    api.post_raw(
        &format!("/v1/deliveries/{bad_card}/report"),
        DELIVERY,
        r#"{"status":"lost","attempt":1,"token":"x"}"#,
    )
    .problem(400, "invalid_field");
    report("999999", "failed", 1).problem(404, "card_not_found");
    let doc = api.get("/openapi.json", None).body;
    assert!(doc["paths"]["/v1/deliveries/{card_id}/report"]["post"].is_object());
    assert!(doc["paths"]["/v1/admin/deliveries/failed"]["get"].is_object());
}

/// SKU definitions and changes are decided in the engine: concurrent creations of one id end in
/// one definition and a 409, concurrent changes both land, and `If-Match` makes a change
/// conditional on the version `GET` showed (412 when it moved on).
#[test]
fn sku_creation_and_changes_never_lose_an_update() {
    let dir = tmp();
    let api = Api::start(dir.path());
    let body = |brand: &str| {
        json!({"sku_id": "race", "brand": brand, "category": "retail", "kind": "supplier_code",
            "face_value": {"fixed": {"amount_minor": 1000, "currency": "USD"}},
            "wholesale_discount": "0.10", "supplier_id": "supplier-1"})
    };
    // Eight admins create the same id with different brands at once: exactly one wins.
    let results: Vec<Res> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (api, b) = (&api, body(&format!("brand-{i}")));
                s.spawn(move || api.post("/v1/skus", ADMIN, &b))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let created: Vec<&Res> = results.iter().filter(|r| r.status == 201).collect();
    assert_eq!(created.len(), 1, "{results:?}");
    assert!(!created[0].replayed);
    assert!(results
        .iter()
        .filter(|r| r.status != 201)
        .all(|r| r.status == 409 && r.body["code"] == "sku_exists"));
    let winner = created[0].body["brand"].clone();
    let got = api.get("/v1/skus/race", Some(ADMIN));
    assert_eq!(got.body["brand"], winner);
    assert_eq!(got.etag.as_deref(), Some("\"v1\""));

    // Two changes of different fields at once: both land, nothing is read-modify-written here.
    let patch = |b: Value, headers: &[(&str, &str)]| {
        api.call(
            "PATCH",
            "/v1/skus/race",
            Some(ADMIN),
            Some(&b.to_string()),
            headers,
        )
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| patch(json!({"markup": "0.05"}), &[]));
        let b = s.spawn(|| patch(json!({"category": "travel"}), &[]));
        assert_eq!(a.join().expect("thread").status, 200);
        assert_eq!(b.join().expect("thread").status, 200);
    });
    let got = api.get("/v1/skus/race", Some(ADMIN));
    assert_eq!(
        (&got.body["markup"], &got.body["category"]),
        (&json!("0.05"), &json!("travel"))
    );
    assert_eq!(got.etag.as_deref(), Some("\"v3\""));

    // Conditional: based on v3 it applies (and answers v4); based on v3 again it is too late.
    let ok = patch(json!({"brand": "Renamed"}), &[("If-Match", "\"v3\"")]);
    assert_eq!(
        (ok.status, ok.etag.as_deref()),
        (200, Some("\"v4\"")),
        "{ok:?}"
    );
    patch(json!({"brand": "Stale"}), &[("If-Match", "\"v3\"")]).problem(412, "precondition_failed");
    assert_eq!(
        api.get("/v1/skus/race", Some(ADMIN)).body["brand"],
        "Renamed"
    );
    patch(json!({"brand": "x"}), &[("If-Match", "v4")]).problem(400, "invalid_if_match");
    assert_eq!(
        patch(json!({"brand": "Any"}), &[("If-Match", "*")]).status,
        200
    );
    // The currency stays the SKU's, as before.
    patch(
        json!({"face_value": {"fixed": {"amount_minor": 1000, "currency": "EUR"}}}),
        &[],
    )
    .problem(400, "currency_mismatch");
    api.call(
        "PATCH",
        "/v1/skus/nope",
        Some(ADMIN),
        Some(r#"{"brand":"x"}"#),
        &[],
    )
    .problem(404, "sku_not_found");
}

/// Answers that carry card codes say `Cache-Control: no-store`, and a client's choice of HTTP
/// method cannot mint a new metric series per request.
#[test]
fn code_answers_are_never_cached_and_methods_do_not_mint_series() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-nc", "supplier_code", 1_000, None);
    api.codes("gc-nc", "NOSTORE", 5);
    api.wallet(CHECKOUT, "w", 100_000);
    let placed = api.order(CHECKOUT, "o-1", "w", "gc-nc", 1);
    assert_eq!(placed.status, 201, "{placed:?}");
    assert_eq!(placed.cache_control.as_deref(), Some("no-store"));
    let read = api.get("/v1/orders/o-1", Some(CHECKOUT));
    assert_eq!(read.cache_control.as_deref(), Some("no-store"), "{read:?}");
    let batch = json!({"orders": [order_body("b-1", "w", "gc-nc", 1)]});
    let r = api.post("/v1/orders/batch", CHECKOUT, &batch);
    assert_eq!(
        (r.status, r.cache_control.as_deref()),
        (200, Some("no-store"))
    );

    for i in 0..5 {
        let method = format!("FOO-{i}");
        let r = api.call(&method, "/v1/skus", Some(ADMIN), None, &[]);
        assert_eq!(r.status, 405, "{r:?}");
    }
    let metrics = api.get("/metrics", Some(METRICS)).text;
    assert!(!metrics.contains("FOO-"), "a method became a label value");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
}

/// A body of undeclared length (chunked) is refused before it is read, so a slow client cannot
/// hold the whole body budget; and live reconciliations, which pause every shard, run one at a
/// time and not more often than configured.
#[test]
fn chunked_bodies_are_refused_and_reconciliation_is_rate_limited() {
    use std::io::{Read, Write};
    let dir = tmp();
    let mut cfg = config();
    cfg.reconciliation_interval_ms = 60_000;
    let api = Api::start_with(dir.path(), cfg);
    api.wallet(CHECKOUT, "w", 1_000);
    let before = api.balance("w");

    let addr = api.base.trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&addr).expect("connects");
    let chunk = r#"{"amount":{"amount_minor":500,"currency":"USD"},"reference":"slow","deposit_id":"d-chunked"}"#;
    let req = format!(
        "POST /v1/wallets/w/deposits HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {FUNDING}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    s.write_all(req.as_bytes()).expect("sends");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("reads");
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert!(answer.contains("length_required"), "{answer}");
    assert_eq!(
        api.balance("w"),
        before,
        "the refused body changed the books"
    );

    let first = api.get("/v1/admin/reconciliation", Some(ADMIN));
    assert_eq!(first.status, 200, "{first:?}");
    let again = api.get("/v1/admin/reconciliation", Some(ADMIN));
    again.problem(429, "rate_limited");
    assert!(again.retry_after.is_some(), "{again:?}");
}

/// Issue 14: a locked FX quote prices orders at its rate to the minor unit, whatever the table
/// says by then, until it expires; then `quote_expired`. It is the asking client's alone, and
/// bad requests for one are problems that change nothing.
#[test]
fn fx_quotes_lock_a_rate_until_they_expire() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-10", "supplier_code", 1000, None);
    api.codes("gc-10", "TEN", 8);
    let set_fx = |mid: &str, spread: &str| {
        let body =
            json!({"rates": [{"base": "USD", "quote": "EUR", "mid": mid}], "spread": spread});
        let r = api.call(
            "PUT",
            "/v1/fx/rates",
            Some(ADMIN),
            Some(&body.to_string()),
            &[],
        );
        assert_eq!(r.status, 200, "{r:?}");
    };
    set_fx("0.9137", "0.0125");
    api.wallet(CHECKOUT, "w", 1);
    let eur = json!({"deposit_id": "eur", "amount": {"amount_minor": 100_000, "currency": "EUR"}, "reference": "psp"});
    assert_eq!(
        api.post("/v1/wallets/w/deposits", FUNDING, &eur).status,
        201
    );

    let ask =
        json!({"quote_id": "q-1", "wallet_id": "w", "from": "USD", "to": "EUR", "ttl_ms": 1500});
    let q = api.post("/v1/fx/quotes", CHECKOUT, &ask);
    assert_eq!(q.status, 201, "{q:?}");
    assert_eq!(
        (
            &q.body["mid_rate"],
            &q.body["spread"],
            &q.body["rate"],
            &q.body["wallet_id"]
        ),
        (
            &json!("0.9137"),
            &json!("0.0125"),
            &json!("0.92512125"),
            &json!("w")
        )
    );
    let expires_at = q.body["expires_at_ms"].as_u64().expect("expiry");
    let again = api.post("/v1/fx/quotes", CHECKOUT, &ask);
    assert_eq!(
        (again.status, &again.body, again.replayed),
        (201, &q.body, true)
    );
    let mut other = ask.clone();
    other["ttl_ms"] = json!(1000);
    api.post("/v1/fx/quotes", CHECKOUT, &other)
        .problem(409, "idempotency_conflict");

    // The table moves; the quote does not. 2 × $10.00 at 0.92512125 is 18.502425 EUR.
    set_fx("2", "0.05");
    let quoted = |order_id: &str, key: &str, quote: &str| {
        let mut o = order_body(order_id, "w", "gc-10", 2);
        o["pay_currency"] = json!("EUR");
        o["fx_quote_id"] = json!(quote);
        api.post("/v1/orders", key, &o)
    };
    let r = quoted("o-quoted", CHECKOUT, "q-1");
    assert_eq!(
        (r.status, &r.body["charged"]),
        (201, &json!({"amount_minor": 1_850, "currency": "EUR"})),
        "{r:?}"
    );
    // Unknown, another client's, or for another currency: refused, nothing charged.
    quoted("o-unknown", CHECKOUT, "q-404").problem(404, "quote_not_found");
    api.wallet(CHECKOUT2, "w", 1);
    quoted("o-theirs", CHECKOUT2, "q-1").problem(404, "quote_not_found");
    let mut in_usd = order_body("o-usd", "w", "gc-10", 1);
    in_usd["pay_currency"] = json!("USD");
    in_usd["fx_quote_id"] = json!("q-1");
    api.post("/v1/orders", CHECKOUT, &in_usd)
        .problem(422, "quote_mismatch");
    for (body, code, field) in [
        (
            json!({"quote_id": "q-2", "wallet_id": "w", "from": "USD", "to": "USD"}),
            "same_currency",
            "to",
        ),
        (
            json!({"quote_id": "q-2", "wallet_id": "w", "from": "USD", "to": "EUR", "ttl_ms": 900_001}),
            "invalid_ttl",
            "ttl_ms",
        ),
        (
            json!({"quote_id": "q-2", "wallet_id": "w", "from": "USD", "to": "eur"}),
            "invalid_currency",
            "to",
        ),
        (
            json!({"quote_id": "q 2", "wallet_id": "w", "from": "USD", "to": "EUR"}),
            "invalid_id",
            "quote_id",
        ),
    ] {
        let r = api.post("/v1/fx/quotes", CHECKOUT, &body);
        r.problem(400, code);
        assert_eq!(r.body["field"], field, "{r:?}");
    }
    api.post(
        "/v1/fx/quotes",
        CHECKOUT,
        &json!({"quote_id": "q-3", "wallet_id": "nope", "from": "USD", "to": "EUR"}),
    )
    .problem(404, "wallet_not_found");
    api.post(
        "/v1/fx/quotes",
        CHECKOUT,
        &json!({"quote_id": "q-3", "wallet_id": "w", "from": "USD", "to": "JPY"}),
    )
    .problem(422, "fx_rate_missing");
    api.post("/v1/fx/quotes", SUPPLIER, &ask)
        .problem(403, "forbidden");
    assert_eq!(api.balance("w"), (1, 0), "USD untouched");

    // After its last instant the quote prices nothing.
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    while now_ms() <= expires_at {
        std::thread::sleep(std::time::Duration::from_millis(
            expires_at + 20 - now_ms().min(expires_at),
        ));
    }
    quoted("o-late", CHECKOUT, "q-1").problem(422, "quote_expired");
    // The quoted order replays as it was charged.
    let replay = quoted("o-quoted", CHECKOUT, "q-1");
    assert_eq!(
        (replay.status, &replay.body, replay.replayed),
        (201, &r.body, true)
    );
    api.reconciled();
}

/// Issue 14: a client's B2B price list discounts its orders by brand or SKU in quantity tiers,
/// never below a card's cost; a list that would is refused and changes nothing.
#[test]
fn price_lists_discount_a_clients_orders_by_tier() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-25", "supplier_code", 2500, None);
    api.codes("gc-25", "TWENTYFIVE", 12);
    api.wallet(CHECKOUT, "w", 100_000);
    api.wallet(CHECKOUT2, "w", 100_000);
    let put = |body: Value| {
        api.call(
            "PUT",
            "/v1/admin/price-lists/checkout-1",
            Some(ADMIN),
            Some(&body.to_string()),
            &[],
        )
    };
    // 16% off a card bought at 15% off face would sell below cost.
    put(json!({"entries": [{"brand": "Acme", "discount": "0.16"}]}))
        .problem(422, "below_margin_floor");
    let r = put(
        json!({"entries": [{"sku_id": "gc-25", "min_quantity": 3, "discount": "0.05"}, {"sku_id": "gc-25", "min_quantity": 2, "discount": "0.06"}]}),
    );
    r.problem(400, "invalid_price_list");
    assert_eq!(r.body["field"], "entries");
    put(json!({"entries": [{"sku_id": "gc-25", "brand": "Acme", "discount": "0.05"}]}))
        .problem(400, "invalid_field");
    api.call(
        "PUT",
        "/v1/admin/price-lists/checkout-1",
        Some(CHECKOUT),
        Some(r#"{"entries": []}"#),
        &[],
    )
    .problem(403, "forbidden");
    let list = json!({"entries": [
        {"brand": "Acme", "min_quantity": 1, "discount": "0.02"},
        {"sku_id": "gc-25", "min_quantity": 3, "discount": "0.05"},
    ]});
    let r = put(list.clone());
    assert_eq!((r.status, &r.body), (200, &list), "{r:?}");
    let read = api.get("/v1/admin/price-lists/checkout-1", Some(ADMIN));
    assert_eq!((read.status, &read.body), (200, &list));

    let charged = |key: &str, id: &str, qty: u32| {
        let r = api.order(key, id, "w", "gc-25", qty);
        assert_eq!(r.status, 201, "{r:?}");
        r.body["charged"]["amount_minor"].as_i64()
    };
    // 2 cards at the brand's 2%; 3 at the SKU's tier of 5%; checkout-2 at the catalog price.
    assert_eq!(charged(CHECKOUT, "o-2", 2), Some(2 * 2_450));
    assert_eq!(charged(CHECKOUT, "o-3", 3), Some(3 * 2_375));
    assert_eq!(charged(CHECKOUT2, "o-2", 2), Some(2 * 2_500));
    assert_eq!(api.balance("w"), (100_000 - 4_900 - 7_125, 0));
    // Removing the list ends its discounts.
    assert_eq!(put(json!({"entries": []})).status, 200);
    assert_eq!(charged(CHECKOUT, "o-after", 1), Some(2_500));
    api.reconciled();
}

/// Issue 14: a SKU's pricing rules, a promotion among them, price its orders by the order's
/// time; a rule below cost or a window that ends before it starts is refused.
#[test]
fn pricing_rules_and_promotions_price_by_the_orders_time() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-25", "supplier_code", 2500, None);
    api.codes("gc-25", "PROMO", 6);
    api.wallet(CHECKOUT, "w", 100_000);
    let put = |body: Value| {
        api.call(
            "PUT",
            "/v1/skus/gc-25/pricing",
            Some(ADMIN),
            Some(&body.to_string()),
            &[],
        )
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // 20% off a card bought at 15% off face is below its cost.
    put(json!({"rules": [{"kind": "face_percent", "percent": "-0.2"}]}))
        .problem(422, "below_margin_floor");
    let r = put(json!({"rules": [{"kind": "face", "from_ms": 10, "until_ms": 10}]}));
    r.problem(400, "invalid_window");
    assert_eq!(r.body["field"], "rules[0].until_ms");
    put(json!({"rules": [{"kind": "face_percent", "percent": "-0.1", "amount_minor": 5}]}))
        .problem(400, "invalid_field");
    put(json!({"rules": [{"kind": "fixed"}]})).problem(400, "missing_field");
    api.call(
        "PUT",
        "/v1/skus/gc-25/pricing",
        Some(CHECKOUT),
        Some(r#"{"rules": []}"#),
        &[],
    )
    .problem(403, "forbidden");
    // A promotion that holds now (10% off face), a later one, and a standing fixed price.
    let rules = json!({"rules": [
        {"kind": "face_percent", "percent": "-0.1", "from_ms": now_ms - 60_000, "until_ms": now_ms + 600_000},
        {"kind": "face_percent", "percent": "-0.05", "from_ms": now_ms + 600_000},
        {"kind": "fixed", "amount_minor": 2_600},
    ]});
    let r = put(rules.clone());
    assert_eq!((r.status, &r.body), (200, &rules), "{r:?}");
    assert_eq!(api.get("/v1/skus/gc-25/pricing", Some(ADMIN)).body, rules);
    let r = api.order(CHECKOUT, "o-promo", "w", "gc-25", 2);
    assert_eq!(r.body["charged"]["amount_minor"], 2 * 2_250, "{r:?}");
    // The promotion over: the standing price.
    let ended = json!({"rules": [
        {"kind": "face_percent", "percent": "-0.1", "from_ms": now_ms - 60_000, "until_ms": now_ms - 1},
        {"kind": "fixed", "amount_minor": 2_600},
    ]});
    assert_eq!(put(ended).status, 200);
    let r = api.order(CHECKOUT, "o-after", "w", "gc-25", 1);
    assert_eq!(r.body["charged"]["amount_minor"], 2_600, "{r:?}");
    assert_eq!(api.balance("w"), (100_000 - 4_500 - 2_600, 0));
    api.reconciled();
}

/// Issue 14: the revenue side of an order. A margin floor refuses a price list below it; fees
/// are charged with the order; every answer (fresh, replayed, read) carries the order's price,
/// cost, margin and fees; a settlement close books the supplier's commission by its tiers; the
/// revenue report sums to what the ledger took in, and `verify` (run by reconciliation) agrees.
#[test]
fn floors_fees_commissions_and_the_revenue_report() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-25", "supplier_code", 2500, None);
    api.codes("gc-25", "REV", 6);
    api.wallet(CHECKOUT, "w", 100_000);
    let put =
        |path: &str, body: Value| api.call("PUT", path, Some(ADMIN), Some(&body.to_string()), &[]);
    // A 6% floor over the cost of 21.25 puts the lowest price at 22.75: 10% off (22.50) is
    // refused, 9% (22.75) is accepted.
    let floors = json!({"floors": [{"brand": "Acme", "min_margin": "0.06"}]});
    let r = put("/v1/admin/margin-floors", floors.clone());
    assert_eq!((r.status, &r.body), (200, &floors), "{r:?}");
    assert_eq!(api.get("/v1/admin/margin-floors", Some(ADMIN)).body, floors);
    let list = |d: &str| json!({"entries": [{"brand": "Acme", "discount": d}]});
    put("/v1/admin/price-lists/checkout-1", list("0.1")).problem(422, "below_margin_floor");
    assert_eq!(
        put("/v1/admin/price-lists/checkout-1", list("0")).status,
        200
    );
    // Fees in USD: 0.50 an order and 0.25 for e-mail delivery (the helper's orders use e-mail).
    let fees = json!({"currencies": [
        {"currency": "USD", "order_minor": 50, "email_minor": 25, "sms_minor": 0, "webhook_minor": 0}
    ]});
    let r = put("/v1/admin/fees", fees.clone());
    assert_eq!((r.status, &r.body), (200, &fees), "{r:?}");
    // supplier-1: 1% of the first 50.00 of a period's volume, 2% above.
    let tiers = json!({"tiers": [
        {"currency": "USD", "from_minor": 0, "rate": "0.01"},
        {"currency": "USD", "from_minor": 5_000, "rate": "0.02"},
    ]});
    let r = put(
        "/v1/admin/suppliers/supplier-1/commission-tiers",
        tiers.clone(),
    );
    assert_eq!((r.status, &r.body), (200, &tiers), "{r:?}");
    put(
        "/v1/admin/suppliers/supplier-1/commission-tiers",
        json!({"tiers": [{"currency": "USD", "from_minor": 10, "rate": "0.01"}]}),
    )
    .problem(400, "invalid_commission_tiers");
    // Two cards: 2 × 25.00 and 0.75 of fees.
    let r = api.order(CHECKOUT, "o1", "w", "gc-25", 2);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["charged"]["amount_minor"], 5_075, "{r:?}");
    let e = &r.body["economics"];
    assert_eq!(e["lines"][0]["unit_price"]["amount_minor"], 2_500, "{e}");
    assert_eq!(e["lines"][0]["unit_cost"]["amount_minor"], 2_125, "{e}");
    assert_eq!(e["lines"][0]["unit_margin"]["amount_minor"], 375, "{e}");
    assert_eq!(e["margin"][0]["amount_minor"], 750, "{e}");
    assert_eq!(e["fees_total"]["amount_minor"], 75, "{e}");
    assert_eq!(e["fees"][0]["kind"], "order", "{e}");
    assert_eq!(e["fees"][1]["kind"], "delivery_email", "{e}");
    let first = r.body.clone();
    let again = api.order(CHECKOUT, "o1", "w", "gc-25", 2);
    assert_eq!(again.body["charged"], first["charged"], "{again:?}");
    assert_eq!(again.body["economics"], first["economics"], "{again:?}");
    let read = api.get("/v1/orders/o1", Some(CHECKOUT));
    assert_eq!(read.body["economics"], first["economics"], "{read:?}");
    assert_eq!(
        api.order(CHECKOUT, "o2", "w", "gc-25", 1).body["charged"]["amount_minor"],
        2_575
    );
    assert_eq!(api.balance("w"), (100_000 - 5_075 - 2_575, 0));
    // The history shows the fees as their own entries.
    let h = api.get("/v1/wallets/w/transactions", Some(CHECKOUT));
    let kinds: Vec<&str> = h.body["transactions"]
        .as_array()
        .map(|t| t.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        kinds.iter().filter(|k| **k == "fee").count(),
        4,
        "{kinds:?}"
    );
    // The close books 1% of 50.00 and 2% of 13.75 (0.275, to even 0.28): 0.78 off 63.75.
    let close = || api.post("/v1/admin/settlements", ADMIN, &json!({"period_id": "p1"}));
    let r = close();
    assert_eq!(r.status, 201, "{r:?}");
    let s = &r.body["suppliers"][0];
    assert_eq!(
        (
            &s["owed"][0]["amount_minor"],
            &s["commission"][0]["amount_minor"],
            &s["payable"][0]["amount_minor"]
        ),
        (&json!(6_375), &json!(78), &json!(6_297)),
        "{s}"
    );
    assert_eq!(
        close().body["suppliers"],
        r.body["suppliers"],
        "a repeated close books nothing new"
    );
    let report = |q: &str| api.get(&format!("/v1/admin/reports/revenue{q}"), Some(ADMIN));
    let r = report("?group_by=sku");
    assert_eq!(r.status, 200, "{r:?}");
    let row = |body: &Value, group: Value| {
        body["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|x| x["group"] == group).cloned())
            .unwrap_or(Value::Null)
    };
    let sku = row(&r.body, json!("gc-25"));
    assert_eq!(
        (
            &sku["cards"],
            &sku["sales_minor"],
            &sku["cost_minor"],
            &sku["margin_minor"]
        ),
        (&json!(3), &json!(7_500), &json!(6_375), &json!(1_125)),
        "{r:?}"
    );
    // By SKU, fees and commissions are not any SKU's: they are in the row of no group.
    let rest = row(&r.body, Value::Null);
    assert_eq!(
        (&rest["fees_minor"], &rest["commission_minor"]),
        (&json!(150), &json!(78))
    );
    let t = &r.body["totals"][0];
    assert_eq!(
        (&t["margin_minor"], &t["fees_minor"], &t["commission_minor"]),
        (&json!(1_125), &json!(150), &json!(78))
    );
    let by_supplier = report("?group_by=supplier");
    assert_eq!(
        row(&by_supplier.body, json!("supplier-1"))["commission_minor"],
        78
    );
    assert_eq!(
        row(&report("?group_by=client").body, json!("checkout-1"))["fees_minor"],
        150
    );
    // A window that ends before everything is empty; one that ends before it starts is refused.
    assert_eq!(report("?to_ms=1").body["rows"], json!([]));
    report("?from_ms=5&to_ms=5").problem(400, "invalid_window");
    report("?group_by=planet").problem(400, "invalid_field");
    api.reconciled();
}

/// Issue 14: a bulk order with `fill_available` sells what there is (after asking every shard)
/// and charges only that; the answer says per line what was filled; the same order without it
/// is `out_of_stock` and changes nothing.
#[test]
fn fill_available_sells_what_there_is_and_charges_only_that() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-25", "supplier_code", 2500, None);
    api.codes("gc-25", "FILL", 3);
    api.wallet(CHECKOUT, "w", 100_000);
    let mut body = order_body("bulk", "w", "gc-25", 5);
    api.post("/v1/orders", CHECKOUT, &body)
        .problem(422, "out_of_stock");
    assert_eq!(api.balance("w"), (100_000, 0));
    body["order_id"] = json!("bulk-2");
    body["fulfilment"] = json!("fill_available");
    let r = api.post("/v1/orders", CHECKOUT, &body);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["charged"]["amount_minor"], 3 * 2_500, "{r:?}");
    assert_eq!(r.body["cards"].as_array().map(Vec::len), Some(3), "{r:?}");
    assert_eq!(
        r.body["items"],
        json!([{"sku_id": "gc-25", "requested": 5, "filled": 3}]),
        "{r:?}"
    );
    // A retry answers the same; the same id without fill_available is another body.
    let again = api.post("/v1/orders", CHECKOUT, &body);
    assert_eq!(
        (again.body["items"].clone(), again.body["charged"].clone()),
        (r.body["items"].clone(), r.body["charged"].clone())
    );
    body["fulfilment"] = json!("all_or_nothing");
    api.post("/v1/orders", CHECKOUT, &body)
        .problem(409, "idempotency_conflict");
    assert_eq!(api.balance("w"), (100_000 - 7_500, 0));
    body["order_id"] = json!("bulk-3");
    body["fulfilment"] = json!("fill_available");
    api.post("/v1/orders", CHECKOUT, &body)
        .problem(422, "out_of_stock");
    body["fulfilment"] = json!("some");
    api.post("/v1/orders", CHECKOUT, &body)
        .problem(400, "invalid_field");
    api.reconciled();
}

/// Issue 14: two suppliers behind one SKU. Each uploads to its own pool; orders take the
/// cheaper supplier's codes first, across shards, and fail over to the other's; settlement
/// owes each supplier its own cards at its own cost.
#[test]
fn several_suppliers_behind_one_sku_are_each_paid_their_own_cost() {
    let dir = tmp();
    let api = Api::start(dir.path());
    api.sku("gc-25", "supplier_code", 2500, None);
    // supplier-2 is not the SKU's: it may not upload until the SKU names it.
    let up2 = |prefix: &str| {
        let codes: Vec<String> = (0..2).map(|i| format!("{prefix}-{i:06}")).collect();
        api.post(
            "/v1/skus/gc-25/codes",
            SUPPLIER2,
            &json!({ "codes": codes }),
        )
    };
    up2("TWO").problem(403, "forbidden");
    let put = |body: Value| {
        api.call(
            "PUT",
            "/v1/skus/gc-25/suppliers",
            Some(ADMIN),
            Some(&body.to_string()),
            &[],
        )
    };
    put(json!({"offers": [{"supplier_id": "supplier-1", "wholesale_discount": "0.2"}]}))
        .problem(422, "invalid_sourcing");
    let sourcing = json!({"routing": "lowest_cost", "primary_priority": 0,
        "offers": [{"supplier_id": "supplier-2", "wholesale_discount": "0.2", "priority": 1}]});
    let r = put(sourcing.clone());
    assert_eq!((r.status, &r.body), (200, &sourcing), "{r:?}");
    assert_eq!(
        api.get("/v1/skus/gc-25/suppliers", Some(ADMIN)).body,
        sourcing
    );
    assert_eq!(up2("TWO").status, 201);
    api.codes("gc-25", "ONE", 2);
    assert_eq!(api.stock("gc-25"), (4, 0));
    api.wallet(CHECKOUT, "w", 100_000);
    let r = api.order(CHECKOUT, "o1", "w", "gc-25", 3);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["charged"]["amount_minor"], 7_500, "{r:?}");
    // Both of supplier-2's codes (at 20.00) before one of supplier-1's (at 21.25).
    let costs: Vec<(i64, u64)> = r.body["economics"]["lines"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    (
                        l["unit_cost"]["amount_minor"].as_i64().unwrap_or(0),
                        l["quantity"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(costs, vec![(2_000, 2), (2_125, 1)], "{r:?}");
    assert_eq!(api.stock("gc-25"), (1, 3));
    let s = api.post("/v1/admin/settlements", ADMIN, &json!({"period_id": "p1"}));
    let owed = |id: &str| {
        s.body["suppliers"]
            .as_array()
            .and_then(|all| all.iter().find(|x| x["supplier_id"] == id).cloned())
            .map(|x| (x["cards"].clone(), x["owed"][0]["amount_minor"].clone()))
    };
    assert_eq!(owed("supplier-2"), Some((json!(2), json!(4_000))), "{s:?}");
    assert_eq!(owed("supplier-1"), Some((json!(1), json!(2_125))), "{s:?}");
    api.reconciled();
}
