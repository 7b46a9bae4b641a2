//! A catalog of hostile and malformed requests against a real server (issue 6). Each case is one
//! line: the request and the answer it must get (status, problem `code`, and `field` where the
//! API names one). Around every case the books are read (wallet balances and history lengths,
//! stock, card balances, ledger totals, sales) and must be unchanged: bad input changes nothing
//! (PRODUCT.md §3.5). All cases run and every mismatch is reported at once.

mod http_common;

use http_common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

const WALLET: &str = "w1";
const OTHER_WALLET: &str = "w2";
const SKU: &str = "gc-25";
const PAUSED_SKU: &str = "gc-paused";
const ISSUED_SKU: &str = "store-50";
const BODY_BYTES_MAX: usize = 64 << 10;

/// A request to send.
struct Req {
    method: &'static str,
    path: String,
    key: Option<&'static str>,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
}

impl Req {
    fn content_type(mut self, ct: Option<&'static str>) -> Req {
        self.content_type = ct;
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Req {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn send(&self, api: &Api) -> Res {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(h, v)| (*h, v.as_str())).collect();
        match &self.body {
            Some(b) => api.send_bytes(
                self.method,
                &self.path,
                self.key,
                b,
                self.content_type,
                &headers,
            ),
            None => api.call(self.method, &self.path, self.key, None, &headers),
        }
    }
}

/// What a hostile request must get.
enum Expect {
    /// A problem+json answer: status, code, and the `field` it names (`None`: names none).
    Problem(u16, &'static str, Option<&'static str>),
    /// The replay of an earlier answer (same key, same request): this status, replay header set.
    Replay(u16),
}

fn problem(status: u16, code: &'static str) -> Expect {
    Expect::Problem(status, code, None)
}

fn problem_at(status: u16, code: &'static str, field: &'static str) -> Expect {
    Expect::Problem(status, code, Some(field))
}

fn raw(method: &'static str, path: &str, key: Option<&'static str>, body: &[u8]) -> Req {
    Req {
        method,
        path: path.to_owned(),
        key,
        body: Some(body.to_vec()),
        content_type: Some("application/json"),
        headers: vec![],
    }
}

fn post(path: &str, key: &'static str, body: &str) -> Req {
    raw("POST", path, Some(key), body.as_bytes())
}

fn get(path: &str, key: Option<&'static str>) -> Req {
    Req {
        method: "GET",
        path: path.to_owned(),
        key,
        body: None,
        content_type: None,
        headers: vec![],
    }
}

/// A fresh id per case, so one wrongly accepted case cannot mask the next as a replay.
fn fresh(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A deposit into w1 by its owner, with `amount_minor` and `currency` as raw JSON text.
fn deposit(amount_minor: &str, currency: &str) -> Req {
    let body = format!(
        r#"{{"deposit_id":"{}","amount":{{"amount_minor":{amount_minor},"currency":{currency}}},"reference":"psp"}}"#,
        fresh("dep")
    );
    post(&format!("/v1/wallets/{WALLET}/deposits"), FUNDING, &body)
}

/// An order of one line from w1 by its owner; `quantity` and `region` as given.
fn order(sku: &str, quantity: &str, region: &str) -> Req {
    let body = format!(
        r#"{{"order_id":"{}","wallet_id":"{WALLET}","items":[{{"sku_id":"{sku}","quantity":{quantity}}}],"region":"{region}","delivery":{{"channel":"none"}}}}"#,
        fresh("ord")
    );
    post("/v1/orders", CHECKOUT, &body)
}

/// Unix seconds now, as a header value.
fn now_s() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string()
}

/// A valid order from w1 sent with `key`.
fn order_by(key: &'static str) -> Req {
    post(
        "/v1/orders",
        key,
        &order_body(&fresh("ord"), WALLET, SKU, 1).to_string(),
    )
}

/// An order whose `order_id` and `wallet_id` are the given JSON values (raw text).
fn order_ids(order_id: &str, wallet_id: &str) -> Req {
    let body = format!(
        r#"{{"order_id":{order_id},"wallet_id":{wallet_id},"items":[{{"sku_id":"{SKU}","quantity":1}}],"region":"US","delivery":{{"channel":"none"}}}}"#
    );
    post("/v1/orders", CHECKOUT, &body)
}

fn create_wallet(wallet_id: &str) -> Req {
    post(
        "/v1/wallets",
        CHECKOUT,
        &json!({ "wallet_id": wallet_id }).to_string(),
    )
}

fn redeem(id: &str, code: &str, amount_minor: i64) -> Req {
    let body = json!({"redemption_id": id, "code": code, "amount": {"amount_minor": amount_minor, "currency": "USD"}});
    post("/v1/redemptions", MERCHANT, &body.to_string())
}

/// Everything a request could wrongly change, read as admin.
#[derive(Debug, PartialEq)]
struct Books {
    wallets: Vec<Value>,
    history_lens: Vec<usize>,
    stock: Vec<Value>,
    cards: Vec<Value>,
    /// Each wallet's limits and KYC standing.
    limits: Vec<Value>,
    /// Reconciliation minus its order count: rejected orders are recorded (so a retry gets the
    /// same answer) without touching money or stock.
    reconciliation: Value,
    stats: Value,
}

fn books(api: &Api, card_id: &str) -> Books {
    let read = |path: &str| {
        let r = api.get(path, Some(ADMIN));
        assert_eq!(r.status, 200, "{path}: {r:?}");
        r.body
    };
    // Read as admin, by their stored ids: `{client}~{id}`.
    let wallets = [
        format!("checkout-1~{WALLET}"),
        format!("checkout-2~{OTHER_WALLET}"),
    ];
    let mut reconciliation = read("/v1/admin/reconciliation");
    assert_eq!(reconciliation["ok"], true, "{reconciliation}");
    if let Some(o) = reconciliation.as_object_mut() {
        o.remove("orders");
    }
    Books {
        wallets: wallets
            .iter()
            .map(|w| read(&format!("/v1/wallets/{w}")))
            .collect(),
        history_lens: wallets
            .iter()
            .map(|w| {
                let page = read(&format!("/v1/wallets/{w}/transactions?limit=500"));
                page["transactions"].as_array().map_or(0, Vec::len)
            })
            .collect(),
        stock: [SKU, PAUSED_SKU, ISSUED_SKU]
            .iter()
            .map(|s| read(&format!("/v1/skus/{s}/stock")))
            .collect(),
        cards: vec![read(&format!("/v1/cards/{card_id}"))],
        limits: wallets
            .iter()
            .map(|w| read(&format!("/v1/wallets/{w}/limits")))
            .collect(),
        reconciliation,
        stats: read("/v1/admin/stats"),
    }
}

/// Sends each case with the books read around it; returns every mismatch.
fn run(api: &Api, card_id: &str, cases: Vec<(&str, Req, Expect)>) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, req, expect) in cases {
        let before = books(api, card_id);
        let res = req.send(api);
        let after = books(api, card_id);
        let mut fail = |what: String| failures.push(format!("{name}: {what}\n    got {res:?}"));
        if before != after {
            fail(format!(
                "the books changed:\n    before {before:?}\n    after  {after:?}"
            ));
        }
        match expect {
            Expect::Problem(status, code, field) => {
                let got = (
                    res.status,
                    res.content_type.as_str(),
                    res.body["code"].as_str(),
                    res.body["field"].as_str(),
                );
                let want = (status, "application/problem+json", Some(code), field);
                if got != want {
                    fail(format!("want {want:?}"));
                }
            }
            Expect::Replay(status) => {
                if (res.status, res.replayed) != (status, true) {
                    fail(format!("want a replayed {status}"));
                }
            }
        }
    }
    failures
}

