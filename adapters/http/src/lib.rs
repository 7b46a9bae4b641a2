//! The HTTP adapter (actix-web): validates and authenticates requests, turns them into engine
//! commands, and maps outcomes to JSON and RFC 9457 problem responses. No domain logic here.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

use serde::Deserialize;

/// Roles an API key can have.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Checkout,
    Supplier,
    Admin,
}

/// One configured API key, stored as a hash.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// `giftcard hash-key KEY` prints this.
    pub key_hash: String,
    /// The tenant: a checkout client id, or a supplier id for supplier keys.
    pub client: String,
    pub role: Role,
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
}

/// The stored form of an API key: hex of its BLAKE3 hash.
pub fn hash_api_key(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}
