//! Pools: each shard's slice of every SKU's unsold codes (or issue allowance) as slot ranges, the
//! code slot numbering (allocated by shard 0, replicated through `CodesAdded`), and lending
//! between shards.

use crate::event::{Event, SlotRange};
use crate::maps::{sorted, HashMap};
use crate::state::Decision;
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// This shard's slice of a SKU's pool of unsold codes (or issue allowance), as slot ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// start -> end of disjoint half-open ranges.
    pub ranges: BTreeMap<u64, u64>,
    pub available: u64,
    /// Counters that must reconcile: available = added + received - lent - sold.
    pub added: u64,
    pub received: u64,
    pub lent: u64,
    pub sold: u64,
}

impl Pool {
    /// The lowest `n` slots, without taking them (decide must not mutate).
    pub fn peek(&self, mut n: u64) -> Vec<SlotRange> {
        let mut out = Vec::new();
        for (&start, &end) in &self.ranges {
            if n == 0 {
                break;
            }
            let take = (end - start).min(n);
            out.push((start, start + take));
            n -= take;
        }
        out
    }

    fn insert(&mut self, (start, end): SlotRange) {
        debug_assert!(start < end, "empty slot range");
        self.ranges.insert(start, end);
        self.available += end - start;
    }

    /// Removes ranges that must lie within held ranges; a broken journal is a bug, not input.
    fn remove(&mut self, (start, end): SlotRange) {
        let found = self
            .ranges
            .range(..=start)
            .next_back()
            .map(|(s, e)| (*s, *e));
        let (s, e) = match found {
            Some((s, e)) if e >= end => (s, e),
            _ => panic!("slot range {start}..{end} is not in the pool"),
        };
        self.ranges.remove(&s);
        if s < start {
            self.ranges.insert(s, start);
        }
        if end < e {
            self.ranges.insert(end, e);
        }
        self.available -= end - start;
    }
}

/// Every SKU's pool slice on one shard, and the next free code slot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pools {
    #[serde(serialize_with = "sorted")]
    pub(crate) pools: HashMap<SkuId, Pool>,
    /// Next free code slot; replicated through `CodesAdded`, allocated only by shard 0.
    pub(crate) next_slot: u64,
}

impl Pools {
    /// A SKU's pool slice on this shard.
    pub fn get(&self, sku: &SkuId) -> Option<&Pool> {
        self.pools.get(sku)
    }

