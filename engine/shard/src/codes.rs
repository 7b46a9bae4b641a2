//! Card code secrets: sealing at rest (ChaCha20-Poly1305 with a random nonce per code), the keyed
//! hash redemption looks codes up by (BLAKE3 keyed mode), and generation of issued codes from the
//! OS's CSPRNG. Codes never reach a log: `mask` keeps the last four characters.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use giftcard_core::{state::shard_for, CodeHash, FreshCode, ShardId};
use rand::{rngs::OsRng, Rng, RngCore};

/// Characters of generated codes: no 0/O or 1/I/L to misread.
const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Length of generated codes: 18 symbols of 31 carry about 89 bits.
const ISSUED_CODE_LEN: usize = 18;
/// Longest code a supplier may upload.
pub const CODE_LEN_MAX: usize = 128;

/// First byte of a sealed code that names its key's version (the next byte). Codes sealed
/// before key versions existed, and every code sealed under version 0, are `nonce ‖ ciphertext`
/// with no header, and open with the version-0 key.
const VERSIONED: u8 = 0xF1;

/// The secrets of the code vault: the sealing keys by version (the current one seals, every
/// one listed opens what it sealed, so a key can rotate), and the hashing key.
#[derive(Clone)]
pub struct CodeVault {
    /// The key new codes are sealed with, and its version.
    cipher: ChaCha20Poly1305,
    version: u8,
    /// Every key that may open a code, by version (the current one included).
    openers: Vec<(u8, ChaCha20Poly1305)>,
    hash_key: [u8; 32],
    /// Keys the delivery report tokens, derived from the hash key for that purpose alone.
    report_key: [u8; 32],
}

/// A code that could not be unsealed: wrong key or damaged data.
#[derive(Debug, thiserror::Error)]
#[error("sealed code could not be opened")]
pub struct UnsealError;

impl CodeVault {
    /// A vault from a 32-byte sealing key (version 0) and a 32-byte hashing key.
    pub fn new(seal_key: [u8; 32], hash_key: [u8; 32]) -> CodeVault {
        CodeVault::with_keys((0, seal_key), &[], hash_key)
    }

    /// A vault sealing with `current` (version, key) that also opens codes sealed under any of
    /// `previous` (while a rotation re-seals them, or until it does).
    pub fn with_keys(
        current: (u8, [u8; 32]),
        previous: &[(u8, [u8; 32])],
        hash_key: [u8; 32],
    ) -> CodeVault {
        let cipher = |k: &[u8; 32]| ChaCha20Poly1305::new(Key::from_slice(k));
        let openers = std::iter::once(&current)
            .chain(previous.iter().filter(|(v, _)| *v != current.0))
            .map(|(v, k)| (*v, cipher(k)))
            .collect();
        CodeVault {
            cipher: cipher(&current.1),
            version: current.0,
            openers,
            hash_key,
            report_key: blake3::derive_key("giftcard delivery report token v1", &hash_key),
        }
    }

    fn report_tag(&self, card: u64, attempt: u8) -> blake3::Hash {
        let mut msg = [0u8; 9];
        msg[..8].copy_from_slice(&card.to_le_bytes());
        msg[8] = attempt;
        blake3::keyed_hash(&self.report_key, &msg)
    }

    /// The token a delivery event carries for one attempt of one card: only who received that
    /// event can report on that attempt (card ids are sequential; a bare id would let anyone on
    /// the bus settle every card's delivery).
    pub fn report_token(&self, card: u64, attempt: u8) -> String {
        self.report_tag(card, attempt).to_hex().to_string()
    }

    /// The `Nats-Msg-Id` the engine publishes an event under: a keyed hash of its stable event
    /// id, so it is stable across republishing (the broker drops the repeat) and yet no one who
    /// reads the stream can compute the next one and pre-publish it (the broker would then drop
    /// the real event as a duplicate).
    pub fn message_id(&self, event_id: &str) -> String {
        let mut msg = Vec::with_capacity(16 + event_id.len());
        msg.extend_from_slice(b"nats message id\0");
        msg.extend_from_slice(event_id.as_bytes());
        blake3::keyed_hash(&self.report_key, &msg).to_hex()[..32].to_owned()
    }

    /// Whether `token` is the one of this card's attempt (compared in constant time).
    pub fn report_token_valid(&self, card: u64, attempt: u8, token: &str) -> bool {
        blake3::Hash::from_hex(token).is_ok_and(|t| t == self.report_tag(card, attempt))
    }

    /// The keyed hash of a code, as used for lookups and duplicate detection.
    pub fn hash(&self, code: &str) -> CodeHash {
        let full = blake3::keyed_hash(&self.hash_key, code.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&full.as_bytes()[..16]);
        out
    }

    /// The version of the key new codes are sealed with.
    pub fn key_version(&self) -> u8 {
        self.version
    }

    /// The version of the key a sealed code names (0 for a code without a version header).
    pub fn sealed_version(sealed: &[u8]) -> u8 {
        match sealed {
            [VERSIONED, v, rest @ ..] if *v != 0 && rest.len() >= 12 + 16 => *v,
            _ => 0,
        }
    }

    /// Encrypts a code: under key version 0, nonce (12 bytes) followed by ciphertext and tag;
    /// under a later version the same behind a header `0xF1, version`.
    pub fn seal(&self, code: &str) -> Vec<u8> {
        self.seal_with(&mut OsRng, code)
    }

