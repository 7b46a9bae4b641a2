//! B2B price lists: per API client, a discount off the catalog price by SKU or by brand,
//! optionally in quantity tiers (a corporate-gifting client buying 5,000 cards of a line pays
//! less per card than one buying 5). Replicated like the catalog: set on shard 0, applied on
//! every shard, so an order is priced where it executes.
//!
//! A list that would sell a SKU it names (or a SKU of a brand it names) below its lowest price
//! (cost plus margin floor, see `floors`) is refused when it is set, and an order is never
//! priced below it whatever changes after (a SKU's cost can rise later: the discount then
//! stops there). For issued cards the cost is the stored value, so with no floor a price list
//! never discounts them below face.

use crate::catalog::{Catalog, Sku};
use crate::state::Decision;
use crate::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most entries one client's list may hold.
pub const PRICE_LIST_ENTRIES_MAX: usize = 100;

/// What an entry discounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PriceTarget {
    Sku(SkuId),
    Brand(String),
}

/// A discount on a target's cards when an order line buys at least `min_quantity` of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceEntry {
    pub target: PriceTarget,
    pub min_quantity: u32,
    /// Off the catalog price, in [0, 1).
    pub discount: Decimal,
}

/// One client's price list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceList {
    pub entries: Vec<PriceEntry>,
}

impl PriceList {
    /// The discount on `quantity` cards of `sku`: the largest of the entries that name the SKU
    /// or its brand and whose tier the quantity reaches (zero when none does).
    pub fn discount(&self, sku: &Sku, quantity: u32) -> Decimal {
        self.entries
            .iter()
            .filter(|e| e.min_quantity <= quantity && e.applies_to(sku))
            .map(|e| e.discount)
            .max()
            .unwrap_or(Decimal::ZERO)
    }

    /// Why the list is not well formed, if it is not: too long, a discount outside [0, 1), a
    /// tier below 1 or above an order's cards, or a target's tiers not strictly increasing in
    /// quantity (each tier buys more than the one before).
    pub fn malformed(&self) -> Option<&'static str> {
        if self.entries.len() > PRICE_LIST_ENTRIES_MAX {
            return Some("too many entries");
        }
        let mut last: BTreeMap<String, u32> = BTreeMap::new();
        for e in &self.entries {
            if e.discount < Decimal::ZERO || e.discount >= Decimal::ONE {
                return Some("a discount outside [0, 1)");
            }
            if !(1..=ORDER_CARDS_MAX).contains(&e.min_quantity) {
                return Some("a tier outside 1 to the cards one order may buy");
            }
            let key = match &e.target {
                PriceTarget::Sku(s) => format!("s:{}", s.as_str()),
                PriceTarget::Brand(b) => format!("b:{b}"),
            };
            if last.get(&key).is_some_and(|q| *q >= e.min_quantity) {
                return Some("a target's tiers are not increasing");
            }
            last.insert(key, e.min_quantity);
        }
        None
    }
}

impl PriceEntry {
    fn applies_to(&self, sku: &Sku) -> bool {
        match &self.target {
            PriceTarget::Sku(id) => *id == sku.id,
            PriceTarget::Brand(b) => *b == sku.brand,
        }
    }
}

/// `price` less `discount`, rounded half to even to the minor unit, never below `floor` (and
/// never above `price`).
pub fn discounted(price: Money, discount: Decimal, floor: Money) -> Result<Money, Rejection> {
    if discount.is_zero() {
        return Ok(price);
    }
    let factor = Decimal::ONE
        .checked_sub(discount)
        .ok_or(Rejection::AmountOutOfRange)?;
    let raw = Decimal::from(price.minor())
        .checked_mul(factor)
        .ok_or(Rejection::AmountOutOfRange)?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
    let minor = raw.to_i64().ok_or(Rejection::AmountOutOfRange)?;
    Ok(Money::new(
        minor.clamp(floor.minor().min(price.minor()), price.minor()),
        price.currency(),
    ))
}

/// Every client's price list (replicated: the same on every shard).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceLists {
    pub(crate) lists: BTreeMap<ClientId, PriceList>,
}

