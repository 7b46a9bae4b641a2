//! The maps the state is made of, and how they serialize: always in key order, so a snapshot's
//! bytes depend only on the events applied, never on hashing or insertion order.

use serde::{Serialize, Serializer};

pub use crate::spread::SpreadMap;

/// Maps of the state: a fast hasher, randomly keyed so client-chosen ids cannot force
/// collisions. Iteration order never leaves the shard (snapshots sort), so the keying is harmless.
pub type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Serializes a `HashMap` as a map in key order, so equal maps give equal bytes.
pub(crate) fn sorted<K: Ord + Serialize, V: Serialize, S: Serializer>(
    map: &HashMap<K, V>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(crate::spread::sorted_entries(map.iter()))
}