    /// [`CodeVault::seal`] with the nonce drawn from `rng` (a seeded one in the simulator).
    pub fn seal_with(&self, rng: &mut dyn RngCore, code: &str) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(2 + 12 + code.len() + 16);
        if self.version != 0 {
            out.extend_from_slice(&[VERSIONED, self.version]);
        }
        out.extend_from_slice(&nonce);
        // Encryption with a valid key and nonce cannot fail for inputs of this size.
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), code.as_bytes())
            .unwrap_or_default();
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a sealed code.
    pub fn unseal(&self, sealed: &[u8]) -> Result<String, UnsealError> {
        self.open_version(sealed).map(|(_, code)| code)
    }

    /// Decrypts a sealed code and says which key version opened it (what a rotation asks:
    /// a header alone could be a version-0 nonce that begins like one).
    pub fn open_version(&self, sealed: &[u8]) -> Result<(u8, String), UnsealError> {
        let open = |version: u8, body: &[u8]| {
            let (_, cipher) = self.openers.iter().find(|(v, _)| *v == version)?;
            if body.len() < 12 {
                return None;
            }
            let (nonce, ct) = body.split_at(12);
            cipher.decrypt(Nonce::from_slice(nonce), ct).ok()
        };
        // A versioned header, or a version-0 code whose random nonce happens to begin like one:
        // the AEAD tag tells which.
        let versioned = match Self::sealed_version(sealed) {
            0 => None,
            v => open(v, &sealed[2..]).map(|p| (v, p)),
        };
        let (version, plain) = versioned
            .or_else(|| open(0, sealed).map(|p| (0, p)))
            .ok_or(UnsealError)?;
        Ok((version, String::from_utf8(plain).map_err(|_| UnsealError)?))
    }

    /// A fresh issued-card code whose hash places it on `shard`, so the card can live with the
    /// wallet that bought it and still be found by code. Returns the clear code too, once.
    pub fn generate_for_shard(&self, shard: ShardId, shard_count: u16) -> (String, FreshCode) {
        self.generate_for_shard_with(&mut OsRng, shard, shard_count)
    }

    /// [`CodeVault::generate_for_shard`] drawing from `rng` (the OS's CSPRNG in production; a
    /// seeded generator in the simulator, so a seed replays exactly).
    pub fn generate_for_shard_with(
        &self,
        rng: &mut dyn RngCore,
        shard: ShardId,
        shard_count: u16,
    ) -> (String, FreshCode) {
        loop {
            let code: String = (0..ISSUED_CODE_LEN)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect();
            let hash = self.hash(&code);
            if shard_for(&hash, shard_count) == shard {
                let sealed = self.seal_with(rng, &code);
                return (code, FreshCode { hash, sealed });
            }
        }
    }
}

/// A code with all but its last four characters hidden, safe for logs and responses.
pub fn mask(code: &str) -> String {
    let n = code.chars().count();
    let tail: String = code.chars().skip(n.saturating_sub(4)).collect();
    format!("{}{}", "*".repeat(n.saturating_sub(4)), tail)
}

/// Whether a supplier code is acceptable: printable ASCII without spaces, 4 to 128 characters.
pub fn valid_code(code: &str) -> bool {
    (4..=CODE_LEN_MAX).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_rejects_tampering() {
        let v = CodeVault::new([7; 32], [9; 32]);
        let s = v.seal("ABCD-1234");
        assert_eq!(v.unseal(&s).expect("unseals"), "ABCD-1234");
        let mut t = s.clone();
        t[14] ^= 1;
        assert!(v.unseal(&t).is_err());
        assert_ne!(v.seal("ABCD-1234"), s, "nonces differ");
        assert!(
            !s.windows(4).any(|w| w == b"1234"),
            "code is not stored in clear"
        );
    }

    #[test]
    fn a_rotated_vault_opens_old_codes_seals_new_ones_under_its_version_and_needs_its_keys() {
        let old = CodeVault::new([7; 32], [9; 32]);
        let legacy = old.seal("OLD-CODE-0001");
        assert_eq!(CodeVault::sealed_version(&legacy), 0);
        let rotated = CodeVault::with_keys((1, [8; 32]), &[(0, [7; 32])], [9; 32]);
        assert_eq!(rotated.unseal(&legacy).expect("old code"), "OLD-CODE-0001");
        let fresh = rotated.seal("NEW-CODE-0001");
        assert_eq!(&fresh[..2], &[VERSIONED, 1]);
        assert_eq!(CodeVault::sealed_version(&fresh), 1);
        assert_eq!(rotated.unseal(&fresh).expect("new code"), "NEW-CODE-0001");
        // Again rotated, the oldest key retired: what it sealed no longer opens.
        let again = CodeVault::with_keys((2, [6; 32]), &[(1, [8; 32])], [9; 32]);
        assert_eq!(again.unseal(&fresh).expect("v1 code"), "NEW-CODE-0001");
        assert!(again.unseal(&legacy).is_err());
        assert!(
            old.unseal(&fresh).is_err(),
            "an old build cannot open a new key's code"
        );
        // The version byte is authenticated only through its key: naming another fails.
        let mut renamed = fresh.clone();
        renamed[1] = 2;
        assert!(again.unseal(&renamed).is_err());
    }

    #[test]
    fn generated_codes_land_on_the_requested_shard() {
        let v = CodeVault::new([1; 32], [2; 32]);
        for shard in 0..4 {
            let (code, fresh) = v.generate_for_shard(ShardId(shard), 4);
            assert_eq!(fresh.hash, v.hash(&code));
            assert_eq!(shard_for(&fresh.hash, 4), ShardId(shard));
            assert_eq!(code.len(), ISSUED_CODE_LEN);
        }
        assert_eq!(mask("ABCDEFGH"), "****EFGH");
    }
}
