//! The HTTP adapter (actix-web): validates and authenticates requests, turns them into engine
//! commands, and maps outcomes to JSON and RFC 9457 problem responses. No domain logic here.
//!
//! [`start`] binds the socket first (`/healthz` answers at once, `/readyz` and every API route
//! say 503 until recovery is done), recovers the engine on a background thread, and on SIGTERM
//! (or [`Server::stop`]) drains in-flight requests and then flushes the journal.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod auth;
pub mod error;
pub mod input;
pub mod limits;
pub mod metrics_http;
pub mod openapi;
pub mod routes;
pub mod state;
pub use giftcard_intake::wire;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use giftcard_shard::{Engine, EngineConfig};
use serde::Deserialize;
use state::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Roles an API key can have, each allowed only what its holder needs (least privilege; the
/// table is in SECURITY.md).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A tenant's checkout: its own wallets (read), orders and cards. Cannot create money.
    Checkout,
    /// A tenant's payment service, which saw the capture: deposits into that tenant's wallets
    /// only, up to its per-call limit.
    Funding,
    /// A merchant's point of sale: balance inquiries and redemptions of the brands it accepts.
    Merchant,
    /// A supplier: its own SKUs' codes and stock.
    Supplier,
    /// The delivery service: delivery reports only.
    Delivery,
    /// A Prometheus scraper: `/metrics` only.
    Metrics,
    Admin,
}

/// One configured API key, stored as a hash.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// `giftcard hash-key KEY` prints this.
    pub key_hash: String,
    /// The tenant: a checkout client id (also for its funding key), a merchant id, or a
    /// supplier id for supplier keys.
    pub client: String,
    pub role: Role,
    /// Merchant keys: the brands whose cards it may look up and redeem; `"*"` is every brand.
    /// Cards of other brands do not exist for it.
    #[serde(default)]
    pub brands: Vec<String>,
    /// Funding keys: the most one deposit may credit, in minor units of its currency
    /// (absent: the engine's own bound).
    #[serde(default)]
    pub deposit_max_minor: Option<i64>,
    /// Funding keys: the most the client's deposits may credit per UTC day, per currency.
    #[serde(default)]
    pub deposits_per_day_max_minor: Option<i64>,
    /// Funding keys: the currencies it may deposit (empty: any; required with a day's limit).
    #[serde(default)]
    pub deposit_currencies: Vec<String>,
}

impl ApiKeyConfig {
    /// A key of `role` for `client` with no brand list and no deposit limit.
    pub fn new(key_hash: String, client: &str, role: Role) -> ApiKeyConfig {
        ApiKeyConfig {
            key_hash,
            client: client.to_owned(),
            role,
            brands: Vec::new(),
            deposit_max_minor: None,
            deposits_per_day_max_minor: None,
            deposit_currencies: Vec::new(),
        }
    }
}

/// One payment gateway whose signed payment-succeeded webhooks fund a tenant's wallets
/// (`[[http.gateways]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// In the path: `POST /v1/gateways/{name}/events`.
    pub name: String,
    /// The tenant whose wallets its payments fund (the engine's owner check applies).
    pub client: String,
    /// Signing secrets, `whsec_<base64>`: the current one and, while rotating, the previous.
    pub secrets: Vec<String>,
    /// How far (seconds) a message's timestamp may be from now, either way.
    #[serde(default = "defaults::gateway_tolerance_s")]
    pub tolerance_s: i64,
    /// The most one payment may credit, in minor units (absent: the engine's own bound).
    #[serde(default)]
    pub deposit_max_minor: Option<i64>,
    /// The most its payments may credit per UTC day, per currency.
    #[serde(default)]
    pub deposits_per_day_max_minor: Option<i64>,
    /// The currencies its payments may be in (empty: any; required with a day's limit).
    #[serde(default)]
    pub deposit_currencies: Vec<String>,
}

