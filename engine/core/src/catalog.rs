//! The catalog (SKUs and their pricing rules) and the FX table. Both are replicated: every shard
//! holds the same copy, changed only by the replicated events `SkuDefined` and `FxSet`.

use crate::maps::HashMap;
use crate::money::{convert, scale_half_even};
use crate::{Currency, Money, Rejection, SkuId, SupplierId, AMOUNT_MINOR_MAX};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether the platform resells supplier codes or issues its own stored-value cards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkuKind {
    SupplierCode,
    Issued,
}

/// Face value: one fixed amount, or any amount in an inclusive range (minor units of the SKU's currency).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Denomination {
    Fixed(i64),
    Open { min: i64, max: i64 },
}

/// Whether the SKU may be sold now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkuStatus {
    Active,
    Paused,
}

/// A catalog product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    pub id: SkuId,
    pub brand: String,
    pub category: String,
    pub kind: SkuKind,
    pub denomination: Denomination,
    pub currency: Currency,
    /// Discount off face the supplier gives us (0.15 = we pay 85% of face).
    pub wholesale_discount: Decimal,
    /// Sell price = face × (1 + markup); negative for a discount to the buyer.
    pub markup: Decimal,
    pub supplier: SupplierId,
    /// Regions where it may be sold; empty means everywhere.
    pub regions: Vec<String>,
    pub status: SkuStatus,
    /// For `Issued` SKUs: how many cards may ever exist. `None` is unbounded.
    pub issue_cap: Option<u64>,
}

/// What one card of an order line costs, in the SKU's currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitPrice {
    pub face: Money,
    pub price: Money,
    /// What we owe the supplier per card (supplier codes); for issued cards the face value,
    /// which becomes the card's stored value.
    pub cost: Money,
}

impl Sku {
    /// Checks a definition before it enters the catalog.
    pub fn validate(&self) -> Result<(), Rejection> {
        let in_range = |m: i64| (1..=AMOUNT_MINOR_MAX).contains(&m);
        let denom_ok = match self.denomination {
            Denomination::Fixed(f) => in_range(f),
            Denomination::Open { min, max } => in_range(min) && in_range(max) && min <= max,
        };
        let rates_ok = self.wholesale_discount >= Decimal::ZERO
            && self.wholesale_discount < Decimal::ONE
            && self.markup > -Decimal::ONE
            && self.markup <= Decimal::from(10);
        let cap_ok = self.kind == SkuKind::Issued || self.issue_cap.is_none();
        if denom_ok && rates_ok && cap_ok {
            Ok(())
        } else {
            Err(Rejection::InvalidSku)
        }
    }

    /// Prices one card. `amount` is the chosen face value, required for open denominations
    /// and refused for fixed ones.
    pub fn unit_price(&self, amount: Option<i64>) -> Result<UnitPrice, Rejection> {
        let face_minor = match (self.denomination, amount) {
            (Denomination::Fixed(f), None) => f,
            (Denomination::Open { min, max }, Some(a)) if (min..=max).contains(&a) => a,
            _ => return Err(Rejection::InvalidDenomination),
        };
        let face = Money::new(face_minor, self.currency);
        let price = scale_half_even(face_minor, Decimal::ONE + self.markup, self.currency)?;
        let cost = match self.kind {
            SkuKind::SupplierCode => scale_half_even(
                face_minor,
                Decimal::ONE - self.wholesale_discount,
                self.currency,
            )?,
            SkuKind::Issued => face,
        };
        Ok(UnitPrice { face, price, cost })
    }

    /// Whether the SKU may be sold in `region`.
    pub fn sells_in(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| r == region)
    }
}

/// Mid rates between currency pairs and the spread charged on conversions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FxTable {
    /// Units of `quote` per unit of `base`, keyed (base, quote).
    pub mid: BTreeMap<(Currency, Currency), Decimal>,
    /// Added to the mid rate on every conversion the wallet pays for (0.01 = 1%).
    pub spread: Decimal,
}

/// An amount converted for a payer: at mid, and at mid plus spread (what the payer is charged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    pub at_mid: Money,
    pub charged: Money,
}

impl FxTable {
    /// Mid rate from `from` to `to`, using the inverse of the reverse pair when only that is set.
    pub fn mid_rate(&self, from: Currency, to: Currency) -> Option<Decimal> {
        if from == to {
            return Some(Decimal::ONE);
        }
        if let Some(r) = self.mid.get(&(from, to)) {
            return Some(*r);
        }
        let inverse = self.mid.get(&(to, from))?;
        Decimal::ONE.checked_div(*inverse)
    }

    /// Converts what a card costs in its SKU's currency into what the payer is charged.
    pub fn convert_for_payer(&self, amount: Money, to: Currency) -> Result<Conversion, Rejection> {
        let mid = self
            .mid_rate(amount.currency(), to)
            .ok_or(Rejection::FxRateMissing)?;
        let at_mid = convert(amount, to, mid)?;
        let with_spread = mid
            .checked_mul(Decimal::ONE + self.spread)
            .ok_or(Rejection::AmountOutOfRange)?;
        let charged = convert(amount, to, with_spread)?;
        Ok(Conversion { at_mid, charged })
    }
}

/// The replicated catalog of one shard: SKUs, the FX table, and the unit prices of fixed
/// denominations derived from them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(serialize_with = "crate::maps::sorted")]
    pub(crate) skus: HashMap<SkuId, Sku>,
    pub(crate) fx: FxTable,
    /// Unit prices of fixed-denomination SKUs, derived when a SKU is defined (decimal pricing is
    /// a visible share of an order's cost). Not serialized: `rebuild_derived` refills it after a
    /// snapshot loads, and `unit_price` recomputes on a miss.
    #[serde(skip)]
    pub(crate) fixed_prices: HashMap<SkuId, UnitPrice>,
}

