//! The maps the state is made of, and how they serialize: always in key order, so a snapshot's
//! bytes depend only on the events applied, never on hashing or insertion order.

use serde::{Serialize, Serializer};

pub use crate::spread::SpreadMap;

/// Maps of the state: a fast hasher keyed by [`StateHasher`], so client-chosen ids cannot force
/// collisions without the key. Iteration order never leaves the shard (snapshots sort).
pub type HashMap<K, V> = std::collections::HashMap<K, V, StateHasher>;

/// The hash keys of every state map, set once per process by the runtime from a secret
/// (`set_hash_keys`); until then fixed keys, so the simulator and tests are reproducible. No
/// randomness reaches the core: a key is data handed to it, like time.
static KEYS: std::sync::OnceLock<[u64; 4]> = std::sync::OnceLock::new();

/// Fixed keys for runs that set none (the digits of pi, as ahash's own fallback uses).
const DEFAULT_KEYS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// Sets the state maps' hash keys for this process. Only the first call counts; it must come
/// before any state is built. False if keys were already set.
pub fn set_hash_keys(keys: [u64; 4]) -> bool {
    KEYS.set(keys).is_ok()
}

/// The keyed hasher of the state's maps. `salt` gives an independent keying (the part routing
/// of `SpreadMap` must not share the bits its parts' tables use).
#[derive(Clone, Debug)]
pub struct StateHasher(ahash::RandomState);

impl StateHasher {
    pub(crate) fn salted(salt: u64) -> StateHasher {
        let k = KEYS.get().copied().unwrap_or(DEFAULT_KEYS);
        StateHasher(ahash::RandomState::with_seeds(
            k[0] ^ salt,
            k[1].rotate_left(17) ^ salt,
            k[2] ^ salt.rotate_left(29),
            k[3],
        ))
    }

    /// Hashes one value.
    pub(crate) fn hash_one<T: std::hash::Hash + ?Sized>(&self, x: &T) -> u64 {
        self.0.hash_one(x)
    }
}

impl Default for StateHasher {
    fn default() -> StateHasher {
        StateHasher::salted(0)
    }
}

impl std::hash::BuildHasher for StateHasher {
    type Hasher = ahash::AHasher;
    fn build_hasher(&self) -> ahash::AHasher {
        self.0.build_hasher()
    }
}

/// Serializes a `HashMap` as a map in key order, so equal maps give equal bytes.
pub(crate) fn sorted<K: Ord + Serialize, V: Serialize, S: Serializer>(
    map: &HashMap<K, V>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(crate::spread::sorted_entries(map.iter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_built_alike_iterate_alike_so_no_randomness_reaches_the_state() {
        let fill = || {
            let mut m: HashMap<u64, u64> = HashMap::default();
            let mut s: SpreadMap<u64, u64> = SpreadMap::new();
            for i in 0..1_000u64 {
                m.insert(i.wrapping_mul(0x9e37_79b9), i);
                s.insert(i.wrapping_mul(0x9e37_79b9), i);
            }
            (
                m.keys().copied().collect::<Vec<_>>(),
                s.keys().copied().collect::<Vec<_>>(),
            )
        };
        // With randomly keyed hashers (ahash's RandomState::new) two maps walk in different
        // orders; keyed by data they walk in the same one.
        assert_eq!(fill(), fill());
    }
}
