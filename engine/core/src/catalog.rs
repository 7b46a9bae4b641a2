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
        convert_at(amount, to, mid, self.spread)
    }
}

/// Converts `amount` into `to` at `mid`, and at `mid` plus `spread` (what the payer is
/// charged): the one conversion of the FX table and of a locked quote.
pub fn convert_at(
    amount: Money,
    to: Currency,
    mid: Decimal,
    spread: Decimal,
) -> Result<Conversion, Rejection> {
    let at_mid = convert(amount, to, mid)?;
    let with_spread = Decimal::ONE
        .checked_add(spread)
        .and_then(|f| mid.checked_mul(f))
        .ok_or(Rejection::AmountOutOfRange)?;
    let charged = convert(amount, to, with_spread)?;
    Ok(Conversion { at_mid, charged })
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
    /// How many times each SKU was defined: its version, for changes conditional on it
    /// (`If-Match`). Section version 2; a version-1 section starts every SKU at 1.
    pub(crate) versions: BTreeMap<SkuId, u64>,
}

/// The catalog section as version 1 wrote it (before SKU versions).
#[derive(Deserialize)]
pub(crate) struct CatalogV1 {
    skus: HashMap<SkuId, Sku>,
    fx: FxTable,
}

impl CatalogV1 {
    pub(crate) fn from_parts(skus: HashMap<SkuId, Sku>, fx: FxTable) -> CatalogV1 {
        CatalogV1 { skus, fx }
    }
}

impl From<CatalogV1> for Catalog {
    fn from(v1: CatalogV1) -> Catalog {
        let versions = v1.skus.keys().map(|id| (id.clone(), 1)).collect();
        let mut c = Catalog {
            skus: v1.skus,
            fx: v1.fx,
            fixed_prices: HashMap::default(),
            versions,
        };
        c.rebuild_derived();
        c
    }
}

/// Changes to some fields of a SKU; absent fields stay as they are. Kind, currency, supplier
/// and issue cap are not among them: they fix what was sold and stocked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuChanges {
    /// A new face value, with the currency the request named (it must be the SKU's).
    pub denomination: Option<(Denomination, Currency)>,
    pub brand: Option<String>,
    pub category: Option<String>,
    pub wholesale_discount: Option<Decimal>,
    pub markup: Option<Decimal>,
    pub regions: Option<Vec<String>>,
    pub status: Option<SkuStatus>,
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

    /// How many times a SKU was defined (0: never).
    pub fn version(&self, id: &SkuId) -> u64 {
        self.versions.get(id).copied().unwrap_or(0)
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
                pools.decide_add_codes(&sku.id, pools.next_slot(), cap, shard_count)
            {
                events.append(&mut e);
            }
        }
        Decision::Events(events)
    }

    /// A new SKU; the same definition again is answered as before, another is `sku_exists`.
    pub(crate) fn decide_create_sku(
        &self,
        pools: &crate::pools::Pools,
        sku: &Sku,
        shard_count: u16,
    ) -> crate::state::Decision {
        use crate::state::Decision;
        match self.skus.get(&sku.id) {
            Some(old) if old == sku => {
                Decision::Answered(vec![crate::Event::SkuDefined(old.clone())])
            }
            Some(_) => Decision::Reject(Rejection::SkuExists),
            None => self.decide_define_sku(pools, sku, shard_count),
        }
    }

    /// Changes a SKU read and written in one decision, so no concurrent change is lost.
    pub(crate) fn decide_change_sku(
        &self,
        pools: &crate::pools::Pools,
        id: &SkuId,
        if_version: Option<u64>,
        ch: &SkuChanges,
        shard_count: u16,
    ) -> crate::state::Decision {
        use crate::state::Decision;
        let Some(old) = self.skus.get(id) else {
            return Decision::Reject(Rejection::SkuNotFound);
        };
        if if_version.is_some_and(|v| v != self.version(id)) {
            return Decision::Reject(Rejection::VersionMismatch);
        }
        let mut sku = old.clone();
        if let Some((denomination, currency)) = ch.denomination {
            if currency != sku.currency {
                return Decision::Reject(Rejection::CurrencyMismatch);
            }
            sku.denomination = denomination;
        }
        let set = |to: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                to.clone_from(v);
            }
        };
        set(&mut sku.brand, &ch.brand);
        set(&mut sku.category, &ch.category);
        if let Some(d) = ch.wholesale_discount {
            sku.wholesale_discount = d;
        }
        if let Some(m) = ch.markup {
            sku.markup = m;
        }
        if let Some(r) = &ch.regions {
            sku.regions.clone_from(r);
        }
        if let Some(s) = ch.status {
            sku.status = s;
        }
        self.decide_define_sku(pools, &sku, shard_count)
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
                *self.versions.entry(sku.id.clone()).or_default() += 1;
            }
            crate::Event::FxSet(fx) => self.fx = fx.clone(),
            _ => {}
        }
    }
}

