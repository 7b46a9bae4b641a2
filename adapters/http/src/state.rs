//! Shared state of the HTTP workers and the bridge to the engine: every engine call goes through
//! [`AppState::submit`] or [`AppState::ask`], which take an in-flight slot and await the durable
//! reply on a oneshot channel (the engine's reply closure only hands the reply on).

use crate::auth::{KeyTable, Principal};
use crate::error::ApiError;
use crate::limits::{InFlight, Rate, RateLimiter};
use crate::HttpConfig;
use actix_web::HttpRequest;
use giftcard_core::Command;
use giftcard_shard::{Engine, Outcome, Query, QueryAnswer, Reply};
use std::sync::{Arc, OnceLock};
use tokio::sync::oneshot;

/// What every handler gets through `web::Data`.
pub struct AppState {
    engine: OnceLock<Arc<Engine>>,
    pub keys: KeyTable,
    pub inflight: InFlight,
    pub inflight_max: usize,
    pub per_client: RateLimiter,
    pub per_prefix: RateLimiter,
    pub code_prefix_len: usize,
    /// Body buffer budget in KiB (see `HttpConfig::body_buffer_bytes_max`).
    pub body_budget_kib: std::sync::Arc<tokio::sync::Semaphore>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Failed delivery reports after which a card's delivery is given up.
    pub delivery_attempts_max: u8,
    /// `/metrics` answers without a key.
    pub metrics_open: bool,
    /// One live reconciliation at a time, and when the last one ended.
    pub reconciliation: tokio::sync::Mutex<Option<std::time::Instant>>,
    pub reconciliation_interval: std::time::Duration,
    /// Payment gateways by name.
    pub gateways: std::collections::HashMap<String, Gateway>,
    /// Each client's share of requests and body budget.
    pub shares: crate::limits::ClientShares,
    /// How long a body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// The day's deposits per funder, against `deposits_per_day_max_minor`.
    pub daily_deposits: crate::limits::DailyDeposits,
}

/// A configured payment gateway, its secrets parsed.
pub struct Gateway {
    pub client: String,
    pub secrets: Vec<giftcard_intake::signature::Secret>,
    pub tolerance_s: i64,
    pub deposit_limit: crate::limits::DepositLimit,
}

fn gateways(cfg: &HttpConfig) -> Result<std::collections::HashMap<String, Gateway>, String> {
    let mut out = std::collections::HashMap::new();
    for g in &cfg.gateways {
        crate::input::id("gateway", &g.name).map_err(|e| format!("gateway name: {e}"))?;
        if !crate::valid_client_id(&g.client) {
            return Err(format!(
                "gateway {}: client {:?} is empty or has `~` or a control character",
                g.name, g.client
            ));
        }
        let secrets = giftcard_intake::signature::Secret::parse_list(&g.secrets)
            .map_err(|e| format!("gateway {}: {e}", g.name))?;
        let limits = [g.deposit_max_minor, g.deposits_per_day_max_minor];
        if limits.iter().flatten().any(|m| *m < 1) {
            return Err(format!(
                "gateway {}: deposit limits must be positive",
                g.name
            ));
        }
        if !(1..=86_400).contains(&g.tolerance_s) {
            return Err(format!(
                "gateway {}: tolerance_s must be 1 to 86400",
                g.name
            ));
        }
        let gw = Gateway {
            client: g.client.clone(),
            secrets,
            tolerance_s: g.tolerance_s,
            deposit_limit: crate::limits::DepositLimit::from_config(
                &format!("gateway {}", g.name),
                true,
                g.deposit_max_minor,
                g.deposits_per_day_max_minor,
                &g.deposit_currencies,
            )?,
        };
        if out.insert(g.name.clone(), gw).is_some() {
            return Err(format!("gateway {} is configured twice", g.name));
        }
    }
    Ok(out)
}

