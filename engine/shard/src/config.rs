//! How an engine is set up: one value, passed down; no crate reads global configuration.

use std::path::PathBuf;

/// How the engine is set up. Passed down as a value; no crate reads global config.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub shards: u16,
    /// Client messages a shard's mailbox holds before callers get `Overloaded`.
    pub mailbox_len_max: usize,
    /// Messages a shard handles per pass (per journal hand-off).
    pub batch_events_max: usize,
    /// The key new codes are sealed with, and its version (0: sealed codes carry no version
    /// header, as before versions existed).
    pub seal_key: [u8; 32],
    pub seal_key_version: u8,
    /// Earlier sealing keys by version: they open what they sealed, and seal nothing.
    pub previous_seal_keys: Vec<(u8, [u8; 32])>,
    pub hash_key: [u8; 32],
    pub cache_bytes: u64,
    /// Records replayed at start-up above which a checkpoint is written right after recovery.
    pub checkpoint_after_records: u64,
    /// Keep journal frames until the outbox has published them (set when the queue adapter runs).
    pub outbox: bool,
    /// How long the recorded answer of a rejected order is replayed before the order id may be
    /// used afresh, in ms (0: for ever).
    pub rejection_replay_window_ms: u64,
    /// Default limits and KYC thresholds (a wallet's own limits replace the defaults for it).
    pub risk: std::sync::Arc<giftcard_core::limits::RiskPolicy>,
    /// Risk scoring rules (none: nothing is scored).
    pub scoring: std::sync::Arc<giftcard_core::risk::Scoring>,
    /// The jurisdiction's least life of an issued card, in days (0: none), for expiry policies
    /// set from now on.
    pub expiry_min_days: u32,
}

impl EngineConfig {
    /// Defaults for a data directory (development keys: override them in production).
    pub fn new(data_dir: impl Into<PathBuf>, shards: u16) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            shards: shards.max(1),
            mailbox_len_max: 65_536,
            batch_events_max: 4_096,
            seal_key: *b"dev-seal-key-change-me-0123456789"[..32]
                .try_into()
                .unwrap_or(&[0u8; 32]),
            seal_key_version: 0,
            previous_seal_keys: Vec::new(),
            hash_key: *b"dev-hash-key-change-me-0123456789"[..32]
                .try_into()
                .unwrap_or(&[0u8; 32]),
            cache_bytes: 64 << 20,
            checkpoint_after_records: 2_000_000,
            outbox: false,
            rejection_replay_window_ms: 86_400_000,
            risk: Default::default(),
            scoring: Default::default(),
            expiry_min_days: 0,
        }
    }
}
