//! Card code secrets: sealing at rest (ChaCha20-Poly1305 with a random nonce per code), the keyed
//! hash redemption looks codes up by (BLAKE3 keyed mode), and generation of issued codes from the
//! OS's CSPRNG. Codes never reach a log: `mask` keeps the last four characters.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use giftcard_core::{state::shard_for, CardId, CodeHash, FreshCode, ShardId};
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
/// First byte of a sealed code bound to its place: `0xF2, version, nonce, ciphertext`, sealed
/// with the slot or card it belongs to as associated data, so a box moved to another slot or
/// card does not open there. Every code sealed now is bound; the unbound forms above open
/// until `giftcard rotate-seal-key` has sealed them again.
const BOUND: u8 = 0xF2;

/// Where a sealed code belongs: what its box is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// A supplier code in the store, under its slot.
    Slot(u64),
    /// An issued card's code.
    Card(CardId),
}

impl Binding {
    /// The associated data: a domain tag, the kind of place, its id, and the key version.
    fn aad(self, version: u8) -> [u8; 26] {
        let mut out = [0u8; 26];
        out[..16].copy_from_slice(b"giftcard code\0v1");
        let (kind, id) = match self {
            Binding::Slot(slot) => (1, slot),
            Binding::Card(card) => (2, card.0),
        };
        out[16] = kind;
        out[17..25].copy_from_slice(&id.to_le_bytes());
        out[25] = version;
        out
    }
}

