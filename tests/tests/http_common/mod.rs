//! Black-box harness for the HTTP tests: a real server on a free loopback port (in-process, its
//! own actix system and engine on a temporary directory) and a small blocking client.
#![allow(dead_code)]

use giftcard_http::{hash_api_key, ApiKeyConfig, GatewayConfig, HttpConfig, Role, Server};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

pub const ADMIN: &str = "test-admin-key";
pub const CHECKOUT: &str = "test-checkout-1-key";
pub const CHECKOUT2: &str = "test-checkout-2-key";
pub const SUPPLIER: &str = "test-supplier-1-key";
pub const SUPPLIER2: &str = "test-supplier-2-key";
/// checkout-1's and checkout-2's payment services: the only keys (besides admin) that deposit.
pub const FUNDING: &str = "test-funding-1-key";
pub const FUNDING2: &str = "test-funding-2-key";
/// A merchant accepting every brand, and one accepting only `Other` (test SKUs are all `Acme`).
pub const MERCHANT: &str = "test-merchant-1-key";
pub const MERCHANT_OTHER: &str = "test-merchant-other-key";
/// checkout-1's payment service with a small per-call limit: 10,000 minor units.
pub const FUNDING_SMALL: &str = "test-funding-small-key";
pub const DELIVERY: &str = "test-delivery-key";
pub const METRICS: &str = "test-metrics-key";

/// The keys every test server knows.
pub fn keys() -> Vec<ApiKeyConfig> {
    let k = |key: &str, client: &str, role| ApiKeyConfig::new(hash_api_key(key), client, role);
    let merchant = |key: &str, client: &str, brand: &str| ApiKeyConfig {
        brands: vec![brand.into()],
        ..k(key, client, Role::Merchant)
    };
    vec![
        k(ADMIN, "admin", Role::Admin),
        k(CHECKOUT, "checkout-1", Role::Checkout),
        k(CHECKOUT2, "checkout-2", Role::Checkout),
        k(SUPPLIER, "supplier-1", Role::Supplier),
        k(SUPPLIER2, "supplier-2", Role::Supplier),
        k(FUNDING, "checkout-1", Role::Funding),
        k(FUNDING2, "checkout-2", Role::Funding),
        merchant(MERCHANT, "merchant-1", "*"),
        merchant(MERCHANT_OTHER, "merchant-other", "Other"),
        ApiKeyConfig {
            deposit_max_minor: Some(10_000),
            ..k(FUNDING_SMALL, "checkout-1", Role::Funding)
        },
        k(DELIVERY, "delivery", Role::Delivery),
        k(METRICS, "prometheus", Role::Metrics),
    ]
}

/// The report token a delivery event would carry for `card`'s `attempt` under the test
/// engine's keys (the development keys of `EngineConfig::new`); tests without NATS have no
/// delivery events to read it from.
pub fn report_token(card: &str, attempt: u8) -> String {
    round_token(card, 0, attempt)
}

/// The same for an attempt of a later round (a resend) of the card's delivery.
pub fn round_token(card: &str, round: u8, attempt: u8) -> String {
    let cfg = giftcard_shard::EngineConfig::new(Path::new("unused"), 1);
    let vault = giftcard_shard::codes::CodeVault::new(cfg.seal_key, cfg.hash_key);
    vault.report_token(card.parse().expect("a card id"), round, attempt)
}

/// The funding key of a checkout key's tenant (admin funds as admin).
pub fn funding_of(key: &str) -> &'static str {
    match key {
        CHECKOUT => FUNDING,
        CHECKOUT2 => FUNDING2,
        ADMIN => ADMIN,
        other => panic!("no funding key for {other}"),
    }
}

/// A test configuration on a free port.
pub fn config() -> HttpConfig {
    let mut cfg = HttpConfig::new("127.0.0.1:0", keys());
    cfg.gateways = vec![GatewayConfig {
        name: GATEWAY.into(),
        client: "checkout-1".into(),
        secrets: vec![GATEWAY_SECRET.into(), GATEWAY_OLD_SECRET.into()],
        tolerance_s: 300,
        deposit_max_minor: Some(50_000),
        deposits_per_day_max_minor: Some(100_000),
        deposit_currencies: vec!["USD".into()],
    }];
    cfg
}

