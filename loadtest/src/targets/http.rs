//! The engine over its HTTP API, through a fixed set of keep-alive HTTP/1.1 connections.
//! Requests queue for a connection the way they would behind any real client pool, and that
//! queueing is part of the latency the tool reports (it is measured from the intended send time).

use super::{Books, Outcome, TargetOpts};
use crate::plan::{Op, Scale};
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

const ADMIN_KEY: &str = "dev-admin-key";
const CHECKOUT_KEY: &str = "dev-checkout-key";
/// The client of `CHECKOUT_KEY`: an admin names its wallets `{client}~{id}`.
const CHECKOUT_CLIENT: &str = "checkout-1";
/// Redemptions and balance inquiries are a merchant's (the dev merchant accepts every brand).
const MERCHANT_KEY: &str = "dev-merchant-key";
/// A request that takes longer than this counts as failed with an unknown effect.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection idle longer than this is replaced before use (servers close idle keep-alive
/// connections after a few seconds; actix-web's default is 5 s).
const IDLE_REUSE_MAX: Duration = Duration::from_secs(2);
/// Set-up requests in flight at once.
const SETUP_CONCURRENCY: usize = 64;
/// Codes per upload request (the API takes at most 50,000).
const CODES_PER_UPLOAD: u64 = 20_000;
const ISSUED_SKUS: u32 = 10;

/// A keep-alive connection and when it was last used.
type Conn = (SendRequest<Full<Bytes>>, Instant);

struct Inner {
    authority: String,
    conns: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
    run: String,
    cards: OnceLock<Vec<String>>,
}

/// The engine behind `http://HOST:PORT`.
#[derive(Clone)]
pub struct Http(Arc<Inner>);

/// An answer: status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

#[derive(Deserialize)]
struct OrderView {
    status: String,
    reason: Option<String>,
    #[serde(default)]
    cards: Vec<CardView>,
}

#[derive(Deserialize)]
struct CardView {
    code: String,
}

#[derive(Deserialize)]
struct Problem {
    code: Option<String>,
}

#[derive(Deserialize)]
struct Reconciliation {
    ok: bool,
    violations: Vec<String>,
    orders: u64,
    cards: u64,
    ledger: Vec<LedgerCurrency>,
}

#[derive(Deserialize)]
struct LedgerCurrency {
    currency: String,
    sum_minor: i64,
}