impl Catalog {
    /// A SKU by id.
    pub fn sku(&self, id: &SkuId) -> Option<&Sku> {
        self.skus.get(id)
    }

    /// Every SKU, in no particular order.
    pub fn skus(&self) -> impl Iterator<Item = &Sku> {
        self.skus.values()
    }

    /// The FX table.
    pub fn fx(&self) -> &FxTable {
        &self.fx
    }

    /// The unit price of a SKU for an order line (`amount` for open denominations).
    pub fn unit_price(&self, sku: &Sku, amount: Option<i64>) -> Result<UnitPrice, Rejection> {
        match (amount, self.fixed_prices.get(&sku.id)) {
            (None, Some(p)) => Ok(*p),
            _ => sku.unit_price(amount),
        }
    }

    /// Rebuilds what is derived and not serialized (after a snapshot is loaded).
    pub(crate) fn rebuild_derived(&mut self) {
        self.fixed_prices = self
            .skus
            .values()
            .filter_map(|s| Some((s.id.clone(), s.unit_price(None).ok()?)))
            .collect();
    }

    /// A SKU definition, checked against what it replaces. An issued SKU with a cap also gets its
    /// allowance, spread like codes, so no shard serializes issuance.
    pub(crate) fn decide_define_sku(
        &self,
        pools: &crate::pools::Pools,
        sku: &Sku,
        shard_count: u16,
    ) -> crate::state::Decision {
        use crate::state::Decision;
        if let Err(r) = sku.validate() {
            return Decision::Reject(r);
        }
        let existing = self.skus.get(&sku.id);
        if let Some(old) = existing {
            // Kind, currency and cap fix what was already sold and stocked; they never change.
            if old.kind != sku.kind
                || old.currency != sku.currency
                || old.issue_cap != sku.issue_cap
            {
                return Decision::Reject(Rejection::InvalidSku);
            }
        }
        let mut events = vec![crate::Event::SkuDefined(sku.clone())];
        if let (None, Some(cap)) = (existing, sku.issue_cap) {
            if let Decision::Events(mut e) =
                pools.decide_add_codes(self, &sku.id, None, pools.next_slot(), cap, shard_count)
            {
                events.append(&mut e);
            }
        }
        Decision::Events(events)
    }

    pub(crate) fn decide_set_fx(fx: &FxTable) -> crate::state::Decision {
        use crate::state::Decision;
        let ok = fx.spread >= Decimal::ZERO
            && fx.spread < Decimal::ONE
            && fx.mid.values().all(|r| *r > Decimal::ZERO);
        if ok {
            Decision::Events(vec![crate::Event::FxSet(fx.clone())])
        } else {
            Decision::Reject(Rejection::AmountOutOfRange)
        }
    }

    /// The catalog's part of an event.
    pub(crate) fn apply(&mut self, event: &crate::Event) {
        match event {
            crate::Event::SkuDefined(sku) => {
                match sku.unit_price(None) {
                    Ok(p) => drop(self.fixed_prices.insert(sku.id.clone(), p)),
                    Err(_) => drop(self.fixed_prices.remove(&sku.id)),
                }
                self.skus.insert(sku.id.clone(), sku.clone());
            }
            crate::Event::FxSet(fx) => self.fx = fx.clone(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn sku(kind: SkuKind, denomination: Denomination) -> Sku {
        Sku {
            id: SkuId::new("s"),
            brand: "b".into(),
            category: "c".into(),
            kind,
            denomination,
            currency: usd(),
            wholesale_discount: Decimal::from_str("0.15").unwrap(),
            markup: Decimal::ZERO,
            supplier: SupplierId::new("sup"),
            regions: vec!["US".into()],
            status: SkuStatus::Active,
            issue_cap: None,
        }
    }

    #[test]
    fn supplier_code_is_priced_at_face_with_wholesale_cost() {
        let p = sku(SkuKind::SupplierCode, Denomination::Fixed(2500))
            .unit_price(None)
            .unwrap();
        assert_eq!(
            (p.price.minor(), p.cost.minor(), p.face.minor()),
            (2500, 2125, 2500)
        );
    }

    #[test]
    fn open_denomination_needs_an_amount_in_range() {
        let s = sku(
            SkuKind::Issued,
            Denomination::Open {
                min: 1000,
                max: 50000,
            },
        );
        assert_eq!(s.unit_price(None), Err(Rejection::InvalidDenomination));
        assert_eq!(s.unit_price(Some(999)), Err(Rejection::InvalidDenomination));
        assert_eq!(s.unit_price(Some(1234)).unwrap().cost.minor(), 1234);
        let fixed = sku(SkuKind::Issued, Denomination::Fixed(100));
        assert_eq!(
            fixed.unit_price(Some(100)),
            Err(Rejection::InvalidDenomination)
        );
    }

    #[test]
    fn fx_charges_mid_plus_spread_and_uses_inverse_pairs() {
        let eur = Currency::parse("EUR").unwrap();
        let mut fx = FxTable {
            spread: Decimal::from_str("0.02").unwrap(),
            ..FxTable::default()
        };
        fx.mid
            .insert((eur, usd()), Decimal::from_str("1.10").unwrap());
        let c = fx
            .convert_for_payer(Money::new(10_000, eur), usd())
            .unwrap();
        assert_eq!((c.at_mid.minor(), c.charged.minor()), (11_000, 11_220));
        let back = fx
            .convert_for_payer(Money::new(11_000, usd()), eur)
            .unwrap();
        assert_eq!(back.at_mid.minor(), 10_000);
        assert_eq!(
            fx.convert_for_payer(Money::new(1, usd()), Currency::parse("JPY").unwrap()),
            Err(Rejection::FxRateMissing)
        );
    }
}