struct Fixture {
    api: Api,
    card_id: String,
    code: String,
    _dir: tempfile::TempDir,
}

/// Two clients' wallets, an active, a paused and an issued SKU; one order, deposit and
/// redemption (reversed) whose keys the cases replay with altered bodies.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config();
    cfg.body_bytes_max = BODY_BYTES_MAX;
    let api = Api::start_with(dir.path(), cfg);
    api.sku(SKU, "supplier_code", 2_500, None);
    api.codes(SKU, "HOSTILE", 5);
    api.sku(PAUSED_SKU, "supplier_code", 1_000, None);
    api.codes(PAUSED_SKU, "PAUSED", 2);
    let paused = json!({"status": "paused"}).to_string();
    let r = api.call(
        "PATCH",
        &format!("/v1/skus/{PAUSED_SKU}"),
        Some(ADMIN),
        Some(&paused),
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
    api.sku(ISSUED_SKU, "issued", 5_000, Some(10));
    api.wallet(CHECKOUT, WALLET, 100_000);
    api.wallet(CHECKOUT2, OTHER_WALLET, 50_000);
    let r = api.order(CHECKOUT, "o-1", WALLET, SKU, 1);
    assert_eq!(r.status, 201, "{r:?}");
    let r = api.order(CHECKOUT, "o-issued", WALLET, ISSUED_SKU, 1);
    assert_eq!(r.status, 201, "{r:?}");
    let card = &r.body["cards"][0];
    let code = card["code"].as_str().expect("code").to_owned();
    let card_id = card["card_id"].as_str().expect("card id").to_owned();
    assert_eq!(api.deposit(CHECKOUT, WALLET, "dep-1", 1_000).status, 201);
    let r = redeem("r-1", &code, 1_000).send(&api);
    assert_eq!(r.status, 201, "{r:?}");
    let r = redeem("r-2", &code, 500).send(&api);
    assert_eq!(r.status, 201, "{r:?}");
    let r = api.post("/v1/redemptions/r-2/reversal", MERCHANT, &json!({}));
    assert_eq!(r.status, 201, "{r:?}");
    Fixture {
        api,
        card_id,
        code,
        _dir: dir,
    }
}