/// What opening a sealed code found: the code, the key version that opened it, and whether
/// the box was bound to its place (false for a box sealed before bindings existed).
#[derive(Debug)]
pub struct Opened {
    pub code: String,
    pub version: u8,
    pub bound: bool,
}

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

    /// Round 0 (the first sending) hashes card and attempt, as before resends existed, so its
    /// tokens stay valid across the upgrade; a later round adds its number.
    fn report_tag(&self, card: u64, round: u8, attempt: u8) -> blake3::Hash {
        let mut msg = [0u8; 10];
        msg[..8].copy_from_slice(&card.to_le_bytes());
        msg[8] = attempt;
        msg[9] = round;
        let len = if round == 0 { 9 } else { 10 };
        blake3::keyed_hash(&self.report_key, &msg[..len])
    }

    /// The token a delivery event carries for one attempt of one round of one card: only who
    /// received that event can report on that attempt (card ids are sequential; a bare id
    /// would let anyone on the bus settle every card's delivery).
    pub fn report_token(&self, card: u64, round: u8, attempt: u8) -> String {
        self.report_tag(card, round, attempt).to_hex().to_string()
    }

    /// The delivery round `token` was issued for, for this card's attempt: the report carries
    /// no round, its token says which (compared in constant time, over every possible round).
    pub fn report_round(&self, card: u64, attempt: u8, token: &str) -> Option<u8> {
        let t = blake3::Hash::from_hex(token).ok()?;
        let mut found = None;
        for round in 0..=giftcard_core::resends::RESENDS_MAX {
            if t == self.report_tag(card, round, attempt) {
                found = Some(round);
            }
        }
        found
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
            [BOUND | VERSIONED, v, rest @ ..] if rest.len() >= 12 + 16 => *v,
            _ => 0,
        }
    }

    /// Encrypts a code bound to `place`: `0xF2, version, nonce (12 bytes), ciphertext and tag`,
    /// with the place and the version as associated data.
    pub fn seal(&self, code: &str, place: Binding) -> Vec<u8> {
        self.seal_with(&mut OsRng, code, place)
    }

    /// [`CodeVault::seal`] with the nonce drawn from `rng` (a seeded one in the simulator).
    pub fn seal_with(&self, rng: &mut dyn RngCore, code: &str, place: Binding) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(2 + 12 + code.len() + 16);
        out.extend_from_slice(&[BOUND, self.version]);
        out.extend_from_slice(&nonce);
        let aad = place.aad(self.version);
        // Encryption with a valid key and nonce cannot fail for inputs of this size.
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: code.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts the code sealed for `place`.
    pub fn unseal(&self, sealed: &[u8], place: Binding) -> Result<String, UnsealError> {
        self.open(sealed, place).map(|o| o.code)
    }

    /// Decrypts the code sealed for `place` and says which key version opened it and whether
    /// the box was bound (what a rotation asks: a header alone could be the random nonce of a
    /// header-less box that begins like one; the AEAD tag tells which).
    pub fn open(&self, sealed: &[u8], place: Binding) -> Result<Opened, UnsealError> {
        let open = |version: u8, body: &[u8], aad: &[u8]| {
            let (_, cipher) = self.openers.iter().find(|(v, _)| *v == version)?;
            if body.len() < 12 {
                return None;
            }
            let (nonce, ct) = body.split_at(12);
            cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
                .ok()
        };
        let header = match sealed {
            [kind @ (BOUND | VERSIONED), v, ..] => Some((*kind, *v)),
            _ => None,
        };
        let found = match header {
            Some((BOUND, v)) => open(v, &sealed[2..], &place.aad(v)).map(|p| (v, true, p)),
            Some((_, v)) if v != 0 => open(v, &sealed[2..], &[]).map(|p| (v, false, p)),
            _ => None,
        }
        .or_else(|| open(0, sealed, &[]).map(|p| (0, false, p)));
        let (version, bound, plain) = found.ok_or(UnsealError)?;
        Ok(Opened {
            code: String::from_utf8(plain).map_err(|_| UnsealError)?,
            version,
            bound,
        })
    }

    /// Whether a box must be sealed again: a key other than the current one sealed it, or it
    /// is not bound to its place.
    pub fn needs_reseal(&self, opened: &Opened) -> bool {
        opened.version != self.version || !opened.bound
    }

    /// A fresh issued-card code whose hash places it on `shard`, so the card can live with the
    /// wallet that bought it and still be found by code. Returns the clear code too, once.
    pub fn generate_for_shard(
        &self,
        shard: ShardId,
        shard_count: u16,
        card: CardId,
    ) -> (String, FreshCode) {
        self.generate_for_shard_with(&mut OsRng, shard, shard_count, card)
    }

    /// [`CodeVault::generate_for_shard`] drawing from `rng` (the OS's CSPRNG in production; a
    /// seeded generator in the simulator, so a seed replays exactly).
    pub fn generate_for_shard_with(
        &self,
        rng: &mut dyn RngCore,
        shard: ShardId,
        shard_count: u16,
        card: CardId,
    ) -> (String, FreshCode) {
        loop {
            let code: String = (0..ISSUED_CODE_LEN)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect();
            let hash = self.hash(&code);
            if shard_for(&hash, shard_count) == shard {
                let sealed = self.seal_with(rng, &code, Binding::Card(card));
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

    const SLOT: Binding = Binding::Slot(7);

    /// A box as builds before bindings sealed it: under version 0 `nonce ‖ ciphertext`, under a
    /// later version the same behind `0xF1, version`, with no associated data.
    fn unbound(key: [u8; 32], version: u8, code: &str) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
        let nonce = [3u8; 12];
        let mut out = if version == 0 {
            Vec::new()
        } else {
            vec![VERSIONED, version]
        };
        out.extend_from_slice(&nonce);
        out.extend(
            cipher
                .encrypt(Nonce::from_slice(&nonce), code.as_bytes())
                .unwrap(),
        );
        out
    }

    #[test]
    fn seal_round_trips_and_rejects_tampering() {
        let v = CodeVault::new([7; 32], [9; 32]);
        let s = v.seal("ABCD-1234", SLOT);
        assert_eq!(&s[..2], &[BOUND, 0]);
        assert_eq!(v.unseal(&s, SLOT).expect("unseals"), "ABCD-1234");
        let mut t = s.clone();
        t[14] ^= 1;
        assert!(v.unseal(&t, SLOT).is_err());
        assert_ne!(v.seal("ABCD-1234", SLOT), s, "nonces differ");
        assert!(
            !s.windows(4).any(|w| w == b"1234"),
            "code is not stored in clear"
        );
    }

    #[test]
    fn a_box_opens_only_in_the_place_it_was_sealed_for() {
        let v = CodeVault::new([7; 32], [9; 32]);
        let card = Binding::Card(CardId(42));
        let s = v.seal("CARD-CODE-42", card);
        assert_eq!(v.unseal(&s, card).expect("its own card"), "CARD-CODE-42");
        for other in [
            Binding::Card(CardId(43)),
            Binding::Slot(42),
            Binding::Slot(7),
        ] {
            assert!(v.unseal(&s, other).is_err(), "opened as {other:?}");
        }
        let slot = v.seal("SLOT-CODE-7", SLOT);
        assert!(v.unseal(&slot, Binding::Slot(8)).is_err());
        assert!(v.unseal(&slot, Binding::Card(CardId(7))).is_err());
        // Boxes of the builds before open anywhere (they carry no place) and are marked so,
        // which is what makes `rotate-seal-key` seal them again.
        let legacy = unbound([7; 32], 0, "OLD-CODE-0001");
        let opened = v.open(&legacy, SLOT).expect("legacy box");
        assert_eq!((opened.code.as_str(), opened.version), ("OLD-CODE-0001", 0));
        assert!(!opened.bound && v.needs_reseal(&opened));
        let fresh = v.open(&slot, SLOT).unwrap();
        assert!(fresh.bound && !v.needs_reseal(&fresh));
    }

    #[test]
    fn a_rotated_vault_opens_old_codes_seals_new_ones_under_its_version_and_needs_its_keys() {
        let old = CodeVault::new([7; 32], [9; 32]);
        let legacy = unbound([7; 32], 0, "OLD-CODE-0001");
        let sealed_v0 = old.seal("OLD-CODE-0002", SLOT);
        assert_eq!(CodeVault::sealed_version(&legacy), 0);
        let rotated = CodeVault::with_keys((1, [8; 32]), &[(0, [7; 32])], [9; 32]);
        assert_eq!(rotated.unseal(&legacy, SLOT).unwrap(), "OLD-CODE-0001");
        assert_eq!(rotated.unseal(&sealed_v0, SLOT).unwrap(), "OLD-CODE-0002");
        assert!(rotated.needs_reseal(&rotated.open(&sealed_v0, SLOT).unwrap()));
        let fresh = rotated.seal("NEW-CODE-0001", SLOT);
        assert_eq!(&fresh[..2], &[BOUND, 1]);
        assert_eq!(CodeVault::sealed_version(&fresh), 1);
        assert_eq!(rotated.unseal(&fresh, SLOT).unwrap(), "NEW-CODE-0001");
        // A version-1 box of a build before bindings.
        let legacy_v1 = unbound([8; 32], 1, "OLD-CODE-0003");
        assert_eq!(rotated.open(&legacy_v1, SLOT).unwrap().version, 1);
        // Again rotated, the oldest key retired: what it sealed no longer opens.
        let again = CodeVault::with_keys((2, [6; 32]), &[(1, [8; 32])], [9; 32]);
        assert_eq!(again.unseal(&fresh, SLOT).unwrap(), "NEW-CODE-0001");
        assert!(again.unseal(&legacy, SLOT).is_err());
        assert!(again.unseal(&sealed_v0, SLOT).is_err());
        assert!(
            old.unseal(&fresh, SLOT).is_err(),
            "an old build cannot open a new key's code"
        );
        // The version byte is bound too: naming another fails even where both keys are held.
        let both = CodeVault::with_keys((2, [6; 32]), &[(1, [8; 32]), (3, [8; 32])], [9; 32]);
        let mut renamed = fresh.clone();
        renamed[1] = 3;
        assert!(both.unseal(&renamed, SLOT).is_err());
    }

    #[test]
    fn generated_codes_land_on_the_requested_shard() {
        let v = CodeVault::new([1; 32], [2; 32]);
        for shard in 0..4 {
            let card = CardId::new(ShardId(shard), 5);
            let (code, fresh) = v.generate_for_shard(ShardId(shard), 4, card);
            assert_eq!(fresh.hash, v.hash(&code));
            assert_eq!(shard_for(&fresh.hash, 4), ShardId(shard));
            assert_eq!(code.len(), ISSUED_CODE_LEN);
            assert_eq!(v.unseal(&fresh.sealed, Binding::Card(card)).unwrap(), code);
        }
        assert_eq!(mask("ABCDEFGH"), "****EFGH");
    }
}
