//! Keys of the side entries the journal keeps beside its frames: sealed codes by slot, and the
//! code index (keyed hash of a code to its slot).

use giftcard_core::CodeHash;

/// Key of a sealed code in the store.
pub fn slot_key(slot: u64) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(&slot.to_be_bytes());
    k
}

/// Key of the code index entry (code hash -> slot).
pub fn index_key(hash: &CodeHash) -> [u8; 17] {
    let mut k = [b'i'; 17];
    k[1..].copy_from_slice(hash);
    k
}

/// The code hash a code index key names (the inverse of [`index_key`]); `None` for other keys.
pub fn index_key_hash(key: &[u8]) -> Option<CodeHash> {
    match key {
        [b'i', hash @ ..] => hash.try_into().ok(),
        _ => None,
    }
}