impl AppState {
    /// State for a server whose engine is still recovering.
    pub fn new(
        cfg: &HttpConfig,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Result<AppState, String> {
        let keys_max = cfg.rate_limit_keys_max;
        Ok(AppState {
            engine: OnceLock::new(),
            keys: KeyTable::new(&cfg.api_keys)?,
            inflight: InFlight::new(cfg.inflight_requests_max),
            inflight_max: cfg.inflight_requests_max,
            per_client: RateLimiter::new(
                Rate {
                    per_s: cfg.lookup_per_client_per_s,
                    burst: cfg.lookup_per_client_burst,
                },
                keys_max,
            ),
            per_prefix: RateLimiter::new(
                Rate {
                    per_s: cfg.lookup_per_code_prefix_per_s,
                    burst: cfg.lookup_per_code_prefix_burst,
                },
                keys_max,
            ),
            code_prefix_len: cfg.code_prefix_len,
            body_budget_kib: std::sync::Arc::new(tokio::sync::Semaphore::new(
                (cfg.body_buffer_bytes_max / 1024).max(1),
            )),
            metrics,
            delivery_attempts_max: cfg.delivery_attempts_max,
            metrics_open: cfg.metrics_open,
            reconciliation: tokio::sync::Mutex::new(None),
            reconciliation_interval: std::time::Duration::from_millis(
                cfg.reconciliation_interval_ms,
            ),
            gateways: gateways(cfg)?,
            shares: crate::limits::ClientShares::new(
                cfg.api_keys.iter().map(|k| k.client.clone()).chain(
                    cfg.gateways
                        .iter()
                        .map(|g| crate::limits::gateway_share(&g.name)),
                ),
                cfg.inflight_per_client_max,
                cfg.body_buffer_per_client_bytes_max / 1024,
            ),
            body_read_timeout: std::time::Duration::from_millis(cfg.body_read_timeout_ms.max(1)),
            daily_deposits: crate::limits::DailyDeposits::default(),
        })
    }

    /// Marks recovery done: from now on requests reach the engine.
    pub fn set_ready(&self, engine: Arc<Engine>) {
        let _ = self.engine.set(engine);
    }

    /// The engine, or 503 while recovery runs.
    pub fn engine(&self) -> Result<&Arc<Engine>, ApiError> {
        self.engine.get().ok_or(ApiError::NotReady)
    }

    /// The engine if recovery finished.
    pub fn ready_engine(&self) -> Option<&Arc<Engine>> {
        self.engine.get()
    }

    /// Authenticates a request (503 first while not ready, so clients retry).
    pub fn principal(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        self.engine()?;
        self.keys.authenticate(req)
    }

    /// Applies the lookup rate limits (redemption, balance by code) for a client and a code.
    pub fn limit_lookup(&self, who: &Principal, code: &str) -> Result<(), ApiError> {
        let prefix: String = code.chars().take(self.code_prefix_len).collect();
        self.per_client.take(&who.client).inspect_err(|_| {
            metrics::counter!("giftcard_http_rate_limited_total", "scope" => "client").increment(1)
        })?;
        self.per_prefix.take(&prefix).inspect_err(|_| {
            metrics::counter!("giftcard_http_rate_limited_total", "scope" => "code_prefix")
                .increment(1)
        })
    }

    /// Submits a command and awaits its durable reply.
    pub async fn submit(&self, cmd: Command) -> Result<Outcome, ApiError> {
        let engine = self.engine()?;
        let _slot = self.inflight.enter()?;
        Ok(giftcard_intake::call::submit(engine, cmd).await?)
    }

    /// Places an order and awaits its durable answer.
    pub async fn place(
        &self,
        req: giftcard_core::OrderRequest,
    ) -> Result<giftcard_intake::orders::OrderAnswer, ApiError> {
        let engine = self.engine()?;
        let _slot = self.inflight.enter()?;
        Ok(giftcard_intake::orders::place(engine, req).await?)
    }

    /// Asks a query and awaits the answer.
    pub async fn ask(&self, q: Query) -> Result<QueryAnswer, ApiError> {
        let engine = self.engine()?;
        let _slot = self.inflight.enter()?;
        Ok(giftcard_intake::call::ask(engine, q).await?)
    }

    /// A read that completes a request already admitted and answered by the engine (the cards of
    /// an order just placed): it takes no in-flight slot and waits out a full engine mailbox
    /// under the engine-call retry policy instead of answering 429, so a durable order is never
    /// reported as refused. (The load tool caught completed orders answered 429 when this read
    /// re-entered the admission bound.)
    pub async fn ask_follow_up(&self, q: Query) -> Result<QueryAnswer, ApiError> {
        let engine = self.engine()?;
        let ask = || giftcard_intake::call::ask(engine, q.clone());
        Ok(giftcard_intake::call::retrying(ask).await?)
    }

    /// Runs one engine call with an in-flight slot held until its reply arrives.
    pub async fn bridge(
        &self,
        call: impl FnOnce(giftcard_shard::ReplyTo),
    ) -> Result<Outcome, ApiError> {
        let _slot = self.inflight.enter()?;
        let (tx, rx) = oneshot::channel::<Reply>();
        call(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        Ok(rx.await.map_err(|_| ApiError::Unavailable)??)
    }
}
