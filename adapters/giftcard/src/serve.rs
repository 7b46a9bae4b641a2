//! `giftcard serve`: binds HTTP first (`/healthz` live, `/readyz` 503), recovers the journal,
//! then serves; SIGTERM drains in-flight requests and flushes the journal before exit.

use crate::config::Config;
use anyhow::Result;

/// The development seal and hash keys of `config/default.toml`, public in this repository.
const DEV_ENGINE_KEYS: &[&str] = &[
    "6465762d7365616c2d6b65792d6368616e67652d6d652d303132333435363738",
    "6465762d686173682d6b65792d6368616e67652d6d652d303132333435363738",
];

/// Whether an address only ever listens on loopback: every address it resolves to is. A name
/// that does not resolve counts as not loopback.
fn loopback_only(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// The shipped development keys in use: seal and hash keys compared as bytes (hex in any case),
/// API keys by their hashes.
fn dev_keys_in_use(cfg: &Config) -> Result<Vec<&'static str>> {
    let same = |configured: &str| {
        DEV_ENGINE_KEYS
            .iter()
            .any(|dev| dev.eq_ignore_ascii_case(configured.trim()))
    };
    let mut found = Vec::new();
    if same(&cfg.engine.seal_key) {
        found.push("engine.seal_key");
    }
    if same(&cfg.engine.hash_key) {
        found.push("engine.hash_key");
    }
    let keys =
        giftcard_http::auth::KeyTable::new(&cfg.http.api_keys).map_err(anyhow::Error::msg)?;
    if keys.has_dev_keys() {
        found.push("http.api_keys");
    }
    Ok(found)
}

/// Creates the data directory if needed and makes it its owner's alone (0700), so files an older
/// build wrote with a looser mode cannot be reached by other users either.
fn owner_only(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| anyhow::anyhow!("making {} owner-only: {e}", dir.display()))
}

/// Runs the server until SIGTERM or Ctrl-C. With a shipped development key on an address that
/// is not loopback it refuses to start, unless `insecure_dev_keys` says otherwise.
pub fn run(cfg: Config, insecure_dev_keys: bool) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let engine_cfg = cfg.engine_config()?;
    owner_only(&cfg.engine.data_dir)?;
    let dev = dev_keys_in_use(&cfg)?;
    if !dev.is_empty() && !loopback_only(&cfg.http.addr) {
        let which = dev.join(", ");
        if !insecure_dev_keys {
            anyhow::bail!(
                "refusing to serve on {} with the shipped DEVELOPMENT keys ({which}): they are \
                 public in this repository, so anyone could call this API as admin and read card \
                 codes. Set your own (GIFTCARD_ENGINE_SEAL_KEY, GIFTCARD_ENGINE_HASH_KEY and \
                 GIFTCARD_HTTP_API_KEYS, or their _FILE forms naming files; see SECURITY.md), \
                 listen on loopback, or pass --insecure-dev-keys",
                cfg.http.addr
            );
        }
        let msg = format!(
            "--insecure-dev-keys: the shipped DEVELOPMENT keys ({which}) are in use on {}: card codes and the API are NOT protected",
            cfg.http.addr
        );
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