/// The payment gateway every test server knows: it funds checkout-1's wallets, up to 50,000
/// minor units a payment and 100,000 a day, and is rotating its secret (both sign valid messages).
pub const GATEWAY: &str = "psp-test";
pub const GATEWAY_SECRET: &str = "whsec_dGVzdC1nYXRld2F5LXNlY3JldC1udW1iZXItdHdv";
pub const GATEWAY_OLD_SECRET: &str = "whsec_dGVzdC1nYXRld2F5LXNlY3JldC1udW1iZXItb25l";

/// A running server and a client for it.
pub struct Api {
    pub base: String,
    server: Option<Server>,
    agent: ureq::Agent,
}

/// A response: status, JSON body (Null when not JSON), content type, headers of interest.
#[derive(Debug)]
pub struct Res {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub replayed: bool,
    pub etag: Option<String>,
    pub cache_control: Option<String>,
    pub text: String,
}

impl Res {
    /// Asserts an RFC 9457 problem with this status and code.
    pub fn problem(&self, status: u16, code: &str) -> &Res {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        assert_eq!(self.body["code"], code, "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
        assert!(
            self.body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with(code)),
            "{self:?}"
        );
        assert!(
            self.body["title"].is_string() && self.body["detail"].is_string(),
            "{self:?}"
        );
        self
    }
}

impl Api {
    /// Starts a server on `dir` with 2 shards and waits until it is ready.
    pub fn start(dir: &Path) -> Api {
        Api::start_with(dir, config())
    }

    pub fn start_with(dir: &Path, cfg: HttpConfig) -> Api {
        Api::start_engine(cfg, giftcard_shard::EngineConfig::new(dir, 2))
    }

    /// Starts a server with this engine configuration and waits until it is ready.
    pub fn start_engine(cfg: HttpConfig, engine: giftcard_shard::EngineConfig) -> Api {
        let server = giftcard_http::start(cfg, engine).expect("server starts");
        let api = Api::connect(server);
        api.wait_ready();
        api
    }

    /// A client for a started server (not waiting for readiness).
    pub fn connect(server: Server) -> Api {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .max_idle_connections_per_host(64)
            .build();
        Api {
            base: format!("http://{}", server.addr),
            server: Some(server),
            agent,
        }
    }