/// SKUs for other modules' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A $25.00 supplier-code SKU bought at 15% off face.
    pub fn sku(id: &str, brand: &str) -> Sku {
        Sku {
            id: SkuId::new(id),
            brand: brand.into(),
            category: "c".into(),
            kind: SkuKind::SupplierCode,
            denomination: Denomination::Fixed(2500),
            currency: Currency::parse("USD").unwrap_or_else(|| unreachable!()),
            wholesale_discount: Decimal::new(15, 2),
            markup: Decimal::ZERO,
            supplier: SupplierId::new("sup"),
            regions: vec!["US".into()],
            status: SkuStatus::Active,
            issue_cap: None,
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

    fn apply_all(c: &mut Catalog, d: crate::state::Decision) {
        match d {
            crate::state::Decision::Events(evs) => evs.iter().for_each(|e| c.apply(e)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn creating_a_sku_twice_replays_the_same_and_refuses_another() {
        let pools = crate::pools::Pools::default();
        let mut c = Catalog::default();
        let s = sku(SkuKind::SupplierCode, Denomination::Fixed(2_500));
        let d = c.decide_create_sku(&pools, &s, 2);
        apply_all(&mut c, d);
        assert_eq!(c.version(&s.id), 1);
        assert_eq!(
            c.decide_create_sku(&pools, &s, 2),
            crate::state::Decision::Answered(vec![crate::Event::SkuDefined(s.clone())])
        );
        let mut other = s.clone();
        other.brand = "other".into();
        assert_eq!(
            c.decide_create_sku(&pools, &other, 2),
            crate::state::Decision::Reject(Rejection::SkuExists)
        );
    }

    #[test]
    fn changes_are_made_on_the_current_sku_and_an_if_version_must_match() {
        let pools = crate::pools::Pools::default();
        let mut c = Catalog::default();
        let s = sku(SkuKind::SupplierCode, Denomination::Fixed(2_500));
        let d = c.decide_create_sku(&pools, &s, 1);
        apply_all(&mut c, d);
        // Two changes decided one after the other, as the shard does: neither is lost.
        let pause = SkuChanges {
            status: Some(SkuStatus::Paused),
            ..SkuChanges::default()
        };
        let markup = SkuChanges {
            markup: Some(Decimal::from_str("0.05").unwrap()),
            ..SkuChanges::default()
        };
        let d = c.decide_change_sku(&pools, &s.id, None, &pause, 1);
        apply_all(&mut c, d);
        let d = c.decide_change_sku(&pools, &s.id, None, &markup, 1);
        apply_all(&mut c, d);
        let now = c.sku(&s.id).unwrap();
        assert_eq!(
            (now.status, now.markup),
            (SkuStatus::Paused, Decimal::from_str("0.05").unwrap())
        );
        assert_eq!(c.version(&s.id), 3);
        // A change based on version 2 comes too late; one based on 3 applies.
        assert_eq!(
            c.decide_change_sku(&pools, &s.id, Some(2), &pause, 1),
            crate::state::Decision::Reject(Rejection::VersionMismatch)
        );
        assert!(matches!(
            c.decide_change_sku(&pools, &s.id, Some(3), &pause, 1),
            crate::state::Decision::Events(_)
        ));
        // The currency is not the SKU's to change, nor is an unknown SKU.
        let eur = SkuChanges {
            denomination: Some((Denomination::Fixed(1_000), Currency::parse("EUR").unwrap())),
            ..SkuChanges::default()
        };
        assert_eq!(
            c.decide_change_sku(&pools, &s.id, None, &eur, 1),
            crate::state::Decision::Reject(Rejection::CurrencyMismatch)
        );
        assert_eq!(
            c.decide_change_sku(&pools, &SkuId::new("nope"), None, &pause, 1),
            crate::state::Decision::Reject(Rejection::SkuNotFound)
        );
    }

    #[test]
    fn a_version_1_catalog_section_reads_with_every_sku_at_version_1() {
        #[derive(Serialize)]
        struct V1<'a> {
            skus: std::collections::BTreeMap<SkuId, &'a Sku>,
            fx: FxTable,
        }
        let s = sku(SkuKind::SupplierCode, Denomination::Fixed(2_500));
        let bytes = bincode::serialize(&V1 {
            skus: [(s.id.clone(), &s)].into_iter().collect(),
            fx: FxTable::default(),
        })
        .unwrap();
        let c: Catalog = bincode::deserialize::<CatalogV1>(&bytes).unwrap().into();
        assert_eq!(c.sku(&s.id), Some(&s));
        assert_eq!(c.version(&s.id), 1);
        assert!(
            c.fixed_prices.contains_key(&s.id),
            "derived prices are rebuilt"
        );
    }
}
