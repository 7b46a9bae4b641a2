//! `SpreadMap`: a hash map kept as [`PARTS`] smaller maps, chosen by key hash, for the state's
//! maps that grow with traffic (orders, cards, claims, deposits, redemptions, the code index).
//!
//! Why: a single table doubles in one step. At a few hundred thousand orders per shard that step
//! allocates and fills a table of tens of megabytes while the shard waits; on this project's
//! virtual machines first-touch page faults make it cost 100-300 ms, and the orders and cards
//! tables (same count) double in the same pass. Split in parts, each doubling moves a part's
//! entries only. Equal parts would all reach their thresholds within a few thousand inserts of
//! each other and still stall together, so the parts are unequal: part `i` takes a share
//! proportional to `2^(i/64)`, which spreads the parts' doublings evenly over every doubling
//! of the whole map (one part at a time, every 1/64 of the map's size).
//!
//! It serializes exactly as the state's other maps: a map in key order, so snapshots are equal
//! to those of a plain map with the same entries.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::hash::Hash;

/// Parts of every map. More parts make each step smaller; each costs a `HashMap` header.
pub const PARTS: usize = 64;

type Part<K, V> = std::collections::HashMap<K, V, crate::maps::StateHasher>;

/// Slices of the routing hash, shared out to the parts.
const SLICES: usize = 1024;

/// The part owning each slice: part `i` owns a number of slices proportional to `2^(i/64)`
/// (11 to 21 of the 1,024), in order, so part sizes grow geometrically from first to last.
fn slices() -> &'static [u8; SLICES] {
    static TABLE: std::sync::OnceLock<[u8; SLICES]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        // w_0 = 2^32 and w_(i+1) = w_i * 2^(1/64), the ratio as a 32-bit fixed-point number;
        // rounding moves at most a slice between neighbouring parts.
        const RATIO_Q32: u128 = 4_341_736_423; // round(2^(1/64) * 2^32)
        let mut weights = Vec::with_capacity(PARTS);
        let mut w: u128 = 1 << 32;
        for _ in 0..PARTS {
            weights.push(w as u64);
            w = (w * RATIO_Q32) >> 32;
        }
        let total: u64 = weights.iter().sum();
        debug_assert!(weights[PARTS - 1] < 2 * weights[0]);
        let mut table = [0u8; SLICES];
        let (mut part, mut upto) = (0usize, weights[0]);
        for (s, owner) in table.iter_mut().enumerate() {
            // The middle of slice s, on the same scale as the weights.
            let at = (2 * s as u64 + 1) * total / (2 * SLICES as u64);
            while at >= upto && part + 1 < PARTS {
                part += 1;
                upto += weights[part];
            }
            *owner = part as u8;
        }
        table
    })
}

/// Entries in key order: how the state writes every map, so snapshot bytes never depend on
/// hashing or insertion order.
pub(crate) fn sorted_entries<'a, K: Ord + 'a, V: 'a>(
    entries: impl Iterator<Item = (&'a K, &'a V)>,
) -> Vec<(&'a K, &'a V)> {
    let mut entries: Vec<(&K, &V)> = entries.collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

/// A map split by key hash into [`PARTS`] maps (see the module documentation).
#[derive(Clone)]
pub struct SpreadMap<K, V> {
    parts: Box<[Part<K, V>]>,
    /// Chooses the part; keyed independently of the parts' own hashers, so the keys that share
    /// a part do not share the bits a part's table uses.
    route: crate::maps::StateHasher,
    len: usize,
}

impl<K, V> Default for SpreadMap<K, V> {
    fn default() -> Self {
        SpreadMap {
            parts: (0..PARTS).map(|_| Part::default()).collect(),
            route: crate::maps::StateHasher::salted(0x005e_ed0f_5b1e_ad00),
            len: 0,
        }
    }
}

impl<K: Hash + Eq, V> SpreadMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn part_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        // The top 10 bits of a multiplicative mix (all 64 bits of the hash contribute) pick one
        // of the 1,024 slices.
        let slice = (self.route.hash_one(key).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize;
        usize::from(slices()[slice])
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.parts[self.part_of(key)].get(key)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let p = self.part_of(key);
        self.parts[p].get_mut(key)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.parts[self.part_of(key)].contains_key(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let p = self.part_of(&key);
        let old = self.parts[p].insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let p = self.part_of(key);
        let old = self.parts[p].remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.parts.iter().flat_map(|p| p.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

impl<'a, K, V> IntoIterator for &'a SpreadMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Part<K, V>>,
        std::collections::hash_map::Iter<'a, K, V>,
        fn(&'a Part<K, V>) -> std::collections::hash_map::Iter<'a, K, V>,
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.parts.iter().flat_map(|p| p.iter())
    }
}

impl<K: Hash + Eq, V> Extend<(K, V)> for SpreadMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Hash + Eq, V> FromIterator<(K, V)> for SpreadMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = SpreadMap::new();
        m.extend(iter);
        m
    }
}

impl<K: Hash + Eq, V: PartialEq> PartialEq for SpreadMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<K: Hash + Eq, V: Eq> Eq for SpreadMap<K, V> {}

impl<K: Hash + Eq + Ord + std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for SpreadMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(sorted_entries(self.iter())).finish()
    }
}