#[test]
fn hostile_requests_get_the_documented_error_and_change_nothing() {
    let fx = fixture();
    let code = fx.code.as_str();
    let dep_path = format!("/v1/wallets/{WALLET}/deposits");
    let lim_path = format!("/v1/wallets/checkout-1~{WALLET}/limits");
    let order_json = |id: &str| {
        json!({"order_id": id, "wallet_id": WALLET, "items": [{"sku_id": SKU, "quantity": 1}],
               "region": "US", "delivery": {"channel": "none"}})
        .to_string()
    };
    let nested =
        |open: &str, close: &str| format!("{}{}", open.repeat(10_000), close.repeat(10_000));
    let amount_field = "amount.amount_minor";
    let qty_field = "items[0].quantity";
    #[rustfmt::skip]
    let cases: Vec<(&str, Req, Expect)> = vec![
        // Amounts: sign, zero, bound, i64 overflow, fractions, strings.
        ("negative amount", deposit("-100", r#""USD""#), problem_at(400, "invalid_amount", amount_field)),
        ("zero amount", deposit("0", r#""USD""#), problem_at(400, "invalid_amount", amount_field)),
        ("amount above the bound", deposit("1000000000001", r#""USD""#), problem_at(400, "invalid_amount", amount_field)),
        ("amount overflowing i64", deposit("9223372036854775808", r#""USD""#), problem_at(400, "invalid_field", amount_field)),
        ("i64::MIN amount", deposit("-9223372036854775808", r#""USD""#), problem_at(400, "invalid_amount", amount_field)),
        ("fractional amount", deposit("25.5", r#""USD""#), problem_at(400, "invalid_field", amount_field)),
        ("exponent amount", deposit("2.5e3", r#""USD""#), problem_at(400, "invalid_field", amount_field)),
        ("amount as a string", deposit(r#""2500""#, r#""USD""#), problem_at(400, "invalid_field", amount_field)),
        ("negative redemption", redeem(&fresh("r"), code, -1), problem_at(400, "invalid_amount", amount_field)),
        // Currencies.
        ("lowercase currency", deposit("100", r#""usd""#), problem_at(400, "invalid_currency", "amount.currency")),
        ("XXX currency", deposit("100", r#""XXX""#), problem_at(400, "invalid_currency", "amount.currency")),
        ("two-letter currency", deposit("100", r#""US""#), problem_at(400, "invalid_currency", "amount.currency")),
        ("currency as a number", deposit("100", "840"), problem_at(400, "invalid_field", "amount.currency")),
        // Quantities.
        ("quantity 0", order(SKU, "0", "US"), problem_at(400, "quantity_out_of_range", qty_field)),
        ("quantity 10,001", order(SKU, "10001", "US"), problem_at(400, "quantity_out_of_range", qty_field)),
        ("negative quantity", order(SKU, "-1", "US"), problem_at(400, "invalid_field", qty_field)),
        ("quantity overflowing u32", order(SKU, "4294967297", "US"), problem_at(400, "invalid_field", qty_field)),
        ("lines summing above 10,000 cards", post("/v1/orders", CHECKOUT, &json!({"order_id": fresh("ord"), "wallet_id": WALLET, "items": [{"sku_id": SKU, "quantity": 5_000}, {"sku_id": SKU, "quantity": 5_001}], "region": "US", "delivery": {"channel": "none"}}).to_string()), problem_at(400, "quantity_out_of_range", "items[1].quantity")),
        // Size and shape of the body.
        ("oversized body", post(&format!("/v1/skus/{SKU}/codes"), SUPPLIER, &json!({"codes": vec!["A".repeat(100); 1_000]}).to_string()), problem(413, "payload_too_large")),
        // The strict decoder stops at the first value of the wrong type, so deep nesting is never
        // walked (and serde_json's recursion limit of 128 stands behind it): a 400 naming where
        // it stopped, in microseconds.
        ("10,000 nested arrays", post("/v1/orders", CHECKOUT, &nested("[", "]")), problem_at(400, "invalid_field", "[0]")),
        ("10,000 nested objects", post("/v1/orders", CHECKOUT, &nested(r#"{"a":"#, "}")), problem_at(400, "invalid_field", "a")),
        ("10,000 nested arrays in a field", post("/v1/orders", CHECKOUT, &format!(r#"{{"order_id":"o","wallet_id":"w","items":{}}}"#, nested("[", "]"))), problem_at(400, "invalid_field", "items[0][0]")),
        // Duplicate keys are refused (serde's derived structs reject a repeated field), so which
        // value wins is never a question. `field` names the object holding the repeated key
        // (none at the top level); the detail names the key.
        ("duplicate amount key", post(&dep_path, FUNDING, &format!(r#"{{"deposit_id":"{}","amount":{{"amount_minor":1,"currency":"USD"}},"amount":{{"amount_minor":900000,"currency":"USD"}},"reference":"psp"}}"#, fresh("dep"))), problem(400, "invalid_field")),
        ("duplicate nested key", post(&dep_path, FUNDING, &format!(r#"{{"deposit_id":"{}","amount":{{"amount_minor":1,"amount_minor":900000,"currency":"USD"}},"reference":"psp"}}"#, fresh("dep"))), problem_at(400, "invalid_field", "amount")),
        ("duplicate wallet_id", post("/v1/orders", CHECKOUT, &format!(r#"{{"order_id":"{}","wallet_id":"{WALLET}","wallet_id":"{OTHER_WALLET}","items":[{{"sku_id":"{SKU}","quantity":1}}],"region":"US","delivery":{{"channel":"none"}}}}"#, fresh("ord"))), problem(400, "invalid_field")),
        ("JSON null body", post("/v1/orders", CHECKOUT, "null"), problem(400, "invalid_field")),
        ("array instead of an object", post("/v1/orders", CHECKOUT, &format!("[{}]", order_json(&fresh("ord")))), problem_at(400, "invalid_field", "[0]")),
        ("null where an object belongs", post(&dep_path, FUNDING, &format!(r#"{{"deposit_id":"{}","amount":null,"reference":"psp"}}"#, fresh("dep"))), problem_at(400, "invalid_field", "amount")),
        ("order as a positional array", post("/v1/orders", CHECKOUT, &format!(r#"["{}","{WALLET}",[["{SKU}",1,null]],"US",null,["none",""]]"#, fresh("ord"))), problem(400, "invalid_field")),
        ("amount as a positional array", post(&dep_path, FUNDING, &format!(r#"{{"deposit_id":"{}","amount":[1000,"USD"],"reference":"psp"}}"#, fresh("dep"))), problem_at(400, "invalid_field", "amount")),
        ("unknown extra field", post(&dep_path, FUNDING, &format!(r#"{{"deposit_id":"{}","amount":{{"amount_minor":1,"currency":"USD"}},"reference":"psp","bonus":1000}}"#, fresh("dep"))), problem_at(400, "invalid_field", "bonus")),
        ("trailing garbage", post(&dep_path, FUNDING, &format!(r#"{{"deposit_id":"{}","amount":{{"amount_minor":1,"currency":"USD"}},"reference":"psp"}} garbage"#, fresh("dep"))), problem(400, "malformed_json")),
        ("a second JSON document", post("/v1/orders", CHECKOUT, &format!("{}{}", order_json(&fresh("ord")), order_json(&fresh("ord")))), problem(400, "malformed_json")),
        ("invalid UTF-8 in a string", raw("POST", &dep_path, Some(FUNDING), &[br#"{"deposit_id":"x","amount":{"amount_minor":1,"currency":"USD"},"reference":"ps"#.as_slice(), b"\xff\xfe", br#""}"#].concat()), problem_at(400, "malformed_json", "reference")),
        ("empty body", post("/v1/orders", CHECKOUT, ""), problem(400, "malformed_json")),
        // Content types.
        ("text/plain body", post("/v1/orders", CHECKOUT, &order_json(&fresh("ord"))).content_type(Some("text/plain")), problem(415, "unsupported_media_type")),
        ("form body", post("/v1/orders", CHECKOUT, &order_json(&fresh("ord"))).content_type(Some("application/x-www-form-urlencoded")), problem(415, "unsupported_media_type")),
        // No declared type is read as JSON, as strictly as ever (raw HTTP clients send none):
        // this zero deposit is refused for its amount, which shows it was parsed.
        ("missing content type", deposit("0", r#""USD""#).content_type(None), problem_at(400, "invalid_amount", amount_field)),
        ("JSON declared as text/json", deposit("1", r#""USD""#).content_type(Some("text/json")), problem(415, "unsupported_media_type")),
        // Tenancy and roles.
        ("order from another client's wallet", post("/v1/orders", CHECKOUT2, &order_json(&fresh("ord"))), problem(404, "wallet_not_found")),
        ("deposit into another client's wallet", post(&dep_path, FUNDING2, &json!({"deposit_id": fresh("dep"), "amount": {"amount_minor": 1, "currency": "USD"}, "reference": "psp"}).to_string()), problem(404, "wallet_not_found")),
        ("read another client's wallet", get(&format!("/v1/wallets/{WALLET}"), Some(CHECKOUT2)), problem(404, "wallet_not_found")),
        ("read another client's history", get(&format!("/v1/wallets/{WALLET}/transactions"), Some(CHECKOUT2)), problem(404, "wallet_not_found")),
        // Wallet ids are each client's own (issue 13): naming another's namespace is refused.
        ("read another client's wallet by its stored id", get(&format!("/v1/wallets/checkout-1~{WALLET}"), Some(CHECKOUT2)), problem_at(400, "invalid_id", "wallet_id")),
        ("order from another client's wallet by its stored id", post("/v1/orders", CHECKOUT2, &order_body(&fresh("ord"), &format!("checkout-1~{WALLET}"), SKU, 1).to_string()), problem_at(400, "invalid_id", "wallet_id")),
        // FX quotes (issue 14): bad asks change nothing; an order names only its client's own.
        ("a quote between one currency and itself", post("/v1/fx/quotes", CHECKOUT, &json!({"quote_id": fresh("q"), "wallet_id": WALLET, "from": "USD", "to": "USD"}).to_string()), problem_at(400, "same_currency", "to")),
        ("a quote held for no time", post("/v1/fx/quotes", CHECKOUT, &json!({"quote_id": fresh("q"), "wallet_id": WALLET, "from": "USD", "to": "EUR", "ttl_ms": 0}).to_string()), problem_at(400, "invalid_ttl", "ttl_ms")),
        ("a quote for another client's wallet", post("/v1/fx/quotes", CHECKOUT2, &json!({"quote_id": fresh("q"), "wallet_id": WALLET, "from": "USD", "to": "EUR"}).to_string()), problem(404, "wallet_not_found")),
        ("a quote for a wallet by another's stored id", post("/v1/fx/quotes", CHECKOUT2, &json!({"quote_id": fresh("q"), "wallet_id": format!("checkout-1~{WALLET}"), "from": "USD", "to": "EUR"}).to_string()), problem_at(400, "invalid_id", "wallet_id")),
        ("an order naming an unknown quote", post("/v1/orders", CHECKOUT, &{ let mut o = order_body(&fresh("ord"), WALLET, SKU, 1); o["fx_quote_id"] = json!("no-such-quote"); o }.to_string()), problem(404, "quote_not_found")),
        // Price lists (issue 14): malformed or below cost, refused with nothing changed.
        ("a price list below cost", raw("PUT", "/v1/admin/price-lists/checkout-1", Some(ADMIN), br#"{"entries":[{"brand":"Acme","discount":"0.5"}]}"#), problem(422, "below_margin_floor")),
        ("a price list whose tiers do not increase", raw("PUT", "/v1/admin/price-lists/checkout-1", Some(ADMIN), br#"{"entries":[{"sku_id":"gc-25","min_quantity":5,"discount":"0.01"},{"sku_id":"gc-25","min_quantity":5,"discount":"0.02"}]}"#), problem_at(400, "invalid_price_list", "entries")),
        ("a price list entry naming nothing", raw("PUT", "/v1/admin/price-lists/checkout-1", Some(ADMIN), br#"{"entries":[{"discount":"0.01"}]}"#), problem_at(400, "invalid_field", "entries[0]")),
        ("a price list tier of no cards", raw("PUT", "/v1/admin/price-lists/checkout-1", Some(ADMIN), br#"{"entries":[{"brand":"Acme","min_quantity":0,"discount":"0.01"}]}"#), problem_at(400, "invalid_field", "entries[0].min_quantity")),
        ("a checkout key sets its own price list", raw("PUT", "/v1/admin/price-lists/checkout-1", Some(CHECKOUT), br#"{"entries":[]}"#), problem(403, "forbidden")),
        // Pricing rules (issue 14): refused with nothing changed.
        ("a pricing rule below cost", raw("PUT", &format!("/v1/skus/{SKU}/pricing"), Some(ADMIN), br#"{"rules":[{"kind":"face_percent","percent":"-0.9"}]}"#), problem(422, "below_margin_floor")),
        ("a promotion that ends before it starts", raw("PUT", &format!("/v1/skus/{SKU}/pricing"), Some(ADMIN), br#"{"rules":[{"kind":"face","from_ms":5,"until_ms":4}]}"#), problem_at(400, "invalid_window", "rules[0].until_ms")),
        ("a fixed price of nothing", raw("PUT", &format!("/v1/skus/{SKU}/pricing"), Some(ADMIN), br#"{"rules":[{"kind":"fixed","amount_minor":0}]}"#), problem_at(400, "invalid_amount", "rules[0].amount_minor")),
        // Margin floors (issue 14).
        ("a margin floor of all the face value", raw("PUT", "/v1/admin/margin-floors", Some(ADMIN), br#"{"floors":[{"brand":"Acme","min_margin":"1"}]}"#), problem_at(400, "invalid_decimal", "floors[0].min_margin")),
        ("a margin floor naming a SKU and a brand", raw("PUT", "/v1/admin/margin-floors", Some(ADMIN), br#"{"floors":[{"sku_id":"a","brand":"Acme","min_margin":"0.01"}]}"#), problem_at(400, "invalid_field", "floors[0]")),
        ("a brand's margin floor given twice", raw("PUT", "/v1/admin/margin-floors", Some(ADMIN), br#"{"floors":[{"brand":"Acme","min_margin":"0.01"},{"brand":"Acme","min_margin":"0.02"}]}"#), problem_at(400, "invalid_field", "floors[1]")),
        ("a checkout key sets margin floors", raw("PUT", "/v1/admin/margin-floors", Some(CHECKOUT), br#"{"floors":[]}"#), problem(403, "forbidden")),
        // Fees, commission tiers and the revenue report (issue 14).
        ("a fee below zero", raw("PUT", "/v1/admin/fees", Some(ADMIN), br#"{"currencies":[{"currency":"USD","order_minor":-1}]}"#), problem_at(400, "invalid_amount", "currencies[0].order_minor")),
        ("a currency's fees given twice", raw("PUT", "/v1/admin/fees", Some(ADMIN), br#"{"currencies":[{"currency":"USD"},{"currency":"USD"}]}"#), problem_at(400, "invalid_field", "currencies[1].currency")),
        ("commission tiers that do not increase", raw("PUT", "/v1/admin/suppliers/supplier-1/commission-tiers", Some(ADMIN), br#"{"tiers":[{"currency":"USD","from_minor":0,"rate":"0.01"},{"currency":"USD","from_minor":0,"rate":"0.02"}]}"#), problem_at(400, "invalid_commission_tiers", "tiers[1].from_minor")),
        ("a commission rate of 1", raw("PUT", "/v1/admin/suppliers/supplier-1/commission-tiers", Some(ADMIN), br#"{"tiers":[{"currency":"USD","from_minor":0,"rate":"1"}]}"#), problem_at(400, "invalid_decimal", "tiers[0].rate")),
        ("a revenue window ending before it starts", get("/v1/admin/reports/revenue?from_ms=10&to_ms=9", Some(ADMIN)), problem_at(400, "invalid_window", "to_ms")),
        ("a revenue report grouped by nothing known", get("/v1/admin/reports/revenue?group_by=planet", Some(ADMIN)), problem_at(400, "invalid_field", "group_by")),
        ("a checkout key reads the revenue report", get("/v1/admin/reports/revenue", Some(CHECKOUT)), problem(403, "forbidden")),
        // Limits and KYC (issue 15).
        ("a single-order limit below zero", raw("PUT", &lim_path, Some(ADMIN), br#"{"order_max":[{"amount_minor":-1,"currency":"USD"}]}"#), problem_at(400, "invalid_amount", "order_max[0].amount_minor")),
        ("a velocity amount of zero", raw("PUT", &lim_path, Some(ADMIN), br#"{"velocity":[{"currency":"USD","window_ms":1000,"max_amount_minor":0}]}"#), problem_at(400, "invalid_amount", "velocity[0].max_amount_minor")),
        ("a velocity window of no time", raw("PUT", &lim_path, Some(ADMIN), br#"{"velocity":[{"currency":"USD","window_ms":0,"max_orders":1}]}"#), problem_at(400, "invalid_field", "velocity[0].window_ms")),
        ("a velocity window longer than a day", raw("PUT", &lim_path, Some(ADMIN), br#"{"velocity":[{"currency":"USD","window_ms":86400001,"max_orders":1}]}"#), problem_at(400, "invalid_field", "velocity[0].window_ms")),
        ("a velocity limit that limits nothing", raw("PUT", &lim_path, Some(ADMIN), br#"{"velocity":[{"currency":"USD","window_ms":1000}]}"#), problem_at(400, "missing_field", "velocity[0].max_orders")),
        ("a velocity limit in an unknown currency", raw("PUT", &lim_path, Some(ADMIN), br#"{"velocity":[{"currency":"XXQ","window_ms":1000,"max_orders":1}]}"#), problem_at(400, "invalid_currency", "velocity[0].currency")),
        ("a single-order limit in an unknown currency", raw("PUT", &lim_path, Some(ADMIN), br#"{"order_max":[{"amount_minor":5,"currency":"ZZZ"}]}"#), problem_at(400, "invalid_currency", "order_max[0].currency")),
        ("a single-order limit given twice", raw("PUT", &lim_path, Some(ADMIN), br#"{"order_max":[{"amount_minor":5,"currency":"USD"},{"amount_minor":6,"currency":"USD"}]}"#), problem_at(400, "invalid_field", "order_max")),
        ("a daily cap of no cards", raw("PUT", &lim_path, Some(ADMIN), br#"{"sku_daily_cards":0}"#), problem_at(400, "invalid_field", "sku_daily_cards")),
        ("a negative daily cap", raw("PUT", &lim_path, Some(ADMIN), br#"{"brand_daily_cards":-3}"#), problem_at(400, "invalid_field", "brand_daily_cards")),
        ("a checkout key reads an order's risk score", raw("GET", "/v1/admin/orders/checkout-1/o-1/risk", Some(CHECKOUT), b""), problem(403, "forbidden")),
        ("a risk score of an order id with a space", raw("GET", "/v1/admin/orders/checkout-1/o%201/risk", Some(ADMIN), b""), problem_at(400, "invalid_id", "order_id")),
        ("a risk score of a client id too long", raw("GET", &format!("/v1/admin/orders/{}/o-1/risk", "c".repeat(65)), Some(ADMIN), b""), problem_at(400, "invalid_id", "client_id")),
        ("a risk score of an order never placed", raw("GET", "/v1/admin/orders/checkout-1/never/risk", Some(ADMIN), b""), problem(404, "risk_not_found")),
        ("a checkout key sets its wallet's limits", raw("PUT", &format!("/v1/wallets/{WALLET}/limits"), Some(CHECKOUT), br#"{}"#), problem(403, "forbidden")),
        ("a checkout key lifts its wallet's limits", raw("POST", &format!("/v1/wallets/{WALLET}/limits/reset"), Some(CHECKOUT), b""), problem(403, "forbidden")),
        ("limits of an unknown wallet", raw("PUT", "/v1/wallets/checkout-1~nobody/limits", Some(ADMIN), br#"{}"#), problem(404, "wallet_not_found")),
        ("a wallet change of nothing", raw("PATCH", &format!("/v1/wallets/checkout-1~{WALLET}"), Some(ADMIN), br#"{}"#), problem_at(400, "missing_field", "frozen")),
        ("a checkout key verifies its own wallet", raw("PATCH", &format!("/v1/wallets/{WALLET}"), Some(CHECKOUT), br#"{"kyc_verified":true}"#), problem(403, "forbidden")),
        ("KYC of an unknown wallet", raw("PATCH", "/v1/wallets/checkout-1~nobody", Some(ADMIN), br#"{"kyc_verified":true}"#), problem(404, "wallet_not_found")),
        ("a client declares its new wallet verified", post("/v1/wallets", CHECKOUT, r#"{"wallet_id":"self-verified","kyc_verified":true}"#), problem(403, "forbidden")),
        ("freeze another client's card", post(&format!("/v1/cards/{}/freeze", fx.card_id), CHECKOUT2, "{}"), problem(404, "card_not_found")),
        ("a merchant freezes a card", post(&format!("/v1/cards/{}/freeze", fx.card_id), MERCHANT, "{}"), problem(403, "forbidden")),
        ("freeze a card of no shard", post("/v1/cards/9223372036854775807/freeze", CHECKOUT, "{}"), problem(404, "card_not_found")),
        ("unfreeze a card id that is not a number", post("/v1/cards/12ab/unfreeze", CHECKOUT, "{}"), problem_at(400, "invalid_id", "card_id")),
        ("resend another client's card", post(&format!("/v1/cards/{}/resend", fx.card_id), CHECKOUT2, "{}"), problem(404, "card_not_found")),
        ("a merchant resends a card", post(&format!("/v1/cards/{}/resend", fx.card_id), MERCHANT, "{}"), problem(403, "forbidden")),
        ("a delivery key resends a card", post(&format!("/v1/cards/{}/resend", fx.card_id), DELIVERY, "{}"), problem(403, "forbidden")),
        ("resend a card of no shard", post("/v1/cards/9223372036854775807/resend", CHECKOUT, "{}"), problem(404, "card_not_found")),
        ("resend a card id that is not a number", post("/v1/cards/-1/resend", CHECKOUT, "{}"), problem_at(400, "invalid_id", "card_id")),
        // Several suppliers behind one SKU (issue 14).
        ("an offer from the SKU's own supplier", raw("PUT", &format!("/v1/skus/{SKU}/suppliers"), Some(ADMIN), br#"{"offers":[{"supplier_id":"supplier-1","wholesale_discount":"0.2"}]}"#), problem(422, "invalid_sourcing")),
        ("a supplier offered twice", raw("PUT", &format!("/v1/skus/{SKU}/suppliers"), Some(ADMIN), br#"{"offers":[{"supplier_id":"s-9","wholesale_discount":"0.2"},{"supplier_id":"s-9","wholesale_discount":"0.1"}]}"#), problem_at(400, "invalid_field", "offers[1].supplier_id")),
        ("an unknown routing", raw("PUT", &format!("/v1/skus/{SKU}/suppliers"), Some(ADMIN), br#"{"routing":"random","offers":[]}"#), problem_at(400, "invalid_field", "routing")),
        // Card expiry and the liability report (issue 15).
        ("an expiry policy on a SKU of supplier codes", raw("PUT", &format!("/v1/skus/{SKU}/expiry"), Some(ADMIN), br#"{"policy":"days_after_issue","days":30}"#), problem(422, "invalid_expiry")),
        ("an expiry of 0 days", raw("PUT", &format!("/v1/skus/{SKU}/expiry"), Some(ADMIN), br#"{"policy":"days_after_issue","days":0}"#), problem_at(400, "invalid_expiry", "days")),
        ("an expiry policy with the other policy's field", raw("PUT", &format!("/v1/skus/{SKU}/expiry"), Some(ADMIN), br#"{"policy":"fixed_date","days":3,"at_ms":99999999999999}"#), problem_at(400, "invalid_field", "days")),
        ("an unknown expiry policy", raw("PUT", &format!("/v1/skus/{SKU}/expiry"), Some(ADMIN), br#"{"policy":"sometimes"}"#), problem_at(400, "invalid_field", "policy")),
        ("an expiry policy by a checkout key", raw("PUT", &format!("/v1/skus/{SKU}/expiry"), Some(CHECKOUT), br#"{"policy":"never"}"#), problem(403, "forbidden")),
        ("the expiry of an unknown SKU", raw("PUT", "/v1/skus/no-such-sku/expiry", Some(ADMIN), br#"{"policy":"never"}"#), problem(404, "sku_not_found")),
        ("a liability report at a non-number", get("/v1/admin/reports/liability?at_ms=-1", Some(ADMIN)), problem_at(400, "invalid_id", "at_ms")),
        // The review queue (issue 15): settling an order that is not waiting, twice, or as
        // someone else changes nothing.
        ("approving an order that is not in review", raw("POST", "/v1/admin/reviews/o-1/approve?client_id=checkout-1", Some(ADMIN), b""), problem(409, "not_in_review")),
        ("rejecting an order that was never placed", raw("POST", "/v1/admin/reviews/no-such-order/reject?client_id=checkout-1", Some(ADMIN), b""), problem(409, "not_in_review")),
        ("approving another client's order id", raw("POST", "/v1/admin/reviews/o-1/approve?client_id=checkout-2", Some(ADMIN), b""), problem(409, "not_in_review")),
        ("approving without naming the client", raw("POST", "/v1/admin/reviews/o-1/approve", Some(ADMIN), b""), problem(400, "invalid_query")),
        ("approving with a traversal client id", raw("POST", "/v1/admin/reviews/o-1/approve?client_id=..%2Fadmin", Some(ADMIN), b""), problem_at(400, "invalid_id", "client_id")),
        ("a checkout key approves its own order", raw("POST", "/v1/admin/reviews/o-1/approve?client_id=checkout-1", Some(CHECKOUT), b""), problem(403, "forbidden")),
        ("a checkout key lists the review queue", get("/v1/admin/reviews", Some(CHECKOUT)), problem(403, "forbidden")),
        // Card cancellation (issue 15): only the buyer or an admin, only an untouched issued card.
        ("cancelling a card something was redeemed from", post(&format!("/v1/cards/{}/cancel", fx.card_id), CHECKOUT, "{}"), problem(422, "card_not_cancellable")),
        ("cancelling another client's card", post(&format!("/v1/cards/{}/cancel", fx.card_id), CHECKOUT2, "{}"), problem(404, "card_not_found")),
        ("a merchant cancels a card", post(&format!("/v1/cards/{}/cancel", fx.card_id), MERCHANT, "{}"), problem(403, "forbidden")),
        ("cancelling a card id that is not a number", post("/v1/cards/abc/cancel", CHECKOUT, "{}"), problem_at(400, "invalid_id", "card_id")),
        ("a review queue of 0 rows", get("/v1/admin/reviews?limit=0", Some(ADMIN)), problem_at(400, "invalid_limit", "limit")),
        ("a review queue of a negative count", get("/v1/admin/reviews?limit=-5", Some(ADMIN)), problem(400, "invalid_query")),
        ("suppliers of an unknown SKU", raw("PUT", "/v1/skus/no-such-sku/suppliers", Some(ADMIN), br#"{"offers":[]}"#), problem(404, "sku_not_found")),
        ("pricing rules of an unknown SKU", raw("PUT", "/v1/skus/no-such-sku/pricing", Some(ADMIN), br#"{"rules":[{"kind":"face"}]}"#), problem(404, "sku_not_found")),
        ("read another client's card", get(&format!("/v1/cards/{}", fx.card_id), Some(CHECKOUT2)), problem(404, "card_not_found")),
        ("supplier uploads to another supplier's SKU", post(&format!("/v1/skus/{SKU}/codes"), SUPPLIER2, r#"{"codes":["EVIL-0001"]}"#), problem(403, "forbidden")),
        ("supplier probes an unknown SKU", post("/v1/skus/nope/codes", SUPPLIER2, r#"{"codes":["EVIL-0001"]}"#), problem(403, "forbidden")),
        ("checkout key reads reconciliation", get("/v1/admin/reconciliation", Some(CHECKOUT)), problem(403, "forbidden")),
        ("checkout key closes a settlement", post("/v1/admin/settlements", CHECKOUT, r#"{"period_id":"p1"}"#), problem(403, "forbidden")),
        ("checkout key defines a SKU", post("/v1/skus", CHECKOUT, "{}"), problem(403, "forbidden")),
        ("no Authorization header", get(&format!("/v1/wallets/{WALLET}"), None), problem(401, "unauthenticated")),
        ("Basic instead of Bearer", get(&format!("/v1/wallets/{WALLET}"), None).header("Authorization", &format!("Basic {CHECKOUT}")), problem(401, "unauthenticated")),
        ("Bearer without a key", get(&format!("/v1/wallets/{WALLET}"), None).header("Authorization", "Bearer "), problem(401, "unauthenticated")),
        ("scheme glued to the key", get(&format!("/v1/wallets/{WALLET}"), None).header("Authorization", &format!("bearer{CHECKOUT}")), problem(401, "unauthenticated")),
        ("oversized key", get(&format!("/v1/wallets/{WALLET}"), None).header("Authorization", &format!("Bearer {}", "k".repeat(10_000))), problem(401, "unauthenticated")),
        ("unauthenticated deposit", raw("POST", &dep_path, None, br#"{"deposit_id":"x","amount":{"amount_minor":1,"currency":"USD"},"reference":"psp"}"#), problem(401, "unauthenticated")),
        // A batch naming one order id twice would answer (and reveal) the same order again.
        ("one order id twice in a batch", post("/v1/orders/batch", CHECKOUT, &format!(r#"{{"orders":[{},{}]}}"#, order_json("dup-1"), order_json("dup-1"))), problem_at(400, "duplicate_order_id", "orders[1].order_id")),
        // One response carries at most one order's worth of cards.
        ("a batch of more cards than one order may buy", post("/v1/orders/batch", CHECKOUT, &json!({"orders": [order_body("big-1", WALLET, SKU, 6_000), order_body("big-2", WALLET, SKU, 6_000)]}).to_string()), problem_at(400, "too_many_cards", "orders")),
        // Conditional SKU changes: an If-Match that is no version of ours, or a stale one.
        ("If-Match without quotes", raw("PATCH", &format!("/v1/skus/{SKU}"), Some(ADMIN), br#"{"brand":"x"}"#).header("If-Match", "v1"), problem_at(400, "invalid_if_match", "If-Match")),
        ("If-Match of a weak tag", raw("PATCH", &format!("/v1/skus/{SKU}"), Some(ADMIN), br#"{"brand":"x"}"#).header("If-Match", "W/\"v1\""), problem_at(400, "invalid_if_match", "If-Match")),
        ("If-Match overflowing u64", raw("PATCH", &format!("/v1/skus/{SKU}"), Some(ADMIN), br#"{"brand":"x"}"#).header("If-Match", "\"v99999999999999999999\""), problem_at(400, "invalid_if_match", "If-Match")),
        ("stale If-Match", raw("PATCH", &format!("/v1/skus/{SKU}"), Some(ADMIN), br#"{"brand":"x"}"#).header("If-Match", "\"v999\""), problem(412, "precondition_failed")),
        // Idempotency keys replayed with altered bodies.
        ("order key with another quantity", order_ids_qty("o-1", 2), problem(409, "idempotency_conflict")),
        ("deposit key with another amount", post(&dep_path, FUNDING, r#"{"deposit_id":"dep-1","amount":{"amount_minor":1001,"currency":"USD"},"reference":"psp-ref"}"#), problem(409, "idempotency_conflict")),
        ("deposit key with another reference", post(&dep_path, FUNDING, r#"{"deposit_id":"dep-1","amount":{"amount_minor":1000,"currency":"USD"},"reference":"other"}"#), problem(409, "idempotency_conflict")),
        ("redemption key with another amount", redeem("r-1", code, 1_001), problem(409, "idempotency_conflict")),
        ("header key disagreeing with the body", post(&dep_path, FUNDING, r#"{"deposit_id":"dep-9","amount":{"amount_minor":1,"currency":"USD"},"reference":"psp"}"#).header("Idempotency-Key", "dep-1"), problem_at(400, "idempotency_key_mismatch", "deposit_id")),
        // Business rules.
        ("redemption above the balance", redeem(&fresh("r"), code, 4_001), problem(422, "insufficient_balance")),
        ("redemption with an unknown code", redeem(&fresh("r"), "NO-SUCH-CODE-0000", 1), problem(404, "card_not_found")),
        ("reversal of a reversal", post("/v1/redemptions/r-2/reversal", MERCHANT, "{}"), Expect::Replay(201)),
        ("reversal of another merchant's redemption", post("/v1/redemptions/r-1/reversal", MERCHANT_OTHER, "{}"), problem(404, "redemption_not_found")),
        // Roles (issue 13): a key does only what its holder needs.
        ("a checkout key creates money", post(&dep_path, CHECKOUT, &format!(r#"{{"deposit_id":"{}","amount":{{"amount_minor":500,"currency":"USD"}},"reference":"psp"}}"#, fresh("dep"))), problem(403, "forbidden")),
        ("a supplier key creates money", post(&dep_path, SUPPLIER, &format!(r#"{{"deposit_id":"{}","amount":{{"amount_minor":500,"currency":"USD"}},"reference":"psp"}}"#, fresh("dep"))), problem(403, "forbidden")),
        ("a deposit above the key's per-call limit", post(&dep_path, FUNDING_SMALL, &format!(r#"{{"deposit_id":"{}","amount":{{"amount_minor":10001,"currency":"USD"}},"reference":"psp"}}"#, fresh("dep"))), problem(422, "limit_exceeded")),
        ("a funding key places an order", order_by(FUNDING), problem(403, "forbidden")),
        ("a funding key reads the wallet", get(&format!("/v1/wallets/{WALLET}"), Some(FUNDING)), problem(403, "forbidden")),
        ("a checkout key redeems", post("/v1/redemptions", CHECKOUT, &json!({"redemption_id": fresh("r"), "code": code, "amount": {"amount_minor": 1, "currency": "USD"}}).to_string()), problem(403, "forbidden")),
        ("a merchant redeems a brand it does not accept", post("/v1/redemptions", MERCHANT_OTHER, &json!({"redemption_id": fresh("r"), "code": code, "amount": {"amount_minor": 1, "currency": "USD"}}).to_string()), problem(404, "card_not_found")),
        ("a merchant looks up a brand it does not accept", post("/v1/cards/balance", MERCHANT_OTHER, &json!({"code": code}).to_string()), problem(404, "card_not_found")),
        ("a merchant places an order", order_by(MERCHANT), problem(403, "forbidden")),
        ("a checkout key reports a delivery", post(&format!("/v1/deliveries/{}/report", fx.card_id), CHECKOUT, &format!(r#"{{"status":"delivered","attempt":1,"token":"{}"}}"#, report_token(&fx.card_id, 1))), problem(403, "forbidden")),
        ("a supplier key reports a delivery", post(&format!("/v1/deliveries/{}/report", fx.card_id), SUPPLIER, &format!(r#"{{"status":"failed","attempt":1,"token":"{}"}}"#, report_token(&fx.card_id, 1))), problem(403, "forbidden")),
        ("a delivery key places an order", order_by(DELIVERY), problem(403, "forbidden")),
        ("a delivery report with a bare card id", post(&format!("/v1/deliveries/{}/report", fx.card_id), DELIVERY, r#"{"status":"delivered"}"#), problem(400, "invalid_field")),
        ("a delivery report with a made-up token", post(&format!("/v1/deliveries/{}/report", fx.card_id), DELIVERY, &format!(r#"{{"status":"delivered","attempt":1,"token":"{}"}}"#, "ab".repeat(32))), problem(403, "forbidden")),
        ("metrics without a key", get("/metrics", None), problem(401, "unauthenticated")),
        // Oracles: another supplier's upload is refused for ownership before any code is
        // compared, so it cannot learn which codes exist.
        ("another supplier uploads known codes", post(&format!("/v1/skus/{SKU}/codes"), SUPPLIER2, r#"{"codes":["HOSTILE-000001","NEW-CODE-0001"]}"#), problem(403, "forbidden")),
        ("another supplier uploads new codes", post(&format!("/v1/skus/{SKU}/codes"), SUPPLIER2, r#"{"codes":["NEW-CODE-0002"]}"#), problem(403, "forbidden")),
        // Gateway deposits: nothing is parsed, let alone credited, before the signature holds.
        ("an unsigned gateway payment", raw("POST", &format!("/v1/gateways/{GATEWAY}/events"), None, format!(r#"{{"type":"payment.succeeded","data":{{"wallet_id":"{WALLET}","amount":{{"amount_minor":500,"currency":"USD"}},"reference":"pi"}}}}"#).as_bytes()).header("webhook-id", "evt-h1").header("webhook-timestamp", "1"), problem(401, "invalid_signature")),
        ("a forged gateway payment", raw("POST", &format!("/v1/gateways/{GATEWAY}/events"), None, format!(r#"{{"type":"payment.succeeded","data":{{"wallet_id":"{WALLET}","amount":{{"amount_minor":500,"currency":"USD"}},"reference":"pi"}}}}"#).as_bytes()).header("webhook-id", "evt-h2").header("webhook-timestamp", &now_s()).header("webhook-signature", "v1,Zm9yZ2VkLXNpZ25hdHVyZS1vZi10aGlydHktdHdvLWI="), problem(401, "invalid_signature")),
        ("garbage to a gateway, unsigned", raw("POST", &format!("/v1/gateways/{GATEWAY}/events"), None, b"{{{").header("webhook-id", "evt-h3").header("webhook-timestamp", &now_s()).header("webhook-signature", "v1,AAAA"), problem(401, "invalid_signature")),
        ("an unknown gateway", raw("POST", "/v1/gateways/no-such-psp/events", None, b"{}"), problem(404, "gateway_not_found")),
        ("metrics with a checkout key", get("/metrics", Some(CHECKOUT)), problem(403, "forbidden")),
        ("a metrics key lists the catalog", get("/v1/skus", Some(METRICS)), problem(403, "forbidden")),
        ("a delivery key reads the FX rates", get("/v1/fx/rates", Some(DELIVERY)), problem(403, "forbidden")),
        ("a funding key reads a SKU's stock", get(&format!("/v1/skus/{SKU}/stock"), Some(FUNDING)), problem(403, "forbidden")),
        ("a merchant reads a SKU", get(&format!("/v1/skus/{SKU}"), Some(MERCHANT)), problem(403, "forbidden")),
        ("a metrics key reads a wallet", get(&format!("/v1/wallets/{WALLET}"), Some(METRICS)), problem(403, "forbidden")),
        ("order for a paused SKU", order(PAUSED_SKU, "1", "US"), problem(422, "sku_unavailable")),
        ("order from a disallowed region", order(SKU, "1", "FR"), problem(422, "region_not_allowed")),
        // The engine answers an unknown SKU in an order like a paused one (GET /v1/skus/{id} is
        // the place that says 404 sku_not_found).
        ("order for an unknown SKU", order("no-such-sku", "1", "US"), problem(422, "sku_unavailable")),
        // Ids: Unicode tricks, traversal, length, encodings.
        ("RTL override in an id", order_ids(&json!(format!("o-1\u{202e}")).to_string(), &json!(WALLET).to_string()), problem_at(400, "invalid_id", "order_id")),
        ("zero-width joiner in an id", order_ids(&json!(fresh("ord")).to_string(), &json!("w\u{200d}1").to_string()), problem_at(400, "invalid_id", "wallet_id")),
        ("Cyrillic homoglyph in an id", order_ids(&json!(fresh("ord")).to_string(), &json!("w\u{0430}1").to_string()), problem_at(400, "invalid_id", "wallet_id")),
        ("NUL byte in an id", order_ids(&json!(format!("{}\u{0}", fresh("ord"))).to_string(), &json!(WALLET).to_string()), problem_at(400, "invalid_id", "order_id")),
        ("path traversal in an id", create_wallet("../../admin"), problem_at(400, "invalid_id", "wallet_id")),
        ("65-character id", create_wallet(&"w".repeat(65)), problem_at(400, "invalid_id", "wallet_id")),
        ("empty id", create_wallet(""), problem_at(400, "invalid_id", "wallet_id")),
        ("id as a number", order_ids("12345", &json!(WALLET).to_string()), problem_at(400, "invalid_field", "order_id")),
        ("Cyrillic homoglyph in a path id", get("/v1/wallets/w%D0%B01", Some(CHECKOUT)), problem_at(400, "invalid_id", "wallet_id")),
        ("RTL override in a path id", get("/v1/wallets/w1%E2%80%AE", Some(CHECKOUT)), problem_at(400, "invalid_id", "wallet_id")),
        ("NUL byte in a path id", get("/v1/wallets/w1%00", Some(CHECKOUT)), problem_at(400, "invalid_id", "wallet_id")),
        ("percent-encoded slash in a path id", get(&format!("/v1/wallets/{WALLET}%2Ftransactions"), Some(CHECKOUT)), problem_at(400, "invalid_id", "wallet_id")),
        ("encoded traversal in a path id", post("/v1/skus/..%2F..%2Fadmin/codes", SUPPLIER, r#"{"codes":["EVIL-0001"]}"#), problem_at(400, "invalid_id", "sku_id")),
        ("65-character path id", get(&format!("/v1/orders/{}", "o".repeat(65)), Some(CHECKOUT)), problem_at(400, "invalid_id", "order_id")),
        ("empty path id", get("/v1/wallets/", Some(CHECKOUT)), problem(404, "not_found")),
        ("traversal in the Idempotency-Key", post(&dep_path, FUNDING, r#"{"amount":{"amount_minor":1,"currency":"USD"},"reference":"psp"}"#).header("Idempotency-Key", "../dep-1"), problem_at(400, "invalid_id", "deposit_id")),
    ];
    let count = cases.len();
    assert!(count >= 40, "the catalog has {count} cases");
    let failures = run(&fx.api, &fx.card_id, cases);
    assert!(
        failures.is_empty(),
        "{} of {count} hostile cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    fx.api.reconciled();
}

/// The order o-1 of the fixture (1 × gc-25 from w1) with another quantity.
fn order_ids_qty(order_id: &str, quantity: u32) -> Req {
    post(
        "/v1/orders",
        CHECKOUT,
        &order_body(order_id, WALLET, SKU, quantity).to_string(),
    )
}

/// Guessing codes through balance inquiry: unknown codes all get the same 404, the client runs
/// out of attempts, and from then on even a real code gets 429, so nothing tells which exist.
#[test]
fn code_enumeration_is_rate_limited_and_reveals_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config();
    cfg.lookup_per_client_burst = 30;
    cfg.lookup_per_client_per_s = 1;
    let api = Api::start_with(dir.path(), cfg);
    api.sku(ISSUED_SKU, "issued", 5_000, Some(10));
    api.wallet(CHECKOUT, WALLET, 10_000);
    let r = api.order(CHECKOUT, "o-issued", WALLET, ISSUED_SKU, 1);
    assert_eq!(r.status, 201, "{r:?}");
    let real = r.body["cards"][0]["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let card_id = r.body["cards"][0]["card_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let balance =
        |key: &str, code: &str| api.post("/v1/cards/balance", key, &json!({ "code": code }));
    let before = api.get(&format!("/v1/cards/{card_id}"), Some(ADMIN)).body;

    // Every guess has its own prefix, so only the per-client limit can stop it.
    let mut not_found = Vec::new();
    let mut limited = 0;
    for i in 0..60 {
        let r = balance(CHECKOUT2, &format!("{i:04}-GUESS-{i:08}"));
        match r.status {
            404 => not_found.push(r.problem(404, "card_not_found").body.clone()),
            429 => {
                r.problem(429, "rate_limited");
                assert!(r.retry_after.is_some(), "{r:?}");
                limited += 1;
            }
            _ => panic!("guess {i}: {r:?}"),
        }
        assert!(!r.text.contains("GUESS"), "the code is never echoed: {r:?}");
    }
    assert!(
        (25..=35).contains(&not_found.len()),
        "{} guesses answered",
        not_found.len()
    );
    assert_eq!(limited, 60 - not_found.len());
    assert!(
        not_found.windows(2).all(|w| w[0] == w[1]),
        "every unknown code gets the same answer"
    );
    // The guesser's real hit is refused the same way as its misses.
    balance(CHECKOUT2, &real).problem(429, "rate_limited");
    // Other clients are not locked out by one client's guessing.
    assert_eq!(balance(CHECKOUT, &real).status, 200);
    assert_eq!(
        api.get(&format!("/v1/cards/{card_id}"), Some(ADMIN)).body,
        before
    );
    api.reconciled();
}
