//! `giftcard serve`: recovery, then the HTTP adapter; SIGTERM drains and checkpoints.

use crate::config::Config;
use anyhow::Result;

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(cfg: Config) -> Result<()> {
    let _ = cfg;
    anyhow::bail!("serve: not built yet")
}
