//! The queue adapter on NATS JetStream. Orders come in on `GIFTCARD_ORDERS`
//! (`giftcard.orders.{client}`) through a durable pull consumer, take the same engine path as
//! `POST /v1/orders`, and are acked only after their outcome is durable and their result is
//! published on `giftcard.results.{client}` (stored in `GIFTCARD_RESULTS` by default; on core
//! NATS with `store_results = false`). Events go out on `GIFTCARD_EVENTS` from the journal
//! (the outbox), with stable ids as `Nats-Msg-Id`, in order per shard, at least once.
//!
//! In production the subject names the client: NATS accounts and subject permissions must let
//! each checkout client publish only on its own `giftcard.orders.{client}` and read only its own
//! `giftcard.results.{client}`. This module trusts the subject and never reads credentials from
//! anywhere but its configuration.
//!
//! It never changes engine state except through `Engine::submit`, and never holds an order
//! message unacked without bound: in-flight orders are limited and the consumer stops pulling.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod config;
pub mod orders;
pub mod outbox;
pub mod reports;
pub mod seal;
pub mod streams;
pub mod testkit;
pub mod wire;

pub use config::QueueConfig;

use giftcard_shard::Engine;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Failures of the adapter itself (the broker, the configuration).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid [nats] configuration: {0}")]
    Config(String),
    #[error("cannot reach NATS: {0}")]
    Connect(String),
    #[error("cannot start the queue runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// The running adapter: a thread with its own Tokio runtime.
pub struct QueueAdapter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl QueueAdapter {
    /// Connects (retrying in the background while the broker is down), creates missing streams,
    /// and starts the order consumer, the outbox publisher and the delivery report listener.
    pub fn start(cfg: QueueConfig, engine: Arc<Engine>) -> Result<QueueAdapter, QueueError> {
        if cfg.urls().is_empty() {
            return Err(QueueError::Config("nats.url names no server".into()));
        }
        streams::retention(&cfg.stream_retention)?;
        // Refused here, before anything connects: no delivery event leaves without its code
        // sealed, unless the configuration asks for clear codes.
        seal::CodeSealer::from_config(&cfg.delivery_public_key, cfg.delivery_codes_in_clear)?;
        let signers = Arc::new(orders::Signers::from_config(&cfg).map_err(QueueError::Config)?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("giftcard-queue")
            .enable_all()
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("giftcard-queue".into())
            .spawn(move || rt.block_on(run(cfg, engine, signers, flag)))?;
        Ok(QueueAdapter {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops pulling orders, lets in-flight ones finish, publishes what the journal holds, and joins.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for QueueAdapter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(
    cfg: QueueConfig,
    engine: Arc<Engine>,
    signers: Arc<orders::Signers>,
    stop: Arc<AtomicBool>,
) {
    let client = loop {
        match connect(&cfg).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(error = %e, "NATS connection failed; retrying");
                if sleep_unless(&stop, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    let js = async_nats::jetstream::new(client.clone());
    // Streams are created once the broker answers; HTTP keeps serving meanwhile.
    while let Err(e) = until_stopped(&stop, streams::ensure(&js, &cfg))
        .await
        .unwrap_or(Ok(()))
    {
        tracing::warn!(error = %e, "cannot set up JetStream streams yet; retrying");
        if sleep_unless(&stop, Duration::from_secs(1)).await {
            return;
        }
    }
    if stop.load(Ordering::Acquire) {
        return;
    }
    tracing::info!("queue adapter running");
    let cfg = Arc::new(cfg);
    let outbox = tokio::spawn(outbox::run(
        js.clone(),
        engine.clone(),
        cfg.clone(),
        stop.clone(),
    ));
    let reports = tokio::spawn(reports::run(
        client.clone(),
        engine.clone(),
        cfg.clone(),
        stop.clone(),
    ));
    orders::run(js, engine, cfg, signers, stop.clone()).await;
    // The outbox publishes once more what is durable if the broker is there. A broker that is
    // gone must not hold up shutdown: a publish into a disconnected client can wait forever, and
    // the journal keeps whatever was not published (the cursor only moves after the acks).
    let mut outbox = outbox;
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut outbox)
        .await
        .is_err()
    {
        tracing::warn!(
            "the outbox was still publishing at shutdown; the journal keeps the backlog"
        );
        outbox.abort();
    }
    reports.abort();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, client.flush()).await;
}

/// How long shutdown waits for the broker (the outbox's last publish, the client's flush).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn connect(cfg: &QueueConfig) -> Result<async_nats::Client, QueueError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name("giftcard")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS disconnected; the outbox backs up in the journal")
                }
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        });
    if !cfg.token.is_empty() {
        opts = opts.token(cfg.token.clone());
    }
    if !cfg.user.is_empty() {
        opts = opts.user_and_password(cfg.user.clone(), cfg.password.clone());
    }
    if !cfg.credentials_file.is_empty() {
        opts = opts
            .credentials_file(&cfg.credentials_file)
            .await
            .map_err(|e| QueueError::Config(format!("credentials_file: {e}")))?;
    }
    if cfg.tls_required {
        opts = opts.require_tls(true);
    }
    if !cfg.tls_ca_file.is_empty() {
        opts = opts.add_root_certificates(cfg.tls_ca_file.clone().into());
    }
    match (
        cfg.tls_client_cert_file.is_empty(),
        cfg.tls_client_key_file.is_empty(),
    ) {
        (true, true) => {}
        (false, false) => {
            opts = opts.add_client_certificate(
                cfg.tls_client_cert_file.clone().into(),
                cfg.tls_client_key_file.clone().into(),
            )
        }
        _ => {
            return Err(QueueError::Config(
                "tls_client_cert_file and tls_client_key_file go together".into(),
            ))
        }
    }
    opts.connect(cfg.urls())
        .await
        .map_err(|e| QueueError::Connect(e.to_string()))
}

/// Runs `fut` unless the adapter stops first (None then), so a broker that does not answer
/// never holds up shutdown.
async fn until_stopped<T>(
    stop: &AtomicBool,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if stop.load(Ordering::Acquire) {
                    return None;
                }
            }
        }
    }
}

/// Sleeps; true when the adapter is stopping.
async fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() {
        if stop.load(Ordering::Acquire) {
            return true;
        }
        let s = left.min(step);
        tokio::time::sleep(s).await;
        left -= s;
    }
    stop.load(Ordering::Acquire)
}
