//! Codes in delivery events are sealed for the delivery consumer: a libsodium-compatible sealed
//! box (`crypto_box_seal`: X25519 with an ephemeral key, XSalsa20-Poly1305) to the consumer's
//! public key, so whoever can read `GIFTCARD_EVENTS` for its retention time reads no code. Only
//! the holder of the secret key (`giftcard delivery-keygen` makes the pair) opens them, with
//! any libsodium binding (`crypto_box_seal_open`, PyNaCl's `SealedBox`). A code travels in
//! clear only when `nats.delivery_codes_in_clear` says so, and the adapter then warns at start.

use crate::QueueError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use crypto_box::{PublicKey, SecretKey};

/// How a delivery event carries its code.
#[derive(Clone)]
pub enum CodeSealer {
    /// Sealed to the delivery consumer's key.
    Sealed(PublicKey),
    /// In clear, as configured.
    Clear,
}

/// A code as it goes into a delivery event: exactly one of the two is set.
pub struct CodeField {
    pub code: Option<String>,
    pub sealed_code: Option<String>,
}

impl CodeSealer {
    /// The sealer the configuration asks for: a public key (base64 of 32 bytes), or codes in
    /// clear only when that is said explicitly.
    pub fn from_config(public_key_b64: &str, in_clear: bool) -> Result<CodeSealer, QueueError> {
        match (public_key_b64.trim(), in_clear) {
            ("", true) => {
                tracing::warn!(
                    "nats.delivery_codes_in_clear is set: card codes are published in clear in \
                     GIFTCARD_EVENTS, readable by anyone who may read the stream"
                );
                Ok(CodeSealer::Clear)
            }
            ("", false) => Err(QueueError::Config(
                "nats.delivery_public_key is empty: make a key pair with `giftcard delivery-keygen` \
                 and give the public key here (or set nats.delivery_codes_in_clear = true)"
                    .into(),
            )),
            (_, true) => Err(QueueError::Config(
                "set either nats.delivery_public_key or nats.delivery_codes_in_clear, not both"
                    .into(),
            )),
            (key, false) => Ok(CodeSealer::Sealed(parse_public_key(key)?)),
        }
    }

    /// Seals (or, as configured, passes) one code.
    pub fn field(&self, code: String) -> Result<CodeField, QueueError> {
        match self {
            CodeSealer::Clear => Ok(CodeField {
                code: Some(code),
                sealed_code: None,
            }),
            CodeSealer::Sealed(pk) => {
                let sealed = pk
                    .seal(&mut crypto_box::aead::OsRng, code.as_bytes())
                    .map_err(|_| QueueError::Config("sealing a code failed".into()))?;
                Ok(CodeField {
                    code: None,
                    sealed_code: Some(B64.encode(sealed)),
                })
            }
        }
    }
}

fn parse_public_key(b64: &str) -> Result<PublicKey, QueueError> {
    let bytes = B64
        .decode(b64)
        .map_err(|_| QueueError::Config("nats.delivery_public_key is not base64".into()))?;
    PublicKey::from_slice(&bytes)
        .map_err(|_| QueueError::Config("nats.delivery_public_key is not 32 bytes".into()))
}

/// A new key pair for the delivery consumer, as base64: (public, secret).
pub fn keygen() -> (String, String) {
    pair(SecretKey::generate(&mut crypto_box::aead::OsRng))
}

/// The key pair of a given secret, as base64: (public, secret). For tests and tools that need
/// the same pair every run; a real consumer's pair comes from [`keygen`].
pub fn keys_from_secret(secret: [u8; 32]) -> (String, String) {
    pair(SecretKey::from_bytes(secret))
}

fn pair(secret: SecretKey) -> (String, String) {
    (
        B64.encode(secret.public_key().as_bytes()),
        B64.encode(secret.to_bytes()),
    )
}

/// Opens a `sealed_code` with the consumer's secret key (base64): what a delivery consumer
/// does, and what the tests do to check the engine's sealing.
pub fn open(secret_key_b64: &str, sealed_b64: &str) -> Option<String> {
    let secret = SecretKey::from_slice(&B64.decode(secret_key_b64).ok()?).ok()?;
    let plain = secret.unseal(&B64.decode(sealed_b64).ok()?).ok()?;
    String::from_utf8(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_code_opens_with_the_secret_key_only_and_differs_each_time() {
        let (public, secret) = keygen();
        let sealer = CodeSealer::from_config(&public, false).expect("a key");
        let a = sealer.field("ACME-0001-XKCD".into()).expect("seals");
        let b = sealer.field("ACME-0001-XKCD".into()).expect("seals");
        assert!(a.code.is_none());
        let (a, b) = (
            a.sealed_code.expect("sealed"),
            b.sealed_code.expect("sealed"),
        );
        assert_ne!(a, b, "an ephemeral key per box");
        assert!(!a.contains("ACME"));
        assert_eq!(open(&secret, &a).as_deref(), Some("ACME-0001-XKCD"));
        let (_, other) = keygen();
        assert_eq!(open(&other, &a), None, "another key opens nothing");
    }

    #[test]
    fn codes_go_in_clear_only_when_configured_so() {
        assert!(CodeSealer::from_config("", false).is_err());
        assert!(CodeSealer::from_config("not base64!", false).is_err());
        assert!(
            CodeSealer::from_config("AAAA", false).is_err(),
            "3 bytes is no key"
        );
        let (public, _) = keygen();
        assert!(CodeSealer::from_config(&public, true).is_err());
        let clear = CodeSealer::from_config("", true).expect("clear as configured");
        assert_eq!(
            clear.field("C".into()).expect("passes").code.as_deref(),
            Some("C")
        );
    }
}
