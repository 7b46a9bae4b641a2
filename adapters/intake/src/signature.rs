//! Message signatures in the Standard Webhooks scheme: HMAC-SHA256 with a shared secret over
//! `{id}.{timestamp}.{body}`, sent as `webhook-signature: v1,<base64>` (several space-separated
//! signatures may be sent, so a secret can rotate with two valid at once). Secrets are written
//! `whsec_<base64 of the key bytes>`.
//!
//! Used for payment gateways' deposit webhooks and, signing, for the engine's own webhooks.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A parsed signing secret (the key bytes), never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a signed message was refused; the detail a sender may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A header is missing or not in its format.
    Malformed(&'static str),
    /// The timestamp is further from now than the tolerance (a replay, or a stale retry).
    Stale,
    /// No signature matches under any current secret.
    Mismatch,
}

impl Secret {
    /// Parses `whsec_<base64>` (the prefix is optional); the key must be 16 to 64 bytes.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let b64 = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
        let key = B64
            .decode(b64)
            .map_err(|_| "a signing secret is whsec_ and base64".to_owned())?;
        if !(16..=64).contains(&key.len()) {
            return Err(format!(
                "a signing secret must be 16 to 64 bytes, this one is {}",
                key.len()
            ));
        }
        Ok(Secret(key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // Any key length is valid for HMAC, so this cannot fail; parse bounded it anyway.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// Parses one or two secrets (the current one and, while rotating, the previous).
    pub fn parse_list(texts: &[String]) -> Result<Vec<Secret>, String> {
        if texts.is_empty() || texts.len() > 2 {
            return Err("one or two secrets are needed".into());
        }
        texts.iter().map(|t| Secret::parse(t)).collect()
    }

    /// The `webhook-signature` value for a message: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", B64.encode(tag))
    }
}

/// Checks a message's headers against any of `secrets` (the current one and, while rotating,
/// the previous): the timestamp within `tolerance_s` of `now_s` either way, and one of the
/// space-separated `v1,` signatures matching in constant time.
pub fn verify(
    secrets: &[Secret],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), Refusal> {
    if id.is_empty() || id.len() > 256 {
        return Err(Refusal::Malformed("webhook-id"));
    }
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| Refusal::Malformed("webhook-timestamp"))?;
    if now_s.abs_diff(ts) > tolerance_s.unsigned_abs() {
        return Err(Refusal::Stale);
    }
    let mut any = false;
    for sig in signatures.split(' ').filter(|s| !s.is_empty()).take(8) {
        let Some(b64) = sig.strip_prefix("v1,") else {
            continue;
        };
        let Ok(tag) = B64.decode(b64) else {
            continue;
        };
        any = true;
        for secret in secrets {
            if secret.mac(id, ts, body).verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
    }
    if any {
        Err(Refusal::Mismatch)
    } else {
        Err(Refusal::Malformed("webhook-signature"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference implementations.
    #[test]
    fn signs_the_specification_example() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verify_takes_any_current_secret_and_refuses_stale_altered_or_unsigned() {
        let old = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let new = Secret::parse(&format!("whsec_{}", B64.encode([7u8; 32]))).unwrap();
        let sig = old.sign("m1", 1000, b"body");
        let both = [new.clone(), old.clone()];
        assert_eq!(
            verify(&both, "m1", "1000", &sig, b"body", 1100, 300),
            Ok(())
        );
        // Two signatures, one of them ours.
        let pair = format!("v1,AAAA {sig}");
        assert_eq!(
            verify(&both, "m1", "1000", &pair, b"body", 1000, 300),
            Ok(())
        );
        assert_eq!(
            verify(&[new], "m1", "1000", &sig, b"body", 1000, 300),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            verify(&both, "m1", "1000", &sig, b"bodY", 1000, 300),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            verify(&both, "m2", "1000", &sig, b"body", 1000, 300),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            verify(&both, "m1", "1000", &sig, b"body", 1301, 300),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verify(&both, "m1", "1000", &sig, b"body", 699, 300),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verify(&both, "m1", "x", &sig, b"body", 1000, 300),
            Err(Refusal::Malformed("webhook-timestamp"))
        );
        assert_eq!(
            verify(&both, "m1", "1000", "v2,abc", b"body", 1000, 300),
            Err(Refusal::Malformed("webhook-signature"))
        );
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err());
        assert_eq!(format!("{old:?}"), "Secret(..)");
    }
}