    /// Every pool slice of the shard, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&SkuId, &Pool)> {
        self.pools.iter()
    }

    /// Codes of a SKU available on this shard.
    pub fn available(&self, sku: &SkuId) -> u64 {
        self.pools.get(sku).map_or(0, |p| p.available)
    }

    /// The next free code slot.
    /// The pool a sold line's codes came from: its supplier's offer pool of the SKU if that
    /// pool holds the line's first slot, else the SKU's own pool.
    fn pool_of(&self, line: &crate::event::SoldLine) -> SkuId {
        let first = line.slots.first().map_or(0, |r| r.0);
        let holds = |pool: &SkuId| {
            self.pools.get(pool).is_some_and(|p| {
                p.ranges
                    .range(..=first)
                    .next_back()
                    .is_some_and(|(_, end)| *end > first)
            })
        };
        // The SKU's own pool first: the common case names no new string.
        if holds(&line.sku) {
            return line.sku.clone();
        }
        let offer = crate::sourcing::offer_pool(&line.sku, &line.supplier);
        if holds(&offer) {
            offer
        } else {
            line.sku.clone()
        }
    }

    pub fn next_slot(&self) -> u64 {
        self.next_slot
    }

    /// The pool of each line of an order, as `pool_of` finds it (before its slots are taken).
    pub(crate) fn pools_of(&self, order: &crate::event::CompletedOrder) -> Vec<SkuId> {
        order.lines.iter().map(|l| self.pool_of(l)).collect()
    }

    /// Takes an order's slots out of their pools while it waits for review; its pool's
    /// counters stay (`verify` counts the reserved slots from the reviews).
    pub(crate) fn reserve(&mut self, pool: &SkuId, range: SlotRange) {
        self.pools.entry(pool.clone()).or_default().remove(range);
    }

    /// Puts a cancelled card's code back, unsold.
    pub(crate) fn restock(&mut self, pool: &SkuId, slot: u64) {
        let p = self.pools.entry(pool.clone()).or_default();
        p.insert((slot, slot + 1));
        p.sold -= 1;
    }

    /// Puts a reserved range back (a review ended).
    pub(crate) fn unreserve(&mut self, pool: &SkuId, range: SlotRange) {
        self.pools.entry(pool.clone()).or_default().insert(range);
    }

    /// Splits `count` slots from `first` into one slice per shard, for `pool` (a SKU's, or an
    /// offer's, see `sourcing`).
    pub(crate) fn decide_add_codes(
        &self,
        pool: &SkuId,
        first: u64,
        count: u64,
        shards: u16,
    ) -> Decision {
        if count == 0 || first < self.next_slot {
            return Decision::Reject(Rejection::QuantityOutOfRange);
        }
        let pool = pool.clone();
        let shards = u64::from(shards.max(1));
        let mut slices = Vec::new();
        let mut start = first;
        for i in 0..shards {
            let n = count / shards + u64::from(i < count % shards);
            if n > 0 {
                slices.push((ShardId(i as u16), (start, start + n)));
                start += n;
            }
        }
        Decision::Events(vec![Event::CodesAdded { sku: pool, slices }])
    }

    pub(crate) fn decide_lend(&self, sku: &SkuId, want: u64, to: ShardId) -> Decision {
        let have = self.available(sku);
        // Lend at least what was asked and up to half of what we have, so a hot SKU's stock
        // drifts to the shards that sell it instead of being borrowed one code at a time.
        let give = have.min(want.max(have / 2));
        let ranges = self
            .pools
            .get(sku)
            .map(|p| p.peek(give))
            .unwrap_or_default();
        Decision::Events(vec![Event::StockLent {
            sku: sku.clone(),
            to,
            ranges,
        }])
    }

    /// The pools' part of an event on shard `me`.
    pub(crate) fn apply(&mut self, event: &Event, me: ShardId) {
        match event {
            Event::CodesAdded { sku, slices } => {
                for (shard, range) in slices {
                    self.next_slot = self.next_slot.max(range.1);
                    if *shard == me {
                        let pool = self.pools.entry(sku.clone()).or_default();
                        pool.insert(*range);
                        pool.added += range.1 - range.0;
                    }
                }
            }
            Event::StockLent { sku, ranges, .. } => {
                let pool = self.pools.entry(sku.clone()).or_default();
                for r in ranges {
                    pool.remove(*r);
                    pool.lent += r.1 - r.0;
                }
            }
            Event::StockReceived { sku, ranges, .. } => {
                let pool = self.pools.entry(sku.clone()).or_default();
                for r in ranges {
                    pool.insert(*r);
                    pool.received += r.1 - r.0;
                }
            }
            Event::OrderCompleted(order) => {
                for line in order.lines.iter().filter(|l| !l.slots.is_empty()) {
                    let key = self.pool_of(line);
                    let pool = self.pools.entry(key).or_default();
                    for r in &line.slots {
                        pool.remove(*r);
                        pool.sold += r.1 - r.0;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_takes_lowest_slots_and_splits_ranges() {
        let mut p = Pool::default();
        p.insert((10, 20));
        p.insert((30, 35));
        assert_eq!(p.peek(12), vec![(10, 20), (30, 32)]);
        p.remove((12, 15));
        assert_eq!(
            p.ranges.iter().map(|(a, b)| (*a, *b)).collect::<Vec<_>>(),
            vec![(10, 12), (15, 20), (30, 35)]
        );
        assert_eq!(p.available, 12);
    }

    fn pools_with(n: u64) -> Pools {
        let mut pools = Pools::default();
        let ev = Event::CodesAdded {
            sku: SkuId::new("s"),
            slices: vec![(ShardId(0), (0, n)), (ShardId(1), (n, 2 * n))],
        };
        pools.apply(&ev, ShardId(0));
        pools
    }

    #[test]
    fn lending_gives_at_least_the_ask_and_up_to_half_and_the_counters_reconcile() {
        let mut lender = pools_with(10);
        let Decision::Events(evs) = lender.decide_lend(&SkuId::new("s"), 2, ShardId(1)) else {
            panic!("lend decides events")
        };
        let Some(Event::StockLent { ranges, .. }) = evs.first() else {
            panic!("{evs:?}")
        };
        assert_eq!(
            ranges,
            &vec![(0, 5)],
            "half of ten, more than the two asked"
        );
        lender.apply(&evs[0], ShardId(0));
        let p = lender.get(&SkuId::new("s")).expect("pool");
        assert_eq!((p.available, p.added, p.lent), (5, 10, 5));

        let mut borrower = Pools::default();
        let received = Event::StockReceived {
            sku: SkuId::new("s"),
            from: ShardId(0),
            ranges: ranges.clone(),
        };
        borrower.apply(&received, ShardId(1));
        let b = borrower.get(&SkuId::new("s")).expect("pool");
        assert_eq!((b.available, b.received), (5, 5));
        // A shard with nothing lends nothing, whatever is asked.
        let Decision::Events(evs) = borrower.decide_lend(&SkuId::new("t"), 3, ShardId(0)) else {
            panic!()
        };
        assert!(matches!(&evs[0], Event::StockLent { ranges, .. } if ranges.is_empty()));
        // Slots below the numbering are refused: they were handed out already.
        assert_eq!(
            lender.decide_add_codes(&SkuId::new("s"), 5, 1, 2),
            Decision::Reject(Rejection::QuantityOutOfRange)
        );
    }
}
