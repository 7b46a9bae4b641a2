//! What the HTTP and NATS adapters share, so neither depends on the other: the v1 wire types,
//! the input discipline, order intake (validation, fingerprint, the open-amount currency check,
//! the engine's answer as one [`orders::OrderAnswer`]), problem documents, and the one helper
//! that calls the engine from async code with one retry policy, and message signatures (the
//! Standard Webhooks scheme). No web framework, no broker.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod call;
pub mod error;
pub mod input;
pub mod orders;
pub mod signature;
pub mod wire;