/// `[http]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub addr: String,
    /// 0 means one per core.
    pub workers: usize,
    pub body_bytes_max: usize,
    pub api_keys: Vec<ApiKeyConfig>,
    /// Requests handed to the engine and not yet answered, beyond which callers get 429.
    #[serde(default = "defaults::inflight_requests_max")]
    pub inflight_requests_max: usize,
    /// Redemptions and balance inquiries per second (and burst) one API client may make.
    #[serde(default = "defaults::per_client_per_s")]
    pub lookup_per_client_per_s: u32,
    #[serde(default = "defaults::per_client_burst")]
    pub lookup_per_client_burst: u32,
    /// The same per code prefix (the first `code_prefix_len` characters), against enumeration.
    #[serde(default = "defaults::per_prefix_per_s")]
    pub lookup_per_code_prefix_per_s: u32,
    #[serde(default = "defaults::per_prefix_burst")]
    pub lookup_per_code_prefix_burst: u32,
    #[serde(default = "defaults::code_prefix_len")]
    pub code_prefix_len: usize,
    /// Clients and prefixes the rate limiter remembers at once.
    #[serde(default = "defaults::rate_limit_keys_max")]
    pub rate_limit_keys_max: usize,
    /// Request body bytes buffered at once over all connections; beyond it callers get 429,
    /// so a spike of large bodies cannot exhaust memory.
    #[serde(default = "defaults::body_buffer_bytes_max")]
    pub body_buffer_bytes_max: usize,
    /// How long SIGTERM waits for in-flight requests before closing connections.
    #[serde(default = "defaults::shutdown_timeout_s")]
    pub shutdown_timeout_s: u64,
    /// Least time between two live reconciliations, which pause every shard; a request
    /// meanwhile (or while one runs) gets 429 with Retry-After.
    #[serde(default = "defaults::reconciliation_interval_ms")]
    pub reconciliation_interval_ms: u64,
    /// Failed delivery reports after which a card's delivery is given up (the binary copies
    /// `[nats] delivery_attempts_max` here, so both report paths agree).
    #[serde(default = "defaults::delivery_attempts_max")]
    pub delivery_attempts_max: u8,
    /// Whether `/metrics` answers without a key; false: a `metrics` or `admin` key is needed.
    #[serde(default)]
    pub metrics_open: bool,
    /// Requests one API client may have open at once (beyond: 429); unauthenticated requests
    /// share one such allowance.
    #[serde(default = "defaults::inflight_per_client_max")]
    pub inflight_per_client_max: usize,
    /// Request body bytes one client may have buffered at once (beyond: 429).
    #[serde(default = "defaults::body_buffer_per_client_bytes_max")]
    pub body_buffer_per_client_bytes_max: usize,
    /// How long a request body may take to arrive once its headers have (beyond: 408).
    #[serde(default = "defaults::body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// Payment gateways allowed to fund wallets by signed webhook.
    #[serde(default)]
    pub gateways: Vec<GatewayConfig>,
}

mod defaults {
    pub fn inflight_requests_max() -> usize {
        16_384
    }
    pub fn per_client_per_s() -> u32 {
        200
    }
    pub fn per_client_burst() -> u32 {
        400
    }
    pub fn per_prefix_per_s() -> u32 {
        20
    }
    pub fn per_prefix_burst() -> u32 {
        40
    }
    pub fn code_prefix_len() -> usize {
        4
    }
    pub fn rate_limit_keys_max() -> usize {
        100_000
    }
    pub fn body_buffer_bytes_max() -> usize {
        256 << 20
    }
    pub fn shutdown_timeout_s() -> u64 {
        30
    }
    pub fn reconciliation_interval_ms() -> u64 {
        1_000
    }
    pub fn delivery_attempts_max() -> u8 {
        5
    }
    pub fn gateway_tolerance_s() -> i64 {
        300
    }
    pub fn inflight_per_client_max() -> usize {
        4_096
    }
    pub fn body_buffer_per_client_bytes_max() -> usize {
        64 << 20
    }
    pub fn body_read_timeout_ms() -> u64 {
        10_000
    }
}

impl HttpConfig {
    /// A configuration for tests and tools: loopback on `addr`, the given keys, default limits.
    pub fn new(addr: &str, api_keys: Vec<ApiKeyConfig>) -> HttpConfig {
        HttpConfig {
            addr: addr.to_owned(),
            workers: 2,
            body_bytes_max: 4 << 20,
            api_keys,
            inflight_requests_max: defaults::inflight_requests_max(),
            lookup_per_client_per_s: defaults::per_client_per_s(),
            lookup_per_client_burst: defaults::per_client_burst(),
            lookup_per_code_prefix_per_s: defaults::per_prefix_per_s(),
            lookup_per_code_prefix_burst: defaults::per_prefix_burst(),
            code_prefix_len: defaults::code_prefix_len(),
            rate_limit_keys_max: defaults::rate_limit_keys_max(),
            body_buffer_bytes_max: defaults::body_buffer_bytes_max(),
            shutdown_timeout_s: 5,
            delivery_attempts_max: defaults::delivery_attempts_max(),
            // Tests reconcile after every step; a server keeps the default.
            reconciliation_interval_ms: 0,
            metrics_open: false,
            inflight_per_client_max: defaults::inflight_per_client_max(),
            body_buffer_per_client_bytes_max: defaults::body_buffer_per_client_bytes_max(),
            body_read_timeout_ms: defaults::body_read_timeout_ms(),
            gateways: Vec::new(),
        }
    }
}

/// The stored form of an API key: hex of its BLAKE3 hash.
/// Whether a configured client id can name a tenant: not empty, no control character, and no
/// `~`, which separates a wallet's namespace (its client) from the client's own wallet id.
pub fn valid_client_id(client: &str) -> bool {
    !client.is_empty() && !client.chars().any(|c| c == '~' || c.is_control())
}