/// A map in key order, as the state's plain maps are written.
impl<K: Hash + Eq + Ord + Serialize, V: Serialize> Serialize for SpreadMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(sorted_entries(self.iter()))
    }
}

impl<'de, K, V> Deserialize<'de> for SpreadMap<K, V>
where
    K: Hash + Eq + Deserialize<'de>,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K, V> Visitor<'de> for Entries<K, V>
        where
            K: Hash + Eq + Deserialize<'de>,
            V: Deserialize<'de>,
        {
            type Value = SpreadMap<K, V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut m = SpreadMap::new();
                while let Some((k, v)) = access.next_entry()? {
                    m.insert(k, v);
                }
                Ok(m)
            }
        }
        deserializer.deserialize_map(Entries(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Plain = std::collections::HashMap<u32, u64, ahash::RandomState>;

    proptest! {
        /// Any sequence of inserts and removes leaves the same entries as a plain map, and
        /// both serialize to the same bytes as the state's sorted plain maps.
        #[test]
        fn behaves_and_serializes_like_a_plain_map(ops in proptest::collection::vec((any::<bool>(), 0u32..300, any::<u64>()), 0..600)) {
            let mut spread = SpreadMap::new();
            let mut plain = Plain::default();
            for (insert, k, v) in ops {
                if insert {
                    prop_assert_eq!(spread.insert(k, v), plain.insert(k, v));
                } else {
                    prop_assert_eq!(spread.remove(&k), plain.remove(&k));
                }
                prop_assert_eq!(spread.len(), plain.len());
            }
            for (k, v) in &plain {
                prop_assert_eq!(spread.get(k), Some(v));
            }
            prop_assert_eq!(spread.iter().count(), plain.len());
            let sorted: std::collections::BTreeMap<_, _> = plain.iter().collect();
            let bytes = bincode::serialize(&spread).expect("encodes");
            prop_assert_eq!(&bytes, &bincode::serialize(&sorted).expect("encodes"));
            let back: SpreadMap<u32, u64> = bincode::deserialize(&bytes).expect("decodes");
            prop_assert!(back == spread);
        }
    }

    #[test]
    fn part_sizes_grow_from_first_to_last_part() {
        let m: SpreadMap<u64, ()> = (0..200_000u64).map(|k| (k, ())).collect();
        let sizes: Vec<usize> = m.parts.iter().map(|p| p.len()).collect();
        assert!(sizes.iter().all(|&s| s > 0), "{sizes:?}");
        // The last part holds 1.6 to 2.4 times the first (2 expected).
        let (first, last) = (sizes[0], sizes[PARTS - 1]);
        assert!(
            last * 10 > first * 16 && last * 10 < first * 24,
            "{sizes:?}"
        );
    }

    /// What the unequal parts are for: while the map doubles, its parts double one after
    /// another, not all at once.
    #[test]
    fn parts_double_at_different_times() {
        let mut m: SpreadMap<u64, ()> = SpreadMap::new();
        let mut caps: Vec<usize> = m.parts.iter().map(|p| p.capacity()).collect();
        let mut grown_at = Vec::new();
        for k in 0..160_000u64 {
            m.insert(k, ());
            for (i, p) in m.parts.iter().enumerate() {
                if p.capacity() != caps[i] {
                    caps[i] = p.capacity();
                    if k >= 40_000 {
                        grown_at.push(k);
                    }
                }
            }
        }
        // From 40k to 160k entries the map doubles twice: about 128 part doublings, about one
        // per 1,000 inserts if evenly spread. Count the busiest window of 2,000 inserts: equal
        // parts put 25-31 doublings in it, these 2-9 (the routing is randomly keyed).
        let busiest = grown_at
            .iter()
            .map(|&k| {
                grown_at
                    .iter()
                    .filter(|&&j| j >= k && j < k + 2_000)
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(grown_at.len() >= 100, "{} part doublings", grown_at.len());
        assert!(
            busiest <= 14,
            "{busiest} part doublings within 2,000 inserts"
        );
    }
}