impl PriceLists {
    /// A client's list, if it has one.
    pub fn get(&self, client: &ClientId) -> Option<&PriceList> {
        self.lists.get(client)
    }

    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Replaces a client's list (an empty one removes it), if it is well formed and sells no
    /// SKU of the catalog below its cost.
    pub(crate) fn decide_set(
        catalog: &Catalog,
        floors: &crate::floors::MarginFloors,
        client: &ClientId,
        list: &PriceList,
    ) -> Decision {
        if list.malformed().is_some() {
            return Decision::Reject(Rejection::InvalidPriceList);
        }
        for e in &list.entries {
            let skus: Vec<&Sku> = match &e.target {
                PriceTarget::Sku(id) => catalog.sku(id).into_iter().collect(),
                PriceTarget::Brand(b) => catalog.skus().filter(|s| s.brand == *b).collect(),
            };
            for sku in skus {
                // Open denominations price per request; their floor is applied per order.
                let Ok(p) = catalog.unit_price(sku, None) else {
                    continue;
                };
                let lowest = floors.lowest_price(sku, p.face, p.cost);
                let below = match (
                    discounted(p.price, e.discount, Money::zero(p.price.currency())),
                    lowest,
                ) {
                    (Ok(d), Ok(lowest)) => d.minor() < lowest.minor(),
                    _ => true,
                };
                if below {
                    return Decision::Reject(Rejection::BelowMarginFloor);
                }
            }
        }
        Decision::Events(vec![Event::PriceListSet {
            client: client.clone(),
            list: list.clone(),
        }])
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        if let Event::PriceListSet { client, list } = event {
            if list.entries.is_empty() {
                self.lists.remove(client);
            } else {
                self.lists.insert(client.clone(), list.clone());
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

    fn entry(target: PriceTarget, min_quantity: u32, discount: &str) -> PriceEntry {
        PriceEntry {
            target,
            min_quantity,
            discount: discount.parse().expect("decimal"),
        }
    }

    #[test]
    fn discounts_round_half_even_and_stop_at_the_floor() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(discounted(usd(2500), d("0.05"), usd(2125)), Ok(usd(2375)));
        // 2345 × 0.9 = 2110.5: half to even.
        assert_eq!(discounted(usd(2345), d("0.1"), usd(0)), Ok(usd(2110)));
        assert_eq!(discounted(usd(2355), d("0.1"), usd(0)), Ok(usd(2120)));
        // Never below the floor, never above the price.
        assert_eq!(discounted(usd(2500), d("0.2"), usd(2125)), Ok(usd(2125)));
        assert_eq!(discounted(usd(2500), d("0.2"), usd(9999)), Ok(usd(2500)));
        assert_eq!(discounted(usd(2500), Decimal::ZERO, usd(0)), Ok(usd(2500)));
    }

    #[test]
    fn tiers_apply_from_their_quantity_exactly_and_must_increase() {
        let sku = crate::catalog::tests_support::sku("gc", "Acme");
        let list = PriceList {
            entries: vec![
                entry(PriceTarget::Brand("Acme".into()), 1, "0.01"),
                entry(PriceTarget::Sku(SkuId::new("gc")), 100, "0.03"),
                entry(PriceTarget::Sku(SkuId::new("gc")), 5_000, "0.05"),
            ],
        };
        assert_eq!(list.malformed(), None);
        let at = |q| list.discount(&sku, q).to_string();
        assert_eq!(
            [at(1), at(99), at(100), at(4_999), at(5_000), at(10_000)],
            ["0.01", "0.01", "0.03", "0.03", "0.05", "0.05"]
        );
        let other = crate::catalog::tests_support::sku("other", "Else");
        assert_eq!(list.discount(&other, 10_000), Decimal::ZERO);
        let flat = PriceList {
            entries: vec![
                entry(PriceTarget::Sku(SkuId::new("gc")), 100, "0.03"),
                entry(PriceTarget::Sku(SkuId::new("gc")), 100, "0.05"),
            ],
        };
        assert_eq!(
            flat.malformed(),
            Some("a target's tiers are not increasing")
        );
        let whole = PriceList {
            entries: vec![entry(PriceTarget::Brand("Acme".into()), 1, "1")],
        };
        assert_eq!(whole.malformed(), Some("a discount outside [0, 1)"));
    }
}