    pub fn wait_ready(&self) {
        let started = Instant::now();
        while self.get("/readyz", None).status != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server never became ready"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops gracefully (drain, journal flush) and waits.
    pub fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().expect("server stops cleanly");
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Res {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        for (h, v) in headers {
            req = req.set(h, v);
        }
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        let res = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = res.status();
        let content_type = res.header("content-type").unwrap_or("").to_owned();
        let retry_after = res.header("retry-after").map(str::to_owned);
        let replayed = res.header("idempotent-replayed") == Some("true");
        let etag = res.header("etag").map(str::to_owned);
        let cache_control = res.header("cache-control").map(str::to_owned);
        let text = res.into_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Res {
            status,
            body,
            content_type,
            retry_after,
            replayed,
            etag,
            cache_control,
            text,
        }
    }

    /// Sends raw body bytes with the given Content-Type (none when `None`): for bodies that are
    /// not valid UTF-8 or not JSON, which [`Api::call`] cannot send.
    pub fn send_bytes(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: &[u8],
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Res {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        if let Some(ct) = content_type {
            req = req.set("Content-Type", ct);
        }
        for (h, v) in headers {
            req = req.set(h, v);
        }
        let res = match req.send_bytes(body) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = res.status();
        let content_type = res.header("content-type").unwrap_or("").to_owned();
        let retry_after = res.header("retry-after").map(str::to_owned);
        let replayed = res.header("idempotent-replayed") == Some("true");
        let etag = res.header("etag").map(str::to_owned);
        let cache_control = res.header("cache-control").map(str::to_owned);
        let text = res.into_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Res {
            status,
            body,
            content_type,
            retry_after,
            replayed,
            etag,
            cache_control,
            text,
        }
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> Res {
        self.call("GET", path, key, None, &[])
    }

    pub fn post(&self, path: &str, key: &str, body: &Value) -> Res {
        self.call("POST", path, Some(key), Some(&body.to_string()), &[])
    }

    pub fn post_raw(&self, path: &str, key: &str, body: &str) -> Res {
        self.call("POST", path, Some(key), Some(body), &[])
    }

    // ---- scenario steps ----

    /// Defines a fixed-denomination USD SKU of supplier-1.
    pub fn sku(&self, id: &str, kind: &str, face_minor: i64, issue_cap: Option<u64>) {
        let body = json!({
            "sku_id": id, "brand": "Acme", "category": "retail", "kind": kind,
            "face_value": {"fixed": {"amount_minor": face_minor, "currency": "USD"}},
            "wholesale_discount": "0.15", "supplier_id": "supplier-1", "regions": ["US"], "issue_cap": issue_cap,
        });
        assert_eq!(self.post("/v1/skus", ADMIN, &body).status, 201);
    }

    /// Uploads `n` codes named after `prefix` as supplier-1.
    pub fn codes(&self, sku: &str, prefix: &str, n: usize) {
        let codes: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:06}")).collect();
        let r = self.post(
            &format!("/v1/skus/{sku}/codes"),
            SUPPLIER,
            &json!({ "codes": codes }),
        );
        assert_eq!(r.status, 201, "{r:?}");
    }

    /// Creates a wallet for `key`'s client and deposits `minor` USD.
    pub fn wallet(&self, key: &str, id: &str, minor: i64) {
        let r = self.post("/v1/wallets", key, &json!({ "wallet_id": id }));
        assert_eq!(r.status, 201, "{r:?}");
        let r = self.deposit(key, id, "initial", minor);
        assert_eq!(r.status, 201, "{r:?}");
    }

    /// A deposit by the payment service of `key`'s tenant (`key` is its checkout key).
    pub fn deposit(&self, key: &str, wallet: &str, id: &str, minor: i64) -> Res {
        let body = json!({ "deposit_id": id, "amount": {"amount_minor": minor, "currency": "USD"}, "reference": "psp-ref" });
        self.post(
            &format!("/v1/wallets/{wallet}/deposits"),
            funding_of(key),
            &body,
        )
    }

    pub fn order(&self, key: &str, order_id: &str, wallet: &str, sku: &str, qty: u32) -> Res {
        self.post("/v1/orders", key, &order_body(order_id, wallet, sku, qty))
    }

    /// (available, held) USD of a wallet, read as admin: a wallet of checkout-1 (the tests'
    /// usual tenant) by its own id, any other by its stored id `{client}~{id}`.
    pub fn balance(&self, wallet: &str) -> (i64, i64) {
        let stored = if wallet.contains('~') {
            wallet.to_owned()
        } else {
            format!("checkout-1~{wallet}")
        };
        let r = self.get(&format!("/v1/wallets/{stored}"), Some(ADMIN));
        assert_eq!(r.status, 200, "{r:?}");
        let usd = r.body["balances"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["currency"] == "USD").cloned());
        usd.map_or((0, 0), |b| {
            (
                b["available"]["amount_minor"].as_i64().unwrap_or(0),
                b["held"]["amount_minor"].as_i64().unwrap_or(0),
            )
        })
    }

    /// (available, sold) codes of a SKU.
    pub fn stock(&self, sku: &str) -> (u64, u64) {
        let r = self.get(&format!("/v1/skus/{sku}/stock"), Some(ADMIN));
        assert_eq!(r.status, 200, "{r:?}");
        (
            r.body["available"].as_u64().unwrap_or(0),
            r.body["sold"].as_u64().unwrap_or(0),
        )
    }

    /// Asserts the live reconciliation holds.
    pub fn reconciled(&self) {
        let r = self.get("/v1/admin/reconciliation", Some(ADMIN));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["ok"], true, "{r:?}");
        for l in r.body["ledger"].as_array().cloned().unwrap_or_default() {
            assert_eq!(l["sum_minor"], 0, "ledger sums to zero per currency: {l}");
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.stop();
        }
    }
}

pub fn order_body(order_id: &str, wallet: &str, sku: &str, qty: u32) -> Value {
    json!({
        "order_id": order_id, "wallet_id": wallet, "items": [{"sku_id": sku, "quantity": qty}],
        "region": "US", "delivery": {"channel": "email", "recipient": "buyer@example.com"},
    })
}
