//! `giftcard serve`: binds HTTP first (`/healthz` live, `/readyz` 503), recovers the journal,
//! then serves; SIGTERM drains in-flight requests and flushes the journal before exit.

use crate::config::Config;
use anyhow::Result;

/// The development seal and hash keys of `config/default.toml`, public in this repository.
const DEV_ENGINE_KEYS: &[&str] = &[
    "6465762d7365616c2d6b65792d6368616e67652d6d652d303132333435363738",
    "6465762d686173682d6b65792d6368616e67652d6d652d303132333435363738",
];

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(cfg: Config) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let engine_cfg = cfg.engine_config()?;
    let loopback = cfg
        .http
        .addr
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(false);
    if !loopback
        && (DEV_ENGINE_KEYS.contains(&cfg.engine.seal_key.as_str())
            || DEV_ENGINE_KEYS.contains(&cfg.engine.hash_key.as_str()))
    {
        let msg = "the shipped DEVELOPMENT seal/hash keys are in use on a non-loopback address: card codes are NOT protected; set GIFTCARD_ENGINE_SEAL_KEY and GIFTCARD_ENGINE_HASH_KEY";
        tracing::warn!("{msg}");
        eprintln!("WARNING: {msg}");
    }
    let mut http_cfg = cfg.http;
    // One give-up rule for delivery reports, whether they come over HTTP or NATS.
    http_cfg.delivery_attempts_max = cfg.nats.delivery_attempts_max;
    let server = giftcard_http::start(http_cfg, engine_cfg).map_err(anyhow::Error::msg)?;
    println!("giftcard listening on http://{}", server.addr);
    let queue = if cfg.nats.enabled {
        start_queue(&server, cfg.nats)?
    } else {
        None
    };
    let served = server.wait().map_err(anyhow::Error::msg);
    if let Some(q) = queue {
        q.stop();
    }
    served
}

/// Starts the queue adapter once recovery is done (HTTP answers `/healthz` meanwhile); None when
/// the server stopped first.
fn start_queue(
    server: &giftcard_http::Server,
    nats: giftcard_queue::QueueConfig,
) -> Result<Option<giftcard_queue::QueueAdapter>> {
    loop {
        if let Some(engine) = server.engine() {
            let adapter = giftcard_queue::QueueAdapter::start(nats, engine)?;
            println!("giftcard queue adapter started");
            return Ok(Some(adapter));
        }
        if server.finished() {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
