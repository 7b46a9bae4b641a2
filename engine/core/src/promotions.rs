//! Pricing rules per SKU: a card's price as its face value, face ± a percentage, or a fixed
//! price, each optionally inside a validity window `[from, until)` (a Black Friday promotion
//! from one instant to the next), judged by the order's `now`. The first rule in the list
//! whose window holds prices the card; with none, the catalog's markup does. Replicated like
//! the catalog.
//!
//! The margin floor is the card's cost, as for price lists: a rule that would sell a card
//! below cost is refused when it is set, and an order is never priced below cost.

use crate::catalog::{Catalog, Denomination, Sku};
use crate::money::scale_half_even;
use crate::state::Decision;
use crate::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most rules one SKU may carry.
pub const PRICING_RULES_MAX: usize = 20;

/// How a rule prices one card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PriceRule {
    /// The face value.
    Face,
    /// Face × (1 + percent): 0.10 is 10% above face, -0.05 is 5% off.
    FacePercent(Decimal),
    /// A price in the SKU's currency, minor units (fixed denominations only).
    Fixed(i64),
}

/// A rule and the window in which it holds (`from` inclusive, `until` exclusive; open when
/// absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingRule {
    pub rule: PriceRule,
    pub from: Option<UnixMillis>,
    pub until: Option<UnixMillis>,
}

impl PricingRule {
    /// Whether the rule prices orders decided at `now`.
    pub fn holds_at(&self, now: UnixMillis) -> bool {
        self.from.is_none_or(|f| now >= f) && self.until.is_none_or(|u| now < u)
    }

    /// The price of a card of face `face` under this rule.
    pub fn price(&self, face: Money) -> Result<Money, Rejection> {
        match &self.rule {
            PriceRule::Face => Ok(face),
            PriceRule::FacePercent(p) => {
                let factor = Decimal::ONE
                    .checked_add(*p)
                    .ok_or(Rejection::AmountOutOfRange)?;
                scale_half_even(face.minor(), factor, face.currency())
            }
            PriceRule::Fixed(minor) => Ok(Money::new(*minor, face.currency())),
        }
    }
}

/// Why a SKU's rules are not well formed, if they are not.
pub fn malformed(sku: &Sku, rules: &[PricingRule]) -> Option<&'static str> {
    if rules.len() > PRICING_RULES_MAX {
        return Some("too many rules");
    }
    for r in rules {
        if let (Some(f), Some(u)) = (r.from, r.until) {
            if u <= f {
                return Some("a window that ends before it starts");
            }
        }
        match &r.rule {
            PriceRule::Face => {}
            PriceRule::FacePercent(p) => {
                if *p <= -Decimal::ONE || *p > Decimal::from(10) {
                    return Some("a percentage outside (-1, 10]");
                }
            }
            PriceRule::Fixed(m) => {
                if !matches!(sku.denomination, Denomination::Fixed(_)) {
                    return Some("a fixed price on an open denomination");
                }
                if !(1..=AMOUNT_MINOR_MAX).contains(m) {
                    return Some("a fixed price out of range");
                }
            }
        }
    }
    None
}

/// Every SKU's pricing rules (replicated).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotions {
    pub(crate) by_sku: BTreeMap<SkuId, Vec<PricingRule>>,
}

impl Promotions {
    /// A SKU's rules (empty when it has none).
    pub fn get(&self, sku: &SkuId) -> &[PricingRule] {
        self.by_sku.get(sku).map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.by_sku.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sku.is_empty()
    }

    /// The price a rule gives a card of `sku` with face `face` at `now`, if one holds then.
    pub fn price_at(
        &self,
        sku: &SkuId,
        face: Money,
        now: UnixMillis,
    ) -> Option<Result<Money, Rejection>> {
        self.get(sku)
            .iter()
            .find(|r| r.holds_at(now))
            .map(|r| r.price(face))
    }

    /// Replaces a SKU's rules (none removes them), if they are well formed and none sells a
    /// card of it below cost.
    pub(crate) fn decide_set(
        catalog: &Catalog,
        floors: &crate::floors::MarginFloors,
        sku: &SkuId,
        rules: &[PricingRule],
    ) -> Decision {
        let Some(s) = catalog.sku(sku) else {
            return Decision::Reject(Rejection::SkuNotFound);
        };
        if malformed(s, rules).is_some() {
            return Decision::Reject(Rejection::InvalidPricingRule);
        }
        // Open denominations are floored per order; a fixed one is checked now.
        if let Ok(p) = catalog.unit_price(s, None) {
            let Ok(lowest) = floors.lowest_price(s, p.face, p.cost) else {
                return Decision::Reject(Rejection::BelowMarginFloor);
            };
            for r in rules {
                if r.price(p.face)
                    .map_or(true, |price| price.minor() < lowest.minor())
                {
                    return Decision::Reject(Rejection::BelowMarginFloor);
                }
            }
        }
        Decision::Events(vec![Event::PricingSet {
            sku: sku.clone(),
            rules: rules.to_vec(),
        }])
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        if let Event::PricingSet { sku, rules } = event {
            if rules.is_empty() {
                self.by_sku.remove(sku);
            } else {
                self.by_sku.insert(sku.clone(), rules.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").expect("USD"))
    }

    fn rule(rule: PriceRule, from: Option<u64>, until: Option<u64>) -> PricingRule {
        PricingRule {
            rule,
            from: from.map(UnixMillis),
            until: until.map(UnixMillis),
        }
    }

    #[test]
    fn a_promotion_holds_from_its_first_instant_until_just_before_its_end() {
        let sku = SkuId::new("gc");
        let p = Promotions {
            by_sku: [(
                sku.clone(),
                vec![
                    rule(
                        PriceRule::FacePercent(Decimal::new(-5, 2)),
                        Some(1_000),
                        Some(2_000),
                    ),
                    rule(PriceRule::Face, None, None),
                ],
            )]
            .into_iter()
            .collect(),
        };
        let at = |t: u64| {
            p.price_at(&sku, usd(2500), UnixMillis(t))
                .map(|r| r.unwrap().minor())
        };
        assert_eq!(
            [at(999), at(1_000), at(1_999), at(2_000)],
            [Some(2500), Some(2375), Some(2375), Some(2500)]
        );
        assert_eq!(
            p.price_at(&SkuId::new("other"), usd(2500), UnixMillis(1_500)),
            None
        );
    }

    #[test]
    fn malformed_rules_are_named() {
        let sku = crate::catalog::tests_support::sku("gc", "Acme");
        let bad = |r: PricingRule| malformed(&sku, &[r]);
        assert_eq!(
            bad(rule(PriceRule::Face, Some(5), Some(5))),
            Some("a window that ends before it starts")
        );
        assert_eq!(
            bad(rule(
                PriceRule::FacePercent(Decimal::NEGATIVE_ONE),
                None,
                None
            )),
            Some("a percentage outside (-1, 10]")
        );
        assert_eq!(
            bad(rule(PriceRule::Fixed(0), None, None)),
            Some("a fixed price out of range")
        );
        assert_eq!(bad(rule(PriceRule::Fixed(2_400), Some(1), Some(2))), None);
    }
}