pub fn hash_api_key(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

/// Limits every route shares, read by the body extractor.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A running server.
pub struct Server {
    /// Where it listens (the real port when the configured one was 0).
    pub addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<Result<(), String>>>,
    state: web::Data<AppState>,
}

impl Server {
    /// The engine once recovery is done (other adapters, such as the queue, start on it).
    pub fn engine(&self) -> Option<Arc<Engine>> {
        self.state.ready_engine().cloned()
    }

    /// Whether the server stopped (recovery failed, or a signal).
    pub fn finished(&self) -> bool {
        !matches!(&self.thread, Some(t) if !t.is_finished())
    }

    /// Waits until the server stops (SIGTERM, or recovery failed) and the journal is flushed.
    pub fn wait(mut self) -> Result<(), String> {
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| "server thread panicked".to_owned())?,
            None => Ok(()),
        }
    }

    /// Stops gracefully: drains in-flight requests, then flushes the journal and closes it.
    pub fn stop(self) -> Result<(), String> {
        drop(self.handle.stop(true));
        self.wait()
    }
}

/// Binds, starts serving (not ready), recovers the engine in the background, then turns ready.
pub fn start(cfg: HttpConfig, engine_cfg: EngineConfig) -> Result<Server, String> {
    start_with(
        cfg,
        Box::new(move || Engine::open(engine_cfg).map_err(|e| giftcard_shard::error_chain(&e))),
    )
}

/// Opens (recovers) the engine; runs on a background thread while HTTP already answers.
pub type Opener = Box<dyn FnOnce() -> Result<Engine, String> + Send>;

/// [`start`] with the engine opened by `open` (tests use it to hold recovery back).
pub fn start_with(cfg: HttpConfig, open: Opener) -> Result<Server, String> {
    let metrics = metrics_http::install();
    let state = web::Data::new(AppState::new(&cfg, metrics)?);
    let server_state = state.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("giftcard-http".into())
        .spawn(move || actix_web::rt::System::new().block_on(serve(cfg, open, state, tx)))
        .map_err(|e| e.to_string())?;
    match rx.recv() {
        Ok(Ok((addr, handle))) => Ok(Server {
            addr,
            handle,
            thread: Some(thread),
            state: server_state,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(thread.join().map_or_else(
            |_| "server thread panicked".to_owned(),
            |r| r.err().unwrap_or_default(),
        )),
    }
}

type Started = Result<(SocketAddr, ServerHandle), String>;

async fn serve(
    cfg: HttpConfig,
    open: Opener,
    state: web::Data<AppState>,
    started: std::sync::mpsc::Sender<Started>,
) -> Result<(), String> {
    let workers = match cfg.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let limit = BodyLimit(cfg.body_bytes_max);
    let app_state = state.clone();
    let bound = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(limit)
            .app_data(web::PayloadConfig::new(limit.0))
            .configure(routes::configure)
    })
    .workers(workers)
    .shutdown_timeout(cfg.shutdown_timeout_s)
    .bind(&cfg.addr)
    .map_err(|e| format!("cannot listen on {}: {e}", cfg.addr));
    let server = match bound {
        Ok(s) => s,
        Err(e) => {
            let _ = started.send(Err(e.clone()));
            return Err(e);
        }
    };
    let addr = server.addrs().first().copied().ok_or("no address bound")?;
    if state.keys.has_dev_keys() && !addr.ip().is_loopback() {
        warn_dev_keys(addr);
    }
    let running = server.run();
    let handle = running.handle();
    let _ = started.send(Ok((addr, handle.clone())));
    tracing::info!(%addr, "listening; recovering the journal");
    let failure = Arc::new(std::sync::Mutex::new(None));
    let (st, fail) = (state.clone(), failure.clone());
    std::thread::spawn(move || match open() {
        Ok(engine) => {
            tracing::info!(
                duration_ms = engine.recovery.duration.as_millis() as u64,
                records = engine.recovery.records_replayed,
                "recovery done; ready"
            );
            st.set_ready(Arc::new(engine));
        }
        Err(e) => {
            tracing::error!(error = %e, "recovery failed");
            if let Ok(mut f) = fail.lock() {
                *f = Some(format!("recovery failed: {e}"));
            }
            drop(handle.stop(false));
        }
    });
    let served = running.await.map_err(|e| e.to_string());
    // Every worker has drained; answers already sent are durable, and shutdown lets the journal
    // writer finish what the shards handed it before the process goes.
    if let Some(engine) = state.ready_engine() {
        engine.shutdown();
    }
    drop(state);
    tracing::info!("stopped");
    let failed = failure.lock().ok().and_then(|mut f| f.take());
    match failed {
        Some(e) => Err(e),
        None => served,
    }
}

fn warn_dev_keys(addr: SocketAddr) {
    let msg = format!(
        "!!! The shipped DEVELOPMENT API keys (public in this repository) are configured while listening on \
         non-loopback address {addr}. Anyone can call this API as admin. Configure your own [[http.api_keys]]. !!!"
    );
    for _ in 0..3 {
        tracing::warn!("{msg}");
    }
    eprintln!("WARNING: {msg}");
}