impl Http {
    pub async fn open(url: &str, opts: &TargetOpts) -> Result<Http> {
        let authority = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        if authority.is_empty() || authority.contains('/') {
            bail!("an HTTP target is http://HOST:PORT with no path, got {url:?}");
        }
        let conns = (0..opts.connections.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        let http = Http(Arc::new(Inner {
            authority,
            conns,
            next: AtomicUsize::new(0),
            run: opts.run_id.clone(),
            cards: OnceLock::new(),
        }));
        let ready = http
            .call(Method::GET, "/readyz", "", None)
            .await
            .with_context(|| format!("reaching {url}"))?;
        if ready.status != StatusCode::OK {
            bail!("{url}/readyz answered {}", ready.status);
        }
        Ok(http)
    }

    pub fn describe(&self) -> String {
        format!(
            "engine over HTTP/1.1 at {}, {} keep-alive connections",
            self.0.authority,
            self.0.conns.len()
        )
    }

    pub(super) fn id(&self, what: &str, n: impl std::fmt::Display) -> String {
        format!("lt{}-{what}-{n}", self.0.run)
    }

    /// Sends one request on the next connection in turn, (re)connecting it when needed.
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Result<Answer> {
        let slot = self.0.next.fetch_add(1, Ordering::Relaxed) % self.0.conns.len();
        let mut conn = self.0.conns[slot].lock().await;
        // A connection idle for long may be closed by the server's keep-alive timer just as we
        // write to it, and then whether the server read the order is unknown: open a fresh one.
        let reuse = matches!(conn.as_ref(), Some((s, used)) if !s.is_closed() && used.elapsed() < IDLE_REUSE_MAX);
        if !reuse {
            *conn = Some((self.connect().await?, Instant::now()));
        }
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.0.authority);
        if !key.is_empty() {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(&v)?))
            }
            None => Full::new(Bytes::new()),
        };
        let mut req = req.body(body)?;
        let mut fresh_tried = !reuse;
        let resp = loop {
            let Some((send, used)) = conn.as_mut() else {
                bail!("no connection");
            };
            *used = Instant::now();
            let sent = match send.ready().await {
                Ok(()) => send.try_send_request(req).await,
                Err(e) => {
                    *conn = None;
                    return Err(e.into());
                }
            };
            match sent {
                Ok(r) => break r,
                Err(mut e) => {
                    *conn = None;
                    // Not written to the socket at all: safe to send again, once, elsewhere.
                    match e.take_message() {
                        Some(back) if !fresh_tried => {
                            req = back;
                            fresh_tried = true;
                            *conn = Some((self.connect().await?, Instant::now()));
                        }
                        _ => return Err(e.into_error().into()),
                    }
                }
            }
        };
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.0.authority)
            .await
            .with_context(|| format!("connecting to {}", self.0.authority))?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(send)
    }

    async fn timed(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Value,
    ) -> Result<Answer, Outcome> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.call(method, path, key, Some(body))).await
        {
            Err(_) => Err(Outcome::Failed("timeout".into())),
            Ok(Err(_)) => Err(Outcome::Failed("connection".into())),
            Ok(Ok(a)) => Ok(a),
        }
    }

    pub async fn exec(&self, op: &Op) -> Outcome {
        let (path, body) = match *op {
            Op::Order {
                order_no,
                wallet,
                sku,
                quantity,
            } => (
                "/v1/orders",
                self.order_body(&self.id("o", order_no), wallet, sku, quantity),
            ),
            Op::Redeem {
                redemption_no,
                card,
                amount_minor,
            } => {
                let Some(code) = self.card(card) else {
                    return Outcome::Failed("no_cards_loaded".into());
                };
                let body = json!({"redemption_id": self.id("r", redemption_no), "code": code, "amount": usd(amount_minor)});
                ("/v1/redemptions", body)
            }
            Op::Balance { card } => {
                let Some(code) = self.card(card) else {
                    return Outcome::Failed("no_cards_loaded".into());
                };
                ("/v1/cards/balance", json!({"code": code}))
            }
        };
        let key = match op {
            Op::Redeem { .. } | Op::Balance { .. } => MERCHANT_KEY,
            _ => CHECKOUT_KEY,
        };
        match self.timed(Method::POST, path, key, body).await {
            Ok(a) => classify(op, &a),
            Err(o) => o,
        }
    }

    pub(super) fn order_body(&self, order_id: &str, wallet: u32, sku: u32, quantity: u32) -> Value {
        json!({
            "order_id": order_id,
            "wallet_id": self.id("w", wallet),
            "items": [{"sku_id": self.id("s", sku), "quantity": quantity}],
            "region": "US",
            "delivery": {"channel": "none"},
        })
    }

    fn card(&self, i: u32) -> Option<&str> {
        let cards = self.0.cards.get()?;
        cards
            .get(i as usize % cards.len().max(1))
            .map(String::as_str)
    }

    pub async fn lookup(&self, order_no: u64) -> Result<Option<Outcome>> {
        let a = self
            .call(
                Method::GET,
                &format!("/v1/orders/{}", self.id("o", order_no)),
                CHECKOUT_KEY,
                None,
            )
            .await?;
        match a.status.as_u16() {
            404 => Ok(None),
            200 => Ok(Some(classify(
                &Op::Order {
                    order_no,
                    wallet: 0,
                    sku: 0,
                    quantity: 0,
                },
                &a,
            ))),
            s => bail!(
                "GET /v1/orders answered {s}: {}",
                String::from_utf8_lossy(&a.body)
            ),
        }
    }

    pub async fn books(&self) -> Result<Books> {
        let a = self
            .call(Method::GET, "/v1/admin/reconciliation", ADMIN_KEY, None)
            .await?;
        if a.status != StatusCode::OK {
            bail!(
                "/v1/admin/reconciliation answered {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        let r: Reconciliation =
            serde_json::from_slice(&a.body).context("reading the reconciliation report")?;
        let mut violations = r.violations;
        if !r.ok && violations.is_empty() {
            violations.push("the engine reports ok=false".into());
        }
        for l in r.ledger.iter().filter(|l| l.sum_minor != 0) {
            violations.push(format!("ledger in {} sums to {}", l.currency, l.sum_minor));
        }
        Ok(Books {
            orders: r.orders,
            cards: r.cards,
            violations,
        })
    }

    pub async fn setup(&self, scale: &Scale) -> Result<()> {
        for sku in 0..scale.skus {
            self.expect_created(
                Method::POST,
                "/v1/skus",
                ADMIN_KEY,
                self.sku_body(sku, "supplier_code", "0.15", "supplier-1"),
            )
            .await?;
        }
        self.upload_codes(scale).await?;
        let wallets: Vec<u32> = (0..scale.wallets).collect();
        let deposit = scale.deposit_minor;
        self.each(&wallets, move |h, w| async move {
            h.expect_created(
                Method::POST,
                "/v1/wallets",
                CHECKOUT_KEY,
                json!({"wallet_id": h.id("w", w), "kyc_verified": false}),
            )
            .await?;
            let path = format!("/v1/wallets/{CHECKOUT_CLIENT}~{}/deposits", h.id("w", w));
            let body =
                json!({"deposit_id": "initial", "amount": usd(deposit), "reference": "loadtest"});
            // Setup funds as admin: the dev funding key's per-call limit is below a big scale's.
            h.expect_created(Method::POST, &path, ADMIN_KEY, body).await
        })
        .await?;
        if scale.cards > 0 {
            self.buy_cards(scale).await?;
        }
        Ok(())
    }

    fn sku_body(&self, sku: u32, kind: &str, discount: &str, supplier: &str) -> Value {
        json!({
            "sku_id": self.id("s", sku), "brand": format!("brand-{}", sku % 50), "category": "retail", "kind": kind,
            "face_value": {"fixed": usd(2_500)}, "wholesale_discount": discount, "supplier_id": supplier,
        })
    }

    async fn upload_codes(&self, scale: &Scale) -> Result<()> {
        let mut chunks = Vec::new();
        for sku in 0..scale.skus {
            let n = scale.codes_of(sku);
            chunks.extend(
                (0..n)
                    .step_by(CODES_PER_UPLOAD as usize)
                    .map(|start| (sku, start, (start + CODES_PER_UPLOAD).min(n))),
            );
        }
        // Uploads are big bodies: a few at a time is as fast and kinder to the server.
        self.each_limited(&chunks, 4, |h, (sku, start, end)| async move {
            let codes: Vec<String> = (start..end)
                .map(|c| format!("LT{}-{sku:05}-{c:09}", h.0.run))
                .collect();
            h.expect_created(
                Method::POST,
                &format!("/v1/skus/{}/codes", h.id("s", sku)),
                ADMIN_KEY,
                json!({"codes": codes}),
            )
            .await
        })
        .await
    }

    async fn buy_cards(&self, scale: &Scale) -> Result<()> {
        for i in 0..ISSUED_SKUS {
            let body = self.sku_body(1_000_000 + i, "issued", "0", "platform");
            self.expect_created(Method::POST, "/v1/skus", ADMIN_KEY, body)
                .await?;
        }
        let per_order = 100u32;
        let orders: Vec<u32> = (0..scale.cards.div_ceil(per_order)).collect();
        let codes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let wallets = scale.wallets.max(1);
        self.each(&orders, |h, n| {
            let codes = codes.clone();
            async move {
                let body = h.order_body(
                    &h.id("setup", n),
                    n % wallets,
                    1_000_000 + n % ISSUED_SKUS,
                    per_order,
                );
                let a = h
                    .call(Method::POST, "/v1/orders", CHECKOUT_KEY, Some(body))
                    .await?;
                let view: OrderView = serde_json::from_slice(&a.body)
                    .with_context(|| format!("set-up order answered {}", a.status))?;
                if view.status != "completed" {
                    bail!(
                        "a set-up order of issued cards was {}: {:?}",
                        view.status,
                        view.reason
                    );
                }
                codes
                    .lock()
                    .map_err(|_| anyhow!("poisoned"))?
                    .extend(view.cards.into_iter().map(|c| c.code));
                Ok(())
            }
        })
        .await?;
        let codes = std::mem::take(&mut *codes.lock().map_err(|_| anyhow!("poisoned"))?);
        self.0
            .cards
            .set(codes)
            .map_err(|_| anyhow!("set-up ran twice"))
    }

    async fn expect_created(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Value,
    ) -> Result<()> {
        let a = self.call(method, path, key, Some(body)).await?;
        if !a.status.is_success() {
            bail!(
                "{path} answered {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        Ok(())
    }

    async fn each<T, F, Fut>(&self, items: &[T], f: F) -> Result<()>
    where
        T: Copy + Send + 'static,
        F: Fn(Http, T) -> Fut,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        self.each_limited(items, SETUP_CONCURRENCY, f).await
    }

    async fn each_limited<T, F, Fut>(&self, items: &[T], limit: usize, f: F) -> Result<()>
    where
        T: Copy + Send + 'static,
        F: Fn(Http, T) -> Fut,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let gate = Arc::new(Semaphore::new(limit));
        let mut tasks = tokio::task::JoinSet::new();
        for &item in items {
            let permit = gate.clone().acquire_owned().await?;
            let fut = f(self.clone(), item);
            tasks.spawn(async move {
                let r = fut.await;
                drop(permit);
                r
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok(())
    }
}

fn usd(minor: i64) -> Value {
    json!({"amount_minor": minor, "currency": "USD"})
}

/// Reads an answer the way a checkout service would.
fn classify(op: &Op, a: &Answer) -> Outcome {
    match a.status.as_u16() {
        200 | 201 => match op {
            Op::Order { .. } => match serde_json::from_slice::<OrderView>(&a.body) {
                Ok(v) if v.status == "completed" => Outcome::Completed {
                    cards: v.cards.len() as u32,
                },
                Ok(v) => Outcome::Rejected(v.reason.unwrap_or_else(|| v.status.clone())),
                Err(_) => Outcome::Failed("unreadable_body".into()),
            },
            _ => Outcome::Completed { cards: 0 },
        },
        429 => Outcome::Shed,
        // 422 is a rule rejection the engine recorded under the order id; other refusals
        // (404, 409, 400) are counted as failures so the books check does not expect a record.
        s => {
            let code = serde_json::from_slice::<Problem>(&a.body)
                .ok()
                .and_then(|p| p.code)
                .unwrap_or_else(|| format!("http_{s}"));
            if s == 422 {
                Outcome::Rejected(code)
            } else {
                Outcome::Failed(format!("{s}_{code}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: Bytes::from(body.to_owned()),
        }
    }

    const ORDER: Op = Op::Order {
        order_no: 1,
        wallet: 0,
        sku: 0,
        quantity: 2,
    };

    #[test]
    fn a_completed_order_counts_its_cards() {
        let body = r#"{"order_id":"o","status":"completed","wallet_id":"w","charged":null,"reason":null,
            "cards":[{"card_id":"1","sku_id":"s","code":"A","face_value":{}},{"card_id":"2","sku_id":"s","code":"B","face_value":{}}]}"#;
        assert_eq!(
            classify(&ORDER, &answer(201, body)),
            Outcome::Completed { cards: 2 }
        );
    }

    #[test]
    fn only_422_is_a_recorded_rejection_and_429_is_shed() {
        assert_eq!(
            classify(&ORDER, &answer(422, r#"{"code":"out_of_stock"}"#)),
            Outcome::Rejected("out_of_stock".into())
        );
        assert_eq!(classify(&ORDER, &answer(429, "")), Outcome::Shed);
        assert_eq!(
            classify(&ORDER, &answer(404, r#"{"code":"wallet_not_found"}"#)),
            Outcome::Failed("404_wallet_not_found".into())
        );
        assert_eq!(
            classify(&ORDER, &answer(503, "")),
            Outcome::Failed("503_http_503".into())
        );
    }
}
