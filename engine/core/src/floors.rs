//! Margin floors: the least a card may earn over its cost, as a fraction of its face value, set
//! per SKU or per brand (a SKU's own floor wins over its brand's). The lowest price a card may
//! sell at is `cost + face × floor`, rounded up to the minor unit, so rounding never takes a sale
//! below the floor. Replicated like the catalog.
//!
//! Where it holds: a pricing rule or a price list that would sell a fixed denomination below its
//! lowest price is refused when it is set (`below_margin_floor`), and every order line is priced
//! at no less than its lowest price whatever changed since (a cost that rose, a floor set after
//! a list): the discount or promotion then stops at the floor. With no floor the lowest price is
//! the cost itself.

use crate::catalog::Sku;
use crate::pricelists::PriceTarget;
use crate::state::Decision;
use crate::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most floors the table may hold.
pub const MARGIN_FLOORS_MAX: usize = 1_000;

/// Every margin floor (replicated: the same on every shard).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarginFloors {
    pub by_sku: BTreeMap<SkuId, Decimal>,
    pub by_brand: BTreeMap<String, Decimal>,
}

impl MarginFloors {
    /// The floor that holds for `sku`: its own, else its brand's, else none (zero).
    pub fn floor(&self, sku: &Sku) -> Decimal {
        self.by_sku
            .get(&sku.id)
            .or_else(|| self.by_brand.get(&sku.brand))
            .copied()
            .unwrap_or(Decimal::ZERO)
    }

    /// The lowest price a card of `sku` with this face and cost may sell at.
    pub fn lowest_price(&self, sku: &Sku, face: Money, cost: Money) -> Result<Money, Rejection> {
        let floor = self.floor(sku);
        if floor.is_zero() {
            return Ok(cost);
        }
        let margin = Decimal::from(face.minor())
            .checked_mul(floor)
            .ok_or(Rejection::AmountOutOfRange)?
            .round_dp_with_strategy(0, RoundingStrategy::AwayFromZero)
            .to_i64()
            .ok_or(Rejection::AmountOutOfRange)?;
        cost.checked_add(Money::new(margin, cost.currency()))
    }

    /// The floors as a list of targets, SKUs first.
    pub fn entries(&self) -> Vec<(PriceTarget, Decimal)> {
        let skus = self
            .by_sku
            .iter()
            .map(|(s, f)| (PriceTarget::Sku(s.clone()), *f));
        let brands = self
            .by_brand
            .iter()
            .map(|(b, f)| (PriceTarget::Brand(b.clone()), *f));
        skus.chain(brands).collect()
    }

    /// Why the table is not well formed, if it is not: too long, or a floor outside [0, 1).
    pub fn malformed(&self) -> Option<&'static str> {
        if self.by_sku.len() + self.by_brand.len() > MARGIN_FLOORS_MAX {
            return Some("too many floors");
        }
        let out = |f: &Decimal| *f < Decimal::ZERO || *f >= Decimal::ONE;
        if self.by_sku.values().chain(self.by_brand.values()).any(out) {
            return Some("a floor outside [0, 1)");
        }
        None
    }

    /// Replaces the whole table, if it is well formed. Rules and lists set before keep working:
    /// orders stop their discounts at the new floors.
    pub(crate) fn decide_set(floors: &MarginFloors) -> Decision {
        if floors.malformed().is_some() {
            return Decision::Reject(Rejection::InvalidMarginFloor);
        }
        Decision::Events(vec![Event::MarginFloorsSet(floors.clone())])
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        if let Event::MarginFloorsSet(f) = event {
            *self = f.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests_support::sku;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").expect("USD"))
    }

    #[test]
    fn a_skus_own_floor_wins_over_its_brands_and_rounds_up() {
        let s = sku("s", "b");
        let mut f = MarginFloors::default();
        assert_eq!(f.lowest_price(&s, usd(2_500), usd(2_125)), Ok(usd(2_125)));
        f.by_brand.insert("b".into(), Decimal::new(3, 2));
        // 3% of 25.00 is 0.75.
        assert_eq!(f.lowest_price(&s, usd(2_500), usd(2_125)), Ok(usd(2_200)));
        f.by_sku.insert(s.id.clone(), Decimal::new(1, 3));
        // 0.1% of 25.01 is 0.02501: rounded up to 0.03, never down below the floor.
        assert_eq!(f.lowest_price(&s, usd(2_501), usd(2_125)), Ok(usd(2_128)));
    }

    #[test]
    fn a_floor_of_one_or_below_zero_is_refused() {
        let mut f = MarginFloors::default();
        f.by_brand.insert("b".into(), Decimal::ONE);
        assert_eq!(
            MarginFloors::decide_set(&f),
            Decision::Reject(Rejection::InvalidMarginFloor)
        );
        f.by_brand.insert("b".into(), Decimal::new(-1, 2));
        assert_eq!(
            MarginFloors::decide_set(&f),
            Decision::Reject(Rejection::InvalidMarginFloor)
        );
    }
}
