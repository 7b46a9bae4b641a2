//! The liability of one shard: the stored value still owed on its issued cards, and the
//! breakage taken from expired ones, per currency and brand, as a history of points in time so
//! the report can be asked of any past instant.
//!
//! Each change (a card issued, a redemption, a reversal, an expiry) appends a point with the
//! totals after it, at the event's time; changes within one millisecond share a point. The
//! totals of the latest point always equal the ledger's `card:*` accounts of the series' cards
//! and its `revenue:breakage` account (checked by `verify`). A point is kept for every
//! millisecond with a change: the history grows with the cards' activity (24 bytes a point).

use crate::cards::Cards;
use crate::catalog::Catalog;
use crate::event::Event;
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The totals of a series after every change up to `at`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    pub at: UnixMillis,
    /// Stored value owed on the series' issued cards.
    pub owed_minor: i64,
    /// Value moved to breakage from the series' expired cards, to date.
    pub breakage_minor: i64,
}

/// What a series amounts to at an instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owed {
    pub owed_minor: i64,
    pub breakage_minor: i64,
}

impl Owed {
    pub fn add(&mut self, other: Owed) {
        self.owed_minor = self.owed_minor.saturating_add(other.owed_minor);
        self.breakage_minor = self.breakage_minor.saturating_add(other.breakage_minor);
    }
}

/// A liability report: per (currency, brand).
pub type LiabilityReport = BTreeMap<(Currency, String), Owed>;

/// Adds one shard's report into another's.
pub fn merge(into: &mut LiabilityReport, part: LiabilityReport) {
    for (k, v) in part {
        into.entry(k).or_default().add(v);
    }
}

/// The liability history of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liability {
    pub(crate) series: BTreeMap<(Currency, String), Vec<Point>>,
}

impl Liability {
    /// Each series' totals after every change at or before `at`; series that had not begun then
    /// are left out.
    pub fn at(&self, at: UnixMillis) -> LiabilityReport {
        self.series
            .iter()
            .filter_map(|(k, points)| {
                let n = points.partition_point(|p| p.at <= at);
                let p = points.get(n.checked_sub(1)?)?;
                Some((
                    k.clone(),
                    Owed {
                        owed_minor: p.owed_minor,
                        breakage_minor: p.breakage_minor,
                    },
                ))
            })
            .collect()
    }

    /// Each series' latest totals.
    pub fn latest(&self) -> LiabilityReport {
        self.at(UnixMillis(u64::MAX))
    }

    /// A history that begins at `at` with the cards' balances as they are: for a state written
    /// before the history was kept. Expired cards had no breakage then.
    pub fn from_cards(cards: &Cards, catalog: &Catalog, at: UnixMillis) -> Liability {
        let mut l = Liability::default();
        for (_, c) in cards.iter() {
            if matches!(c.code, crate::cards::CodeRef::Sealed(_)) {
                let key = (c.face.currency(), Self::brand_of(catalog, &c.sku));
                l.change(key, at, c.ledger_minor, 0);
            }
        }
        l
    }

    /// Every series with its points, earliest first.
    pub fn series(&self) -> impl Iterator<Item = (&(Currency, String), &Vec<Point>)> {
        self.series.iter()
    }

    /// Points kept, over every series.
    pub fn points(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }

    fn change(&mut self, key: (Currency, String), at: UnixMillis, owed: i64, breakage: i64) {
        if owed == 0 && breakage == 0 {
            return;
        }
        let points = self.series.entry(key).or_default();
        let last = points.last().copied().unwrap_or_default();
        // A shard's clock never goes back (`last_at`), so points stay in time order.
        let at = at.max(last.at);
        let next = Point {
            at,
            owed_minor: last.owed_minor.saturating_add(owed),
            breakage_minor: last.breakage_minor.saturating_add(breakage),
        };
        match points.last_mut() {
            Some(p) if p.at == at => *p = next,
            _ => points.push(next),
        }
    }

    fn brand_of(catalog: &Catalog, sku: &SkuId) -> String {
        catalog
            .sku(sku)
            .map(|s| s.brand.clone())
            .unwrap_or_default()
    }

    /// The liability's part of an event applied at `at`, after the cards applied it (a card's
    /// SKU is read from there).
    pub(crate) fn apply(
        &mut self,
        event: &Event,
        at: UnixMillis,
        cards: &Cards,
        catalog: &Catalog,
    ) {
        let card_series = |card: &CardId| {
            let c = cards.get(card)?;
            Some((c.face.currency(), Self::brand_of(catalog, &c.sku)))
        };
        match event {
            Event::OrderCompleted(o) => {
                for line in o.lines.iter().filter(|l| l.issued) {
                    let total = line.face.minor().saturating_mul(i64::from(line.quantity));
                    let key = (line.face.currency(), Self::brand_of(catalog, &line.sku));
                    self.change(key, at, total, 0);
                }
            }
            Event::Redeemed { card, amount, .. } => {
                if let Some(key) = card_series(card) {
                    self.change(key, at, -amount.minor(), 0);
                }
            }
            Event::RedemptionReversed { card, amount, .. } => {
                if let Some(key) = card_series(card) {
                    self.change(key, at, amount.minor(), 0);
                }
            }
            Event::CardCancelled {
                card,
                face,
                restock: None,
                ..
            } => {
                if let Some(key) = card_series(card) {
                    self.change(key, at, -face.minor(), 0);
                }
            }
            Event::CardExpired {
                card, remaining, ..
            } => {
                if let Some(key) = card_series(card) {
                    self.change(key, at, -remaining.minor(), remaining.minor());
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
    fn the_report_at_an_instant_sees_every_change_up_to_it_and_none_after() {
        let usd = Currency::parse("USD").expect("USD");
        let key = (usd, "b".to_owned());
        let mut l = Liability::default();
        l.change(key.clone(), UnixMillis(10), 5_000, 0);
        l.change(key.clone(), UnixMillis(10), 2_500, 0);
        l.change(key.clone(), UnixMillis(20), -1_000, 0);
        l.change(key.clone(), UnixMillis(30), -6_500, 6_500);
        assert_eq!(l.points(), 3, "changes in one ms share a point");
        assert!(l.at(UnixMillis(9)).is_empty());
        let at = |t| l.at(UnixMillis(t))[&key];
        assert_eq!(at(10).owed_minor, 7_500);
        assert_eq!(at(19).owed_minor, 7_500);
        assert_eq!(at(20).owed_minor, 6_500);
        assert_eq!(
            at(30),
            Owed {
                owed_minor: 0,
                breakage_minor: 6_500
            }
        );
        assert_eq!(l.latest()[&key], at(1_000));
        // A change stamped before the last point lands on it: time order holds.
        l.change(key.clone(), UnixMillis(25), 100, 0);
        assert_eq!(l.points(), 3);
        assert_eq!(l.at(UnixMillis(30))[&key].owed_minor, 100);
    }
}
