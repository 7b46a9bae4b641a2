//! Issued-card orders draw their codes (OS randomness, hashing, sealing) only once every check
//! has passed (issue 13): a client cannot make the engine pay that cost with orders it knows
//! will be refused, and each refusal is recorded like any other. Its own test binary, so the
//! process-wide metric it reads counts this test's orders alone.

mod http_common;

use http_common::*;
use serde_json::json;

fn codes_drawn(api: &Api) -> u64 {
    let text = api.get("/metrics", Some(METRICS)).text;
    text.lines()
        .find_map(|l| l.strip_prefix("giftcard_codes_drawn_total "))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

#[test]
fn refused_issued_card_orders_draw_no_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path());
    api.sku("store-50", "issued", 5_000, Some(10_000));
    api.wallet(CHECKOUT, "poor", 100);
    api.post("/v1/wallets", CHECKOUT2, &json!({"wallet_id": "theirs"}));
    let before = codes_drawn(&api);
    // Refused for funds (recorded), for a wallet of another tenant, and for the region.
    for i in 0..20 {
        api.order(CHECKOUT, &format!("poor-{i}"), "poor", "store-50", 50)
            .problem(422, "insufficient_funds");
        api.order(CHECKOUT, &format!("theirs-{i}"), "theirs", "store-50", 50)
            .problem(404, "wallet_not_found");
    }
    let frozen = api.call(
        "PATCH",
        "/v1/wallets/checkout-1~poor",
        Some(ADMIN),
        Some(&json!({"frozen": true}).to_string()),
        &[],
    );
    assert_eq!(frozen.status, 200, "{frozen:?}");
    api.order(CHECKOUT, "frozen-1", "poor", "store-50", 1)
        .problem(422, "wallet_frozen");
    assert_eq!(codes_drawn(&api), before, "codes drawn for refused orders");
    // The refusal is recorded: the same order id answers the same, still drawing nothing.
    let again = api.order(CHECKOUT, "poor-0", "poor", "store-50", 50);
    again.problem(422, "insufficient_funds");
    assert_eq!(codes_drawn(&api), before);

    // An order that passes draws exactly its cards' codes.
    api.wallet(CHECKOUT, "rich", 100_000);
    let r = api.order(CHECKOUT, "rich-1", "rich", "store-50", 3);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(codes_drawn(&api), before + 3);
    api.reconciled();
}
